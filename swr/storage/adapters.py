"""AsyncAdapter: a synchronous storage seen through the asyncio protocol."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeGuard

from swr.storage.base import (
    AsyncBulkVerbs,
    AsyncLeases,
    AsyncStorage,
    AsyncStorageMixin,
    AsyncTagIndex,
    AsyncView,
    AtomicOps,
    BulkVerbs,
    Entry,
    EntryTimes,
    Leaderboards,
    Leases,
    SetAndRelease,
    Stats,
    Storage,
    TagIndex,
)

__all__ = [
    "AsyncAdapter",
    "as_async",
    "async_bulk_verbs_of",
    "async_tag_index_of",
    "bulk_verbs_of",
    "has_async_leases",
    "is_async",
    "tag_index_of",
]


class AsyncAdapter(AsyncStorageMixin):
    """Presents a sync :class:`~storage.base.Storage` as an :class:`~storage.base.AsyncStorage`.

    With ``inline=True`` every call runs directly on the event loop: right for storages
    whose calls never block (memory) or block for microseconds (LMDB reads). With
    ``inline=False`` writes, deletes and batch calls run in a worker thread
    (``asyncio.to_thread``) and reads stay inline.

    Args:
        storage: The synchronous storage to wrap.
        inline: Whether writes run on the event loop too.
    """

    __slots__ = ("inline", "sync")

    def __init__(self, storage: Storage, *, inline: bool = True) -> None:
        self.sync = storage
        self.inline = inline

    async def get(self, key: str) -> Entry | None:
        """Read inline."""
        return self.sync.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Read inline."""
        return self.sync.get_many(keys)

    async def set(self, key: str, entry: Entry) -> None:
        """Write inline or in a worker thread."""
        if self.inline:
            self.sync.set(key, entry)
        else:
            await asyncio.to_thread(self.sync.set, key, entry)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Write inline or in a worker thread."""
        if self.inline:
            self.sync.set_many(entries)
        else:
            await asyncio.to_thread(self.sync.set_many, entries)

    async def delete(self, key: str) -> bool:
        """Delete inline or in a worker thread."""
        if self.inline:
            return self.sync.delete(key)
        return await asyncio.to_thread(self.sync.delete, key)

    async def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take a lease through the wrapped storage (which must support leases)."""
        storage = self.sync
        if not isinstance(storage, Leases):
            raise TypeError(f"{type(storage).__name__} does not support leases")
        if self.inline:
            return storage.acquire_lease(key, ttl)
        return await asyncio.to_thread(storage.acquire_lease, key, ttl)

    async def release_lease(self, key: str, token: str) -> None:
        """Release a lease through the wrapped storage."""
        storage = self.sync
        if not isinstance(storage, Leases):
            raise TypeError(f"{type(storage).__name__} does not support leases")
        if self.inline:
            storage.release_lease(key, token)
        else:
            await asyncio.to_thread(storage.release_lease, key, token)

    async def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store and release a lease in one step through the wrapped storage.

        Raises:
            TypeError: the wrapped storage does not offer ``set_and_release``.
        """
        storage = self.sync
        if not isinstance(storage, SetAndRelease):
            raise TypeError(f"{type(storage).__name__} does not offer set_and_release")
        if self.inline:
            storage.set_and_release(key, entry, token)
        else:
            await asyncio.to_thread(storage.set_and_release, key, entry, token)

    async def _atomic(self, name: str, *args: Any) -> Any:
        """Call the wrapped storage's atomic operation ``name``."""
        return await self._call(AtomicOps, name, *args)

    async def _call(self, capability: type, name: str, *args: Any) -> Any:
        """Call the wrapped storage's ``name`` (a verb of ``capability``), inline or not."""
        storage = self.sync
        if not isinstance(storage, capability):
            raise TypeError(f"{type(storage).__name__} does not offer {name}")
        method: Callable[..., Any] = getattr(storage, name)
        if self.inline:
            return method(*args)
        return await asyncio.to_thread(method, *args)

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """The wrapped storage's ``incr`` (see :class:`~swr.storage.base.AtomicOps`)."""
        result: int = await self._atomic("incr", key, delta, ttl)
        return result

    async def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """The wrapped storage's ``decr``."""
        result: int = await self._atomic("decr", key, delta, ttl)
        return result

    async def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """The wrapped storage's ``add``."""
        result: bool = await self._atomic("add", key, value, ttl)
        return result

    async def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """The wrapped storage's ``get_versioned`` (a read: always inline)."""
        storage = self.sync
        if not isinstance(storage, AtomicOps):
            raise TypeError(f"{type(storage).__name__} does not offer atomic operations")
        return storage.get_versioned(key)

    async def replace_if(
        self, key: str, version: Any, value: Any, ttl: float | None = None
    ) -> bool:
        """The wrapped storage's ``replace_if``."""
        result: bool = await self._atomic("replace_if", key, version, value, ttl)
        return result

    async def append(self, key: str, data: bytes | str, ttl: float | None = None) -> int:
        """The wrapped storage's ``append``."""
        result: int = await self._atomic("append", key, data, ttl)
        return result

    def leaderboard(self, name: str, *, max_size: int | None = None) -> Any:
        """The wrapped storage's leaderboard ``name``, seen through asyncio (inline).

        Raises:
            TypeError: the wrapped storage has no leaderboards.
        """
        from swr.storage.leaderboard import AsyncMemoryLeaderboard  # noqa: PLC0415 - cycle

        storage = self.sync
        if not isinstance(storage, Leaderboards):
            raise TypeError(f"{type(storage).__name__} has no leaderboards")
        return AsyncMemoryLeaderboard(storage.leaderboard(name, max_size=max_size))

    @property
    def supports_atomic_ops(self) -> bool:
        """Whether the wrapped storage offers atomic operations."""
        return isinstance(self.sync, AtomicOps)

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Delete several keys through the wrapped storage (``BulkVerbs``)."""
        removed: int = await self._call(BulkVerbs, "delete_many", keys)
        return removed

    async def exists(self, key: str) -> bool:
        """Whether a live entry is under ``key``, read inline (``BulkVerbs``)."""
        storage = self.sync
        if not isinstance(storage, BulkVerbs):
            raise TypeError(f"{type(storage).__name__} does not offer exists")
        return storage.exists(key)

    async def touch(self, key: str, times: EntryTimes) -> bool:
        """Renew an entry's windows through the wrapped storage (``BulkVerbs``)."""
        found: bool = await self._call(BulkVerbs, "touch", key, times)
        return found

    async def scan(self, prefix: str = "") -> AsyncIterator[str]:
        """The keys starting with ``prefix``, listed by the wrapped storage (``BulkVerbs``)."""
        storage = self.sync
        if not isinstance(storage, BulkVerbs):
            raise TypeError(f"{type(storage).__name__} does not offer scan")
        keys = storage.scan(prefix)
        if not self.inline:
            keys = iter(await asyncio.to_thread(list, keys))
        for key in keys:
            yield key

    async def clear(self) -> None:
        """Remove every entry of the wrapped storage (``BulkVerbs``)."""
        await self._call(BulkVerbs, "clear")

    async def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Store a tagged entry through the wrapped storage (``TagIndex``)."""
        await self._call(TagIndex, "set_tagged", key, entry, tags)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove the entries under ``tags`` through the wrapped storage (``TagIndex``)."""
        removed: int = await self._call(TagIndex, "invalidate_tags", tags)
        return removed

    @property
    def supports_leases(self) -> bool:
        """Whether the wrapped storage offers leases."""
        return isinstance(self.sync, Leases)

    @property
    def supports_set_and_release(self) -> bool:
        """Whether the wrapped storage offers ``set_and_release``."""
        return isinstance(self.sync, SetAndRelease)

    async def aclose(self) -> None:
        """Close the wrapped storage."""
        self.sync.close()

    def close(self) -> None:
        """Close the wrapped storage (sync spelling)."""
        self.sync.close()

    def stats(self) -> dict[str, Any]:
        """The wrapped storage's counters, if it keeps any."""
        return dict(self.sync.stats()) if isinstance(self.sync, Stats) else {}

    def __repr__(self) -> str:
        return f"AsyncAdapter({self.sync!r}, inline={self.inline})"


def as_async(storage: Any) -> Any:
    """The asyncio view of ``storage``.

    An asyncio storage is returned as it is; a sync storage gives its ``as_async()``
    view when it has one (Redis twins, LMDB), else an inline :class:`AsyncAdapter`.
    """
    if is_async(storage):
        return storage
    return storage.as_async() if isinstance(storage, AsyncView) else AsyncAdapter(storage)


def is_async(storage: Storage | AsyncStorage) -> bool:
    """Whether ``storage`` speaks the asyncio protocol (its ``get`` is a coroutine function)."""
    return inspect.iscoroutinefunction(storage.get)


def has_async_leases(storage: Any) -> TypeGuard[AsyncLeases]:
    """Whether an asyncio storage (or adapter) offers leases."""
    if isinstance(storage, AsyncAdapter):
        return storage.supports_leases
    return isinstance(storage, AsyncLeases)


def async_bulk_verbs_of(storage: Any) -> AsyncBulkVerbs | None:
    """An asyncio storage (or adapter) as :class:`AsyncBulkVerbs`, or ``None`` without them."""
    if isinstance(storage, AsyncAdapter):
        return storage if isinstance(storage.sync, BulkVerbs) else None
    return storage if isinstance(storage, AsyncBulkVerbs) else None


def async_tag_index_of(storage: Any) -> AsyncTagIndex | None:
    """An asyncio storage (or adapter) as :class:`AsyncTagIndex`, or ``None`` without one."""
    if isinstance(storage, AsyncAdapter):
        return storage if isinstance(storage.sync, TagIndex) else None
    return storage if isinstance(storage, AsyncTagIndex) else None


def bulk_verbs_of(storage: Any) -> BulkVerbs | None:
    """A sync storage as :class:`BulkVerbs`, or ``None`` without them."""
    return storage if isinstance(storage, BulkVerbs) else None


def tag_index_of(storage: Any) -> TagIndex | None:
    """A sync storage as :class:`TagIndex`, or ``None`` without one."""
    return storage if isinstance(storage, TagIndex) else None
