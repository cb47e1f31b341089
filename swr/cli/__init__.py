"""The ``swr`` command line (also ``python -m swr``): look into and clear a store.

Every command takes a store: a Redis URL (``redis://``, ``rediss://``, ``unix://``,
with ``--prefix`` and ``--cluster``) or the directory of an LMDB store. Nothing is ever
created: a path that is not a store is an error. Tables are printed for people,
``--json`` prints JSON for scripts. Exit statuses are listed in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import swr
from swr.cli._stores import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    Census,
    CliError,
    Target,
    now,
    open_target,
)
from swr.storage import Entry
from swr.storage._validate import check_int, check_seconds
from swr.storage.lmdb._inspect import EntryInfo, window_at

__all__ = ["main"]

PROG = "swr"
WIDTH = 88  # help is wrapped at a fixed width, so it reads the same on every terminal
# Seconds between the census of `watch` (tests replace it to move time).
sleep: Callable[[float], None] = time.sleep


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, width=WIDTH, max_help_position=30)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Look into and clear an swr store: an LMDB directory or a Redis server.",
        epilog=(
            "STORE is a Redis URL (redis://, rediss://, unix://) or an LMDB store's directory.\n"
            "Exit status: 0 done, 1 not found or not a store, 2 usage, 3 Redis unreachable,\n"
            "4 Redis refused the credentials. Run 'swr COMMAND --help' for a command's options."
        ),
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"swr {swr.__version__}")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("store", metavar="STORE", help="a Redis URL or an LMDB store's directory")
    store.add_argument("--prefix", default="", help="Redis: the storage's key prefix")
    store.add_argument("--cluster", action="store_true", help="Redis: connect to a cluster")
    store.add_argument(
        "--timeout", type=_seconds, default=2.0, help="Redis: seconds to connect or answer"
    )
    store.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, parents=[store], help=summary, description=summary, formatter_class=_formatter
        )

    inspect = command("inspect", "count the entries by window, with their bytes")
    inspect.add_argument("--keys", action="store_true", help="list the entries too")
    inspect.add_argument(
        "--match", default="", metavar="P", help="with --keys: only keys starting with P"
    )
    inspect.add_argument(
        "--limit", type=_count, default=100, metavar="N", help="with --keys: at most N (100)"
    )
    get = command("get", "print one entry: its value (as JSON when it can be) and windows")
    get.add_argument("key", metavar="KEY")
    delete = command("delete", "remove one entry")
    delete.add_argument("key", metavar="KEY")
    purge = command("purge", "remove every entry and lease (or only the dead entries)")
    purge.add_argument(
        "--expired-only", action="store_true", help="remove only entries past expires_at"
    )
    command("stats", "print the storage's stats() counters")
    watch = command("watch", "print the entries by window every interval")
    watch.add_argument(
        "--interval", type=_seconds, default=1.0, metavar="S", help="seconds between rows (1)"
    )
    watch.add_argument(
        "--count", type=_count, default=None, metavar="N", help="stop after N rows (never)"
    )
    return parser


def _count(text: str) -> int:
    return check_int("the count", int(text), 1, error=argparse.ArgumentTypeError)


def _seconds(text: str) -> float:
    return check_seconds("the duration", float(text), error=argparse.ArgumentTypeError)


# -- output ---------------------------------------------------------------------------


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit} ({n} B)"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


# Later than this is "never": storages write an infinite window as the largest float.
NEVER = 253402300799.0  # 9999-12-31T23:59:59Z


def _instant(at: float) -> str:
    if math.isnan(at):
        return "-"
    if at > NEVER:
        return "never"
    return _dt.datetime.fromtimestamp(at, _dt.timezone.utc).isoformat(timespec="seconds")


def _time_json(at: float) -> float | None:
    """Epoch seconds for JSON: ``None`` for never (infinite) or unknown (NaN)."""
    return at if math.isfinite(at) and at <= NEVER else None


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{label:<12}{value}" for label, value in rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _census_json(census: Census) -> dict[str, Any]:
    return {"store": census.store, "kind": census.kind, **census.counts, **census.details}


def _describe(census: Census) -> str:
    counts = census.counts
    rows = [
        ("store", census.store),
        ("kind", census.kind),
        ("entries", str(counts["entries"])),
        ("bytes used", f"{_size(counts['bytes'])}  (keys and records)"),
    ]
    if "file_bytes" in census.details:
        rows.append(("file size", _size(census.details["file_bytes"])))
        rows.append(("map size", _size(census.details["map_size"])))
    rows += [
        ("fresh", str(counts["fresh"])),
        ("stale", str(counts["stale"])),
        ("expired", f"{counts['expired']}  (kept as fallbacks)"),
        ("dead", f"{counts['dead']}  (past expires_at: removed by the next sweep)"),
    ]
    if counts["corrupt"]:
        rows.append(("corrupt", f"{counts['corrupt']}  (removed when read)"))
    rows.append(("leases", str(counts["leases"])))
    return _rows(rows)


def _clip(key: str, most: int = 60) -> str:
    """``key`` for a table column: its start and end around an ellipsis when long."""
    return key if len(key) <= most else f"{key[: most - 12]}...{key[-9:]}"


def _entry_json(info: EntryInfo) -> dict[str, Any]:
    return {
        "key": info.key,
        "window": info.window,
        "size": info.size,
        "stored_at": _time_json(info.stored_at),
        "fresh_until": _time_json(info.fresh_until),
        "stale_until": _time_json(info.stale_until),
        "expires_at": _time_json(info.expires_at),
        "digest": info.digest,
    }


def _value_json(value: Any) -> tuple[Any, bool]:
    """``(value, True)`` when it is JSON as it is, else ``(repr(value), False)``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value), False
    return value, True


# -- commands -------------------------------------------------------------------------


def _inspect(target: Target, args: argparse.Namespace) -> tuple[Any, str]:
    at = now()
    census = target.census(at)
    data = _census_json(census)
    text = _describe(census)
    if args.keys:
        found = target.entries(args.match, args.limit + 1, at)
        shown = found[: args.limit]
        data["keys"] = [_entry_json(info) for info in shown]
        data["truncated"] = len(found) > args.limit
        rows = [
            [
                _clip(info.key) + (" (digest)" if info.digest else ""),
                info.window,
                str(info.size),
                _instant(info.stored_at),
                _instant(info.expires_at),
            ]
            for info in shown
        ]
        listing = _table(["key", "window", "bytes", "stored at", "expires at"], rows)
        more = f"\n(first {args.limit} shown: --limit N for more)" if data["truncated"] else ""
        text += "\n\n" + listing + more
    return data, text


def _get(target: Target, args: argparse.Namespace) -> tuple[Any, str]:
    entry = target.get(args.key)
    if entry is None:
        raise CliError(f"no entry under {args.key!r} in {target.name}", EXIT_NOT_FOUND)
    return _show(args.key, entry, now())


def _show(key: str, entry: Entry, at: float) -> tuple[Any, str]:
    value, is_json = _value_json(entry.value)
    window = window_at(at, entry.fresh_until, entry.stale_until, entry.expires_at)
    data = {
        "key": key,
        "window": window,
        "value": value,
        "json": is_json,
        "age": at - entry.stored_at,
        "stored_at": _time_json(entry.stored_at),
        "fresh_until": _time_json(entry.fresh_until),
        "stale_until": _time_json(entry.stale_until),
        "expires_at": _time_json(entry.expires_at),
    }
    shown = json.dumps(value, ensure_ascii=False) if is_json else f"{value}  (not JSON: repr)"
    text = _rows(
        [
            ("key", key),
            ("window", window),
            ("age", f"{at - entry.stored_at:.1f} s"),
            ("stored at", _instant(entry.stored_at)),
            ("fresh until", _instant(entry.fresh_until)),
            ("stale until", _instant(entry.stale_until)),
            ("expires at", _instant(entry.expires_at)),
            ("value", shown),
        ]
    )
    return data, text


def _delete(target: Target, args: argparse.Namespace) -> tuple[Any, str]:
    if not target.delete(args.key):
        raise CliError(f"no entry under {args.key!r} in {target.name}", EXIT_NOT_FOUND)
    return {"key": args.key, "deleted": True}, f"deleted {args.key!r} from {target.name}"


def _purge(target: Target, args: argparse.Namespace) -> tuple[Any, str]:
    removed = target.purge(expired_only=args.expired_only, now=now())
    what = "dead entries" if args.expired_only else "entries"
    data = {"store": target.name, "removed": removed, "expired_only": args.expired_only}
    return data, f"removed {removed} {what} from {target.name}"


def _stats(target: Target, args: argparse.Namespace) -> tuple[Any, str]:
    stats = dict(target.stats())
    width = max((len(name) for name in stats), default=0) + 2
    text = "\n".join(f"{name:<{width}}{value}" for name, value in stats.items())
    return stats, text


WATCH_COLUMNS = ("time", "entries", "bytes", "fresh", "stale", "expired", "dead", "written/s")


def _watch(target: Target, args: argparse.Namespace) -> int:
    """Print one census per interval; ``written/s``: entries stored since the last row."""
    out = sys.stdout
    previous = now()
    shown = 0
    if not args.json:
        print("  ".join(f"{c:>9}" for c in WATCH_COLUMNS), file=out, flush=True)
    while args.count is None or shown < args.count:
        sleep(args.interval)
        at = now()
        census = target.census(at, since=previous)
        rate = census.written / max(at - previous, 1e-9)
        previous = at
        shown += 1
        if args.json:
            row = {"time": at, **_census_json(census), "written_per_second": rate}
            print(json.dumps(row), file=out, flush=True)
            continue
        clock = _dt.datetime.fromtimestamp(at, _dt.timezone.utc).strftime("%H:%M:%S")
        counts = [str(census.counts[name]) for name in WATCH_COLUMNS[1:-1]]
        cells = [clock, *counts, f"{rate:.1f}"]
        print("  ".join(f"{c:>9}" for c in cells), file=out, flush=True)
    return EXIT_OK


COMMANDS: dict[str, Callable[[Target, argparse.Namespace], tuple[Any, str]]] = {
    "inspect": _inspect,
    "get": _get,
    "delete": _delete,
    "purge": _purge,
    "stats": _stats,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (listed in ``docs/cli.md``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        with open_target(
            args.store, prefix=args.prefix, cluster=args.cluster, timeout=args.timeout
        ) as target:
            if args.command == "watch":
                return _watch(target, args)
            data, text = COMMANDS[args.command](target, args)
    except CliError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "watch" else 130
    print(json.dumps(data, ensure_ascii=False) if args.json else text)
    return EXIT_OK
