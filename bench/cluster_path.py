"""swr on a Redis Cluster: the hit path against raw redis-py, and a run with a master killed.

Run: python bench/cluster_path.py   (needs the redis, test and bench extras and
redis-server / redis-cli; it starts its own cluster of 3 masters + 3 replicas on free
loopback ports, node timeout 2 s, ``cluster-require-full-coverage no``, and stops it
by pid)

Prints, in one run:

- ``StaleEngine.execute`` HIT on ``RedisStorage.from_url(..., cluster=True)`` against
  the limit, a raw ``GET`` on the same redis-py cluster client + ``msgpack.unpackb``
  (target <= 1.15x);
- the same on the working sets of ``bench/redis_path.py``: 100,000 keys
  (``SWR_BENCH_KEYS``) of a ~200-byte record and of a ~4 KiB document (zstd), read hot,
  in Zipf (s = 1.0) and in uniform order, each swr case through a storage of its own,
  against raw cluster ``GET`` + the careful user's decode of the same values (target
  <= 1.15x each);
- two fault runs, ``StaleEngine`` over ``RedisStorage`` alone, then over
  ``FallbackStorage(RedisStorage, MemoryStorage)``: 300 keys written by another storage
  (another host) and read once by this one, one master killed, 4 threads calling
  ``execute`` for 10 s each (``SWR_BENCH_FAULT_SECONDS``): the hit rate of the healthy
  masters' keys (target >= 99%), the slowest call (target <= one socket timeout +
  50 ms), the upstream fetches, the exceptions that reached callers and the calls per
  second. Without a fallback, each call of the dead master's keys fetches (nothing else
  holds them); with one, its copies of reads answer.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import structlog
from _harness import Case, Target, measure, report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis_path import KINDS, ORDERS, WARMUP, Walk, fill_working_sets, raw_decoder, working_set_keys

from swr import CacheTTL, StaleEngine, Status
from swr.storage import Entry, FallbackStorage, MemoryStorage, RedisStorage
from swr.storage._record import RecordCodec
from swr.storage.serializers import default_serializer
from tests.redis_support import RedisCluster

KEY = "user:42"
VALUE = {"id": 42, "name": "Ada", "roles": ["admin", "dev"], "active": True}
TTL = CacheTTL(fresh=3600, stale=3600, expired=3600)
SOCKET_TIMEOUT = 0.25


def hit_path(url: str, n: int, rounds: int, count: int) -> bool:
    store = RedisStorage.from_url(url, cluster=True, prefix="bench:")
    # The swr records are written as the storage writes them, batched per node (the
    # storage's set_many on a cluster makes one call per key: minutes for 200,000).
    codec = RecordCodec(default_serializer())

    def swr_set(entries: dict[str, Entry]) -> None:
        client.mset_nonatomic({"bench:" + k: codec.encode(e) for k, e in entries.items()})

    client = store.client
    fill_working_sets(swr_set, client.mset_nonatomic, count)
    print(f"working sets: {count} keys of each value, read cache 1024 entries")
    engine = StaleEngine(store, ttl=TTL)
    engine.execute(KEY, lambda: VALUE)
    assert engine.execute(KEY, lambda: VALUE).status is Status.HIT
    client.set("raw:" + KEY, msgpack.packb(VALUE))
    raw_get = client.get
    unpackb = msgpack.unpackb
    execute = engine.execute

    def swr_hit(times: int) -> None:
        for _ in range(times):
            execute(KEY, dict)

    def raw(times: int) -> None:
        for _ in range(times):
            unpackb(raw_get("raw:" + KEY))

    closers: list[Any] = []

    def ws_hit(walk: Walk) -> Case:
        # A storage of its own (its own read cache) for each case.
        own = RedisStorage.from_url(url, cluster=True, prefix="bench:")
        own_engine = StaleEngine(own, ttl=TTL)
        closers.extend((own_engine.close, own.close))
        run = own_engine.execute
        assert run(walk.keys[0], dict).status is Status.HIT

        def cycle(times: int) -> None:
            for key in walk.next(times):
                run(key, dict)

        return cycle

    def ws_raw(walk: Walk, decode: Any) -> Case:
        def cycle(times: int) -> None:
            for key in walk.next(times):
                decode(raw_get(key))

        return cycle

    cases: dict[str, Case] = {}
    targets = []
    draws = n * (rounds + WARMUP)
    for kind in KINDS:
        decode = raw_decoder(kind)
        for order in ORDERS:
            keys = working_set_keys(kind, order, "ws:", count, draws)
            swr_name = f"HIT {kind} {order} (cluster)"
            raw_name = f"raw cluster GET+decode {kind} {order}"
            cases[swr_name] = ws_hit(Walk(keys))
            cases[raw_name] = ws_raw(Walk(["raw:" + key for key in keys]), decode)
            targets.append(Target(f"cluster HIT {kind} {order} / raw", swr_name, raw_name, 1.15))
    cases["StaleEngine.execute HIT (RedisStorage, cluster)"] = swr_hit
    cases["raw cluster GET + unpackb (same client)"] = raw
    results = measure(cases, n, rounds=rounds)
    for close in closers:
        close()
    engine.close()
    store.close()
    targets.append(
        Target(
            "cluster HIT / raw cluster GET+unpackb",
            "StaleEngine.execute HIT (RedisStorage, cluster)",
            "raw cluster GET + unpackb (same client)",
            1.15,
        )
    )
    return report("redis cluster read path", results, targets)


@dataclass
class Totals:
    """What the callers of the fault run saw."""

    calls: int = 0
    healthy: int = 0
    hits: int = 0
    errors: int = 0
    slowest: float = 0.0
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, key: str) -> str:
        with self.lock:
            self.fetches += 1
        return key


def drive(
    engine: StaleEngine, keys: list[str], healthy: set[str], totals: Totals, stop: float, at: int
) -> None:
    """Call ``execute`` on the keys in turn until ``stop``; add what was seen to ``totals``."""
    seen = Totals()
    while time.monotonic() < stop:
        key = keys[at % len(keys)]
        at += 1
        started = time.monotonic()
        try:
            result = engine.execute(key, functools.partial(totals.fetch, key))
        except Exception:
            seen.errors += 1
            continue
        finally:
            seen.slowest = max(seen.slowest, time.monotonic() - started)
        seen.calls += 1
        if key in healthy:
            seen.healthy += 1
            seen.hits += result.status is Status.HIT
    with totals.lock:
        totals.calls += seen.calls
        totals.healthy += seen.healthy
        totals.hits += seen.hits
        totals.errors += seen.errors
        totals.slowest = max(totals.slowest, seen.slowest)


def fault_run(cluster: RedisCluster, seconds: float, fallback: bool, threads: int = 4) -> bool:
    """Kill the master of the first key and drive ``execute`` from ``threads`` threads.

    The keys were written by another storage (another host): this process only reads
    them, so a fallback holds them only if it keeps copies of reads.
    """
    cluster.wait_ok()
    options: dict[str, Any] = {
        "cluster": True,
        "prefix": "fault:",
        "socket_timeout": SOCKET_TIMEOUT,
        "connect_timeout": SOCKET_TIMEOUT,
    }
    keys = [f"key-{i}" for i in range(300)]
    other_host = RedisStorage.from_url(cluster.url, **options)
    now = time.time()
    other_host.set_many({key: Entry(key, now, now + 3600, now + 7200, now + 10800) for key in keys})
    other_host.close()
    store = RedisStorage.from_url(cluster.url, **options)
    safe: Any = FallbackStorage(store, MemoryStorage()) if fallback else store
    engine = StaleEngine(safe, ttl=TTL)
    totals = Totals()
    for key in keys:
        engine.execute(key, functools.partial(totals.fetch, key))
    owner = {key: int(store.client.get_node_from_key("fault:" + key).port) for key in keys}
    victim = cluster.node_of(owner[keys[0]])
    healthy = {key for key in keys if owner[key] != victim.port}
    warm_fetches = totals.fetches
    victim.kill()
    stop = time.monotonic() + seconds
    pool = [
        threading.Thread(target=drive, args=(engine, keys, healthy, totals, stop, n * 37))
        for n in range(threads)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    engine.close()
    safe.close()
    victim.start()  # rejoins as a replica of its successor
    rate = totals.hits / max(1, totals.healthy)
    tiers = "FallbackStorage(RedisStorage, MemoryStorage)" if fallback else "RedisStorage"
    print(
        f"\nfault run on {tiers}: master 127.0.0.1:{victim.port} killed (owning "
        f"{len(keys) - len(healthy)} of {len(keys)} keys), {threads} threads, {seconds:.0f} s,"
        f" socket timeout {SOCKET_TIMEOUT * 1000:.0f} ms"
    )
    print(f"calls {totals.calls} ({totals.calls / seconds:.0f}/s)")
    print(f"exceptions reaching callers {totals.errors}")
    print(f"upstream fetches during the run {totals.fetches - warm_fetches}")
    checks = [
        ("healthy keys' hit rate", rate * 100, 99.0, True, "%"),
        ("slowest call", totals.slowest * 1000, SOCKET_TIMEOUT * 1000 + 50, False, " ms"),
    ]
    met = totals.errors == 0
    for label, value, limit, at_least, unit in checks:
        ok = value >= limit if at_least else value <= limit
        met &= ok
        sign = ">=" if at_least else "<="
        verdict = "MET " if ok else "MISS"
        print(f"{verdict}  {label}: {value:.2f}{unit} (target {sign} {limit}{unit})")
    return met


def main() -> int:
    # Warnings only: the fault run would otherwise print an event per refused call.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n = int(os.environ.get("SWR_BENCH_N", "400"))
    rounds = int(os.environ.get("SWR_BENCH_ROUNDS", "21"))
    seconds = float(os.environ.get("SWR_BENCH_FAULT_SECONDS", "10"))
    cluster = RedisCluster(
        Path(tempfile.mkdtemp(prefix="swr-bench-cluster-")),
        replicas=1,
        node_timeout=2000,
        full_coverage=False,
    )
    try:
        cluster.start()
        met = hit_path(cluster.url, n, rounds, int(os.environ.get("SWR_BENCH_KEYS", "100000")))
        met &= fault_run(cluster, seconds, fallback=False)
        met &= fault_run(cluster, seconds, fallback=True)
    finally:
        cluster.stop()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
