"""``python -m phow_baseline.cli``: the same as the ``phow-baseline`` command."""

from .commands import main

if __name__ == "__main__":  # pragma: no cover
    main()
