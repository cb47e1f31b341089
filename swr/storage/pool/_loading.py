"""Filling a cache's misses: ``get_or_load`` (one load per key) and batch loaders.

Concurrent callers of one missing key share a single load (the singleflight of
``swr.storage._flight``); the batch loaders gather the misses of many callers into one
``load_many`` call (DataLoader).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from swr.storage._flight import AsyncFlights, Flights
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage.pool._async.batch import AsyncBatchLoader
    from swr.storage.pool._sync.batch import BatchLoader

__all__ = ["MISSING", "Loading", "Missing"]

K = TypeVar("K")
V = TypeVar("V")


class Missing(enum.Enum):
    """The type of :data:`MISSING`: no value (``None`` is a value a cache may hold)."""

    MISSING = enum.auto()


MISSING = Missing.MISSING


class Loading(Generic[K, V]):
    """The loading methods of :class:`~swr.storage.pool.PoolCache` (a mixin).

    It relies on the cache's reads (``_find`` counts a hit or a miss, ``_peek`` does
    not) and on ``set``/``set_many``.
    """

    __slots__ = ()

    # Provided by PoolCache (declared here for the type checker; slots live there).
    _flights: Flights[K, V]
    _aflights: AsyncFlights[K, V]

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
        return self._flights.run(key, lambda: self._loaded(key, loader))

    def _loaded(self, key: K, loader: Callable[[], V]) -> V:
        """The leader's call: load and cache, unless a leader before did meanwhile."""
        # A leader caches its value before its flight ends: a caller that missed just
        # before may lead the next flight, and finds the value here.
        found = self._peek(key)
        if found is not MISSING:
            return found
        value = loader()
        self._store(key, value)
        return value

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
        return await self._aflights.run(key, lambda: self._aload(key, aloader))

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
        from swr.storage.pool._sync.batch import BatchLoader  # noqa: PLC0415 - import cycle

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
        from swr.storage.pool._async.batch import AsyncBatchLoader  # noqa: PLC0415 - cycle

        return AsyncBatchLoader(self, load_many, max_wait, max_batch)
