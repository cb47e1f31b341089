"""Engines on real Redis: outages under load, a hung server, two processes, asyncio twins."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import uuid
from typing import Any

import pytest

from swr import AsyncStaleEngine, CacheTTL, RefreshOptions, StaleEngine, Status
from swr.storage import (
    AsyncFallbackStorage,
    AsyncRedisStorage,
    Entry,
    FallbackStorage,
    MemoryStorage,
    RedisStorage,
    TieredStorage,
)
from tests.helpers import wait_until
from tests.swr.upstream import Upstream

pytestmark = pytest.mark.redis

TTL = CacheTTL(fresh=3600, stale=3600, expired=3600)


def redis_store(url: str, **kwargs: Any) -> RedisStorage:
    options: dict[str, Any] = {
        "prefix": f"e{uuid.uuid4().hex[:8]}:",
        "socket_timeout": 0.2,
        "connect_timeout": 0.2,
        "backoff_initial": 0.02,
        "backoff_max": 0.1,
    }
    options.update(kwargs)
    return RedisStorage.from_url(url, **options)


@pytest.mark.slow
def test_a_killed_redis_never_reaches_callers_and_traffic_returns(own_redis):
    primary = redis_store(own_redis.url)
    fallback = MemoryStorage()
    store = FallbackStorage(primary, fallback)
    engine = StaleEngine(store, ttl=TTL)
    up = Upstream()
    keys = [f"k{i}" for i in range(20)]
    for key in keys:
        engine.execute(key, up)
    warm_calls = up.calls
    errors: list[BaseException] = []
    statuses: list[Status] = []
    slowest = [0.0]
    stop = threading.Event()

    def stream() -> None:
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                statuses.append(engine.execute(keys[i % len(keys)], up).status)
            except BaseException as exc:
                errors.append(exc)
            slowest[0] = max(slowest[0], time.monotonic() - started)
            i += 1

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        wait_until(lambda: len(statuses) > 50)
        own_redis.kill()
        wait_until(lambda: store.stats()["served_by_fallback"] > 100)
        assert up.calls == warm_calls  # the warm fallback answered every key: no refetch
        served_before_restart = store.stats()["served_by_primary"]
        own_redis.start()
        wait_until(lambda: primary.available, timeout=5)
        wait_until(lambda: store.stats()["served_by_primary"] > served_before_restart + 100)
    finally:
        stop.set()
        thread.join(10)
    assert errors == []
    assert slowest[0] < 1.0  # at most one short timeout, never a hang
    # Redis came back empty (no persistence): the keys were fetched again and written back.
    assert primary.client.dbsize() == len(keys)
    assert all(fallback.get(engine._prefix + key) is not None for key in keys)
    assert set(statuses) <= {Status.HIT, Status.MISS}
    engine.close()
    store.close()


@pytest.mark.slow
def test_a_hung_redis_costs_the_caller_one_timeout(own_redis):
    store = redis_store(own_redis.url)
    engine = StaleEngine(store, ttl=TTL)
    up = Upstream()
    engine.execute("k", up)
    own_redis.pause()
    try:
        started = time.monotonic()
        results = [engine.execute("k", up) for _ in range(50)]
        elapsed = time.monotonic() - started
    finally:
        own_redis.resume()
    assert all(r.status is Status.MISS for r in results)  # read errors became misses
    assert 0.15 <= elapsed < 0.7  # one 0.2 s timeout, not fifty
    assert engine.stats().storage_read_errors >= 50
    wait_until(lambda: store.available, timeout=5)
    assert engine.execute("k", up).status is Status.HIT
    engine.close()
    store.close()


def _process_engine(
    url: str, prefix: str, barrier: Any, results: Any, stale_key: str, missing_key: str
) -> None:
    """One host: an engine on the shared Redis reading a stale key, then a missing one."""
    store = RedisStorage.from_url(url, prefix=prefix)
    counter = store.client

    def fetch() -> str:
        counter.incr(prefix + "fetches")
        time.sleep(0.2)  # slow upstream: the other process arrives meanwhile
        return "fresh"

    engine = StaleEngine(store, ttl=TTL, refresh=RefreshOptions(timeout=5))
    barrier.wait(30)
    stale = engine.execute(stale_key, fetch)
    barrier.wait(30)
    missing = engine.execute(missing_key, fetch)
    engine.close(timeout=10)  # lets a running background refresh finish
    results.put((stale.status.value, stale.value, missing.value))
    store.close()


@pytest.mark.slow
def test_two_processes_on_one_redis_fetch_once(redis_server):
    prefix = f"mp{uuid.uuid4().hex[:8]}:"
    seed = RedisStorage.from_url(redis_server.url, prefix=prefix)
    now = time.time()
    seed.set("stale", Entry("old", now - 100, now - 50, now + 3600, now + 7200))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    args = (redis_server.url, prefix, barrier, results, "stale", "missing")
    processes = [context.Process(target=_process_engine, args=args) for _ in range(2)]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(30)
    assert sorted(outcomes) == [("stale", "old", "fresh")] * 2
    # One refresh of the stale key and one fetch of the missing key, across both hosts.
    assert int(seed.client.get(prefix + "fetches")) == 2
    assert seed.get("stale").value == "fresh"
    seed.close()


def test_the_async_engine_picks_the_asyncio_twin(redis_server):
    sync_store = redis_store(redis_server.url)
    fallback = FallbackStorage(redis_store(redis_server.url), MemoryStorage())

    async def scenario() -> None:
        engine = AsyncStaleEngine(sync_store, ttl=TTL)
        assert isinstance(engine.storage, AsyncRedisStorage)
        assert engine.storage.prefix == sync_store.prefix

        async def fetch() -> dict[str, int]:
            return {"n": 1}

        assert (await engine.execute("k", fetch)).status is Status.MISS
        assert (await engine.execute("k", fetch)).status is Status.HIT
        await engine.aclose()
        await engine.storage.aclose()

        safe = AsyncStaleEngine(fallback, ttl=TTL)
        assert isinstance(safe.storage, AsyncFallbackStorage)
        assert isinstance(safe.storage.primary, AsyncRedisStorage)
        assert (await safe.execute("k", fetch)).value == {"n": 1}
        await safe.aclose()
        await safe.storage.aclose()

        direct = AsyncRedisStorage.from_url(redis_server.url, prefix=sync_store.prefix)
        async with AsyncStaleEngine(direct, ttl=TTL) as engine2:
            assert (await engine2.execute("k", fetch)).status is Status.HIT
        await direct.aclose()

    asyncio.run(scenario())
    assert sync_store.get("k").value == {"n": 1}  # one Redis for both worlds
    sync_store.close()
    fallback.close()


def test_engine_stats_show_the_storage_counters(redis_server):
    tiered = TieredStorage(MemoryStorage(), redis_store(redis_server.url))
    engine = StaleEngine(tiered, ttl=TTL)
    engine.execute("k", Upstream())
    engine.execute("k", Upstream())
    storage_stats = engine.stats().storage
    assert storage_stats["l1_hits"] == 1
    assert storage_stats["l2_available"] == 1
    engine.close()
    tiered.close()
