"""MemoryPool hot paths against cachetools, measured in the same run.

Run: python bench/pool_path.py   (needs the bench extra: pip install -e ".[bench]")

Prints ns per operation for:
- ``PoolCache.get`` hits (a cache without a ttl, like ``LRUCache``, and one with
  ``ttl=3600``, which reads the clock on every hit) against ``cachetools.LRUCache.get``
  hits (and ``cachetools.TTLCache.get``, the like-for-like baseline of a ttl cache):
  on one hot key, and over a working set of 100_000 string keys (every one cached,
  ten times the bench's other caches) read in a Zipf (s = 1.0) and in a uniform order;
- ``PoolCache.set`` of new keys into a full pool of 10_000 and of 1_000_000 entries
  (every write evicts one entry of the lowest-priority cache); with
  ``cachetools.LRUCache`` writes into full caches of the same sizes for reference;
- ``PoolCache.set`` (and ``MemoryStorage.set``) of new keys into a full store of
  100_000 entries from one thread and from two threads at once, as wall time per
  operation of all threads together (threads started once and released together in
  every round, as a service keeps its workers: ``_harness.Crew``); for information, the
  same for a plain dict written under a lock, the floor of threads taking turns on the
  GIL, and for a full ``cachetools.LRUCache`` of 100_000 written under a lock (the
  thread-safe cache users make of it);
- ``PoolCache.get_or_load`` hits;
- for information, ``StaleEngine.execute`` HIT over a pool cache and over
  ``MemoryStorage`` (which offers the engine its dict methods directly).

Targets: ``get`` no slower than ``LRUCache.get`` in every read order; a write into the
big pool at most 1.5x a write into the small one (eviction cost does not grow with the
pool); writes from two threads no slower per operation than from one.
"""

from __future__ import annotations

import functools
import gc
import itertools
import random
import resource
import sys
import threading
import time
from collections.abc import Callable, MutableMapping

import cachetools
from _harness import Case, Crew, Target, measure, report

from swr import CacheTTL, StaleEngine
from swr.storage import Entry, MemoryPool, MemoryStorage, PoolCache

KEY = 42
VALUE = {"id": 42, "name": "Ada"}
SMALL = 10_000
BIG = 1_000_000
WORKING_SET = 100_000
OPS = 200_000

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
    timed: PoolCache[int, object] = pool.register("timed", ttl=3600, max=SMALL // 2)
    lru: cachetools.LRUCache[int, object] = cachetools.LRUCache(maxsize=SMALL)
    ttl_cache: cachetools.TTLCache[int, object] = cachetools.TTLCache(maxsize=SMALL, ttl=3600)
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
        "PoolCache.get hit (ttl=3600)": pool_get_ttl,
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
    cold: PoolCache[int, object] = pool.register("cold", ttl=3600, priority=1)
    hot: PoolCache[int, object] = pool.register("hot", ttl=3600, priority=10)
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


def orders(n: int) -> dict[str, list[str]]:
    """``n`` reads of the working set's keys: Zipf (s = 1.0) and uniform, seeded."""
    keys = [f"user:{i:08d}" for i in range(WORKING_SET)]
    rng = random.Random(1)
    rng.shuffle(keys)  # the hot keys are not the first ones written
    ranks = range(WORKING_SET)
    zipf = rng.choices(
        ranks, cum_weights=list(itertools.accumulate(1 / (r + 1) for r in ranks)), k=n
    )
    return {
        "zipf": [keys[r] for r in zipf],
        "uniform": [keys[rng.randrange(WORKING_SET)] for _ in range(n)],
    }


def working_set_cases() -> tuple[dict[str, Case], Cleanup]:
    """Hits over 100_000 cached keys, in Zipf and uniform order, pool and cachetools."""
    pool = MemoryPool(capacity=2 * WORKING_SET, gc_interval=None)
    plain: PoolCache[str, object] = pool.register("plain", max=WORKING_SET)
    timed: PoolCache[str, object] = pool.register("timed", ttl=3600, max=WORKING_SET)
    lru: cachetools.LRUCache[str, object] = cachetools.LRUCache(maxsize=WORKING_SET)
    ttl_cache: cachetools.TTLCache[str, object] = cachetools.TTLCache(maxsize=WORKING_SET, ttl=3600)
    reads = orders(OPS)
    for key in sorted(set(reads["uniform"]) | set(reads["zipf"])):
        plain.set(key, VALUE)
        timed.set(key, VALUE)
        lru[key] = VALUE
        ttl_cache[key] = VALUE

    def reader(get: Callable[[str], object], sequence: list[str]) -> Case:
        def run(n: int) -> None:
            for key in sequence[:n]:
                get(key)

        return run

    cases: dict[str, Case] = {}
    for order, sequence in reads.items():
        assert all(plain.get(key) is VALUE for key in sequence[:1000])
        cases[f"PoolCache.get, 100_000 keys {order} (no ttl)"] = reader(plain.get, sequence)
        cases[f"PoolCache.get, 100_000 keys {order} (ttl=3600)"] = reader(timed.get, sequence)
        cases[f"LRUCache.get, 100_000 keys {order}"] = reader(lru.get, sequence)
        cases[f"TTLCache.get, 100_000 keys {order}"] = reader(ttl_cache.get, sequence)
    return cases, pool.close


# Voluntary context switches per threaded case: a thread that blocks on a lock its
# peer holds switches once per block, so a lock convoy shows here as ~1 per write.
SWITCHES: dict[str, list[int]] = {}


def threaded(
    crew: Crew,
    threads: int,
    make_key: Callable[[int], object] = int,
    name: str = "",
) -> Case:
    """``n`` writes of new keys, shared among the ``threads`` of ``crew``."""
    fresh = itertools.count(10 * BIG)
    switches = SWITCHES.setdefault(name, [0, 0])  # switches, writes

    def run(n: int) -> None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
        batches = [[make_key(next(fresh)) for _ in range(n // threads)] for _ in range(threads)]
        crew.run(batches)
        switches[0] += resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before
        switches[1] += n

    return run


def locked_writer(target: MutableMapping[object, object]) -> Callable[[object], None]:
    """``target[key] = VALUE`` under a lock of its own."""
    lock = threading.Lock()

    def write(key: object) -> None:
        with lock:
            target[key] = VALUE

    return write


def thread_write_cases() -> tuple[dict[str, Case], Cleanup]:
    """Writes of new keys into full stores of 100_000, from one thread and from two."""
    now = time.time()
    record = Entry(
        value=VALUE,
        stored_at=now,
        fresh_until=now + 900,
        stale_until=now + 1800,
        expires_at=now + 3600,
    )
    cases: dict[str, Case] = {}
    crews: list[Crew] = []
    pools = []
    for threads in (1, 2):
        pool, hot = full_pool(WORKING_SET)
        pools.append(pool)
        name = f"PoolCache.set, full 100_000, {threads} thread(s)"
        crews.append(Crew(threads, functools.partial(hot.set, value=VALUE)))
        cases[name] = threaded(crews[-1], threads, name=name)
    stores = []
    for threads in (1, 2):
        store = MemoryStorage(max_entries=WORKING_SET)
        store.set_many({f"k{i}": record for i in range(WORKING_SET)})
        stores.append(store)
        name = f"MemoryStorage.set, full 100_000, {threads} thread(s)"
        crews.append(Crew(threads, functools.partial(store.set, entry=record)))
        cases[name] = threaded(crews[-1], threads, str, name)
    # The floor: a plain dict under a lock, written from one thread and from two; and
    # what a thread-safe cache made with cachetools is: a full LRUCache under a lock.
    for threads in (1, 2):
        lru: cachetools.LRUCache[object, object] = cachetools.LRUCache(WORKING_SET)
        lru.update((f"k{i}", VALUE) for i in range(WORKING_SET))
        for name, target in (
            (f"with lock: dict[key] = value, {threads} thread(s)", {}),
            (f"with lock: LRUCache[key] = value, full 100_000, {threads} thread(s)", lru),
        ):
            crews.append(Crew(threads, locked_writer(target)))
            cases[name] = threaded(crews[-1], threads, str, name)

    def cleanup() -> None:
        for crew in crews:
            crew.close()
        for pool in pools:
            assert pool.stats().used == WORKING_SET
            pool.close()
        for store in stores:
            store.close()

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
    working, close_working = working_set_cases()
    writes, close_writes = write_cases()
    thread_writes, close_thread_writes = thread_write_cases()
    engines, close_engines = engine_cases()
    gc.collect()
    results = measure({**reads, **working, **writes, **thread_writes, **engines}, OPS)
    targets = [
        Target(
            "get (no ttl) / LRUCache.get", "PoolCache.get hit (no ttl)", "LRUCache.get hit", 1.0
        ),
        Target(
            "get (ttl=3600) / LRUCache.get", "PoolCache.get hit (ttl=3600)", "LRUCache.get hit", 1.0
        ),
    ]
    targets += [
        Target(
            f"get 100_000 keys {order} ({kind}) / LRUCache.get",
            f"PoolCache.get, 100_000 keys {order} ({kind})",
            f"LRUCache.get, 100_000 keys {order}",
            1.0,
        )
        for order in ("zipf", "uniform")
        for kind in ("no ttl", "ttl=3600")
    ]
    targets += [
        Target(
            "set into full pool: 1_000_000 / 10_000",
            "PoolCache.set, full pool 1_000_000",
            "PoolCache.set, full pool 10_000",
            1.5,
        ),
        Target(
            "PoolCache.set per op: 2 threads / 1 thread",
            "PoolCache.set, full 100_000, 2 thread(s)",
            "PoolCache.set, full 100_000, 1 thread(s)",
            1.0,
        ),
        Target(
            "MemoryStorage.set per op: 2 threads / 1 thread",
            "MemoryStorage.set, full 100_000, 2 thread(s)",
            "MemoryStorage.set, full 100_000, 1 thread(s)",
            1.0,
        ),
    ]
    met = report("pool path", results, targets)
    infos = [
        ("get (ttl=3600) / TTLCache.get", "PoolCache.get hit (ttl=3600)", "TTLCache.get hit"),
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
        (
            "with lock: dict[key] = value per op: 2 threads / 1 thread (the floor under the GIL)",
            "with lock: dict[key] = value, 2 thread(s)",
            "with lock: dict[key] = value, 1 thread(s)",
        ),
        (
            "with lock: LRUCache[key] = value per op: 2 threads / 1 thread (cachetools' way)",
            "with lock: LRUCache[key] = value, full 100_000, 2 thread(s)",
            "with lock: LRUCache[key] = value, full 100_000, 1 thread(s)",
        ),
    ]
    infos += [
        (
            f"get 100_000 keys {order} (ttl=3600) / TTLCache.get",
            f"PoolCache.get, 100_000 keys {order} (ttl=3600)",
            f"TTLCache.get, 100_000 keys {order}",
        )
        for order in ("zipf", "uniform")
    ]
    for label, numerator, denominator in infos:
        print(f"info  {label}: {results[numerator] / results[denominator]:.2f}x (no target)")
    for name, (switched, written) in SWITCHES.items():
        print(f"info  {name}: {1000 * switched / written:.2f} context switches per 1,000 writes")
    close_reads()
    close_working()
    close_writes()
    close_thread_writes()
    close_engines()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
