"""AsyncFallbackStorage: a primary (Redis) with a local fallback, over asyncio storages.

Written once: the thread twin in ``swr/storage/_sync/`` is generated from this file by
``tools/unasync.py``. Every decision lives in :mod:`swr.storage._fallback`; this class
only performs the I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from swr.storage._async._tiers import (
    AsyncAtomicForwarding,
    async_clear,
    async_delete_keys,
    async_invalidate,
    async_touch,
)
from swr.storage._fallback import (
    FROM_FALLBACK,
    FROM_PRIMARY,
    Action,  # unasync: sync=Action, SyncTwin,
    WarmCopies,
    _FallbackBase,
    reconcile,
    warm_settings,
)
from swr.storage._primitives import async_has_leases
from swr.storage._views import with_serializer
from swr.storage.base import AsyncAtomicOps, AsyncStorageMixin, Entry, EntryTimes
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage.base import AsyncStorage
    from swr.storage.serializers import Serializer

__all__ = ["AsyncFallbackStorage"]


class AsyncFallbackStorage(
    _FallbackBase,
    AsyncAtomicForwarding,
    AsyncStorageMixin,  # unasync: sync=SyncTwin, StorageMixin,
):
    """A primary storage (Redis) that falls back to another (memory) while unavailable.

    Example::

        store = AsyncRedisStorage.from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
        safe = AsyncFallbackStorage(store, MemoryStorage(max_entries=50_000).as_async())
        engine = AsyncStaleEngine(safe, ttl=CacheTTL(fresh=60, stale=600))

    Args:
        primary: The storage used while healthy; it should fail fast when unavailable
            (RedisStorage does, and exposes ``available``).
        fallback: The storage used while the primary is unavailable; kept warm by
            writing to it too.
        clock: Zero-argument callable returning epoch seconds, for delete instants;
            ``time.time`` at each call by default. Give it the engine's clock.
        max_dirty: Most keys changed during an outage remembered for reconciling.
        warm_reads: Also copy into the fallback the entries *read* from the primary,
            so an outage costs no refetch of the keys this process reads (written
            keys are always copied).
        warm_max_entries: Most entries kept by ``warm_reads``; the oldest copies are
            deleted from the fallback past it.
        warm_max_bytes: Most bytes (estimated from the values) kept by ``warm_reads``.

    Raises:
        ValueError: ``primary is fallback``, ``max_dirty`` < 0, or a ``warm_max_*``
            < 1.

    Errors of the primary other than unavailability (a value it cannot encode) and any
    error of the fallback propagate. ``aclose()`` closes both tiers. The thread twin
    (over two sync storages) is thread-safe if both tiers are; the asyncio one (over
    two asyncio storages) is used from one event loop.
    """

    primary: AsyncStorage
    fallback: AsyncStorage

    def __init__(
        self,
        primary: AsyncStorage,
        fallback: AsyncStorage,
        *,
        clock: Callable[[], float] | None = None,
        max_dirty: int = 10_000,
        warm_reads: bool = True,
        warm_max_entries: int = 10_000,
        warm_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        warm = WarmCopies(warm_max_entries, warm_max_bytes) if warm_reads else None
        self._setup(primary, fallback, clock, max_dirty, warm)

    async def get(self, key: str) -> Entry | None:
        """Read the primary while it is available, else the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                entry = await self.primary.get(key)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                self._served_primary += 1
                pending, mark = self._pending(key)
                if pending:
                    return await self._reconcile(key, mark, entry)
                if entry is not None and self._warm is not None:
                    await self._keep_warm((key,), (entry,))
                return entry
        self._served_fallback += 1
        return await self.fallback.get(key)

    async def _keep_warm(self, keys: Sequence[str], entries: Sequence[Entry | None]) -> None:
        """Copy entries read from the primary into the fallback (bounded, new ones only)."""
        copies = self._warm_copies(keys, entries)
        if not copies:
            return
        await self.fallback.set_many(copies)
        evicted = self._warm.add(copies)  # type: ignore[union-attr]
        for key in evicted:
            await self.fallback.delete(key)

    async def _reconcile(self, key: str, mark: float | None, entry: Entry | None) -> Entry | None:
        served, action = reconcile(mark, entry, await self.fallback.get(key))
        try:
            if action is Action.WRITE:
                assert served is not None  # noqa: S101 - WRITE always carries the entry
                await self.primary.set(key, served)
            elif action is Action.DELETE:
                await self.primary.delete(key)
        except StorageUnavailableError as exc:
            self._primary_failed(exc)
            return served
        self._reconciled_key(key, mark)
        return served

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Read a batch from the primary while available, else the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                entries: list[Entry | None] = await self.primary.get_many(keys)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                self._served_primary += len(keys)
                if self._dirty:
                    for i, key in enumerate(keys):
                        pending, mark = self._pending(key)
                        if pending:
                            entries[i] = await self._reconcile(key, mark, entries[i])
                if self._warm is not None:
                    await self._keep_warm(keys, entries)
                return entries
        self._served_fallback += len(keys)
        return await self.fallback.get_many(keys)

    async def set(self, key: str, entry: Entry) -> None:
        """Write to the primary (while available) and to the fallback."""
        if self._closed:
            self._check_open()
        await self._write(key, entry, None)

    async def _write(self, key: str, entry: Entry, tags: Sequence[str] | None) -> None:
        """Write to the primary while it is up (under ``tags`` if any), then the fallback."""
        if self._primary_up():
            try:
                if tags is None:
                    await self.primary.set(key, entry)
                else:
                    await self.primary.set_tagged(key, entry, tags)  # type: ignore[attr-defined]
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark(key, None)
            else:
                self._clear(key)
        else:
            self._mark(key, None)
        self._written(key)
        await self.fallback.set(key, entry)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Write a batch to the primary (while available) and to the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                await self.primary.set_many(entries)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                for key in entries:
                    self._mark(key, None)
            else:
                for key in entries:
                    self._clear(key)
        else:
            for key in entries:
                self._mark(key, None)
        for key in entries:
            self._written(key)
        await self.fallback.set_many(entries)

    async def delete(self, key: str) -> bool:
        """Delete from both; return whether either held the key."""
        if self._closed:
            self._check_open()
        removed = False
        if self._primary_up():
            try:
                removed = await self.primary.delete(key)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark(key, self._now())
            else:
                self._clear(key)
        else:
            self._mark(key, self._now())
        self._written(key)
        removed_fallback: bool = await self.fallback.delete(key)
        return removed_fallback or removed

    # -- bulk verbs and tags: the primary while available, the fallback always ----------

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` from both tiers; return how many either held.

        While the primary is unavailable the keys are remembered as deleted (as by
        :meth:`delete`) and removed from it once it is back.
        """
        self._check_open()
        removed = 0
        if self._primary_up():
            try:
                removed = await async_delete_keys(self.primary, keys)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark_all(keys, self._now())
            else:
                for key in keys:
                    self._clear(key)
        else:
            self._mark_all(keys, self._now())
        for key in keys:
            self._written(key)
        return max(removed, await async_delete_keys(self.fallback, keys))

    async def exists(self, key: str) -> bool:
        """Whether a live entry is under ``key``: the primary's answer while available."""
        self._check_open()
        if self._primary_up() and not self._pending(key)[0]:
            try:
                found: bool = await self.primary.exists(key)  # type: ignore[attr-defined]
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                return found
        return await self.get(key) is not None

    async def touch(self, key: str, times: EntryTimes) -> bool:
        """Renew the entry's instants in the primary (while available) and the fallback."""
        self._check_open()
        touched = False
        if self._primary_up():
            try:
                touched = await async_touch(self.primary, key, times)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
        return await async_touch(self.fallback, key, times) or touched

    def scan(self, prefix: str = "") -> AsyncIterator[str]:
        """The primary's keys starting with ``prefix``; the fallback's while it is down."""
        self._check_open()
        tier: Any = self.primary if self._primary_up() else self.fallback
        keys: AsyncIterator[str] = tier.scan(prefix)
        return keys

    async def clear(self) -> None:
        """Clear both tiers.

        Raises:
            StorageUnavailableError: the primary is unavailable (the fallback is cleared
                anyway; the primary still holds its entries).
        """
        self._check_open()
        try:
            if not self._primary_up():
                raise StorageUnavailableError("the primary is unavailable: it was not cleared")
            await async_clear(self.primary)
        finally:
            await async_clear(self.fallback)

    async def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Record ``entry`` under ``tags`` in the primary (while available); copy it to the
        fallback as :meth:`set` does.
        """  # noqa: D205 - the two tiers are the summary
        self._check_open()
        await self._write(key, entry, tags)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove the entries of ``tags`` from the primary and their copies in the fallback.

        The fallback drops the keys the primary names (Redis does), else everything.

        Raises:
            StorageUnavailableError: the primary is unavailable (the tag index lives
                there); the fallback is cleared so that none of its copies is served.
        """
        self._check_open()
        keys: list[str] | None = None
        try:
            if not self._primary_up():
                raise StorageUnavailableError("the primary is unavailable: tags not invalidated")
            removed, keys = await async_invalidate(self.primary, tags)
        finally:
            if keys is None:
                await async_clear(self.fallback)
            else:
                await async_delete_keys(self.fallback, keys)
        return removed

    async def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease from the primary while available, else from the fallback."""
        self._check_open()
        primary = self.primary
        if self._primary_up() and async_has_leases(primary):
            try:
                token = await primary.acquire_lease(key, ttl)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                return None if token is None else FROM_PRIMARY + token
        fallback = self.fallback
        if not async_has_leases(fallback):
            raise TypeError(f"{type(fallback).__name__} does not support leases")
        token = await fallback.acquire_lease(key, ttl)
        return None if token is None else FROM_FALLBACK + token

    async def release_lease(self, key: str, token: str) -> None:
        """Release a lease on the tier that granted it; a lost one expires by itself."""
        tier, raw = self._split_token(token)
        storage = self.primary if tier == FROM_PRIMARY else self.fallback
        if not tier or not async_has_leases(storage):
            return
        try:
            await storage.release_lease(key, raw)
        except StorageUnavailableError as exc:
            self._primary_failed(exc)

    async def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store ``entry`` as :meth:`set` does and release the lease ``token``.

        A lease granted by a primary that stores and releases together
        (``set_and_release``, as Redis does in one round trip) costs it one call.
        """
        if self._closed:
            self._check_open()
        tier, raw = self._split_token(token)
        if tier != FROM_PRIMARY or not self._store_release or not self._primary_up():
            await self.set(key, entry)
            await self.release_lease(key, token)
            return
        try:
            await self.primary.set_and_release(key, entry, raw)  # type: ignore[attr-defined]
        except StorageUnavailableError as exc:
            self._primary_failed(exc)
            self._mark(key, None)
        else:
            self._clear(key)
        self._written(key)
        await self.fallback.set(key, entry)

    def _atomic_ops(self) -> Any:
        primary = self.primary
        if not isinstance(primary, AsyncAtomicOps):
            raise TypeError(f"primary {primary!r} has no atomic operations")
        if not self._primary_up():
            # The fallback is local: a count kept there would diverge from the
            # primary's, and come back wrong. Callers (a rate limiter) decide.
            raise StorageUnavailableError(
                "atomic operations run on the primary only, and the primary is down"
            )
        return primary

    async def _atomic(self, name: str, key: str, *args: Any) -> Any:
        """Run the atomic operation ``name`` on the primary, then drop the fallback's copy.

        Raises:
            StorageUnavailableError: the primary is down (or fails now): the fallback
                never takes an atomic operation (see the class docstring).
        """
        self._check_open()
        try:
            result = await getattr(self._atomic_ops(), name)(key, *args)
        except StorageUnavailableError as exc:
            if self._primary_up():
                self._primary_failed(exc)
            raise
        await self.fallback.delete(key)
        return result

    # -- atomic operations (AtomicOps) ----------------------------------------------------

    async def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """``get_versioned`` on the primary."""
        result: tuple[Entry, Any] | None = await self._atomic_ops().get_versioned(key)
        return result

    def with_serializer(self, serializer: Serializer) -> AsyncFallbackStorage:
        """The same tiers with ``serializer`` for those that take one."""
        return AsyncFallbackStorage(
            with_serializer(self.primary, serializer),
            with_serializer(self.fallback, serializer),
            clock=self._clock,
            max_dirty=self._max_dirty,
            **warm_settings(self._warm),
        )

    async def aclose(self) -> None:
        """Close both tiers. Idempotent; later calls raise ``StorageUnavailableError``."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.primary.aclose()
        finally:
            await self.fallback.aclose()
