"""What the engines do with each optional storage capability, and without any."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from swr import AsyncStaleEngine, CacheTTL, StaleEngine, Status
from swr._capabilities import async_bind_storage, bind_storage
from swr.storage import Entry, MemoryStorage
from tests.helpers import wait_until
from tests.storage.backends import SYNC_CAPABILITIES
from tests.swr.upstream import Upstream

TTL = CacheTTL(fresh=10, stale=20, expired=30)


class BareStorage:
    """A third-party storage with the six basic verbs and nothing else."""

    def __init__(self, clock) -> None:
        self.data: dict[str, Entry] = {}
        self.clock = clock

    def get(self, key: str) -> Entry | None:
        entry = self.data.get(key)
        return None if entry is None or entry.expires_at <= self.clock() else entry

    def set(self, key: str, entry: Entry) -> None:
        self.data[key] = entry

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self.get(k) for k in keys]

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        self.data.update(entries)

    def close(self) -> None:
        self.data.clear()


class BareAsyncStorage:
    """A third-party asyncio storage with the six basic verbs and nothing else."""

    def __init__(self, clock) -> None:
        self.sync = BareStorage(clock)

    async def get(self, key: str) -> Entry | None:
        return self.sync.get(key)

    async def set(self, key: str, entry: Entry) -> None:
        self.sync.set(key, entry)

    async def delete(self, key: str) -> bool:
        return self.sync.delete(key)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return self.sync.get_many(keys)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        self.sync.set_many(entries)

    async def aclose(self) -> None:
        self.sync.close()


def test_a_bare_storage_has_no_optional_capability(clock):
    bare = BareStorage(clock)
    assert len(SYNC_CAPABILITIES) == 10
    for name, capability in SYNC_CAPABILITIES.items():
        assert not isinstance(bare, capability), name
    bound = bind_storage(bare, None, clock)
    assert (bound.lookup, bound.touch, bound.leases) == (bare.get, None, None)
    assert (bound.set_and_release, bound.stats, bound.health) == (None, None, None)


def test_the_engine_runs_every_window_on_a_bare_storage(clock):
    bare = BareStorage(clock)
    up = Upstream()
    with StaleEngine(bare, ttl=TTL, clock=clock) as engine:
        assert engine.execute("k", up).status is Status.MISS
        assert engine.execute("k", up).status is Status.HIT
        clock.advance(11)
        assert engine.execute("k", up).status is Status.STALE
        wait_until(lambda: engine.stats().refreshes_succeeded == 1)
        assert engine.execute("k", up).value == "v2"
        clock.advance(31)
        assert engine.execute("k", up).status is Status.EXPIRED
        assert engine.stats().storage == {}
        assert engine.delete("k")
        assert bare.data == {}


async def test_the_async_engine_runs_on_bare_storages_sync_and_async(clock):
    for storage in (BareStorage(clock), BareAsyncStorage(clock)):
        up = Upstream()

        async def fetch(up: Upstream = up) -> str:
            return up()

        async with AsyncStaleEngine(storage, ttl=TTL, clock=clock) as engine:
            assert (await engine.execute("k", fetch)).status is Status.MISS
            assert (await engine.execute("k", fetch)).status is Status.HIT
            clock.advance(11)
            assert (await engine.execute("k", fetch)).status is Status.STALE
            await asyncio.sleep(0)
            assert (await engine.get("k")) is not None
            assert up.calls >= 1


class SpyMemory(MemoryStorage):
    """A memory storage recording its write calls."""

    def __init__(self, clock) -> None:
        super().__init__(clock=clock)
        self.calls: list[str] = []

    def set(self, key: str, entry: Entry) -> None:
        self.calls.append("set")
        super().set(key, entry)

    def release_lease(self, key: str, token: str) -> None:
        self.calls.append("release_lease")
        super().release_lease(key, token)

    def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        self.calls.append("set_and_release")
        super().set_and_release(key, entry, token)


def test_a_leased_miss_stores_and_releases_in_one_call(make_driver, clock):
    storage = SpyMemory(clock)
    d = make_driver(storage=storage, ttl=TTL, clock=clock)
    assert d.execute("k", Upstream()).status is Status.MISS
    assert storage.calls == ["set_and_release"]
    assert storage.acquire_lease("k", 1) is not None  # the lease is free again


def test_a_failing_set_and_release_still_frees_the_lease(make_driver, clock):
    class Broken(SpyMemory):
        def set_and_release(self, key: str, entry: Entry, token: str) -> None:
            raise OSError("disk gone")

    storage = Broken(clock)
    d = make_driver(storage=storage, ttl=TTL, clock=clock)
    result = d.execute("k", Upstream())
    assert (result.value, result.status) == ("v1", Status.MISS)
    assert d.stats().storage_write_errors == 1
    assert storage.calls == ["release_lease"]


def test_the_engine_reports_storage_stats_and_health(clock):
    class Healthy(MemoryStorage):
        up = True

        @property
        def available(self) -> bool:
            return self.up

    storage = Healthy(clock=clock)
    with StaleEngine(storage, ttl=TTL, clock=clock) as engine:
        assert engine.stats().storage == {"entries": 0, "evictions": 0, "available": 1}
        storage.up = False
        assert engine.stats().storage["available"] == 0


def test_capabilities_are_read_through_an_async_adapter(clock):
    storage = MemoryStorage(clock=clock)
    bound = async_bind_storage(storage, None, clock)
    assert bound.lookup is not None and bound.touch is not None
    assert bound.leases is bound.storage
    assert bound.set_and_release == bound.storage.set_and_release
    bare = async_bind_storage(BareStorage(clock), None, clock)
    assert (bare.leases, bare.set_and_release, bare.stats) == (None, None, None)


def test_a_sync_engine_refuses_an_asyncio_storage(clock):
    with pytest.raises(ValueError, match="asyncio storage"):
        StaleEngine(BareAsyncStorage(clock))
