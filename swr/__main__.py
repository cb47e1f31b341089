"""``python -m swr``: the ``swr`` command line (see :mod:`swr.cli` and ``docs/cli.md``)."""

from __future__ import annotations

import sys

from swr.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
