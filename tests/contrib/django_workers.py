"""The processes the Django backend tests start: ``python -m tests.contrib.django_workers``.

Started as plain interpreters (not multiprocessing's spawn, which re-imports pytest in
every child): each waits until ``start_at`` so that they all race, then adds one key,
increments a counter and reads a slow value with ``get_or_set``, and prints what it saw
as JSON on stdout. One race checks all three (starting processes is the slow part).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _cache(backend: str, location: str) -> Any:
    from swr.contrib.django import LMDBCache, RedisCache

    if backend == "lmdb":
        return LMDBCache(location, {"OPTIONS": {"sweep_interval": None}})
    return RedisCache(location, {})


def race(cache: Any, increments: int) -> dict[str, Any]:
    """``add`` one key, ``incr`` a counter ``increments`` times, ``get_or_set`` a slow value."""
    added = cache.add("winner", os.getpid())
    for _ in range(increments):
        cache.incr("counter")

    def compute() -> str:
        cache.incr("computations")
        time.sleep(0.3)  # long enough for every other process to find the key missing
        return "computed"

    report = cache.get_or_set("report", compute, timeout=60)
    return {"pid": os.getpid(), "added": added, "report": report}


def main(argv: list[str]) -> None:
    backend, location, start_at, increments = argv
    cache = _cache(backend, location)
    time.sleep(max(0.0, float(start_at) - time.time()))
    sys.stdout.write(json.dumps(race(cache, int(increments))) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
