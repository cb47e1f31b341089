"""Engines over a cache registered in a MemoryPool (sync and async shells alike)."""

from __future__ import annotations

import pytest

from swr import CacheTTL, ConfigError, StaleEngine, Status
from swr.storage import MemoryPool
from swr.storage.serializers import default_serializer
from tests.swr.upstream import Upstream

# fresh [0, 10), stale [10, 30), expired [30, 60), dead from 60.
TTL = CacheTTL(fresh=10, stale=20, expired=30)


@pytest.fixture
def pool(clock):
    with MemoryPool(capacity=10, gc_interval=None, clock=clock) as pool:
        yield pool


def test_every_window_over_a_pool_cache(make_driver, pool, clock):
    up = Upstream()
    api = pool.register("api", max=5, priority=1)
    d = make_driver(storage=api, ttl=TTL, clock=clock)
    assert d.execute("k", up).status is Status.MISS
    assert d.execute("k", up).status is Status.HIT
    clock.advance(10)
    assert d.execute("k", up).status is Status.STALE
    d.settle()
    assert up.calls == 2
    clock.advance(30)
    r = d.execute("k", up)
    assert (r.value, r.status) == ("v3", Status.EXPIRED)
    clock.advance(60)  # past expires_at: the pool reads it as absent
    assert d.execute("k", up).status is Status.MISS
    stats = d.stats().storage
    assert stats["size"] == 1
    assert stats["hits"] >= 3
    assert stats["expirations"] == 1
    assert 0 < stats["hit_rate"] < 1


def test_the_pool_evicts_an_engines_entries_for_a_higher_priority_cache(make_driver, pool, clock):
    up = Upstream()
    api = pool.register("api", max=8, priority=1)
    users = pool.register("users", min=2, priority=10)
    d = make_driver(storage=api, ttl=TTL, clock=clock)
    for i in range(8):
        d.execute(f"k{i}", up)
    users.set_many({i: i for i in range(6)})
    assert len(api) == 4
    assert pool.stats().used == 10
    # The four least recently used engine keys are gone: fetched again on their next call.
    assert d.execute("k0", up).status is Status.MISS
    assert d.execute("k7", up).status is Status.HIT
    assert api.stats().evictions == 5


def test_a_serializer_is_refused_for_a_pool_cache(pool):
    with pytest.raises(ConfigError, match="keeps values as Python objects"):
        StaleEngine(pool.register("api"), serializer=default_serializer())
