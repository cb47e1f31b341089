"""Threads hammering several caches of one pool while a checker watches the invariants."""

from __future__ import annotations

import random
import sys
import threading

import pytest

from swr.storage import MemoryPool

CAPACITY = 300
# name -> (min, max, priority); "scratch" also deletes, so it has no min to keep.
CACHES = {
    "users": (60, 200, 10),
    "sessions": (40, 200, 5),
    "scratch": (0, None, 1),
}
WRITERS_PER_CACHE = 3
OPS = 3000


@pytest.fixture
def fast_switching():
    """Switch threads far more often than the default 5 ms, to interleave more."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def test_invariants_hold_while_threads_hammer_several_caches(fast_switching):
    pool = MemoryPool(capacity=CAPACITY, gc_interval=None)
    caches = {
        name: pool.register(name, min=low, max=high, priority=priority)
        for name, (low, high, priority) in CACHES.items()
    }
    stop = threading.Event()
    problems: list[str] = []
    reads = dict.fromkeys(CACHES, 0)
    reads_lock = threading.Lock()

    def value(name: str, key: int) -> tuple[str, int]:
        return (name, key)

    def writer(name: str, seed: int) -> None:
        cache = caches[name]
        rng = random.Random(seed)
        my_reads = 0
        try:
            for _ in range(OPS):
                key = rng.randrange(400)
                op = rng.random()
                if op < 0.45:
                    cache.set(key, value(name, key))
                elif op < 0.85:
                    my_reads += 1
                    got = cache.get(key)
                    if got is not None and got != value(name, key):
                        problems.append(f"{name}[{key}] read {got!r}")
                elif op < 0.95:
                    my_reads += 1

                    def load(name: str = name, key: int = key) -> tuple[str, int]:
                        return value(name, key)

                    if cache.get_or_load(key, load) != value(name, key):
                        problems.append(f"{name}[{key}] loaded a wrong value")
                elif name == "scratch":
                    cache.delete(key)
        except Exception as exc:
            problems.append(f"{name} writer raised {exc!r}")
        with reads_lock:
            reads[name] += my_reads

    def checker() -> None:
        reached_min = set()
        while not stop.is_set():
            stats = pool.stats()
            sizes = {name: s.size for name, s in stats.caches.items()}
            if stats.used != sum(sizes.values()):
                problems.append(f"used {stats.used} != sum of sizes {sizes}")
            if stats.used > CAPACITY:
                problems.append(f"used {stats.used} > capacity")
            for name, (low, high, _) in CACHES.items():
                if high is not None and sizes[name] > high:
                    problems.append(f"{name} holds {sizes[name]} > max {high}")
                # Without deletes or expiry, a cache that reached its min keeps it.
                if name != "scratch":
                    if sizes[name] >= low:
                        reached_min.add(name)
                    elif name in reached_min:
                        problems.append(f"{name} fell to {sizes[name]} below min {low}")

    threads = [
        threading.Thread(target=writer, args=(name, seed * 31 + i))
        for seed, name in enumerate(CACHES)
        for i in range(WRITERS_PER_CACHE)
    ]
    watch = threading.Thread(target=checker)
    watch.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    watch.join(10)

    assert problems == []
    final = pool.stats()
    assert final.used <= CAPACITY
    assert final.caches["users"].size >= 60
    assert final.caches["sessions"].size >= 40
    for name, cache in caches.items():
        stats = final.caches[name]
        # Every read was counted exactly once, as a hit or a miss.
        assert stats.hits + stats.misses == reads[name]
        assert stats.evictions > 0
        held = cache.keys()
        assert [cache.get(key) for key in held] == [value(name, key) for key in held]
    pool.close()
