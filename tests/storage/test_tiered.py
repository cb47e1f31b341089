"""TieredStorage: L1 then L2, L2 hits copied with their windows, writes to both."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from swr.storage import (
    AsyncAdapter,
    AsyncRedisStorage,
    AsyncTieredStorage,
    Entry,
    MemoryStorage,
    RedisStorage,
    StorageUnavailableError,
    TieredStorage,
)
from swr.storage.serializers import JSONSerializer


def entry(value: object, now: float, lifetime: float = 60) -> Entry:
    return Entry(value, now, now + 10, now + 20, now + lifetime)


@pytest.fixture
def tiers(clock):
    l1, l2 = MemoryStorage(clock=clock), MemoryStorage(clock=clock)
    return TieredStorage(l1, l2), l1, l2


def test_l2_hits_are_copied_into_l1_with_the_same_windows(tiers, clock):
    store, l1, l2 = tiers
    e = entry("v", clock())
    l2.set("k", e)
    assert store.get("k") is e
    assert l1.get("k") is e
    clock.advance(60)  # L2's expiry: the L1 copy ends with it
    assert l1.get("k") is None
    assert store.get("k") is None
    assert store.stats()["l2_hits"] == 1
    assert store.stats()["misses"] == 1


def test_l1_hits_do_not_reach_l2(tiers, clock):
    store, l1, l2 = tiers
    l1.set("k", entry("near", clock()))
    l2.close()  # any call to L2 would now raise
    assert store.get("k").value == "near"
    assert store.stats()["l1_hits"] == 1


def test_writes_and_deletes_reach_both_tiers(tiers, clock):
    store, l1, l2 = tiers
    store.set("k", entry("v", clock()))
    store.set_many({"a": entry("a", clock()), "b": entry("b", clock())})
    assert [t.get(k).value for t in (l1, l2) for k in ("k", "a", "b")] == ["v", "a", "b"] * 2
    assert store.delete("a") is True
    assert l1.get("a") is None
    assert l2.get("a") is None
    assert store.delete("a") is False
    l1.delete("b")
    assert store.delete("b") is True  # only L2 had it


def test_a_failing_l2_write_still_reaches_l1_and_is_reported(tiers, clock):
    store, l1, l2 = tiers
    l2.close()
    with pytest.raises(StorageUnavailableError):
        store.set("k", entry("local", clock()))
    assert l1.get("k").value == "local"


def test_batches_mix_tiers_and_copy_l2_hits(tiers, clock):
    store, l1, l2 = tiers
    l1.set("a", entry("a1", clock()))
    l2.set_many({"a": entry("a2", clock()), "b": entry("b2", clock())})
    got = store.get_many(["a", "b", "c"])
    assert [e.value if e else None for e in got] == ["a1", "b2", None]
    assert l1.get("b").value == "b2"
    stats = store.stats()
    assert (stats["l1_hits"], stats["l2_hits"], stats["misses"]) == (1, 1, 1)
    assert stats["l1_entries"] == 2


def test_leases_come_from_l2(tiers, clock):
    store, l1, l2 = tiers
    token = store.acquire_lease("k", 30)
    assert token is not None
    assert l2.acquire_lease("k", 30) is None
    assert l1.acquire_lease("k", 30) is not None
    store.release_lease("k", token)
    assert l2.acquire_lease("k", 30) is not None


def test_set_and_release_writes_both_tiers_and_frees_the_lease(tiers, clock):
    store, l1, l2 = tiers
    token = store.acquire_lease("k", 30)
    store.set_and_release("k", entry("v", clock()), token)
    assert l1.get("k").value == "v"
    assert l2.get("k").value == "v"
    assert l2.acquire_lease("k", 30) is not None


@pytest.mark.redis
def test_set_and_release_is_one_call_to_a_redis_l2(redis_server, clock):
    l2 = RedisStorage.from_url(redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}:", clock=clock)
    store = TieredStorage(MemoryStorage(clock=clock), l2)
    calls: list[str] = []
    original = l2.set_and_release
    l2.set_and_release = lambda *args: calls.append("l2") or original(*args)
    token = store.acquire_lease("k", 30)
    store.set_and_release("k", entry("v", clock()), token)
    assert calls == ["l2"]
    assert store.l1.get("k").value == "v"
    assert l2.get("k").value == "v"
    assert l2.acquire_lease("k", 30) is not None
    store.close()


def test_same_storage_twice_is_refused():
    memory = MemoryStorage()
    with pytest.raises(ValueError, match="different"):
        TieredStorage(memory, memory)


@pytest.mark.redis
def test_memory_over_redis_and_its_views(redis_server, clock):
    l2 = RedisStorage.from_url(redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}:", clock=clock)
    store = TieredStorage(MemoryStorage(clock=clock), l2)
    e = entry({"id": 1}, clock())
    store.set("k", e)
    other_host = TieredStorage(MemoryStorage(clock=clock), l2)
    assert other_host.get("k") == e  # from Redis, now in the other host's L1 too
    assert other_host.l1.get("k") == e
    as_json = store.with_serializer(JSONSerializer())
    as_json.set("j", entry([1], clock()))
    assert l2.client.get(l2.prefix + "j").endswith(b"[1]")
    twin = store.as_async()
    assert isinstance(twin, AsyncTieredStorage)
    assert isinstance(twin.l1, AsyncAdapter)
    assert isinstance(twin.l2, AsyncRedisStorage)

    async def read_through_twin() -> Entry | None:
        got = await twin.get("k")
        await twin.l2.aclose()
        return got

    assert asyncio.run(read_through_twin()) == e
    store.close()
    with pytest.raises(StorageUnavailableError):
        store.get("k")
