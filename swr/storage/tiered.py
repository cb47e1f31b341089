"""TieredStorage and AsyncTieredStorage: a small local L1 in front of a shared L2.

How it works: a read tries L1 (memory, this process) and then L2 (Redis, every host);
an L2 hit is copied into L1 as the very same :class:`~storage.base.Entry`, so the copy
keeps L2's ``fresh_until``, ``stale_until`` and ``expires_at`` and can never outlive the
L2 entry's windows. Writes and deletes go to L2 and then to L1 (L1 is written even when
L2 fails, so this process keeps the value). Leases come from L2, the tier every host
shares (from L1 when L2 has none).

An L1 copy is not told when another host replaces or deletes the L2 entry: it serves
its own windows until they end. Keep L1 small or its windows short when other hosts
write the same keys. Every decision lives in :class:`_TieredBase`; the two classes only
perform the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from swr.storage._views import add_tier_stats, as_async, has_async_leases, with_serializer
from swr.storage.adapters import AsyncAdapter
from swr.storage.base import AsyncStorageMixin, Entry, Leases, StorageMixin
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage.base import AsyncStorage, Storage
    from swr.storage.serializers import Serializer

__all__ = ["AsyncTieredStorage", "TieredStorage"]


class _TieredBase:
    """Counters and the routing decisions shared by both tiered storages."""

    def _setup(self, l1: Any, l2: Any) -> None:
        if l1 is l2:
            raise ValueError("l1 and l2 must be two different storages")
        self.l1 = l1
        self.l2 = l2
        self._closed = False
        self._l1_hits = 0
        self._l2_hits = 0
        self._misses = 0

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailableError(f"{type(self).__name__} is closed")

    @staticmethod
    def _missing(entries: Sequence[Entry | None]) -> list[int]:
        """Indexes of the L1 batch answers that must be asked of L2."""
        return [i for i, entry in enumerate(entries) if entry is None]

    def _merge(
        self,
        keys: Sequence[str],
        entries: list[Entry | None],
        missing: list[int],
        found: Sequence[Entry | None],
    ) -> dict[str, Entry]:
        """Fill L2's answers into ``entries``; return the hits to copy into L1."""
        copies: dict[str, Entry] = {}
        for i, entry in zip(missing, found, strict=True):
            entries[i] = entry
            if entry is not None:
                copies[keys[i]] = entry
        self._l1_hits += len(keys) - len(missing)
        self._l2_hits += len(copies)
        self._misses += len(missing) - len(copies)
        return copies

    def stats(self) -> dict[str, int]:
        """``l1_hits``, ``l2_hits`` and ``misses`` of reads, then each tier's own counters
        (prefixed ``l1_`` and ``l2_``). Counts are approximate under heavy threading.
        """  # noqa: D205 - the list of counters is the summary
        stats = {"l1_hits": self._l1_hits, "l2_hits": self._l2_hits, "misses": self._misses}
        return add_tier_stats(stats, {"l1": self.l1, "l2": self.l2})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1!r}, l2={self.l2!r})"


class TieredStorage(_TieredBase, StorageMixin):
    """L1 (this process) in front of L2 (shared): reads L1 then L2, writes both.

    Example::

        redis_store = RedisStorage.from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
        fast = TieredStorage(l1=MemoryStorage(max_entries=10_000), l2=redis_store)
        engine = StaleEngine(fast, ttl=CacheTTL(fresh=30, stale=300))

    Args:
        l1: The near tier, usually a :class:`~storage.memory.MemoryStorage` (give it the
            engine's clock).
        l2: The shared tier, usually a :class:`~storage.redis.RedisStorage`.

    Raises:
        ValueError: ``l1 is l2``.

    Errors of either tier propagate (the engine reads them as misses). Thread-safe if
    both tiers are. ``close()`` closes both tiers.
    """

    l1: Storage
    l2: Storage

    def __init__(self, l1: Storage, l2: Storage) -> None:
        self._setup(l1, l2)
        self._l1_get: Callable[[str], Entry | None] = l1.get
        self._l2_get: Callable[[str], Entry | None] = l2.get

    def get(self, key: str) -> Entry | None:
        """Return L1's entry, else L2's (copied into L1), else ``None``."""
        if self._closed:
            self._check_open()
        entry = self._l1_get(key)
        if entry is not None:
            self._l1_hits += 1
            return entry
        entry = self._l2_get(key)
        if entry is None:
            self._misses += 1
            return None
        self._l2_hits += 1
        self.l1.set(key, entry)
        return entry

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """One batch from L1, one batch from L2 for what L1 lacked; L2 hits go to L1."""
        self._check_open()
        entries: list[Entry | None] = self.l1.get_many(keys)
        missing = self._missing(entries)
        if missing:
            found = self.l2.get_many([keys[i] for i in missing])
            copies = self._merge(keys, entries, missing, found)
            if copies:
                self.l1.set_many(copies)
        else:
            self._merge(keys, entries, missing, ())
        return entries

    def set(self, key: str, entry: Entry) -> None:
        """Write L2, then L1 (L1 even when L2 fails; L2's error propagates)."""
        self._check_open()
        try:
            self.l2.set(key, entry)
        finally:
            self.l1.set(key, entry)

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Write a batch to L2, then to L1."""
        self._check_open()
        try:
            self.l2.set_many(entries)
        finally:
            self.l1.set_many(entries)

    def delete(self, key: str) -> bool:
        """Delete from L2, then L1; return whether either held the key."""
        self._check_open()
        removed_l2 = False
        try:
            removed_l2 = self.l2.delete(key)
        finally:
            removed_l1 = self.l1.delete(key)
        return removed_l2 or removed_l1

    def _leases(self) -> Leases:
        for tier in (self.l2, self.l1):
            if isinstance(tier, Leases):
                return tier
        raise TypeError(f"neither {self.l2!r} nor {self.l1!r} supports leases")

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease from L2 (shared by every host)."""
        self._check_open()
        return self._leases().acquire_lease(key, ttl)

    def release_lease(self, key: str, token: str) -> None:
        """Release a lease taken with :meth:`acquire_lease`."""
        self._leases().release_lease(key, token)

    def with_serializer(self, serializer: Serializer) -> TieredStorage:
        """The same tiers, with ``serializer`` for those that take one (L2)."""
        return TieredStorage(
            with_serializer(self.l1, serializer), with_serializer(self.l2, serializer)
        )

    def as_async(self) -> AsyncTieredStorage:
        """The asyncio twin over each tier's asyncio view."""
        return AsyncTieredStorage(as_async(self.l1), as_async(self.l2))

    def close(self) -> None:
        """Close both tiers. Idempotent; later calls raise ``StorageUnavailableError``."""
        if self._closed:
            return
        self._closed = True
        try:
            self.l2.close()
        finally:
            self.l1.close()


class AsyncTieredStorage(_TieredBase, AsyncStorageMixin):
    """The asyncio twin of :class:`TieredStorage`, over two asyncio storages.

    Example::

        fast = AsyncTieredStorage(
            MemoryStorage(max_entries=10_000).as_async(),
            AsyncRedisStorage.from_url("redis://127.0.0.1:6379/0"),
        )

    An inline :class:`~storage.AsyncAdapter` L1 (memory) is read without an await.
    Arguments and rules are those of :class:`TieredStorage`. Use from one event loop.
    """

    l1: AsyncStorage
    l2: AsyncStorage

    def __init__(self, l1: AsyncStorage, l2: AsyncStorage) -> None:
        self._setup(l1, l2)
        # A memory L1 never blocks: read it directly, saving a coroutine per hit.
        self._l1_inline: Callable[[str], Entry | None] | None = None
        if isinstance(l1, AsyncAdapter) and l1.inline:
            self._l1_inline = l1.sync.get

    async def get(self, key: str) -> Entry | None:
        """Return L1's entry, else L2's (copied into L1), else ``None``."""
        if self._closed:
            self._check_open()
        inline = self._l1_inline
        entry = inline(key) if inline is not None else await self.l1.get(key)
        if entry is not None:
            self._l1_hits += 1
            return entry
        entry = await self.l2.get(key)
        if entry is None:
            self._misses += 1
            return None
        self._l2_hits += 1
        await self.l1.set(key, entry)
        return entry

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """One batch from L1, one from L2 for what L1 lacked; L2 hits go to L1."""
        self._check_open()
        entries: list[Entry | None] = await self.l1.get_many(keys)
        missing = self._missing(entries)
        if missing:
            found = await self.l2.get_many([keys[i] for i in missing])
            copies = self._merge(keys, entries, missing, found)
            if copies:
                await self.l1.set_many(copies)
        else:
            self._merge(keys, entries, missing, ())
        return entries

    async def set(self, key: str, entry: Entry) -> None:
        """Write L2, then L1 (L1 even when L2 fails; L2's error propagates)."""
        self._check_open()
        try:
            await self.l2.set(key, entry)
        finally:
            await self.l1.set(key, entry)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Write a batch to L2, then to L1."""
        self._check_open()
        try:
            await self.l2.set_many(entries)
        finally:
            await self.l1.set_many(entries)

    async def delete(self, key: str) -> bool:
        """Delete from L2, then L1; return whether either held the key."""
        self._check_open()
        removed_l2 = False
        try:
            removed_l2 = await self.l2.delete(key)
        finally:
            removed_l1 = await self.l1.delete(key)
        return removed_l2 or removed_l1

    def _leases(self) -> Any:
        for tier in (self.l2, self.l1):
            if has_async_leases(tier):
                return tier
        raise TypeError(f"neither {self.l2!r} nor {self.l1!r} supports leases")

    async def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease from L2 (shared by every host)."""
        self._check_open()
        token: str | None = await self._leases().acquire_lease(key, ttl)
        return token

    async def release_lease(self, key: str, token: str) -> None:
        """Release a lease taken with :meth:`acquire_lease`."""
        await self._leases().release_lease(key, token)

    def with_serializer(self, serializer: Serializer) -> AsyncTieredStorage:
        """The same tiers, with ``serializer`` for those that take one (L2)."""
        return AsyncTieredStorage(
            with_serializer(self.l1, serializer), with_serializer(self.l2, serializer)
        )

    async def aclose(self) -> None:
        """Close both tiers. Idempotent; later calls raise ``StorageUnavailableError``."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.l2.aclose()
        finally:
            await self.l1.aclose()
