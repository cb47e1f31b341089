"""Hit path of the engine against the lookups Python services use today.

Run: python bench/hit_path.py   (needs the bench extra: pip install -e ".[bench]")

Prints ns per operation, measured in the same run, for:
- StaleEngine.execute answering HIT from MemoryStorage
- cachetools.TTLCache lookups: cache[key] and cache.get(key)
- functools.lru_cache hit, plain dict.get
- AsyncStaleEngine.execute HIT, and its baseline: sync HIT + one await of a trivial coroutine
- a STALE serve (the key's refresh already running)
- the sync HIT with the PrometheusMetrics and the OpenTelemetryMetrics hooks installed
  (when prometheus_client and the OpenTelemetry SDK are installed: the test extra);
  bench/metrics_path.py measures them in CPU time, with the async engine too
- beside the hot key, the working set of issue 14 (bench/_working_set.py): hits over
  100_000 cached keys read in a Zipf (s = 1.0) and in a uniform order, holding ~200-byte
  records (and ~4 KiB documents in the uniform order), against ``TTLCache[key]``
  holding the same items

Targets: every sync HIT (hot key and each working-set order) no slower than
``TTLCache[key]`` on the same reads; hooks at most 1.3x the HIT without; STALE at most
1.5x HIT; the async HIT at most 1.3x a sync HIT plus one await.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time

import cachetools
from _harness import Case, Target, measure, report
from _working_set import DOCUMENT, KEYS, RECORD, WORKING_SET, orders

from swr import AsyncStaleEngine, CacheTTL, RefreshOptions, StaleEngine, Status
from swr.metrics import MetricsHook

KEY = "user:42"
VALUE = {"id": 42, "name": "Ada"}


def fetch() -> dict[str, object]:
    return VALUE


async def afetch() -> dict[str, object]:
    return VALUE


async def trivial() -> None:
    return None


def adapter_hooks() -> dict[str, MetricsHook]:
    """The two shipped adapters on private registries, if their libraries are installed."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CollectorRegistry

        from swr.metrics.opentelemetry import OpenTelemetryMetrics
        from swr.metrics.prometheus import PrometheusMetrics
    except ImportError:
        print("(prometheus_client or opentelemetry-sdk missing: no adapter cases)")
        return {}
    return {
        "HIT, PrometheusMetrics": PrometheusMetrics(CollectorRegistry()),
        "HIT, OpenTelemetryMetrics": OpenTelemetryMetrics(MeterProvider()),
    }


def add_adapter_cases(cases: dict[str, Case]) -> list[StaleEngine]:
    """Add a sync HIT case per adapter to ``cases``; return their engines."""
    engines = []
    for label, hook in adapter_hooks().items():
        engine = StaleEngine(ttl=CacheTTL(fresh=3600, stale=3600), metrics=hook)
        engine.execute(KEY, fetch)

        def run(n: int, engine: StaleEngine = engine) -> None:
            for _ in range(n):
                engine.execute(KEY, fetch)

        cases[label] = run
        engines.append(engine)
    return engines


def add_working_set_cases(cases: dict[str, Case], n: int) -> tuple[list[Target], list[StaleEngine]]:
    """Add HITs over 100_000 cached keys (Zipf, uniform), engine and TTLCache, to ``cases``."""
    targets: list[Target] = []
    engines: list[StaleEngine] = []
    reads = orders(n)
    for order, value, label in (
        ("zipf", RECORD, "~200 B records"),
        ("uniform", RECORD, "~200 B records"),
        ("uniform", DOCUMENT, "~4 KiB documents"),
    ):
        engine = StaleEngine(ttl=CacheTTL(fresh=3600, stale=3600))
        ttl_cache: cachetools.TTLCache[str, object] = cachetools.TTLCache(
            maxsize=WORKING_SET, ttl=3600
        )
        for key in KEYS:
            engine.set(key, value)
            ttl_cache[key] = value
        sequence = reads[order]

        def fetch_value(value: object = value) -> object:
            return value

        def engine_reads(n: int, engine: StaleEngine = engine, seq: list[str] = sequence) -> None:
            execute = engine.execute
            for key in seq[:n]:
                execute(key, fetch_value)

        def ttl_reads(
            n: int, cache: cachetools.TTLCache[str, object] = ttl_cache, seq: list[str] = sequence
        ) -> None:
            for key in seq[:n]:
                cache[key]

        what = f"100_000 keys {order}, {label}"
        cases[f"StaleEngine HIT, {what}"] = engine_reads
        cases[f"TTLCache[key], {what}"] = ttl_reads
        targets.append(
            Target(
                f"sync HIT / TTLCache[key], {what}",
                f"StaleEngine HIT, {what}",
                f"TTLCache[key], {what}",
                1.0,
            )
        )
        assert engine.execute(sequence[0], fetch_value).status is Status.HIT
        engines.append(engine)
    return targets, engines


def main() -> int:
    n = 200_000
    engine = StaleEngine(ttl=CacheTTL(fresh=3600, stale=3600))
    engine.execute(KEY, fetch)
    assert engine.execute(KEY, fetch).status is Status.HIT

    # A STALE entry whose refresh blocks for the whole run: every read is a STALE serve
    # that finds the key's refresh already running.
    stale_engine = StaleEngine(
        ttl=CacheTTL(fresh=0.001, stale=3600), refresh=RefreshOptions(timeout=3600)
    )
    stale_engine.execute(KEY, fetch)
    time.sleep(0.01)
    release = threading.Event()

    def blocked_fetch() -> dict[str, object]:
        release.wait()
        return VALUE

    assert stale_engine.execute(KEY, blocked_fetch).status is Status.STALE

    ttl_cache: cachetools.TTLCache[str, object] = cachetools.TTLCache(maxsize=10_000, ttl=3600)
    ttl_cache[KEY] = VALUE
    plain = {KEY: VALUE}

    @functools.lru_cache(maxsize=10_000)
    def cached_fetch(key: str) -> dict[str, object]:
        return VALUE

    cached_fetch(KEY)

    def sync_hit(n: int) -> None:
        for _ in range(n):
            engine.execute(KEY, fetch)

    def stale_serve(n: int) -> None:
        for _ in range(n):
            stale_engine.execute(KEY, blocked_fetch)

    def ttlcache_getitem(n: int) -> None:
        for _ in range(n):
            ttl_cache[KEY]

    def ttlcache_get(n: int) -> None:
        for _ in range(n):
            ttl_cache.get(KEY)

    def lru_hit(n: int) -> None:
        for _ in range(n):
            cached_fetch(KEY)

    def dict_get(n: int) -> None:
        for _ in range(n):
            plain.get(KEY)

    loop = asyncio.new_event_loop()
    aengine = loop.run_until_complete(_make_async_engine())

    async def async_hit_loop(n: int) -> None:
        for _ in range(n):
            await aengine.execute(KEY, afetch)

    async def sync_plus_await_loop(n: int) -> None:
        for _ in range(n):
            engine.execute(KEY, fetch)
            await trivial()

    def async_hit(n: int) -> None:
        loop.run_until_complete(async_hit_loop(n))

    def sync_plus_await(n: int) -> None:
        loop.run_until_complete(sync_plus_await_loop(n))

    cases: dict[str, Case] = {
        "StaleEngine.execute HIT": sync_hit,
        "TTLCache[key]": ttlcache_getitem,
        "TTLCache.get(key)": ttlcache_get,
        "functools.lru_cache hit": lru_hit,
        "dict.get": dict_get,
        "AsyncStaleEngine.execute HIT": async_hit,
        "sync HIT + await trivial()": sync_plus_await,
        "StaleEngine.execute STALE": stale_serve,
    }
    hooked_engines = add_adapter_cases(cases)
    working_targets, working_engines = add_working_set_cases(cases, n)
    results = measure(cases, n)
    met = report(
        "hit path",
        results,
        [
            *(
                Target(f"{label} / no hook", label, "StaleEngine.execute HIT", 1.3)
                for label in results
                if label.startswith("HIT, ")
            ),
            Target("sync HIT / TTLCache[key]", "StaleEngine.execute HIT", "TTLCache[key]", 1.0),
            Target(
                "sync HIT / TTLCache.get(key)", "StaleEngine.execute HIT", "TTLCache.get(key)", 1.0
            ),
            Target("STALE / HIT", "StaleEngine.execute STALE", "StaleEngine.execute HIT", 1.5),
            Target(
                "async HIT / (sync HIT + await)",
                "AsyncStaleEngine.execute HIT",
                "sync HIT + await trivial()",
                1.3,
            ),
            *working_targets,
        ],
    )
    release.set()
    for hooked in [*hooked_engines, *working_engines]:
        hooked.close()
    stale_engine.close()
    engine.close()
    loop.run_until_complete(aengine.aclose())
    loop.close()
    return 0 if met else 1


async def _make_async_engine() -> AsyncStaleEngine:
    engine = AsyncStaleEngine(ttl=CacheTTL(fresh=3600, stale=3600))
    await engine.execute(KEY, afetch)
    return engine


if __name__ == "__main__":
    sys.exit(main())
