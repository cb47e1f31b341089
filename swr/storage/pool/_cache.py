"""PoolCache: one typed cache of a MemoryPool, and a Storage for the engine.

Hits take no lock: a dict lookup and the mark of a read (``set.add``, see the
second-chance order in ``_eviction.py``) are each atomic under the GIL, and hits and
misses are counted with ``itertools.count`` (one atomic C call). Writes,
deletes, evictions and expiry take the pool's one lock (the eviction rules are in
``_eviction.py``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from swr.storage import _tokens
from swr.storage._clock import now
from swr.storage._flight import AsyncFlights, Flights
from swr.storage._leases import LocalLeases
from swr.storage._lock import take
from swr.storage._verbs import check_times, checked_tags, checked_times
from swr.storage.adapters import AsyncAdapter
from swr.storage.base import Closeable, Entry, EntryTimes
from swr.storage.errors import StorageUnavailableError
from swr.storage.pool._atomic import PoolAtomicOps
from swr.storage.pool._eviction import NEVER, EvictingCache, Item
from swr.storage.pool._loading import MISSING, Loading, Missing
from swr.storage.pool._stats import CacheStats
from swr.storage.serializers import _speedup

if TYPE_CHECKING:
    from swr.storage.pool._pool import MemoryPool

__all__ = ["PoolCache"]

K = TypeVar("K")
V = TypeVar("V")

_INF = math.inf
_NEG_INF = -math.inf

_F = TypeVar("_F", bound=Callable[..., Any])


def _hit_in_c(get: _F) -> _F:
    """``get`` with its live hit and its plain miss in C, when built.

    ``swr.storage._speedups.PoolGet`` reads the slots ``get`` reads, in the same order,
    and calls ``get`` itself for every other case; ``SWR_PURE_PYTHON=1`` keeps ``get``.
    """
    pool_get = _speedup("swr.storage._speedups", "PoolGet")
    return get if pool_get is None else cast("_F", pool_get(get, _time.time))


class PoolCache(PoolAtomicOps, Loading[K, V], EvictingCache[K, V], Closeable):
    """One typed cache of a :class:`MemoryPool`; also a :class:`~swr.storage.Storage`.

    Made by :meth:`MemoryPool.register`, never directly. Keys are any hashable, values
    are kept as the objects themselves (shared between callers, never copied).

    Example::

        users = pool.register("users", min=100, max=5_000, ttl=300, priority=10)
        users.set(1, user)
        users.get(1)                      # the same object, or None
        users.get_or_load(2, lambda: db.user(2))

    As a storage for the engine (keys are strings, values :class:`~swr.storage.Entry`),
    an entry also reads as absent after its own ``expires_at``::

        engine = StaleEngine(pool.register("api", max=2_000, priority=1), ttl=...)

    Thread-safe; ``aget_or_load`` and :class:`AsyncBatchLoader` are for one event loop
    at a time.

    Attributes:
        name: The name given at registration (the key in ``pool.stats().caches``).
        min: Entries guaranteed against other caches' writes.
        max: Most entries held; ``None`` when registered without one (then the capacity
            left by the other caches' mins).
        ttl: Seconds an entry lives after it is written, or ``None``.
        priority: Higher keeps its entries longer when the pool is full.
    """

    __slots__ = (
        "__weakref__",
        "_aflights",
        "_atomic_lock",
        "_boards",
        "_clock",
        "_closed",
        "_flights",
        "_held",
        "_hits",
        "_leases",
        "_lock",
        "_lookup",
        "_misses",
        "_now_read",
        "_reads",
        "_tags",
        "_touch",
        "max",
        "name",
        "ttl",
    )

    def __init__(
        self,
        pool: MemoryPool,
        name: str,
        min: int,
        max: int | None,
        ttl: float | None,
        priority: int,
    ) -> None:
        super().__init__(pool, min, priority)
        self.name = name
        self.max = max
        self.ttl = ttl
        self._clock = pool._clock
        self._now_read = _time.time if pool._clock is None else pool._clock
        self._lock = pool._lock
        # Bound C methods: the read path calls them without attribute lookups.
        self._lookup: Callable[[K], Item | None] = self._data.get
        self._touch: Callable[[K], None] = self._marked.add
        self._hits = itertools.count()
        self._misses = itertools.count()
        self._reads = 0  # stats() taken: each advanced both counters once
        self._closed = False
        self._leases = LocalLeases()
        self._held = self._leases.held  # the same dict, for the inline lease steps
        self._tags: dict[str, set[K]] = {}  # tag -> keys recorded under it (set_tagged)
        self._atomic_lock = threading.Lock()  # see PoolAtomicOps
        self._boards = {}
        self._flights: Flights[K, V] = Flights()
        self._aflights: AsyncFlights[K, V] = AsyncFlights()

    # -- reads (no lock) ---------------------------------------------------------------

    def adopt_clock(self, clock: Callable[[], float] | None) -> Callable[[], float] | None:
        """Judge expiry with ``clock`` (an engine's) unless the pool was given a clock.

        Adopted by the whole pool (its sweep and every cache). Returns the pool's
        explicit clock, or ``None``.
        """
        return self._pool._adopt_clock(clock)

    def _now(self) -> float:
        return now(self._clock)

    @_hit_in_c
    def get(self, key: K) -> V | None:
        """Return the value under ``key`` and mark it recently used, or ``None``.

        ``None`` means absent or expired (a value of ``None`` reads the same; use
        ``key in cache`` or :meth:`get_or_load` to tell them apart). Counts a hit or
        a miss.

        Raises:
            StorageUnavailableError: the cache was closed.
        """
        # The bound methods are read into locals first: calling a method held in a slot
        # directly is not specialised by CPython 3.11 and costs ~20 ns more per hit.
        # _hint is read before the lookup. Every item in the cache at that moment expires
        # at _hint or later (NEVER: none has a deadline), and a writer lowers _hint before
        # it publishes an earlier deadline; so while _hint is ahead of now, the item
        # found is live (or was published live during this call) and its own deadline
        # need not be read. Reading it would take a reference to a float object of its
        # own, most likely out of the CPU caches over a large working set.
        hint = self._hint
        lookup = self._lookup
        item = lookup(key)
        if item is not None:
            if hint is not NEVER:
                now_read = self._now_read
                now = now_read()
                if hint <= now and item[1] <= now:
                    self._expired(key, item)
                    return None
            touch = self._touch
            touch(key)  # read: a second chance at its next eviction
            next(self._hits)
            value: V = item[0]
            return value
        # _missed, inline: an engine's miss reads twice (before and under its lease).
        if self._closed:
            raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
        next(self._misses)
        return None

    def _missed(self) -> None:
        # A closed cache holds nothing, so checking here keeps the hit path short.
        if self._closed:
            raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
        next(self._misses)

    def _expired(self, key: K, item: Item) -> None:
        with self._lock:
            if self._data.get(key) is item:
                del self._data[key]
                self._marked.discard(key)
                self._forget(item)
                self._pool._used -= 1
                self._expirations += 1
        self._missed()

    def _find(self, key: K) -> V | Missing:
        """Like :meth:`get` (counting, touching), with ``MISSING`` for a miss."""
        lookup = self._lookup  # locals: see get
        item = lookup(key)
        if item is not None:
            deadline = item[1]
            if deadline is NEVER or deadline > self._now():
                touch = self._touch
                touch(key)
                next(self._hits)
                value: V = item[0]
                return value
            self._expired(key, item)
            return MISSING
        self._missed()
        return MISSING

    def _peek(self, key: K) -> V | Missing:
        """The live value under ``key`` or ``MISSING``; not counted, not touched."""
        item = self._lookup(key)
        if item is None or (item[1] is not NEVER and item[1] <= self._now()):
            return MISSING
        value: V = item[0]
        return value

    def __contains__(self, key: object) -> bool:
        """Whether a live value is held under ``key`` (not counted, not touched)."""
        try:
            return self._peek(key) is not MISSING  # type: ignore[arg-type]
        except TypeError:  # unhashable: certainly not a key
            return False

    def get_many(self, keys: Sequence[K]) -> list[V | None]:
        """Return the values of ``keys`` in order, ``None`` where missing (each counted)."""
        get = self.get
        return [get(key) for key in keys]

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[K]:
        """Return the keys held in queue order, oldest first (a snapshot).

        The front key goes first when the cache loses an entry, unless it was read
        since it was queued: then it moves to the back instead (its second chance).

        Expired entries not dropped yet are included: they still count against the
        capacity until a read, a write needing room or the GC drops them.
        """
        with self._lock:
            return list(self._data)

    # -- writes (under the pool's lock) -----------------------------------------------

    def set(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` as the most recently used, making room if needed.

        A cache whose max is 0 keeps nothing. See the module docstring for which entry
        makes room.

        Raises:
            StorageUnavailableError: the cache was closed.
            TypeError: ``key`` is not hashable.
        """
        # Its body, called as a plain function: a subclass overriding set_and_release
        # (to count leased writes, say) does not see plain writes go through it.
        PoolCache.set_and_release(self, key, value, None)

    def set_and_release(self, key: K, value: V, token: str | None) -> None:  # noqa: PLR0915 - inlined
        """Store ``value``, then release the lease ``token`` holds on ``key``.

        Both under one hold of the lock: the entry is in place before the lease is free,
        so a caller waiting on the lease finds it; the lease is released even if the
        write raises. Also :meth:`set`'s body (``token`` ``None``: no lease to release).
        """
        # The common path is inlined (one Python frame): every load and every engine
        # fetch writes through here. acquire/release cost half of a ``with`` block.
        try:
            clock = self._clock
            now = clock() if clock is not None else _time.time()
            ttl = self.ttl
            deadline = NEVER if ttl is None else now + ttl
            if isinstance(value, Entry):
                # As a storage: the entry contract of every storage (times checked, an
                # entry already dead accepted and not kept). check_times' test inline;
                # check_times says what is wrong.
                if not (
                    _NEG_INF
                    < value.stored_at
                    <= value.fresh_until
                    <= value.stale_until
                    <= value.expires_at
                    and value.stored_at < _INF
                ):
                    check_times(value)
                if value.expires_at <= now:
                    try:
                        self.delete(key)
                    finally:
                        if token is not None:
                            self.release_lease(key, token)
                    return
                if value.expires_at < deadline:
                    # A float of its own: the expiry order tells records apart by identity.
                    deadline = value.expires_at + 0.0
            item = (value, deadline)
            lock = self._lock
            if not lock.acquire(False):
                take(lock)  # without queueing on it: see swr.storage._lock
            try:
                if self._closed:
                    raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
                data = self._data
                old = data.get(key)
                if old is None:
                    pool = self._pool
                    if len(data) >= self._limit and data and self._hint > now:
                        # _make_room_for's first case, inline (every write into a full cache):
                        # at its own max with nothing expired, it drops its own LRU entry.
                        if self._marked:
                            self._give_second_chances()
                        first, gone = data.popitem(last=False)
                        self._marked.discard(first)  # (marked by a hit racing this write)
                        self._evictions += 1
                        gone_at = gone[1]
                        if gone_at is not NEVER:
                            deadlines = self._deadlines
                            if deadlines and deadlines[0] is gone_at:  # its record is first
                                deadlines.popleft()
                                self._keys.popleft()
                            else:
                                self._forget_record()
                    elif (len(data) >= self._limit or pool._used >= pool.capacity) and not (
                        self._make_room_for(now)
                    ):
                        return
                    else:
                        pool._used += 1
                # Lowered before the item is published: lock-free readers trust _hint.
                if deadline < self._hint:  # noqa: PLR1730 - no call on the write path
                    self._hint = deadline
                data[key] = item
                if old is not None:
                    data.move_to_end(key)
                    if old[1] is not NEVER:
                        self._forget(old)
                if deadline is not NEVER:
                    if deadline >= self._tail:
                        # _remember's common case, inline: a deadline after all the others.
                        self._keys.append(key)
                        self._deadlines.append(deadline)
                        self._tail = deadline
                    else:
                        self._remember(key, deadline, item)
            finally:
                if token is not None:
                    # LocalLeases.release, inline.
                    held = self._held
                    lease = held.get(key)
                    if lease is not None and lease[0] == token:
                        del held[key]
                lock.release()
        except BaseException:
            if token is not None:
                self.release_lease(key, token)  # refused before the lock: released all the same
            raise

    def set_many(self, entries: Mapping[K, V]) -> None:
        """Store several values, each as :meth:`set`."""
        for key, value in entries.items():
            self.set(key, value)

    def delete(self, key: K) -> bool:
        """Remove ``key``; return whether an entry (live or expired) was held.

        Raises:
            StorageUnavailableError: the cache was closed.
        """
        with self._lock:
            if self._closed:
                raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
            item = self._data.pop(key, None)
            if item is None:
                return False
            self._marked.discard(key)
            self._forget(item)
            self._pool._used -= 1
            return True

    def clear(self) -> None:
        """Remove every entry and tag (counters are kept)."""
        with self._lock:
            self._clear_locked()
            self._tags.clear()

    # -- bulk verbs and tags (the storage capabilities BulkVerbs and TagIndex) -----------

    def delete_many(self, keys: Sequence[K]) -> int:
        """Remove ``keys`` under one lock; return how many entries (live or not) were held.

        Raises:
            StorageUnavailableError: the cache was closed.
        """
        with self._lock:
            return self._delete_locked(keys)

    def _delete_locked(self, keys: Iterable[K]) -> int:
        if self._closed:
            raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
        data = self._data
        marked = self._marked
        removed = 0
        for key in keys:
            item = data.pop(key, None)
            if item is not None:
                marked.discard(key)
                self._forget(item)
                removed += 1
        self._pool._used -= removed
        return removed

    def exists(self, key: K) -> bool:
        """Whether a live value is held under ``key`` (not counted, not touched)."""
        return key in self

    def touch(self, key: K, times: EntryTimes) -> bool:
        """Give the live :class:`~swr.storage.Entry` under ``key`` new instants.

        The value object is kept (not copied); the entry is replaced by one with the same
        value and ``times``. Returns whether a live entry was there.

        Raises:
            TypeError: ``times`` is not an :class:`~swr.storage.base.EntryTimes`, or the
                value under ``key`` is not an ``Entry``.
            ValueError: the times are not ordered.
        """
        stored, fresh, stale, expires = checked_times(times)
        value = self._peek(key)
        if value is MISSING:
            return False
        if not isinstance(value, Entry):
            raise TypeError(f"touch needs an Entry under {key!r}, found {type(value).__name__}")
        renewed = Entry(value.value, stored, fresh, stale, expires)
        self.set(key, renewed)  # type: ignore[arg-type]  # V is Entry here
        return True

    def scan(self, prefix: str = "") -> Iterator[K]:
        """Yield the live str keys starting with the literal ``prefix`` (a snapshot)."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        for key in self.keys():
            if isinstance(key, str) and key.startswith(prefix) and key in self:
                yield key

    def set_tagged(self, key: K, entry: V, tags: Sequence[str]) -> None:
        """Store ``entry`` and record ``key`` under each of ``tags`` (in this process).

        Raises:
            TypeError: ``tags`` is not a sequence of non-empty str.
        """
        tags = checked_tags(tags)
        self.set(key, entry)
        with self._lock:
            for tag in tags:
                self._tags.setdefault(tag, set()).add(key)

    def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry recorded under one of ``tags``; return how many were held.

        A key recorded under a tag and later rewritten without it goes too (a miss,
        never a stale hit).
        """
        tags = checked_tags(tags)
        with self._lock:
            keys: set[K] = set()
            for tag in tags:
                keys |= self._tags.pop(tag, set())
            return self._delete_locked(keys)

    # -- leases, stats, lifecycle -------------------------------------------------------

    def acquire_lease(self, key: K, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds unless someone holds it.

        Leases live in this process; engines sharing one cache then fetch a key once
        between them. Expiry is judged by the pool's clock.

        Raises:
            StorageUnavailableError: the cache was closed.
        """
        if self._closed:
            raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
        clock = self._clock
        now = clock() if clock is not None else _time.time()
        # Every miss of an engine comes here: a key nobody leases is taken without the
        # lock, LocalLeases.take's free key inline.
        token = _tokens._TOKEN(_tokens._prefix, next(_tokens._serial)).hex()
        mine = (token, now + ttl)
        if self._held.setdefault(key, mine) is mine:
            return token
        return self._leases.take_met(key, ttl, now, self._lock)

    def release_lease(self, key: K, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still holds it."""
        lock = self._lock
        if not lock.acquire(False):
            take(lock)
        try:
            self._leases.release(key, token)
        finally:
            lock.release()

    def stats(self) -> CacheStats:
        """Return a snapshot of this cache's size and counters."""
        with self._lock:
            return self._stats_locked()

    def _stats_locked(self) -> CacheStats:
        # next() returns the count and advances it: subtract the earlier reads' steps
        # (no repr parsing, and no lock on the hit path).
        reads = self._reads
        self._reads = reads + 1
        return CacheStats(
            size=len(self._data),
            hits=next(self._hits) - reads,
            misses=next(self._misses) - reads,
            evictions=self._evictions,
            expirations=self._expirations,
        )

    def as_async(self) -> AsyncAdapter:
        """Return an asyncio view calling this cache inline (it never blocks)."""
        return AsyncAdapter(self, inline=True)  # type: ignore[arg-type]

    def close(self) -> None:
        """Unregister this cache from its pool and drop its entries. Idempotent.

        Its slots and its min go back to the pool (the name can be registered again);
        later calls raise :class:`~swr.storage.errors.StorageUnavailableError`. Loads
        running meanwhile still return their values to their callers.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._clear_locked()
            self._leases.clear()
            self._pool._unregister(self)

    def __repr__(self) -> str:
        return (
            f"PoolCache(name={self.name!r}, min={self.min}, max={self.max}, ttl={self.ttl}, "
            f"priority={self.priority}, size={len(self._data)})"
        )
