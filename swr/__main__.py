"""Operations on LMDB stores: ``python -m swr inspect PATH`` and ``python -m swr purge PATH``.

Both work while applications use the store (each change is one transaction) and never
create anything: a path that is not an swr LMDB store gets a message and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from swr.storage.errors import StorageError
from swr.storage.lmdb import StoreSummary, inspect_store, purge_store

__all__ = ["main"]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit} ({n} B)"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _describe(summary: StoreSummary) -> str:
    rows = [
        ("store", summary.path),
        ("entries", str(summary.entries)),
        ("bytes used", f"{_size(summary.bytes)}  (keys and records: what max_bytes bounds)"),
        ("file size", _size(summary.file_bytes)),
        ("map size", _size(summary.map_size)),
        ("fresh", str(summary.fresh)),
        ("stale", str(summary.stale)),
        ("expired", f"{summary.expired}  (kept as fallbacks)"),
        ("dead", f"{summary.dead}  (past expires_at: removed by the next sweep)"),
    ]
    if summary.corrupt:
        rows.append(("corrupt", f"{summary.corrupt}  (removed when read)"))
    rows.append(("leases", str(summary.leases)))
    return "\n".join(f"{label:<12}{value}" for label, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 done, 1 not a store or failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m swr", description="Inspect or empty an swr LMDB store."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect", help="print entries, bytes used, map size and counts by window"
    )
    inspect.add_argument("path", help="directory of the store")
    purge = commands.add_parser("purge", help="remove every entry (or only the dead ones)")
    purge.add_argument("path", help="directory of the store")
    purge.add_argument(
        "--expired-only",
        action="store_true",
        help="remove only entries past their expires_at",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            print(_describe(inspect_store(args.path)))
        else:
            removed = purge_store(args.path, expired_only=args.expired_only)
            what = "dead entries" if args.expired_only else "entries"
            print(f"removed {removed} {what} from {args.path}")
    except StorageError as exc:
        print(f"python -m swr {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
