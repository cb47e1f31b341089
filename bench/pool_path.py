"""MemoryPool hot paths against cachetools, measured in the same run.

Run: python bench/pool_path.py   (needs the bench extra: pip install -e ".[bench]")

Prints ns per operation for:
- ``PoolCache.get`` hits (a cache without a ttl, like ``LRUCache``, and one with
  ``ttl=300``, which reads the clock on every hit) against ``cachetools.LRUCache.get``
  hits (and ``cachetools.TTLCache.get``, the like-for-like baseline of a ttl cache);
- ``PoolCache.set`` of new keys into a full pool of 10_000 and of 1_000_000 entries
  (every write evicts one entry of the lowest-priority cache); with
  ``cachetools.LRUCache`` writes into full caches of the same sizes for reference;
- ``PoolCache.get_or_load`` hits;
- for information, ``StaleEngine.execute`` HIT over a pool cache and over
  ``MemoryStorage`` (which offers the engine its dict methods directly).

Targets: ``get`` no slower than ``LRUCache.get``; a write into the big pool at most
1.5x a write into the small one (eviction cost does not grow with the pool).
"""

from __future__ import annotations

import gc
import itertools
import sys
from collections.abc import Callable

import cachetools
from _harness import Case, Target, measure, report

from swr import CacheTTL, StaleEngine
from swr.storage import MemoryPool, PoolCache

KEY = 42
VALUE = {"id": 42, "name": "Ada"}
SMALL = 10_000
BIG = 1_000_000

Cleanup = Callable[[], None]


def repeat(call: Callable[[], object]) -> Case:
    def run(n: int) -> None:
        for _ in range(n):
            call()

    return run


def read_cases() -> tuple[dict[str, Case], Cleanup]:
    """Hits of PoolCache.get (without and with a ttl), get_or_load and cachetools."""
    pool = MemoryPool(capacity=SMALL, gc_interval=None)
    plain: PoolCache[int, object] = pool.register("plain", max=SMALL // 2)
    timed: PoolCache[int, object] = pool.register("timed", ttl=300, max=SMALL // 2)
    lru: cachetools.LRUCache[int, object] = cachetools.LRUCache(maxsize=SMALL)
    ttl_cache: cachetools.TTLCache[int, object] = cachetools.TTLCache(maxsize=SMALL, ttl=300)
    plain.set(KEY, VALUE)
    timed.set(KEY, VALUE)
    lru[KEY] = VALUE
    ttl_cache[KEY] = VALUE
    assert plain.get(KEY) is timed.get(KEY) is lru.get(KEY) is ttl_cache.get(KEY) is VALUE

    def loader() -> object:
        raise AssertionError("get_or_load must hit")

    def pool_get(n: int) -> None:
        for _ in range(n):
            plain.get(KEY)

    def pool_get_ttl(n: int) -> None:
        for _ in range(n):
            timed.get(KEY)

    def lru_get(n: int) -> None:
        for _ in range(n):
            lru.get(KEY)

    def ttl_cache_get(n: int) -> None:
        for _ in range(n):
            ttl_cache.get(KEY)

    def get_or_load(n: int) -> None:
        for _ in range(n):
            timed.get_or_load(KEY, loader)

    cases: dict[str, Case] = {
        "PoolCache.get hit (no ttl)": pool_get,
        "PoolCache.get hit (ttl=300)": pool_get_ttl,
        "LRUCache.get hit": lru_get,
        "TTLCache.get hit": ttl_cache_get,
        "PoolCache.get_or_load hit": get_or_load,
    }
    return cases, pool.close


def full_pool(capacity: int) -> tuple[MemoryPool, PoolCache[int, object]]:
    """A full pool of two caches; writes go to the high-priority one.

    Each write of a new key then needs room: both caches are checked for expired
    entries, and the low-priority cache (while above its min, then the writer) loses
    its least recently used entry.
    """
    pool = MemoryPool(capacity=capacity, gc_interval=None)
    cold: PoolCache[int, object] = pool.register("cold", ttl=300, priority=1)
    hot: PoolCache[int, object] = pool.register("hot", ttl=300, priority=10)
    half = capacity // 2
    cold.set_many(dict.fromkeys(range(half), VALUE))
    hot.set_many(dict.fromkeys(range(half, capacity), VALUE))
    assert pool.stats().used == capacity
    return pool, hot


def full_lru(capacity: int) -> cachetools.LRUCache[int, object]:
    cache: cachetools.LRUCache[int, object] = cachetools.LRUCache(maxsize=capacity)
    for key in range(capacity):
        cache[key] = VALUE
    return cache


def write_cases() -> tuple[dict[str, Case], Cleanup]:
    """Writes of new keys into full pools (and full LRUCaches) of both sizes."""
    small_pool, small_hot = full_pool(SMALL)
    big_pool, big_hot = full_pool(BIG)
    small_lru, big_lru = full_lru(SMALL), full_lru(BIG)
    fresh = itertools.count(10 * BIG)  # keys never written before: every set evicts

    def set_small(n: int) -> None:
        for _ in range(n):
            small_hot.set(next(fresh), VALUE)

    def set_big(n: int) -> None:
        for _ in range(n):
            big_hot.set(next(fresh), VALUE)

    def lru_set_small(n: int) -> None:
        for _ in range(n):
            small_lru[next(fresh)] = VALUE

    def lru_set_big(n: int) -> None:
        for _ in range(n):
            big_lru[next(fresh)] = VALUE

    def cleanup() -> None:
        assert small_pool.stats().used == SMALL
        assert big_pool.stats().used == BIG
        small_pool.close()
        big_pool.close()

    cases: dict[str, Case] = {
        "PoolCache.set, full pool 10_000": set_small,
        "PoolCache.set, full pool 1_000_000": set_big,
        "LRUCache set, full 10_000": lru_set_small,
        "LRUCache set, full 1_000_000": lru_set_big,
    }
    return cases, cleanup


def engine_cases() -> tuple[dict[str, Case], Cleanup]:
    """StaleEngine HIT over a registered cache and over MemoryStorage."""
    pool = MemoryPool(capacity=SMALL, gc_interval=None)
    windows = CacheTTL(fresh=3600, stale=3600)
    pooled = StaleEngine(pool.register("api"), ttl=windows)
    memory = StaleEngine(ttl=windows)

    def fetch() -> object:
        return VALUE

    for engine in (pooled, memory):
        engine.execute("user:42", fetch)

    def cleanup() -> None:
        pooled.close()
        memory.close()
        pool.close()

    cases: dict[str, Case] = {
        "StaleEngine HIT over PoolCache": repeat(lambda: pooled.execute("user:42", fetch)),
        "StaleEngine HIT over MemoryStorage": repeat(lambda: memory.execute("user:42", fetch)),
    }
    return cases, cleanup


def main() -> int:
    reads, close_reads = read_cases()
    writes, close_writes = write_cases()
    engines, close_engines = engine_cases()
    gc.collect()
    results = measure({**reads, **writes, **engines}, 200_000)
    met = report(
        "pool path",
        results,
        [
            Target(
                "get (no ttl) / LRUCache.get",
                "PoolCache.get hit (no ttl)",
                "LRUCache.get hit",
                1.0,
            ),
            Target(
                "get (ttl=300) / LRUCache.get",
                "PoolCache.get hit (ttl=300)",
                "LRUCache.get hit",
                1.0,
            ),
            Target(
                "set into full pool: 1_000_000 / 10_000",
                "PoolCache.set, full pool 1_000_000",
                "PoolCache.set, full pool 10_000",
                1.5,
            ),
        ],
    )
    for label, numerator, denominator in (
        ("get (ttl=300) / TTLCache.get", "PoolCache.get hit (ttl=300)", "TTLCache.get hit"),
        (
            "LRUCache set, full 1_000_000 / 10_000",
            "LRUCache set, full 1_000_000",
            "LRUCache set, full 10_000",
        ),
        (
            "engine HIT: PoolCache / MemoryStorage",
            "StaleEngine HIT over PoolCache",
            "StaleEngine HIT over MemoryStorage",
        ),
    ):
        print(f"info  {label}: {results[numerator] / results[denominator]:.2f}x (no target)")
    close_reads()
    close_writes()
    close_engines()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
