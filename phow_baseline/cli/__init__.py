"""The command line (``phow-baseline``): a thin click layer over the library.

Each command parses its arguments and calls one library function; library
errors become one-line messages in one place (:mod:`._errors`); choices and
defaults come from the library (:mod:`._options`).  The commands, by topic:
:mod:`.data`, :mod:`.phow`, :mod:`.evaluate`, :mod:`.localize`, :mod:`.cnn`;
:mod:`.commands` puts them in the group.
"""

from .commands import main

__all__ = ["main"]
