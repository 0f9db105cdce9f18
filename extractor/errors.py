"""The one base class for every error the core raises on bad user input.

Pages and the command line catch :class:`LayerExplorerError` at their boundary and show
its message; anything else is a bug and is reported as one (without a traceback in the
browser). Each module defines its own subclasses next to the code that raises them.
"""

__all__ = ["LayerExplorerError"]


class LayerExplorerError(ValueError):
    """Something the user passed cannot be used; the message says what, and how to fix it."""
