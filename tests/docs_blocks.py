"""Run the Python code blocks of one Markdown page, in order, in one namespace.

Used by ``tests/test_docs.py``, one subprocess a page, in a fresh working directory::

    python tests/docs_blocks.py README.md

Blocks share one namespace, as a reader would type them one after the other. A block
may ``await`` at its top level (it then runs under ``asyncio.run``). A block fenced as
```` ```python no-run ```` is shown but not run: it must say in its first line why.
Redis URLs on the standard port (``redis://127.0.0.1:6379``) are pointed at the test's
own server, given in ``SWR_TEST_REDIS_URL``, and cluster URLs on port 7000
(``redis://127.0.0.1:7000``) at the test's own cluster (``SWR_TEST_CLUSTER_URL``), so
that no block ever reaches the machine's own Redis. A block naming a Redis host or an IP
address other than the loopback is refused before it runs.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import sys
import types
from pathlib import Path

FENCE = re.compile(r"^```python( no-run)?\n(.*?)^```", re.DOTALL | re.MULTILINE)
STANDARD_REDIS = re.compile(r"redis://(?:127\.0\.0\.1|localhost):6379")
CLUSTER_REDIS = re.compile(r"redis://(?:127\.0\.0\.1|localhost):7000")
URL_HOST = re.compile(r"\b([a-z][a-z0-9+.-]*)://(?:[^@/\s\"']*@)?(\[[^\]]*\]|[^:/\s\"']+)")
IP_LITERAL = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[.*\])$")
LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}


def foreign_hosts(source: str) -> set[str]:
    """Hosts a block could reach off this machine: any Redis host or IP literal not local.

    Names in ``http://`` URLs (``api.local``) are left alone: the HTTP examples give
    httpx an in-process transport, which never resolves them.
    """
    return {
        host
        for scheme, host in URL_HOST.findall(source)
        if host not in LOOPBACK and (scheme.startswith("redis") or IP_LITERAL.match(host))
    }


def blocks(text: str) -> list[tuple[bool, str]]:
    """``(runs, source)`` for every python block of a page."""
    return [(not match.group(1), match.group(2)) for match in FENCE.finditer(text)]


def run_page(path: Path) -> int:
    """Run every runnable block of ``path``; return how many ran."""
    # A real module, so that classes defined by a block (dataclasses) find their module.
    module = types.ModuleType("__docs__")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    ran = 0
    for index, (runs, text) in enumerate(blocks(path.read_text()), start=1):
        if not runs:
            continue
        source = text
        foreign = foreign_hosts(text)
        if foreign:
            raise RuntimeError(f"{path} block {index} names hosts off this machine: {foreign}")
        for pattern, variable in (
            (STANDARD_REDIS, "SWR_TEST_REDIS_URL"),
            (CLUSTER_REDIS, "SWR_TEST_CLUSTER_URL"),
        ):
            if pattern.search(source):
                url = os.environ.get(variable)
                if url is None:
                    raise RuntimeError(f"{path} block {index} needs {variable}")
                source = pattern.sub(url, source)
        code = compile(source, f"{path}:block{index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        outcome = eval(code, namespace)  # the page's own example code
        if inspect.iscoroutine(outcome):
            asyncio.run(outcome)
        ran += 1
    return ran


if __name__ == "__main__":
    # Run as a script, this folder is first on the path, and its `swr` test package
    # would shadow the real one.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    count = run_page(Path(sys.argv[1]))
    print(f"ran {count} blocks", file=sys.stderr)
