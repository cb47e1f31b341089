"""Generate the synchronous twins of swr's asyncio modules.

The asyncio source is the only one written by hand. Every ``.py`` file in a folder named
``_async`` (anywhere under ``swr/``) has a twin of the same name in the sibling folder
``_sync``, made by the substitutions of ``RULES`` below, applied line by line, then
formatted with ``ruff format``. What truly differs between threads and tasks (waking
waiters, cancellation, timeouts, executors, sleeping) is not substituted: it lives in
small hand-written modules whose sync and async names follow the table (``AsyncFlights``
and ``Flights``, ``async_sleep`` and ``sleep``, ...).

Usage::

    python tools/unasync.py          # write the _sync modules
    python tools/unasync.py --check  # fail if a _sync module differs from its source

Two lines of the source can differ in their sync twin with a pragma at the end of a line:

- ``# unasync: remove``: the line is left out of the sync twin;
- ``# unasync: sync=TEXT``: the line's code is replaced by ``TEXT`` (indentation kept).

The script fails when a rule of the table is used by no file (a stale rule hides a
rename), and when a generated module does not start with the ``GENERATED`` line.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GENERATED = "# Generated from {source} by tools/unasync.py:\n# edit that file, not this one."

# (pattern, replacement), applied in order to each line. Patterns are regular expressions;
# identifiers are matched whole (``\b``). Every rule must fire in some source: add one
# when a source needs it (``async for``, ``__aiter__``, ``AsyncIterator``...), not before.
RULES: list[tuple[str, str]] = [
    (r"\bfrom (\S+)\._async(\.| )", r"from \1._sync\2"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\baclose\b", "close"),
    # redis-py's asyncio clients: redis.asyncio.Redis -> redis.Redis, and so on.
    (r"\bredis\.asyncio\b", "redis"),
    # Names: AsyncThing -> Thing, async_thing -> thing, athing verbs listed one by one.
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"\basync_(\w+)", r"\1"),
    # httpx: the transport and response methods whose async names are not prefixed.
    (r"\bhandle_async_request\b", "handle_request"),
    (r"\baiter_raw\b", "iter_raw"),
]

PRAGMA = re.compile(r"\s*# unasync: (remove|sync=(.*))$")


class UnasyncError(Exception):
    """A source that cannot be turned into its twin, or a twin out of date."""


def pairs() -> list[tuple[Path, Path]]:
    """Every ``_async/*.py`` source with its ``_sync`` twin, in a stable order."""
    sources = sorted((ROOT / "swr").rglob("_async/*.py"))
    return [(source, source.parent.parent / "_sync" / source.name) for source in sources]


def convert(text: str, used: set[int]) -> str:
    """Return the sync twin of one asyncio source, recording which rules fired."""
    compiled = [(re.compile(pattern), repl) for pattern, repl in RULES]
    out = []
    for line in text.splitlines():
        pragma = PRAGMA.search(line)
        if pragma is not None:
            if pragma.group(1) == "remove":
                continue
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + pragma.group(2).strip())
            continue
        converted = line
        for index, (pattern, repl) in enumerate(compiled):
            converted, count = pattern.subn(repl, converted)
            if count:
                used.add(index)
        out.append(converted)
    return "\n".join(out) + "\n"


def ruff_format(text: str, filename: Path) -> str:
    """Sort the imports (renamed names change their order) and format, as the tree is kept."""
    for args in (["check", "--select", "I", "--fix", "--quiet", "--exit-zero"], ["format"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(filename), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if done.returncode != 0:
            raise UnasyncError(f"ruff {args[0]} failed on the twin of {filename}:\n{done.stderr}")
        text = done.stdout
    return text


def generate() -> dict[Path, str]:
    """Every twin's expected text, keyed by its path."""
    used: set[int] = set()
    twins: dict[Path, str] = {}
    for source, target in pairs():
        rel = source.relative_to(ROOT).as_posix()
        body = convert(source.read_text(), used)
        twins[target] = ruff_format(GENERATED.format(source=rel) + "\n" + body, target)
    unused = [RULES[i][0] for i in range(len(RULES)) if i not in used]
    if twins and unused:
        raise UnasyncError(f"unused rules (remove them or fix the sources): {unused}")
    return twins


def main(argv: list[str] | None = None) -> int:
    """Write the twins, or with ``--check`` report the ones that differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a twin is out of date")
    args = parser.parse_args(argv)
    try:
        twins = generate()
    except UnasyncError as exc:
        print(f"unasync: {exc}", file=sys.stderr)
        return 2
    stale = []
    for target, text in twins.items():
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        stale.append(target.relative_to(ROOT).as_posix())
        if not args.check:
            target.parent.mkdir(exist_ok=True)
            target.write_text(text)
    # A _sync module whose source is gone is stale too.
    for sync_dir in {t.parent for t in twins} | set((ROOT / "swr").rglob("_sync")):
        stale.extend(
            f"{orphan.relative_to(ROOT).as_posix()} (no source)"
            for orphan in sorted(sync_dir.glob("*.py"))
            if orphan not in twins and orphan.name != "__init__.py"
        )
    if args.check and stale:
        print("unasync: out of date, run python tools/unasync.py:", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
