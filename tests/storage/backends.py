"""The storage backends the contract suite runs against.

Each factory takes the pytest request, a temporary directory and the test's clock and
yields a ready synchronous storage (closed afterwards). Backends whose asyncio twin is
a separate class register it in ``ASYNC_BACKENDS``; every sync backend is also run
through ``as_async()`` (or an inline AsyncAdapter).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from storage import AsyncAdapter, LMDBStorage, MemoryStorage
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


# name -> factory of a synchronous storage. Add backends here; marks (e.g. redis) go in
# BACKEND_MARKS.
BACKENDS: dict[str, Factory] = {"memory": memory, "lmdb": lmdb, "lmdb-system": lmdb_system}
BACKEND_MARKS: dict[str, list[pytest.MarkDecorator]] = {}
# name -> factory of a native asyncio storage (yields an AsyncStorage).
ASYNC_BACKENDS: dict[str, Factory] = {}


def as_async(storage: Any) -> Any:
    as_async = getattr(storage, "as_async", None)
    return as_async() if callable(as_async) else AsyncAdapter(storage)


class SyncFacade:
    """Calls an AsyncStorage from synchronous test code through a private event loop."""

    def __init__(self, storage: Any) -> None:
        self.async_storage = storage
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
