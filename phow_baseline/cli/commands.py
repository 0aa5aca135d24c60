"""The ``phow-baseline`` command table: the group of :mod:`._group` and every command, by topic.

:mod:`.data` (info, download, phantom), :mod:`.phow` (vocab, encode, train,
run, demo), :mod:`.cv` (cv), :mod:`.evaluate` (evaluate, predict, compare, report),
:mod:`.localize` (localize, localize-eval, diff) and :mod:`.cnn` (the
``cnn`` group).  ``python -m phow_baseline.cli.commands`` is the command line too.
"""

from __future__ import annotations

from . import cnn, cv, data, evaluate, localize, phow
from ._group import main

for _module in (data, phow, cv, evaluate, localize, cnn):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
