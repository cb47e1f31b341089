"""Bodies of the worker processes of the atomic-operation tests (spawned by name).

Each opens its own storage (its own LMDB environment or Redis connection), waits at a
barrier so that all race at once, then reports through a queue.
"""

from __future__ import annotations

from typing import Any

from swr.ratelimit import RateLimiter
from swr.storage import LMDBStorage, RedisStorage


def _open(kind: str, where: str, prefix: str) -> Any:
    if kind == "lmdb":
        return LMDBStorage(where, sweep_interval=None)
    return RedisStorage.from_url(where, prefix=prefix)


def incr_many(kind: str, where: str, prefix: str, count: int, barrier: Any, results: Any) -> None:
    """``incr("counter")`` ``count`` times; report the last value seen."""
    with _open(kind, where, prefix) as store:
        barrier.wait(30)
        last = 0
        for _ in range(count):
            last = store.incr("counter")
        results.put(last)


def add_once(kind: str, where: str, prefix: str, name: str, barrier: Any, results: Any) -> None:
    """Race ``add("only-one", name)``; report ``(name, won)``."""
    with _open(kind, where, prefix) as store:
        barrier.wait(30)
        results.put((name, store.add("only-one", name, ttl=60)))


def hit_many(kind: str, where: str, prefix: str, count: int, barrier: Any, results: Any) -> None:
    """Hit one rate limit (10 per hour, sliding window) ``count`` times; report allowed."""

    with _open(kind, where, prefix) as store:
        limiter = RateLimiter(store, limit=10, window=3600, algorithm="sliding")
        barrier.wait(30)
        results.put(sum(limiter.hit("shared").allowed for _ in range(count)))


def board_adds(kind: str, where: str, prefix: str, index: int, barrier: Any, results: Any) -> None:
    """Add 200 own members and bump one shared member 200 times; report the board size."""
    with _open(kind, where, prefix) as store:
        board = store.leaderboard("shared")
        barrier.wait(30)
        for i in range(200):
            board.add({f"p{index}-{i}": float(i)})
            board.incr_by("everyone", 1)
        results.put(board.size())
