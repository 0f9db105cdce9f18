"""The one base class for every error the core raises on bad user input.

Pages and the command line catch :class:`LayerExplorerError` at their boundary and show
its message; anything else is a bug and is reported as one (without a traceback in the
browser). Each module defines its own subclasses next to the code that raises them.
"""

import numbers
from dataclasses import dataclass

__all__ = ["LayerExplorerError", "TrainingDataError", "Failure", "check_int"]


class LayerExplorerError(ValueError):
    """Something the user passed cannot be used; the message says what, and how to fix it."""


class TrainingDataError(LayerExplorerError):
    """The images or labels given for training cannot be used (here so that extractor.reduce's
    TooFewImagesError, the one class for "too few images", can be one too)."""


def check_int(value, name: str, minimum: int, *, error: type[LayerExplorerError] = LayerExplorerError,
              hint: str = "") -> int:
    """``value`` as an ``int`` when it is a whole number (not a bool) of at least ``minimum``; else ``error``.

    Example:
        >>> check_int(5, "k", 1)
        5
        >>> check_int(True, "k", 1)
        Traceback (most recent call last):
        ...
        extractor.errors.LayerExplorerError: k must be a whole number of at least 1; got True.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        why = f" ({hint})" if hint else ""
        raise error(f"{name} must be a whole number of at least {minimum}{why}; got {value!r}.")
    return int(value)


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
