"""The one base class for every error the core raises on bad user input.

Pages and the command line catch :class:`LayerExplorerError` at their boundary and show
its message; anything else is a bug and is reported as one (without a traceback in the
browser). Each module defines its own subclasses next to the code that raises them.
"""

from dataclasses import dataclass

__all__ = ["LayerExplorerError", "TrainingDataError", "Failure"]


class LayerExplorerError(ValueError):
    """Something the user passed cannot be used; the message says what, and how to fix it."""


class TrainingDataError(LayerExplorerError):
    """The images or labels given for training cannot be used (here so that extractor.reduce's
    TooFewImagesError, the one class for "too few images", can be one too)."""


@dataclass(frozen=True)
class Failure:
    """Something left out (an image, a file, a zip member) or noted, as data: never a sentence to parse.

    ``name`` is what the user called it (escape it when shown), ``reason`` says what happened and
    what to do, ``kind`` what it is ("image", "file", "zip member", "batch", "note").
    :attr:`message` is the one way it is written for people.

    Example:
        >>> f = Failure("cat.png", "damaged or incomplete: image file is truncated")
        >>> f.message
        'cat.png: damaged or incomplete: image file is truncated'
        >>> Failure("3 more files", "3 more images were not used: at most 2 per batch.", "batch").message
        '3 more images were not used: at most 2 per batch.'
    """

    name: str
    reason: str
    kind: str = "image"

    @property
    def message(self) -> str:
        # A batch-level entry names no single file: its reason is the whole sentence.
        return self.reason if self.kind == "batch" else f"{self.name}: {self.reason}"
