"""The storage backends the contract suite runs against.

Each factory takes the pytest request, a temporary directory and the test's clock and
yields a ready synchronous storage (closed afterwards). Backends whose asyncio twin is
a separate class register it in ``ASYNC_BACKENDS``; every sync backend is also run
through ``as_async()`` (or an inline AsyncAdapter).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from swr.storage import (
    AsyncAdapter,
    AsyncFallbackStorage,
    AsyncRedisStorage,
    AsyncTieredStorage,
    FallbackStorage,
    LMDBStorage,
    MemoryPool,
    MemoryStorage,
    RedisStorage,
    TieredStorage,
)
from swr.storage.adapters import is_async
from swr.storage.base import (
    AsyncBulkVerbs,
    AsyncLeases,
    AsyncSetAndRelease,
    AsyncTagIndex,
    AsyncView,
    BulkVerbs,
    EntryFactoryBinding,
    FastLookup,
    Health,
    Leases,
    SerializerBinding,
    SetAndRelease,
    Stats,
    TagIndex,
)
from swr.testing import FakeClock

T = TypeVar("T")

Factory = Callable[[pytest.FixtureRequest, Path, FakeClock], AbstractContextManager[Any]]


@contextmanager
def memory(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    store = MemoryStorage(max_entries=10_000, clock=clock)
    yield store
    store.close()


@contextmanager
def lmdb(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    store = LMDBStorage(tmp_path / "lmdb", max_bytes=64 << 20, clock=clock, sweep_interval=None)
    yield store
    store.close()


@contextmanager
def lmdb_system(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    # fsync per commit; writes of its asyncio view run in a worker thread.
    store = LMDBStorage(
        tmp_path / "lmdb", durability="system", clock=clock, sweep_interval=None, read_cache=0
    )
    yield store
    store.close()


@contextmanager
def pool(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    # A registered cache sharing its pool with another one, as an engine would use it.
    with MemoryPool(capacity=20_000, gc_interval=None, clock=clock) as shared:
        shared.register("neighbour", min=100, max=5_000, ttl=60, priority=5)
        yield shared.register("contract", max=10_000, priority=1)


def _redis_url(request: pytest.FixtureRequest, cluster: bool) -> str:
    server = request.getfixturevalue("redis_cluster" if cluster else "redis_server")
    url: str = server.url
    return url


def _prefix() -> str:
    # A fresh prefix per test: tests share one server and never see each other's keys.
    return f"t{uuid.uuid4().hex[:12]}:"


# An asyncio store times its connect on the event loop: a test machine that stalls the
# loop's thread for half a second (the default) fails a healthy loopback connect. The
# stores of the contract suite are healthy; the timeout tests build their own stores.
LOOP_CONNECT_TIMEOUT = 5.0


def _redis_factory(cluster: bool) -> Factory:
    @contextmanager
    def make(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
        url = _redis_url(request, cluster)
        store = RedisStorage.from_url(url, prefix=_prefix(), cluster=cluster, clock=clock)
        yield store
        store.close()

    return make


def _async_redis_factory(cluster: bool) -> Factory:
    @contextmanager
    def make(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
        url = _redis_url(request, cluster)
        # Closed by the test's facade on the event loop that used it.
        yield AsyncRedisStorage.from_url(
            url,
            prefix=_prefix(),
            cluster=cluster,
            clock=clock,
            connect_timeout=LOOP_CONNECT_TIMEOUT,
        )

    return make


@contextmanager
def fallback(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    primary = RedisStorage.from_url(_redis_url(request, False), prefix=_prefix(), clock=clock)
    store = FallbackStorage(primary, MemoryStorage(max_entries=10_000, clock=clock), clock=clock)
    yield store
    store.close()


@contextmanager
def tiered(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    l2 = RedisStorage.from_url(_redis_url(request, False), prefix=_prefix(), clock=clock)
    store = TieredStorage(MemoryStorage(max_entries=10_000, clock=clock), l2)
    yield store
    store.close()


@contextmanager
def fallback_async(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Any]:
    url = _redis_url(request, False)
    yield AsyncFallbackStorage(
        AsyncRedisStorage.from_url(
            url, prefix=_prefix(), clock=clock, connect_timeout=LOOP_CONNECT_TIMEOUT
        ),
        MemoryStorage(max_entries=10_000, clock=clock).as_async(),
        clock=clock,
    )


@contextmanager
def tiered_async(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    url = _redis_url(request, False)
    yield AsyncTieredStorage(
        MemoryStorage(max_entries=10_000, clock=clock).as_async(),
        AsyncRedisStorage.from_url(
            url, prefix=_prefix(), clock=clock, connect_timeout=LOOP_CONNECT_TIMEOUT
        ),
    )


# name -> factory of a synchronous storage. Add backends here; marks (e.g. redis) go in
# BACKEND_MARKS.
BACKENDS: dict[str, Factory] = {
    "memory": memory,
    "pool": pool,
    "lmdb": lmdb,
    "lmdb-system": lmdb_system,
    "redis": _redis_factory(cluster=False),
    "redis-cluster": _redis_factory(cluster=True),
    "fallback": fallback,
    "tiered": tiered,
}
# name -> factory of a native asyncio storage (yields an AsyncStorage).
ASYNC_BACKENDS: dict[str, Factory] = {
    "redis-async": _async_redis_factory(cluster=False),
    "redis-cluster-async": _async_redis_factory(cluster=True),
    "fallback-async": fallback_async,
    "tiered-async": tiered_async,
}
# The backends that talk to a Redis server (Fallback and Tiered wrap one): only these
# carry the redis marker, so `pytest -m "not redis"` still runs every other backend.
NEEDS_REDIS = {
    "redis",
    "redis-cluster",
    "fallback",
    "tiered",
    "redis-async",
    "redis-cluster-async",
    "fallback-async",
    "tiered-async",
}
BACKEND_MARKS: dict[str, list[pytest.MarkDecorator]] = {
    name: [pytest.mark.redis] for name in (*BACKENDS, *ASYNC_BACKENDS) if name in NEEDS_REDIS
}

SYNC_CAPABILITIES = {
    "fast_lookup": FastLookup,
    "leases": Leases,
    "set_and_release": SetAndRelease,
    "stats": Stats,
    "health": Health,
    "as_async": AsyncView,
    "with_serializer": SerializerBinding,
    "with_entry_factory": EntryFactoryBinding,
    "bulk_verbs": BulkVerbs,
    "tag_index": TagIndex,
}
ASYNC_CAPABILITIES = {
    "leases": AsyncLeases,
    "set_and_release": AsyncSetAndRelease,
    "stats": Stats,
    "health": Health,
    "with_serializer": SerializerBinding,
    "bulk_verbs": AsyncBulkVerbs,
    "tag_index": AsyncTagIndex,
}


def capabilities(storage: Any) -> set[str]:
    """The optional capabilities (of ``swr.storage.base``) that ``storage`` declares."""
    if isinstance(storage, AsyncAdapter):
        # An adapter forwards what the storage it wraps can do.
        forwarded = {"leases", "set_and_release", "stats", "bulk_verbs", "tag_index"}
        return capabilities(storage.sync) & forwarded
    table = ASYNC_CAPABILITIES if is_async(storage) else SYNC_CAPABILITIES
    return {name for name, protocol in table.items() if isinstance(storage, protocol)}


class SyncFacade:
    """Calls an AsyncStorage from synchronous test code through a private event loop."""

    def __init__(self, storage: Any) -> None:
        self.async_storage = storage
        self.capabilities = capabilities(storage)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def get(self, key: str) -> Any:
        return self._run(self.async_storage.get(key))

    def set(self, key: str, entry: Any) -> None:
        self._run(self.async_storage.set(key, entry))

    def delete(self, key: str) -> bool:
        return self._run(self.async_storage.delete(key))

    def get_many(self, keys: Any) -> Any:
        return self._run(self.async_storage.get_many(keys))

    def set_many(self, entries: Any) -> None:
        self._run(self.async_storage.set_many(entries))

    def acquire_lease(self, key: str, ttl: float) -> Any:
        return self._run(self.async_storage.acquire_lease(key, ttl))

    def release_lease(self, key: str, token: str) -> None:
        self._run(self.async_storage.release_lease(key, token))

    def set_and_release(self, key: str, entry: Any, token: str) -> None:
        self._run(self.async_storage.set_and_release(key, entry, token))

    def delete_many(self, keys: Any) -> int:
        return self._run(self.async_storage.delete_many(keys))

    def exists(self, key: str) -> bool:
        return self._run(self.async_storage.exists(key))

    def touch(self, key: str, times: Any) -> bool:
        return self._run(self.async_storage.touch(key, times))

    def scan(self, prefix: str = "") -> Iterator[str]:
        async def collect() -> list[str]:
            return [key async for key in self.async_storage.scan(prefix)]

        return iter(self._run(collect()))

    def clear(self) -> None:
        self._run(self.async_storage.clear())

    def set_tagged(self, key: str, entry: Any, tags: Any) -> None:
        self._run(self.async_storage.set_tagged(key, entry, tags))

    def invalidate_tags(self, tags: Any) -> int:
        return self._run(self.async_storage.invalidate_tags(tags))

    @property
    def supports_leases(self) -> bool:
        flag = getattr(self.async_storage, "supports_leases", None)
        if flag is not None:
            return bool(flag)
        return hasattr(self.async_storage, "acquire_lease")

    def close(self) -> None:
        self._run(self.async_storage.aclose())

    def shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
