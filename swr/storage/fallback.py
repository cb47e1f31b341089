"""FallbackStorage and AsyncFallbackStorage: a primary (Redis) with a local fallback.

How it works: while the primary is healthy, reads go to it alone and writes go to both,
so the fallback is warm when the primary fails. While the primary is unavailable (it
raises :class:`~storage.errors.StorageUnavailableError`, or reports
``available == False`` as :class:`~storage.redis.RedisStorage` does), reads and writes go
to the fallback alone, and ``stats()`` counts which tier served each read.

Writes and deletes made during an outage never reach the primary, so the primary may
hold an older value, or a value the application deleted. The keys changed meanwhile are
remembered (a bounded, oldest-first map: ``key -> None`` for a write, ``key -> instant``
for a delete). When the primary is back, the first read of such a key reconciles it:

- written during the outage: the fallback's entry is copied to the primary unless the
  primary holds a newer one (later ``stored_at``, e.g. written by another host);
- deleted during the outage: the primary's entry is deleted unless it was stored after
  the delete.

Nothing cached in the fallback is dropped when the primary fails or returns. Every
decision lives in :class:`_FallbackBase`; the two classes only perform the I/O.
"""

from __future__ import annotations

import threading
import time as _time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from swr.storage._log import logger
from swr.storage._views import add_tier_stats, as_async, has_async_leases, with_serializer
from swr.storage.base import AsyncStorageMixin, Entry, Leases, StorageMixin
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage.base import AsyncStorage, Storage
    from swr.storage.serializers import Serializer

__all__ = ["AsyncFallbackStorage", "FallbackStorage"]

_FROM_PRIMARY = "p"
_FROM_FALLBACK = "f"


class _Action(Enum):
    """What reconciling a key changed during an outage does to the primary."""

    NOTHING = "nothing"
    WRITE = "write"  # copy the fallback's entry to the primary
    DELETE = "delete"  # delete the primary's entry


def reconcile(
    mark: float | None, primary: Entry | None, fallback: Entry | None
) -> tuple[Entry | None, _Action]:
    """Decide the entry to serve for a key changed during an outage, and the repair.

    Args:
        mark: ``None`` when the key was written during the outage, else the instant
            (epoch seconds) it was deleted.
        primary: What the primary holds now.
        fallback: What the fallback holds now.

    Returns:
        The entry to return to the caller and what to do to the primary.
    """
    if mark is None:
        if fallback is not None and (primary is None or fallback.stored_at > primary.stored_at):
            return fallback, _Action.WRITE
        return primary, _Action.NOTHING
    if primary is not None and primary.stored_at <= mark:
        return None, _Action.DELETE
    return primary, _Action.NOTHING


def _available_probe(primary: Any) -> Callable[[], bool]:
    """A cheap check of the primary's health: its ``available`` flag, or always true."""
    if isinstance(getattr(type(primary), "available", None), property):
        return lambda: bool(primary.available)
    return lambda: True


class _FallbackBase:
    """Counters, the outage map and every routing decision of both fallback storages."""

    def _setup(
        self, primary: Any, fallback: Any, clock: Callable[[], float] | None, max_dirty: Any
    ) -> None:
        if primary is fallback:
            raise ValueError("primary and fallback must be two different storages")
        if isinstance(max_dirty, bool) or not isinstance(max_dirty, int) or max_dirty < 0:
            raise ValueError(f"max_dirty must be an int >= 0, got {max_dirty!r}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        self.primary = primary
        self.fallback = fallback
        self._clock = clock
        self._max_dirty = max_dirty
        self._primary_up = _available_probe(primary)
        self._dirty: OrderedDict[str, float | None] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        self._served_primary = 0
        self._served_fallback = 0
        self._primary_errors = 0
        self._reconciled = 0
        self._dirty_dropped = 0

    def _now(self) -> float:
        clock = self._clock
        return clock() if clock is not None else _time.time()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailableError(f"{type(self).__name__} is closed")

    def _primary_failed(self, exc: StorageUnavailableError) -> None:
        self._primary_errors += 1
        logger.debug("fallback_serving", error=str(exc))

    def _mark(self, key: str, mark: float | None) -> None:
        """Remember that ``key`` changed while the primary was unavailable."""
        if not self._max_dirty:
            return
        with self._lock:
            dirty = self._dirty
            dirty[key] = mark
            dirty.move_to_end(key)
            while len(dirty) > self._max_dirty:
                dirty.popitem(last=False)
                self._dirty_dropped += 1

    def _clear(self, key: str) -> None:
        if self._dirty:
            with self._lock:
                self._dirty.pop(key, None)

    def _pending(self, key: str) -> tuple[bool, float | None]:
        """``(True, mark)`` when ``key`` changed during an outage and is not reconciled."""
        dirty = self._dirty
        if dirty and key in dirty:
            try:
                return True, dirty[key]
            except KeyError:  # reconciled by another thread meanwhile
                return False, None
        return False, None

    def _reconciled_key(self, key: str, mark: float | None) -> None:
        with self._lock:
            if key in self._dirty and self._dirty[key] == mark:
                del self._dirty[key]
        self._reconciled += 1

    @staticmethod
    def _split_token(token: str) -> tuple[str, str]:
        if not token or token[0] not in (_FROM_PRIMARY, _FROM_FALLBACK):
            return "", token
        return token[0], token[1:]

    def stats(self) -> dict[str, int]:
        """Counters of this storage, then each tier's own (prefixed ``primary_``/``fallback_``).

        ``served_by_primary`` / ``served_by_fallback`` count reads each tier answered;
        ``primary_errors`` the calls the primary failed; ``reconciled`` the keys repaired
        after an outage; ``dirty_keys`` those still waiting; ``dirty_dropped`` those
        forgotten because more than ``max_dirty`` changed; ``primary_available`` is 0/1.
        """
        stats = {
            "served_by_primary": self._served_primary,
            "served_by_fallback": self._served_fallback,
            "primary_errors": self._primary_errors,
            "reconciled": self._reconciled,
            "dirty_keys": len(self._dirty),
            "dirty_dropped": self._dirty_dropped,
            "primary_available": int(self._primary_up()),
        }
        return add_tier_stats(stats, {"primary": self.primary, "fallback": self.fallback})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(primary={self.primary!r}, fallback={self.fallback!r})"


class FallbackStorage(_FallbackBase, StorageMixin):
    """A primary storage (Redis) that falls back to another (memory) while unavailable.

    Example::

        store = RedisStorage.from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
        safe = FallbackStorage(primary=store, fallback=MemoryStorage(max_entries=50_000))
        engine = StaleEngine(safe, ttl=CacheTTL(fresh=60, stale=600))

    Args:
        primary: The storage used while healthy; it should fail fast when unavailable
            (RedisStorage does, and exposes ``available``).
        fallback: The storage used while the primary is unavailable; kept warm by
            writing to it too.
        clock: Zero-argument callable returning epoch seconds, for delete instants;
            ``time.time`` at each call by default. Give it the engine's clock.
        max_dirty: Most keys changed during an outage remembered for reconciling.

    Raises:
        ValueError: ``primary is fallback``, or ``max_dirty`` < 0.

    Errors of the primary other than unavailability (a value it cannot encode) and any
    error of the fallback propagate. Thread-safe if both tiers are. ``close()`` closes
    both tiers.
    """

    primary: Storage
    fallback: Storage

    def __init__(
        self,
        primary: Storage,
        fallback: Storage,
        *,
        clock: Callable[[], float] | None = None,
        max_dirty: int = 10_000,
    ) -> None:
        self._setup(primary, fallback, clock, max_dirty)

    def get(self, key: str) -> Entry | None:
        """Read the primary while it is available, else the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                entry = self.primary.get(key)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                self._served_primary += 1
                pending, mark = self._pending(key)
                if pending:
                    return self._reconcile(key, mark, entry)
                return entry
        self._served_fallback += 1
        return self.fallback.get(key)

    def _reconcile(self, key: str, mark: float | None, entry: Entry | None) -> Entry | None:
        served, action = reconcile(mark, entry, self.fallback.get(key))
        try:
            if action is _Action.WRITE:
                assert served is not None  # noqa: S101 - WRITE always carries the entry
                self.primary.set(key, served)
            elif action is _Action.DELETE:
                self.primary.delete(key)
        except StorageUnavailableError as exc:
            self._primary_failed(exc)
            return served
        self._reconciled_key(key, mark)
        return served

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Read a batch from the primary while available (one call), else the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                entries = self.primary.get_many(keys)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                self._served_primary += len(keys)
                if self._dirty:
                    for i, key in enumerate(keys):
                        pending, mark = self._pending(key)
                        if pending:
                            entries[i] = self._reconcile(key, mark, entries[i])
                return entries
        self._served_fallback += len(keys)
        return self.fallback.get_many(keys)

    def set(self, key: str, entry: Entry) -> None:
        """Write to the primary (while available) and to the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                self.primary.set(key, entry)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark(key, None)
            else:
                self._clear(key)
        else:
            self._mark(key, None)
        self.fallback.set(key, entry)

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Write a batch to the primary (while available) and to the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                self.primary.set_many(entries)
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
        self.fallback.set_many(entries)

    def delete(self, key: str) -> bool:
        """Delete from both; return whether either held the key."""
        if self._closed:
            self._check_open()
        removed = False
        if self._primary_up():
            try:
                removed = self.primary.delete(key)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark(key, self._now())
            else:
                self._clear(key)
        else:
            self._mark(key, self._now())
        return self.fallback.delete(key) or removed

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease from the primary while available, else from the fallback."""
        self._check_open()
        primary = self.primary
        if self._primary_up() and isinstance(primary, Leases):
            try:
                token = primary.acquire_lease(key, ttl)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                return None if token is None else _FROM_PRIMARY + token
        fallback = self.fallback
        if not isinstance(fallback, Leases):
            raise TypeError(f"{type(fallback).__name__} does not support leases")
        token = fallback.acquire_lease(key, ttl)
        return None if token is None else _FROM_FALLBACK + token

    def release_lease(self, key: str, token: str) -> None:
        """Release a lease on the tier that granted it; a lost one expires by itself."""
        tier, raw = self._split_token(token)
        storage = self.primary if tier == _FROM_PRIMARY else self.fallback
        if not tier or not isinstance(storage, Leases):
            return
        try:
            storage.release_lease(key, raw)
        except StorageUnavailableError as exc:
            self._primary_failed(exc)

    def with_serializer(self, serializer: Serializer) -> FallbackStorage:
        """The same tiers with ``serializer`` for those that take one."""
        return FallbackStorage(
            with_serializer(self.primary, serializer),
            with_serializer(self.fallback, serializer),
            clock=self._clock,
            max_dirty=self._max_dirty,
        )

    def as_async(self) -> AsyncFallbackStorage:
        """The asyncio twin over each tier's asyncio view."""
        return AsyncFallbackStorage(
            as_async(self.primary),
            as_async(self.fallback),
            clock=self._clock,
            max_dirty=self._max_dirty,
        )

    def close(self) -> None:
        """Close both tiers. Idempotent; later calls raise ``StorageUnavailableError``."""
        if self._closed:
            return
        self._closed = True
        try:
            self.primary.close()
        finally:
            self.fallback.close()


class AsyncFallbackStorage(_FallbackBase, AsyncStorageMixin):
    """The asyncio twin of :class:`FallbackStorage`, over two asyncio storages.

    Example::

        safe = AsyncFallbackStorage(
            AsyncRedisStorage.from_url("redis://127.0.0.1:6379/0"),
            MemoryStorage(max_entries=50_000).as_async(),
        )

    Arguments and rules are those of :class:`FallbackStorage`. Use from one event loop.
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
    ) -> None:
        self._setup(primary, fallback, clock, max_dirty)

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
                return entry
        self._served_fallback += 1
        return await self.fallback.get(key)

    async def _reconcile(self, key: str, mark: float | None, entry: Entry | None) -> Entry | None:
        served, action = reconcile(mark, entry, await self.fallback.get(key))
        try:
            if action is _Action.WRITE:
                assert served is not None  # noqa: S101 - WRITE always carries the entry
                await self.primary.set(key, served)
            elif action is _Action.DELETE:
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
                return entries
        self._served_fallback += len(keys)
        return await self.fallback.get_many(keys)

    async def set(self, key: str, entry: Entry) -> None:
        """Write to the primary (while available) and to the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                await self.primary.set(key, entry)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark(key, None)
            else:
                self._clear(key)
        else:
            self._mark(key, None)
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
        removed_fallback: bool = await self.fallback.delete(key)
        return removed_fallback or removed

    async def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease from the primary while available, else from the fallback."""
        self._check_open()
        primary = self.primary
        if self._primary_up() and has_async_leases(primary):
            try:
                token = await primary.acquire_lease(key, ttl)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                return None if token is None else _FROM_PRIMARY + token
        fallback = self.fallback
        if not has_async_leases(fallback):
            raise TypeError(f"{type(fallback).__name__} does not support leases")
        token = await fallback.acquire_lease(key, ttl)
        return None if token is None else _FROM_FALLBACK + token

    async def release_lease(self, key: str, token: str) -> None:
        """Release a lease on the tier that granted it; a lost one expires by itself."""
        tier, raw = self._split_token(token)
        storage = self.primary if tier == _FROM_PRIMARY else self.fallback
        if not tier or not has_async_leases(storage):
            return
        try:
            await storage.release_lease(key, raw)
        except StorageUnavailableError as exc:
            self._primary_failed(exc)

    def with_serializer(self, serializer: Serializer) -> AsyncFallbackStorage:
        """The same tiers with ``serializer`` for those that take one."""
        return AsyncFallbackStorage(
            with_serializer(self.primary, serializer),
            with_serializer(self.fallback, serializer),
            clock=self._clock,
            max_dirty=self._max_dirty,
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
