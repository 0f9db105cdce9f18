"""The image set the app works on: plain, index-aligned lists, decodable images only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from extractor.errors import Failure

__all__ = ["ImageSet"]


@dataclass
class ImageSet:
    """The images the app works on, all of them decodable, aligned index by index.

    ``items[i]`` is what :meth:`FeatureExtractor.extract` takes (an ``ImageSource`` or an RGB
    array); ``names`` are display names (user-controlled for uploads: escape them for Markdown
    with :func:`ui.state.escape_markdown`); ``digests`` are content hashes (cache keys);
    ``thumbnails`` small RGB arrays (at most 96 px).

    Example:
        >>> s = ImageSet(["a"], ["a.png"], ["cats"], ["d1"], [])
        >>> len(s), s.has_labels, s.describe(0)
        (1, True, 'a.png (cats)')
    """

    items: list
    names: list[str]
    labels: list[str | None]
    digests: list[str]
    thumbnails: list[np.ndarray]
    origin: str = ""  # "demo:shapes", "upload", ...
    problems: list[Failure] = field(default_factory=list)  # files left out, with the reason
    notes: list[Failure] = field(default_factory=list)  # e.g. a.gif: "animated GIF: used the first of 3 frames"

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_labels(self) -> bool:
        return any(label is not None for label in self.labels)

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(label for label in self.labels if label is not None))

    def summary(self) -> str:
        """What the set is, for a person ("12 uploaded images", "the shapes demo set: 70 images").

        Example:
            >>> ImageSet(["a"], ["a.png"], [None], ["d1"], [], "upload").summary()
            '1 uploaded image'
        """
        n = len(self.items)
        if self.origin.startswith("demo:"):
            return f"the {self.origin[5:]} demo set: {n} image{'' if n == 1 else 's'}"
        return f"{n} uploaded image{'' if n == 1 else 's'}"

    def describe(self, i: int) -> str:
        """``"name (label)"`` for selectors (plain text, not Markdown)."""
        label = self.labels[i]
        if label is None or self.names[i].startswith(f"{label}/"):
            return f"{self.names[i]}"
        return f"{self.names[i]} ({label})"
