"""What the wrapper storages (tiered, fallback) share.

The bulk verbs of a tier, with or without them, and the atomic operations a wrapper
forwards to the storage that makes them atomic.

Written once: the thread twin in ``swr/storage/_sync/`` is generated from this file by
``tools/unasync.py``. A tier that declares the verbs (:class:`~swr.storage.base.BulkVerbs`)
does the work in one call; one that does not is served by loops over its core verbs, so
a wrapper's verbs work over any tier that can.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swr.storage.base import AsyncBulkVerbs, Entry, EntryTimes

__all__ = [
    "AsyncAtomicForwarding",
    "async_clear",
    "async_delete_keys",
    "async_invalidate",
    "async_touch",
]


class AsyncAtomicForwarding:
    """The writing atomic operations of a wrapper, each sent through ``_atomic``.

    A wrapper says in its ``_atomic(name, key, *args)`` where the operation ``name``
    runs (the shared tier, the primary, the wrapped storage) and what happens around it
    (dropping a local copy); ``get_versioned``, a read, is the wrapper's own. See
    :class:`~swr.storage.base.AtomicOps` for the semantics of each operation.
    """

    __slots__ = ()

    async def _atomic(self, name: str, key: str, *args: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - every wrapper has its own

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """``incr`` where this wrapper runs its atomic operations."""
        result: int = await self._atomic("incr", key, delta, ttl)
        return result

    async def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """``decr`` where this wrapper runs its atomic operations."""
        result: int = await self._atomic("decr", key, delta, ttl)
        return result

    async def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """``add`` where this wrapper runs its atomic operations."""
        result: bool = await self._atomic("add", key, value, ttl)
        return result

    async def replace_if(
        self, key: str, version: Any, value: Any, ttl: float | None = None
    ) -> bool:
        """``replace_if`` where this wrapper runs its atomic operations."""
        result: bool = await self._atomic("replace_if", key, version, value, ttl)
        return result

    async def append(self, key: str, data: bytes | str, ttl: float | None = None) -> int:
        """``append`` where this wrapper runs its atomic operations."""
        result: int = await self._atomic("append", key, data, ttl)
        return result


async def async_delete_keys(storage: Any, keys: Sequence[str]) -> int:
    """Delete ``keys`` from ``storage``; return how many it held."""
    if isinstance(storage, AsyncBulkVerbs):
        return await storage.delete_many(keys)
    removed = 0
    for key in dict.fromkeys(keys):
        removed += bool(await storage.delete(key))
    return removed


async def async_touch(storage: Any, key: str, times: EntryTimes) -> bool:
    """Give the live entry under ``key`` new instants (a rewrite if the tier cannot touch)."""
    if isinstance(storage, AsyncBulkVerbs):
        return await storage.touch(key, times)
    entry = await storage.get(key)
    if entry is None:
        return False
    await storage.set(key, Entry(entry.value, *times))
    return True


async def async_clear(storage: Any) -> None:
    """Remove every entry of ``storage``.

    Raises:
        TypeError: the storage can neither ``clear()`` nor be cleared through the
            synchronous storage it adapts.
    """
    if isinstance(storage, AsyncBulkVerbs):
        await storage.clear()
        return
    inner = getattr(storage, "sync", None)  # unasync: sync=inner = storage
    clear = getattr(inner, "clear", None)
    if clear is None:
        raise TypeError(f"{storage!r} has no clear(): it cannot be a tier that is cleared")
    clear()


async def async_invalidate(storage: Any, tags: Sequence[str]) -> tuple[int, list[str] | None]:
    """``invalidate_tags`` on ``storage``: ``(removed, keys removed or None if unknown)``.

    A Redis storage says which keys it took out of the tags' sets, so that a near tier
    (and other hosts' near tiers) can drop exactly those; other storages only count.
    """
    take = getattr(storage, "_invalidate", None)
    if take is not None:
        found: tuple[int, list[str]] = await take(tags)
        return found
    removed: int = await storage.invalidate_tags(tags)
    return removed, None
