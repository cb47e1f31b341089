"""The engine on LMDBStorage against raw py-lmdb and diskcache, measured in one run.

Run: python bench/lmdb_path.py   (needs the bench extra: pip install -e ".[bench]")

Prints ns per operation for:
- StaleEngine.execute answering HIT from LMDBStorage;
- the limit: raw py-lmdb, one read transaction per get, plus msgpack.unpackb;
- diskcache.Cache.get of the same value;
- the write path: StaleEngine.set on LMDBStorage, raw put + msgpack.packb in one write
  transaction (sync=False, like durability="process"), diskcache.Cache.set; for
  information, StaleEngine.set when every write changes the record's size (the byte
  total is then rewritten too) and the raw put with LMDB's writable map, which
  LMDBStorage uses;
then the HIT throughput of one and of two worker processes sharing the store (rounds of
one and of two alternate; the best round of each counts).

Every case cycles through the same 1,000 keys of a store prefilled with them.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import diskcache
import lmdb
import msgpack
from _harness import Target, measure, report

from swr import CacheTTL, StaleEngine, Status
from swr.storage import LMDBStorage

KEYS = [f"user:{i}" for i in range(1000)]
VALUE = {"id": 42, "name": "Ada", "roles": ["admin", "dev"], "active": True}
LONGER = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "dev"], "active": True}
TTL = CacheTTL(fresh=3600, stale=3600, expired=3600)
THROUGHPUT_SECONDS = 1.0


def fetch() -> dict[str, Any]:
    return VALUE


def engine_cases(path: Path) -> dict[str, Any]:
    store = LMDBStorage(path / "swr", sweep_interval=None)
    engine = StaleEngine(store, ttl=TTL)
    for key in KEYS:
        engine.set(key, VALUE)
    assert engine.execute(KEYS[0], fetch).status is Status.HIT

    def hit(n: int) -> None:
        execute, keys = engine.execute, KEYS
        for i in range(n):
            execute(keys[i % 1000], fetch)

    def write(n: int) -> None:
        set_, keys = engine.set, KEYS
        for i in range(n):
            set_(keys[i % 1000], VALUE)

    def resize(n: int) -> None:
        # Each key is rewritten with the other value: every record changes size.
        set_, keys, values = engine.set, KEYS, (VALUE, LONGER)
        for i in range(n):
            set_(keys[i % 1000], values[(i // 1000) % 2])

    def close() -> None:
        engine.close()
        store.close()

    return {"hit": hit, "write": write, "resize": resize, "close": close}


def raw_cases(path: Path, *, writemap: bool = False) -> dict[str, Any]:
    # No flush per commit and a spare read transaction, as in LMDBStorage.
    env = lmdb.open(
        str(path / f"raw-{writemap}"),
        map_size=1 << 30,
        sync=False,
        metasync=False,
        max_spare_txns=1,
        writemap=writemap,
    )
    keys = [key.encode() for key in KEYS]
    with env.begin(write=True) as txn:
        for key in keys:
            txn.put(key, msgpack.packb(VALUE))

    def get(n: int) -> None:
        begin, unpackb = env.begin, msgpack.unpackb
        for i in range(n):
            txn = begin()
            data = txn.get(keys[i % 1000])
            txn.abort()
            unpackb(data)

    def put(n: int) -> None:
        begin, packb = env.begin, msgpack.packb
        for i in range(n):
            with begin(write=True) as txn:
                txn.put(keys[i % 1000], packb(VALUE))

    return {"get": get, "put": put, "close": env.close}


def diskcache_cases(path: Path) -> dict[str, Any]:
    cache = diskcache.Cache(str(path / "diskcache"))
    for key in KEYS:
        cache.set(key, VALUE)

    def get(n: int) -> None:
        cache_get = cache.get
        for i in range(n):
            cache_get(KEYS[i % 1000])

    def set_(n: int) -> None:
        cache_set = cache.set
        for i in range(n):
            cache_set(KEYS[i % 1000], VALUE)

    return {"get": get, "set": set_, "close": cache.close}


def hit_worker(path: str, index: int, rounds: list[int], starts: list[Any], results: Any) -> None:
    """One worker process: open the store, then count HITs in the rounds it takes part in.

    Round ``r`` runs the first ``rounds[r]`` workers for THROUGHPUT_SECONDS once
    ``starts[r]`` is set.
    """
    store = LMDBStorage(path, sweep_interval=None)
    engine = StaleEngine(store, ttl=TTL)
    execute, keys = engine.execute, KEYS
    for key in keys:
        execute(key, fetch)  # warm: every key read once
    results.put(("ready", index))
    for number, taking_part in enumerate(rounds):
        starts[number].wait()
        if index >= taking_part:
            continue
        count = 0
        deadline = time.perf_counter() + THROUGHPUT_SECONDS
        while time.perf_counter() < deadline:
            for i in range(1000):
                execute(keys[i], fetch)
            count += 1000
        results.put((number, count))
    engine.close()
    store.close()


def throughput(path: Path, rounds: int = 3) -> dict[str, float]:
    """Best HITs per second of one and of two workers sharing the store, interleaved."""
    plan = [1, 2] * rounds
    ctx = multiprocessing.get_context("spawn")
    starts = [ctx.Event() for _ in plan]
    results = ctx.Queue()
    workers = [
        ctx.Process(target=hit_worker, args=(str(path / "swr"), index, plan, starts, results))
        for index in range(2)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        results.get(timeout=60)  # ready
    best = {1: 0.0, 2: 0.0}
    for number, taking_part in enumerate(plan):
        starts[number].set()
        total = 0
        for _ in range(taking_part):
            got_round, count = results.get(timeout=60)
            assert got_round == number
            total += count
        best[taking_part] = max(best[taking_part], total / THROUGHPUT_SECONDS)
    for worker in workers:
        worker.join(30)
    return {"1 process": best[1], "2 processes": best[2]}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="swr-bench-") as tmp:
        path = Path(tmp)
        ours, raw, disk = engine_cases(path), raw_cases(path), diskcache_cases(path)
        raw_writemap = raw_cases(path, writemap=True)
        reads = measure(
            {
                "StaleEngine.execute HIT (LMDB)": ours["hit"],
                "raw lmdb get + unpackb": raw["get"],
                "diskcache.Cache.get": disk["get"],
            },
            20_000,
        )
        writes = measure(
            {
                "StaleEngine.set (LMDB)": ours["write"],
                "raw lmdb put + packb": raw["put"],
                "diskcache.Cache.set": disk["set"],
                "StaleEngine.set, size changes": ours["resize"],
                "raw put + packb, writemap": raw_writemap["put"],
            },
            1_000,
            rounds=9,
        )
        for cases in (ours, raw, disk, raw_writemap):
            cases["close"]()

        rates = throughput(path)

    met = report(
        "LMDB read path",
        reads,
        [
            Target(
                "HIT / raw get+unpackb",
                "StaleEngine.execute HIT (LMDB)",
                "raw lmdb get + unpackb",
                1.3,
            ),
            Target(
                "diskcache.get / HIT (speed-up)",
                "diskcache.Cache.get",
                "StaleEngine.execute HIT (LMDB)",
                3.0,
                at_least=True,
            ),
        ],
    )
    met &= report(
        "LMDB write path",
        writes,
        [
            Target("set / raw put+packb", "StaleEngine.set (LMDB)", "raw lmdb put + packb", 1.5),
            Target(
                "diskcache.set / set (speed-up)",
                "diskcache.Cache.set",
                "StaleEngine.set (LMDB)",
                5.0,
                at_least=True,
            ),
        ],
    )
    for numerator, denominator in (
        ("StaleEngine.set, size changes", "raw lmdb put + packb"),
        ("StaleEngine.set (LMDB)", "raw put + packb, writemap"),
    ):
        ratio = writes[numerator] / writes[denominator]
        print(f"info  {numerator} / {denominator}: {ratio:.2f}x")
    met &= report(
        "HIT throughput, processes sharing one store",
        rates,
        [Target("2 processes / 1 process", "2 processes", "1 process", 1.5, at_least=True)],
        unit="HITs/s",
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
