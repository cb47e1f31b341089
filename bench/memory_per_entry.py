"""Bytes per cached entry, key and value excluded: the pool and MemoryStorage against cachetools.

Run: python bench/memory_per_entry.py   (needs the bench extra: pip install -e ".[bench]")

Each case stores the same 100_000 items (60-character string keys, small dict values)
into a fresh cache with room for all of them, and ``tracemalloc`` counts the bytes
allocated meanwhile and still held: the cache's own structures, never the keys and
values (they are made before, and the cache holds the same objects). For
``MemoryStorage`` the :class:`~swr.storage.Entry` wrapping each value is made in the
measured section: the engine builds one per value, so it counts as overhead.

Targets: ``PoolCache`` (with a ttl, and without) and ``MemoryStorage`` no more bytes per
entry than ``cachetools.TTLCache`` holding the same items (``LRUCache`` and a plain
``dict`` are printed for reference). ``MemoryStorage`` marks the entries read since its
eviction order last passed them (a set of keys), so it is printed again after every
entry was read once: the most that set ever holds.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections.abc import Callable

import cachetools
from _harness import Target, report

from swr.storage import Entry, MemoryPool, MemoryStorage

N = 100_000


def items() -> tuple[list[str], list[dict[str, object]]]:
    keys = [f"tenant:acme:user:{i:010d}:profile:v2:{'x' * 20}"[:60] for i in range(N)]
    values: list[dict[str, object]] = [{"id": i, "name": "Ada"} for i in range(N)]
    return keys, values


def held_bytes(fill: Callable[[], object]) -> float:
    """Bytes per item allocated by ``fill()`` and still held while its result lives."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / N


def main() -> int:
    keys, values = items()
    pairs = list(zip(keys, values, strict=True))
    now = time.time()

    def ttl_cache() -> object:
        cache: cachetools.TTLCache[str, object] = cachetools.TTLCache(maxsize=N, ttl=300)
        for key, value in pairs:
            cache[key] = value
        return cache

    def lru_cache() -> object:
        cache: cachetools.LRUCache[str, object] = cachetools.LRUCache(maxsize=N)
        for key, value in pairs:
            cache[key] = value
        return cache

    def plain_dict() -> object:
        return dict(pairs)

    def pool_cache(ttl: float | None) -> Callable[[], object]:
        def fill() -> object:
            pool = MemoryPool(capacity=N, gc_interval=None)
            cache = pool.register("c", ttl=ttl)
            for key, value in pairs:
                cache.set(key, value)
            assert len(cache) == N
            return pool

        return fill

    def memory_storage() -> object:
        store = MemoryStorage(max_entries=N)
        for key, value in pairs:
            store.set(
                key,
                Entry(
                    value=value,
                    stored_at=now,
                    fresh_until=now + 60,
                    stale_until=now + 120,
                    expires_at=now + 300,
                ),
            )
        assert len(store) == N
        return store

    def memory_storage_read() -> object:
        store = memory_storage()
        assert isinstance(store, MemoryStorage)
        get = store.get
        for key in keys:  # every entry marked as read (its eviction order's cost)
            get(key)
        return store

    cases = {
        "cachetools.TTLCache(ttl=300)": ttl_cache,
        "cachetools.LRUCache": lru_cache,
        "dict": plain_dict,
        "PoolCache (ttl=300)": pool_cache(300),
        "PoolCache (no ttl)": pool_cache(None),
        "MemoryStorage (Entry per value)": memory_storage,
        "MemoryStorage, every entry read once": memory_storage_read,
    }
    results = {name: held_bytes(fill) for name, fill in cases.items()}
    met = report(
        f"memory per entry, {N:,} entries, keys and values excluded",
        results,
        [
            Target(
                "PoolCache (ttl=300) / TTLCache",
                "PoolCache (ttl=300)",
                "cachetools.TTLCache(ttl=300)",
                1.0,
            ),
            Target(
                "PoolCache (no ttl) / TTLCache",
                "PoolCache (no ttl)",
                "cachetools.TTLCache(ttl=300)",
                1.0,
            ),
            Target(
                "MemoryStorage / TTLCache",
                "MemoryStorage (Entry per value)",
                "cachetools.TTLCache(ttl=300)",
                1.0,
            ),
        ],
        unit="bytes/entry",
    )
    read = results["MemoryStorage, every entry read once"]
    ratio = read / results["cachetools.TTLCache(ttl=300)"]
    print(f"info  MemoryStorage, every entry read once / TTLCache: {ratio:.2f}x (no target)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
