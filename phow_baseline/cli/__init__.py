"""The command line (``phow-baseline``): a thin click layer over the library."""

from .commands import main

__all__ = ["main"]
