"""edgekd: from a recipe to distilled, deployable video action-recognition engines."""

__version__ = "0.1.0"
