"""Filling a cache's misses: ``get_or_load`` (one load per key) and batch loaders.

Concurrent callers of one missing key share a single load (singleflight); the batch
loaders gather the misses of many callers into one ``load_many`` call (DataLoader).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage.pool._batch import AsyncBatchLoader, BatchLoader

__all__ = ["MISSING", "Loading", "Missing"]

K = TypeVar("K")
V = TypeVar("V")


class Missing(enum.Enum):
    """The type of :data:`MISSING`: no value (``None`` is a value a cache may hold)."""

    MISSING = enum.auto()


MISSING = Missing.MISSING


class _Flight:
    """One running ``get_or_load`` loader that threads asking for the same key share."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


def _shared_error(exc: BaseException, what: str) -> BaseException:
    """The error a waiter re-raises: the original, unless it was an interrupt.

    ``KeyboardInterrupt`` and friends belong to the thread they hit; the others learn of
    them as a ``RuntimeError``.
    """
    if isinstance(exc, Exception):
        return exc
    interrupted = RuntimeError(f"{what} was interrupted: {exc!r}")
    interrupted.__cause__ = exc
    return interrupted


class Loading(Generic[K, V]):
    """The loading methods of :class:`~swr.storage.pool.PoolCache` (a mixin).

    It relies on the cache's reads (``_find`` counts a hit or a miss, ``_peek`` does
    not) and on ``set``/``set_many``.
    """

    __slots__ = ()

    # Provided by PoolCache (declared here for the type checker; slots live there).
    _flights: dict[K, _Flight]
    _flights_lock: threading.Lock
    _aflights: dict[K, asyncio.Task[V]]

    def _find(self, key: K) -> V | Missing:
        raise NotImplementedError

    def _peek(self, key: K) -> V | Missing:
        raise NotImplementedError

    def set(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` (see :meth:`PoolCache.set`)."""
        raise NotImplementedError

    def set_many(self, entries: Mapping[K, V]) -> None:
        """Store several values (see :meth:`PoolCache.set_many`)."""
        raise NotImplementedError

    def _store(self, key: K, value: V) -> None:
        """Cache a loaded value; a cache closed meanwhile just keeps nothing."""
        try:
            self.set(key, value)
        except StorageUnavailableError:
            pass

    def _store_many(self, values: Mapping[K, V]) -> None:
        """Cache loaded values; a cache closed meanwhile just keeps nothing."""
        if values:
            try:
                self.set_many(values)
            except StorageUnavailableError:
                pass

    def get_or_load(self, key: K, loader: Callable[[], V]) -> V:
        """Return the value under ``key``, calling ``loader()`` once to fill a miss.

        Concurrent callers of one missing key share a single ``loader()`` call (run in
        the first caller's thread); the others wait for it, however long it takes. The
        result is cached (``None`` too) before any caller returns. Other keys are never
        blocked.

        Args:
            key: The key (hashable).
            loader: Zero-argument callable returning the value.

        Returns:
            The cached or loaded value.

        Raises:
            Exception: whatever ``loader`` raised, to every caller sharing that call
                (nothing is cached then).
            StorageUnavailableError: the cache was closed.
        """
        found = self._find(key)
        if found is not MISSING:
            return found
        return self._load(key, loader)

    def _load(self, key: K, loader: Callable[[], V]) -> V:
        with self._flights_lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                # A leader stores its value before ending its flight: look again.
                found = self._peek(key)
                if found is not MISSING:
                    return found
                flight = self._flights[key] = _Flight()
        if leader:
            try:
                value = loader()
                self._store(key, value)
                flight.value = value
            except BaseException as exc:  # every waiter must learn of any end
                flight.error = exc
                raise
            finally:
                with self._flights_lock:
                    del self._flights[key]
                flight.done.set()
            return value
        flight.done.wait()
        if flight.error is not None:
            raise _shared_error(flight.error, f"the load of {key!r}")
        loaded: V = flight.value
        return loaded

    async def aget_or_load(self, key: K, aloader: Callable[[], Awaitable[V]]) -> V:
        """The asyncio twin of :meth:`get_or_load`: ``aloader()`` returns an awaitable.

        Concurrent tasks of one event loop share one load, run as its own task: a
        caller cancelled while waiting does not cancel it, and its result is still
        cached for the others.

        Raises:
            Exception: whatever the load raised, to every task sharing it.
            TypeError: ``aloader()`` did not return an awaitable.
            StorageUnavailableError: the cache was closed.
        """
        found = self._find(key)
        if found is not MISSING:
            return found
        loop = asyncio.get_running_loop()
        task = self._aflights.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._aload(key, aloader))
            self._aflights[key] = task
            task.add_done_callback(functools.partial(self._aflight_done, key))
        return await asyncio.shield(task)

    async def _aload(self, key: K, aloader: Callable[[], Awaitable[V]]) -> V:
        awaitable = aloader()
        if not inspect.isawaitable(awaitable):
            raise TypeError(
                f"aloader for {key!r} returned {type(awaitable).__name__}, not an awaitable; "
                "use get_or_load for plain functions"
            )
        value = await awaitable
        self._store(key, value)
        return value

    def _aflight_done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._aflights.get(key) is task:
            del self._aflights[key]
        if not task.cancelled():
            task.exception()  # retrieved: the waiters that are left re-raise it

    def batch_loader(
        self,
        load_many: Callable[[list[K]], Mapping[K, V]],
        max_wait: float = 0.005,
        max_batch: int = 100,
    ) -> BatchLoader[K, V]:
        """Return a DataLoader-style function ``load(key) -> value`` over this cache.

        See :class:`~swr.storage.pool.BatchLoader`.

        Args:
            load_many: Called with a list of missing keys; returns a mapping of key to
                value. Keys it leaves out raise ``KeyError`` for their callers only.
            max_wait: Seconds the first missing key of a batch waits for others.
            max_batch: Most keys per ``load_many`` call (a full batch goes at once).

        Raises:
            PoolConfigError: ``max_wait`` < 0 or ``max_batch`` < 1 (a ``ValueError``).
        """
        from swr.storage.pool._batch import BatchLoader  # noqa: PLC0415 - import cycle

        return BatchLoader(self, load_many, max_wait, max_batch)

    def abatch_loader(
        self,
        load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        max_wait: float = 0.005,
        max_batch: int = 100,
    ) -> AsyncBatchLoader[K, V]:
        """The asyncio twin of :meth:`batch_loader`: ``load_many`` is a coroutine function.

        See :class:`~swr.storage.pool.AsyncBatchLoader`.
        """
        from swr.storage.pool._batch import AsyncBatchLoader  # noqa: PLC0415 - import cycle

        return AsyncBatchLoader(self, load_many, max_wait, max_batch)
