"""An API-cache workload end to end: swr against the caches Python services use today.

Each contender sits in front of the same simulated upstream (1 ms a call, a ~200-byte
record) and is read by 4 threads (or 4 asyncio tasks) for a bounded time, with keys drawn
from a Zipf distribution (s = 1.0) over 10,000 keys. Entries are fresh for 1 s, so the
run mixes fresh, stale and expired traffic and a steady refresh rate; from 40% to 65% of
the run the upstream is down (every call fails). Printed per contender: throughput,
latency percentiles, upstream calls and the errors callers saw.

Each does the job as well as it can: swr serves stale values while refreshing and falls
back to old values during the outage; ``cachetools.TTLCache`` behind a lock and
``diskcache`` fetch on expiry; ``dogpile.cache`` lets one thread regenerate while the
others read the old value; ``cashews`` uses its ``early`` (refresh before expiry) and
``failover`` (serve the last value on error) decorators.

    python bench/workload.py [--seconds 6] [--keys 10000] [--only NAME]

Needs the bench extra (and redis-server for the Redis case, skipped without it).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from swr import AsyncStaleEngine, CacheTTL, StaleEngine
from swr.storage import LMDBStorage, MemoryStorage, RedisStorage

THREADS = 4
FRESH = 1.0
UPSTREAM_LATENCY = 0.001


class Upstream:
    """A slow service with an outage window, counting its calls."""

    def __init__(self, seconds: float) -> None:
        self.calls = itertools.count()
        self.started = time.monotonic()
        self.outage = (0.40 * seconds, 0.65 * seconds)

    def down(self) -> bool:
        elapsed = time.monotonic() - self.started
        return self.outage[0] <= elapsed < self.outage[1]

    def record(self, key: str) -> dict[str, Any]:
        return {
            "id": key,
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "roles": ["admin", "editor"],
            "created": "2026-01-01T00:00:00Z",
            "score": 1234.5,
            "bio": "x" * 60,
        }

    def fetch(self, key: str) -> dict[str, Any]:
        next(self.calls)
        time.sleep(UPSTREAM_LATENCY)
        if self.down():
            raise ConnectionError("upstream down")
        return self.record(key)

    async def afetch(self, key: str) -> dict[str, Any]:
        next(self.calls)
        await asyncio.sleep(UPSTREAM_LATENCY)
        if self.down():
            raise ConnectionError("upstream down")
        return self.record(key)

    def count(self) -> int:
        return next(self.calls)


def zipf_keys(keys: int, n: int, seed: int) -> list[str]:
    weights = list(itertools.accumulate(1.0 / rank for rank in range(1, keys + 1)))
    total = weights[-1]
    rng = random.Random(seed)
    return [f"user:{bisect.bisect_left(weights, rng.random() * total)}" for _ in range(n)]


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


Get = Callable[[str, Upstream], object]
AGet = Callable[[str, Upstream], Awaitable[object]]


def run_threads(get: Get, upstream: Upstream, seconds: float, keys: int) -> list[Outcome]:
    outcomes = [Outcome() for _ in range(THREADS)]
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        out = outcomes[index]
        for key in itertools.cycle(zipf_keys(keys, 50_000, index)):
            if time.monotonic() >= stop:
                return
            began = time.perf_counter()
            try:
                get(key, upstream)
            except Exception:
                out.errors += 1
            out.latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def run_tasks(get: AGet, upstream: Upstream, seconds: float, keys: int) -> list[Outcome]:
    outcomes = [Outcome() for _ in range(THREADS)]

    async def worker(index: int, stop: float) -> None:
        out = outcomes[index]
        for key in itertools.cycle(zipf_keys(keys, 50_000, index)):
            if time.monotonic() >= stop:
                return
            began = time.perf_counter()
            try:
                await get(key, upstream)
            except Exception:
                out.errors += 1
            out.latencies.append(time.perf_counter() - began)

    async def main() -> None:
        stop = time.monotonic() + seconds
        await asyncio.gather(*(worker(i, stop) for i in range(THREADS)))

    asyncio.run(main())
    return outcomes


# -- contenders: each yields its get function, set up and torn down around the run ----


@contextmanager
def swr_engine(storage: Any) -> Iterator[Get]:
    ttl = CacheTTL(fresh=FRESH, stale=2 * FRESH, expired=60)
    with StaleEngine(storage, ttl=ttl) as engine:
        yield lambda key, up: engine.execute(key, lambda: up.fetch(key)).value


@contextmanager
def swr_memory() -> Iterator[Get]:
    with swr_engine(MemoryStorage(max_entries=100_000)) as get:
        yield get


@contextmanager
def swr_lmdb() -> Iterator[Get]:
    path = tempfile.mkdtemp(prefix="swr-workload-")
    try:
        with LMDBStorage(path, max_bytes=256 << 20) as store, swr_engine(store) as get:
            yield get
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def swr_redis() -> Iterator[Get]:
    from redis_path import redis_server  # the bench's own server on a free port

    with (
        redis_server() as url,
        RedisStorage.from_url(url, prefix="workload:") as store,
        swr_engine(store) as get,
    ):
        yield get


@contextmanager
def cachetools_lock() -> Iterator[Get]:
    from cachetools import TTLCache

    cache: TTLCache[str, object] = TTLCache(maxsize=100_000, ttl=FRESH)
    lock = threading.Lock()

    def get(key: str, up: Upstream) -> object:
        with lock:
            value = cache.get(key)
        if value is None:
            value = up.fetch(key)
            with lock:
                cache[key] = value
        return value

    yield get


@contextmanager
def diskcache_cache() -> Iterator[Get]:
    from diskcache import Cache

    path = tempfile.mkdtemp(prefix="swr-workload-dc-")
    cache = Cache(path)

    def get(key: str, up: Upstream) -> object:
        value = cache.get(key)
        if value is None:
            value = up.fetch(key)
            cache.set(key, value, expire=FRESH)
        return value

    try:
        yield get
    finally:
        cache.close()
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def dogpile_region() -> Iterator[Get]:
    from dogpile.cache import make_region

    region = make_region().configure("dogpile.cache.memory", expiration_time=FRESH)

    def get(key: str, up: Upstream) -> object:
        return region.get_or_create(key, lambda: up.fetch(key))

    yield get


@contextmanager
def swr_async_memory() -> Iterator[AGet]:
    ttl = CacheTTL(fresh=FRESH, stale=2 * FRESH, expired=60)
    engine = AsyncStaleEngine(MemoryStorage(max_entries=100_000), ttl=ttl)

    async def get(key: str, up: Upstream) -> object:
        return (await engine.execute(key, lambda: up.afetch(key))).value

    yield get


@contextmanager
def cashews_mem() -> Iterator[AGet]:
    from cashews import Cache

    cache = Cache()
    cache.setup("mem://?size=100000")

    @cache.failover(ttl=60)
    @cache.early(ttl=2 * FRESH, early_ttl=FRESH)
    async def load(key: str, up: Upstream) -> object:
        return await up.afetch(key)

    yield load


SYNC: dict[str, Callable[[], Any]] = {
    "swr memory": swr_memory,
    "swr lmdb": swr_lmdb,
    "swr redis": swr_redis,
    "cachetools+lock": cachetools_lock,
    "diskcache": diskcache_cache,
    "dogpile.cache": dogpile_region,
}
ASYNC: dict[str, Callable[[], Any]] = {
    "swr memory (asyncio)": swr_async_memory,
    "cashews mem (asyncio)": cashews_mem,
}


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--only", default=None, help="run the contenders whose name has this")
    args = parser.parse_args()
    print(
        f"{THREADS} callers, Zipf s=1.0 over {args.keys:,} keys, fresh {FRESH:.0f} s, "
        f"upstream {UPSTREAM_LATENCY * 1000:.0f} ms, down from 40% to 65% of "
        f"{args.seconds:.0f} s"
    )
    print(
        f"{'contender':<22} {'req/s':>9} {'p50 us':>9} {'p99 us':>9} {'p999 us':>9} "
        f"{'upstream':>9} {'errors':>8}"
    )
    for name, make in {**SYNC, **ASYNC}.items():
        if args.only and args.only not in name:
            continue
        upstream = Upstream(args.seconds)
        with ExitStack() as stack:
            try:
                get = stack.enter_context(make())
            except SystemExit as exc:  # a missing server
                print(f"{name:<22} skipped: {exc}")
                continue
            upstream.started = time.monotonic()
            if name in ASYNC:
                outcomes = run_tasks(get, upstream, args.seconds, args.keys)
            else:
                outcomes = run_threads(get, upstream, args.seconds, args.keys)
        samples = sorted(s for o in outcomes for s in o.latencies)
        print(
            f"{name:<22} {len(samples) / args.seconds:>9,.0f} {percentile(samples, 0.5):>9,.0f} "
            f"{percentile(samples, 0.99):>9,.0f} {percentile(samples, 0.999):>9,.0f} "
            f"{upstream.count():>9,} {sum(o.errors for o in outcomes):>8,}"
        )


if __name__ == "__main__":
    main()
