"""AsyncTieredStorage: a small local L1 in front of a shared L2, over asyncio storages.

Written once: the thread twin in ``swr/storage/_sync/`` is generated from this file by
``tools/unasync.py``. The decisions live in :mod:`swr.storage._tiered`; this class only
performs the I/O.
"""

from __future__ import annotations

import asyncio  # unasync: remove
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from swr.storage._async._tiers import (
    AsyncAtomicForwarding,
    async_clear,
    async_delete_keys,
    async_invalidate,
)
from swr.storage._primitives import async_has_leases, async_inline_get
from swr.storage._tiered import (
    _TieredBase,  # unasync: sync=SyncTwin, _TieredBase,
    invalidation_notice,
    read_notice,  # unasync: sync=read_notice, start_thread,
)
from swr.storage._views import with_serializer
from swr.storage.base import AsyncAtomicOps, AsyncStorageMixin, CounterEntry, Entry, EntryTimes
from swr.storage.errors import StorageError

if TYPE_CHECKING:
    from swr.storage.base import AsyncStorage
    from swr.storage.serializers import Serializer

__all__ = ["AsyncTieredStorage"]


class AsyncTieredStorage(
    _TieredBase,
    AsyncAtomicForwarding,
    AsyncStorageMixin,  # unasync: sync=SyncTwin, StorageMixin,
):
    """L1 (this process) in front of L2 (shared): reads L1 then L2, writes both.

    Example::

        redis_store = AsyncRedisStorage.from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
        fast = AsyncTieredStorage(MemoryStorage(max_entries=10_000).as_async(), redis_store)
        engine = AsyncStaleEngine(fast, ttl=CacheTTL(fresh=30, stale=300))

    Args:
        l1: The near tier, usually a :class:`~storage.memory.MemoryStorage` (give it the
            engine's clock).
        l2: The shared tier, usually a :class:`~storage.redis.RedisStorage`.

        channel: A Redis pub/sub channel on which this storage announces the keys it
            deletes, touches or invalidates (and clears), and listens for those of every
            other tiered storage on the same channel: their L1 copies go at once (see
            ``docs/redis.md``, "Invalidation across hosts"). ``None`` (default): L1
            copies live out their own windows. Needs a standalone Redis as L2.

    Raises:
        ValueError: ``l1 is l2``.
        TypeError: ``channel`` over an L2 that is not a standalone Redis storage.

    Errors of either tier propagate (the engine reads them as misses). ``aclose()``
    closes both tiers. The thread twin is thread-safe if both tiers are; the asyncio
    one is used from one event loop, and reads a memory L1 behind an inline adapter
    without an await.
    """

    l1: AsyncStorage
    l2: AsyncStorage

    def __init__(self, l1: AsyncStorage, l2: AsyncStorage, *, channel: str | None = None) -> None:
        self._setup(l1, l2, channel)
        # A memory L1 never blocks: read it directly, saving a coroutine per hit.
        self._l1_inline: Callable[[str], Entry | None] | None = async_inline_get(l1)

    async def get(self, key: str) -> Entry | None:
        """Return L1's entry, else L2's (copied into L1), else ``None``."""
        if self._closed:
            self._check_open()
        if self._listen_due:
            self._start_listening()
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
        if type(entry) is not CounterEntry:  # its death only L2 knows
            await self.l1.set(key, entry)
        return entry

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """One batch from L1, one from L2 for what L1 lacked; L2 hits go to L1."""
        self._check_open()
        if self._listen_due:
            self._start_listening()
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
        await self._announce([key])
        return removed_l2 or removed_l1

    # -- bulk verbs and tags: L2 holds the truth, L1 drops what L2 lost ----------------

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` from L2 (one batch), then L1; return how many L2 held.

        Raises:
            TypeError: L2 lacks the bulk verbs and cannot delete (never for Redis).
        """
        self._check_open()
        try:
            removed = await async_delete_keys(self.l2, keys)
        finally:
            await async_delete_keys(self.l1, keys)
        await self._announce(list(keys))
        return removed

    async def exists(self, key: str) -> bool:
        """Whether L1 or L2 holds a live entry under ``key`` (L2 without decoding it)."""
        self._check_open()
        if await self.l1.get(key) is not None:
            return True
        return bool(await self.l2.exists(key))  # type: ignore[attr-defined]

    async def touch(self, key: str, times: EntryTimes) -> bool:
        """Renew the entry in L2 without rewriting its payload; drop L1's copy.

        L1's copy goes rather than being renewed: the next read copies L2's entry, with
        its new instants, back into L1.
        """
        self._check_open()
        try:
            touched: bool = await self.l2.touch(key, times)  # type: ignore[attr-defined]
        finally:
            await self.l1.delete(key)
        await self._announce([key])
        return touched

    def scan(self, prefix: str = "") -> AsyncIterator[str]:
        """The keys of L2's entries starting with ``prefix`` (L1 holds a subset)."""
        self._check_open()
        l2: Any = self.l2
        keys: AsyncIterator[str] = l2.scan(prefix)
        return keys

    async def clear(self) -> None:
        """Clear L2, then L1."""
        self._check_open()
        try:
            await async_clear(self.l2)
        finally:
            await async_clear(self.l1)
        await self._announce(None)

    async def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Record ``entry`` under ``tags`` in L2 (shared); store it in L1 as :meth:`set` does."""
        self._check_open()
        try:
            await self.l2.set_tagged(key, entry, tags)  # type: ignore[attr-defined]
        finally:
            await self.l1.set(key, entry)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove the entries of ``tags`` from L2; drop them from L1 (all of L1 if unknown).

        A Redis L2 says which keys it removed, and only those leave L1; another L2 only
        counts, and L1 is then cleared (a few misses, never a stale hit).
        """
        self._check_open()
        removed, keys = await async_invalidate(self.l2, tags)
        if keys is None:
            await async_clear(self.l1)
        else:
            await async_delete_keys(self.l1, keys)
        await self._announce(keys)
        return removed

    # -- invalidation across hosts: Redis pub/sub ----------------------------------------

    async def _announce(self, keys: list[str] | None) -> None:
        """Publish the keys this storage removed from L2 (``None``: all) on the channel."""
        channel = self._channel
        if channel is None or keys == []:
            return
        l2: Any = self.l2
        await l2.publish(channel, invalidation_notice(self._origin, keys))

    def _start_listening(self) -> None:
        with self._listen_lock:
            if not self._listen_due:
                return
            self._listen_due = False
            loop = asyncio.get_running_loop()  # unasync: remove
            run = loop.create_task(self._listen())  # unasync: sync=run = start_thread(self._listen)
            self._listener = run

    async def _listen(self) -> None:
        """Drop from L1 what other hosts announce; clear L1 whenever the feed was lost.

        Whatever was published while this storage was not subscribed is unknown: L1 is
        cleared after each (re)subscription and at each failure, so an announcement is
        either applied or covered by a clear.
        """
        l2: Any = self.l2
        delay = 0.05
        while not self._stop_listening:
            pubsub = l2.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                await pubsub.get_message(timeout=1.0)  # the subscription's confirmation
                # redis-py reconnects and subscribes again on its own: hear of it, since
                # what was published meanwhile is lost.
                pubsub.connection.register_connect_callback(self._feed_renewed)
                await async_clear(self.l1)
                self._subscribed = True
                delay = 0.05
                while not self._stop_listening:
                    message = await pubsub.get_message(timeout=0.2)
                    if self._renewed:
                        self._renewed = False
                        await async_clear(self.l1)
                    if message is not None and message.get("type") == "message":
                        await self._apply(message["data"])
            except (*l2._driver_errors, StorageError) as exc:
                self._feed_lost(exc)
                await async_clear(self.l1)
                await asyncio.sleep(delay)  # unasync: sync=self._stopped.wait(delay)
                delay = min(delay * 2, 2.0)
            finally:
                self._subscribed = False
                await pubsub.aclose()

    async def _apply(self, data: bytes) -> None:
        keys = read_notice(self._origin, data)
        if keys is None:
            await async_clear(self.l1)
        elif keys:
            await async_delete_keys(self.l1, keys)
            self._dropped += len(keys)

    def _leases(self) -> Any:
        for tier in (self.l2, self.l1):
            if async_has_leases(tier):
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

    async def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store ``entry`` as :meth:`set` does and release the lease ``token``.

        When L2 granted the lease and stores and releases together (Redis: one round
        trip), that is one call to L2; L1 is written as by :meth:`set`.
        """
        self._check_open()
        if not self._l2_store_release or self._leases() is not self.l2:
            await self.set(key, entry)
            await self.release_lease(key, token)
            return
        l2: Any = self.l2
        try:
            await l2.set_and_release(key, entry, token)
        finally:
            await self.l1.set(key, entry)

    def _atomic_ops(self) -> Any:
        l2 = self.l2
        if not isinstance(l2, AsyncAtomicOps):
            raise TypeError(f"L2 {l2!r} has no atomic operations")
        return l2

    async def _atomic(self, name: str, key: str, *args: Any) -> Any:
        """Run the atomic operation ``name`` on L2 (the shared tier), then drop L1's copy.

        L2 is where every process or host meets, so that is where the operation is
        atomic; L1's copy would be stale, so it goes (the next read copies L2's back).
        """
        result = await getattr(self._atomic_ops(), name)(key, *args)
        await self.l1.delete(key)
        return result

    # -- atomic operations (AtomicOps) ----------------------------------------------------

    async def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """``get_versioned`` on L2."""
        result: tuple[Entry, Any] | None = await self._atomic_ops().get_versioned(key)
        return result

    def with_serializer(self, serializer: Serializer) -> AsyncTieredStorage:
        """The same tiers, with ``serializer`` for those that take one (L2)."""
        return AsyncTieredStorage(
            with_serializer(self.l1, serializer),
            with_serializer(self.l2, serializer),
            channel=self._channel,
        )

    async def aclose(self) -> None:
        """Close both tiers. Idempotent; later calls raise ``StorageUnavailableError``."""
        if self._closed:
            return
        self._closed = True
        listener = self._listener
        if listener is not None:
            self._stop_listening = True
            self._stopped.set()
            await listener  # unasync: sync=listener.join(5)
        try:
            await self.l2.aclose()
        finally:
            await self.l1.aclose()
