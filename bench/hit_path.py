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
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time

import cachetools
from _harness import Case, Target, measure, report

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
        ],
    )
    release.set()
    for hooked in hooked_engines:
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
