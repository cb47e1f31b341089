"""FallbackStorage: routing by the primary's health, warm fallback, repair after outages."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from swr.storage import (
    AsyncAdapter,
    AsyncFallbackStorage,
    AsyncRedisStorage,
    Entry,
    FallbackStorage,
    MemoryStorage,
    RedisStorage,
    StorageUnavailableError,
)
from swr.storage._fallback import Action as _Action
from swr.storage.fallback import reconcile
from swr.storage.serializers import JSONSerializer
from tests.helpers import wait_until


def entry(value: object, stored_at: float, lifetime: float = 600) -> Entry:
    return Entry(value, stored_at, stored_at + 10, stored_at + 20, stored_at + lifetime)


# -- the pure decision ------------------------------------------------------------------


def test_reconcile_copies_a_newer_fallback_entry_to_the_primary():
    old, new = entry("old", 100), entry("new", 200)
    assert reconcile(None, old, new) == (new, _Action.WRITE)
    assert reconcile(None, None, new) == (new, _Action.WRITE)


def test_reconcile_keeps_a_primary_entry_newer_than_the_outage_write():
    fallback, primary = entry("mine", 100), entry("other host", 200)
    assert reconcile(None, primary, fallback) == (primary, _Action.NOTHING)
    assert reconcile(None, primary, None) == (primary, _Action.NOTHING)  # evicted locally


def test_reconcile_deletes_what_was_deleted_during_the_outage():
    before = entry("before", 100)
    assert reconcile(150.0, before, None) == (None, _Action.DELETE)
    after = entry("rewritten elsewhere", 200)
    assert reconcile(150.0, after, None) == (after, _Action.NOTHING)
    assert reconcile(150.0, None, None) == (None, _Action.NOTHING)


# -- on a real Redis ---------------------------------------------------------------------


def make(url: str, clock, **kwargs):
    primary = RedisStorage.from_url(
        url,
        prefix=f"f{uuid.uuid4().hex[:8]}:",
        clock=clock,
        socket_timeout=0.15,
        backoff_initial=0.02,
        backoff_max=0.05,
    )
    fallback = MemoryStorage(clock=clock)
    return FallbackStorage(primary, fallback, clock=clock, **kwargs), primary, fallback


@pytest.mark.redis
def test_healthy_primary_serves_reads_and_both_tiers_get_writes(redis_server, clock):
    store, primary, fallback = make(redis_server.url, clock)
    e = entry("v", clock())
    store.set("k", e)
    assert primary.get("k") == e
    assert fallback.get("k") is e
    fallback.delete("k")
    assert store.get("k") == e  # read from the primary, not the fallback
    stats = store.stats()
    assert stats["served_by_primary"] == 1
    assert stats["served_by_fallback"] == 0
    assert stats["primary_available"] == 1
    assert "primary_corrupt_entries" in stats
    assert "fallback_entries" in stats
    store.close()
    with pytest.raises(StorageUnavailableError):
        store.get("k")


@pytest.mark.redis
@pytest.mark.slow
def test_outage_serves_the_fallback_and_repairs_the_primary_afterwards(own_redis, clock):
    store, primary, _fallback = make(own_redis.url, clock)
    store.set_many({k: entry(k, clock()) for k in ("kept", "deleted", "rewritten", "raced")})
    own_redis.pause()  # hung: the data survives, unlike a kill
    try:
        assert store.get("kept").value == "kept"  # one timeout, then the fallback answers
        assert not primary.available
        assert store.delete("deleted") is True
        clock.advance(1)
        store.set("rewritten", entry("new", clock()))
        store.set("raced", entry("mine", clock()))
        assert store.get("rewritten").value == "new"
        assert store.get_many(["kept", "deleted"])[1] is None
        during = store.stats()
        assert during["served_by_fallback"] == 4
        assert during["dirty_keys"] == 3
    finally:
        own_redis.resume()
    wait_until(lambda: primary.available, timeout=5)
    clock.advance(1)
    primary.set("raced", entry("other host", clock()))  # written elsewhere after ours
    # The primary still holds the pre-outage values; each first read repairs its key.
    assert store.get("deleted") is None
    assert primary.get("deleted") is None
    assert store.get("rewritten").value == "new"
    assert primary.get("rewritten").value == "new"
    assert store.get("raced").value == "other host"
    assert store.get("kept").value == "kept"
    after = store.stats()
    assert after["reconciled"] == 3
    assert after["dirty_keys"] == 0
    assert after["served_by_primary"] >= 4
    store.close()


@pytest.mark.redis
@pytest.mark.slow
def test_leases_come_from_the_tier_that_is_serving(own_redis, clock):
    store, primary, fallback = make(own_redis.url, clock)
    token = store.acquire_lease("k", 30)
    assert token is not None
    assert primary.acquire_lease("k", 30) is None  # held in Redis
    assert fallback.acquire_lease("k", 30) is not None  # not in memory
    store.release_lease("k", token)
    assert primary.acquire_lease("k2", 30) is not None
    own_redis.kill()
    local = store.acquire_lease("k3", 30)  # Redis is gone: the fallback's lease
    assert local is not None
    assert fallback.acquire_lease("k3", 30) is None
    store.release_lease("k3", local)
    assert fallback.acquire_lease("k3", 30) is not None
    store.close()


@pytest.mark.redis
def test_set_and_release_goes_to_the_tier_that_granted_the_lease(own_redis, clock):
    store, primary, fallback = make(own_redis.url, clock)
    calls: list[str] = []
    original = primary.set_and_release
    primary.set_and_release = lambda *args: calls.append("primary") or original(*args)
    token = store.acquire_lease("k", 30)
    store.set_and_release("k", entry("v", clock()), token)
    assert calls == ["primary"]  # one call: Redis stores and releases together
    assert primary.get("k").value == "v"
    assert fallback.get("k").value == "v"  # kept warm
    assert primary.acquire_lease("k", 30) is not None  # released
    own_redis.kill()
    local = store.acquire_lease("o", 30)  # Redis is gone: the fallback's lease
    store.set_and_release("o", entry("w", clock()), local)
    assert fallback.get("o").value == "w"
    assert fallback.acquire_lease("o", 30) is not None
    assert store.stats()["dirty_keys"] == 1  # repaired in Redis once it is back
    store.close()


def test_max_dirty_bounds_what_an_outage_remembers(clock):
    primary = MemoryStorage(clock=clock)
    store = FallbackStorage(primary, MemoryStorage(clock=clock), clock=clock, max_dirty=2)
    primary.close()  # a closed primary is unavailable
    for key in "abcd":
        store.set(key, entry(key, clock()))
    stats = store.stats()
    assert stats["dirty_keys"] == 2
    assert stats["dirty_dropped"] == 2
    assert stats["primary_errors"] == 4
    assert store.get("d").value == "d"


def test_settings_are_checked(clock):
    memory = MemoryStorage()
    with pytest.raises(ValueError, match="different"):
        FallbackStorage(memory, memory)
    with pytest.raises(ValueError, match="max_dirty"):
        FallbackStorage(MemoryStorage(), memory, max_dirty=-1)


@pytest.mark.redis
def test_views_keep_the_structure(redis_server, clock):
    store, primary, fallback = make(redis_server.url, clock)
    as_json = store.with_serializer(JSONSerializer())
    assert isinstance(as_json, FallbackStorage)
    assert as_json.fallback is fallback  # memory keeps objects: no serializer
    as_json.set("j", entry([1, 2], clock()))
    assert primary.client.get(primary.prefix + "j").endswith(b"[1,2]")
    twin = store.as_async()
    assert isinstance(twin, AsyncFallbackStorage)
    assert isinstance(twin.primary, AsyncRedisStorage)
    assert isinstance(twin.fallback, AsyncAdapter)
    asyncio.run(twin.primary.aclose())
    store.close()


@pytest.mark.redis
@pytest.mark.slow
def test_the_async_twin_falls_back_and_returns(own_redis, clock):
    async def scenario() -> None:
        primary = AsyncRedisStorage.from_url(
            own_redis.url, clock=clock, backoff_initial=0.02, backoff_max=0.05
        )
        store = AsyncFallbackStorage(primary, MemoryStorage(clock=clock).as_async(), clock=clock)
        await store.set("k", entry("v", clock()))
        own_redis.kill()
        assert (await store.get("k")).value == "v"
        token = await store.acquire_lease("k", 5)
        assert token is not None
        assert token.startswith("f")
        await store.release_lease("k", token)
        own_redis.start()
        while not primary.available:
            await asyncio.sleep(0.01)
        assert await store.get("k") is None  # Redis restarted empty; its answer wins
        await store.set("k", entry("again", clock()))
        assert (await primary.get("k")).value == "again"
        assert store.stats()["served_by_fallback"] == 1
        await store.aclose()

    asyncio.run(scenario())


class CountingMemory(MemoryStorage):
    """A memory fallback that counts the writes it receives."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.writes = 0

    def set_many(self, entries):
        self.writes += len(entries)
        super().set_many(entries)


def test_entries_read_from_the_primary_are_kept_warm_bounded_by_count(clock):
    primary, fallback = MemoryStorage(clock=clock), CountingMemory(clock=clock)
    store = FallbackStorage(primary, fallback, clock=clock, warm_max_entries=3)
    for i in range(5):
        primary.set(f"k{i}", entry(f"v{i}", clock()))  # written by another host
    for i in range(5):
        assert store.get(f"k{i}").value == f"v{i}"
    assert [fallback.get(f"k{i}") is not None for i in range(5)] == [False, False, True, True, True]
    writes = fallback.writes
    for _ in range(3):
        store.get("k4")  # the very same entry: not copied again
    assert fallback.writes == writes
    store.set("mine", entry("w", clock()))  # an application write is never a warm copy
    assert store.get_many(["k0", "k1"])[0].value == "v0"
    assert fallback.get("mine").value == "w"
    assert store.stats()["warm_copies"] == 3


def test_warm_copies_are_bounded_by_bytes_and_can_be_turned_off(clock):
    primary, fallback = MemoryStorage(clock=clock), MemoryStorage(clock=clock)
    store = FallbackStorage(primary, fallback, clock=clock, warm_max_bytes=30_000)
    for i in range(10):
        primary.set(f"big{i}", entry("x" * 10_000, clock()))
        store.get(f"big{i}")
    kept = [i for i in range(10) if fallback.get(f"big{i}") is not None]
    assert kept == [8, 9]  # two 10 KB values (and their overhead) fit in 30 KB
    assert 20_000 < store.stats()["warm_bytes"] <= 30_000
    cold = FallbackStorage(primary, MemoryStorage(clock=clock), clock=clock, warm_reads=False)
    cold.get("big9")
    assert cold.fallback.get("big9") is None
    with pytest.raises(ValueError, match="warm_max_entries"):
        FallbackStorage(primary, fallback, warm_max_entries=0)


def test_the_async_twin_keeps_reads_warm_too(clock):
    primary, fallback = MemoryStorage(clock=clock), MemoryStorage(clock=clock)
    primary.set("k", entry("v", clock()))
    store = FallbackStorage(primary, fallback, clock=clock, warm_max_entries=5).as_async()

    async def scenario() -> None:
        assert (await store.get("k")).value == "v"
        assert [e.value for e in await store.get_many(["k"])] == ["v"]

    asyncio.run(scenario())
    assert fallback.get("k").value == "v"
    assert store.stats()["warm_copies"] == 1
