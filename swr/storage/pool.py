"""MemoryPool: several typed in-process caches sharing one capacity, by priority.

How it works. A :class:`MemoryPool` holds at most ``capacity`` entries in total, spread
over the caches registered with it. Each :class:`PoolCache` has a guaranteed ``min``, a
``max`` it never exceeds, an optional ``ttl`` and a ``priority``. Each cache keeps:

- an ``OrderedDict`` from key to item ``(value, deadline, key)``, least recently used
  first. ``deadline`` is when the item expires: ``stored + ttl``, or earlier when the
  value is an :class:`~storage.base.Entry` whose ``expires_at`` comes first; ``inf``
  when nothing expires it. A new tuple is built on every write, so an item's identity
  tells whether a record still describes the live value.
- its expiry order: a second ``OrderedDict`` from key to deadline, in deadline order.
  With one ttl per cache, the deadlines of successive writes never decrease, so
  appending keeps it sorted, and an overwritten, deleted or evicted key leaves it in
  O(1): it never holds dead records, so it never needs a rebuild (which would stall
  writers for O(n)). A deadline earlier than the last one appended (an entry with an
  early ``expires_at``, jittered or per-key ttls, a clock set back) goes to a heap
  instead: O(log n), its dead records dropped when they reach the top, and the heap
  rebuilt once half of it is dead (O(1) amortised).
- ``_hint``, a lower bound of its earliest deadline: when it is in the future, one
  comparison shows the cache has nothing expired.

When a write needs room (the cache is at its max, or the pool is full), one entry goes,
chosen by looking at the caches, never at their entries:

1. a cache at its own max drops its earliest expired entry, else its least recently
   used one;
2. otherwise, on a full pool: the expired entry with the earliest deadline of any cache
   (ties: the cache registered first);
3. else the least recently used entry of the lowest-priority cache holding more than
   its min (ties: the most entries over its min, then the cache registered first);
4. else the writing cache's own least recently used entry.

What always holds, after every write: the pool holds at most ``capacity`` entries, each
cache at most its max, and a cache holding no more than its min loses live entries only
to its own writes (another cache's writes take expired entries or what is above a min).
Registration enforces ``max <= capacity - (the other caches' mins)`` for every cache,
which is what makes step 4 always find an entry.

Hits take no lock: a dict lookup and ``move_to_end`` are each atomic under the GIL, and
hits and misses are counted with ``itertools.count`` (one atomic C call). Writes,
deletes, evictions and expiry take the pool's one lock. A background thread (every
``gc_interval`` seconds) drops expired entries a few hundred at a time, releasing the
lock in between.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import heapq
import inspect
import itertools
import math
import threading
import time as _time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog

from swr.storage._leases import LocalLeases
from swr.storage.adapters import AsyncAdapter
from swr.storage.base import Closeable, Entry
from swr.storage.errors import (
    CacheLimitsError,
    CacheNameError,
    PoolCapacityError,
    PoolConfigError,
    StorageUnavailableError,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "AsyncBatchLoader",
    "BatchLoader",
    "CacheStats",
    "MemoryPool",
    "PoolCache",
    "PoolStats",
]

K = TypeVar("K")
V = TypeVar("V")

_log = structlog.get_logger("swr")

# Deadline of items nothing expires; compared by identity on the read path so that a
# cache without a ttl never reads the clock.
_NEVER = math.inf
# Most expired entries the background GC drops per hold of the pool's lock.
_GC_STEP = 256
# Dead heap records beyond half the heap (plus this slack) trigger a rebuild.
_COMPACT_SLACK = 64


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING

# (value, deadline, key): one per write, identity marks the live one.
_Item = tuple[Any, float, Any]


def _count_value(counter: itertools.count[int]) -> int:
    """Return how many times ``counter`` was advanced (its repr is ``count(N)``)."""
    return int(repr(counter)[6:-1])


def _seconds(name: str, value: object) -> float:
    """Validate a positive, finite duration in seconds (a number or a timedelta)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds as a number or a timedelta, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise CacheLimitsError(f"{name} must be a finite number of seconds > 0, got {value}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class CacheStats(Mapping[str, Any]):
    """A snapshot of one cache's counters (since it was registered).

    Also a read-only mapping of the same names, so it can be logged as it is or merged
    into other dictionaries (``StaleEngine.stats().storage`` shows it that way).

    Attributes:
        size: Entries held now (expired ones not yet dropped included).
        hits: Reads that found a live value.
        misses: Reads that found nothing, or an expired value.
        evictions: Live entries removed to make room.
        expirations: Expired entries dropped (on read, to make room, or by the GC).
    """

    size: int
    hits: int
    misses: int
    evictions: int
    expirations: int

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``, a fraction in [0, 1]; 0.0 before any read."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else 0.0

    def __getitem__(self, name: str) -> Any:
        if name in _STATS_NAMES:
            return getattr(self, name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(_STATS_NAMES)

    def __len__(self) -> int:
        return len(_STATS_NAMES)


_STATS_NAMES = (*(f.name for f in fields(CacheStats)), "hit_rate")


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool, taken atomically (``used`` is the sum of the sizes).

    Attributes:
        used: Entries held by all caches together.
        capacity: Most entries the pool holds.
        caches: Each registered cache's :class:`CacheStats`, by name.
    """

    used: int
    capacity: int
    caches: dict[str, CacheStats]


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


class PoolCache(Closeable, Generic[K, V]):
    """One typed cache of a :class:`MemoryPool`; also a :class:`~storage.Storage`.

    Made by :meth:`MemoryPool.register`, never directly. Keys are any hashable, values
    are kept as the objects themselves (shared between callers, never copied).

    Example::

        users = pool.register("users", min=100, max=5_000, ttl=300, priority=10)
        users.set(1, user)
        users.get(1)                      # the same object, or None
        users.get_or_load(2, lambda: db.user(2))

    As a storage for the engine (keys are strings, values :class:`~storage.Entry`),
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
        "_clock",
        "_closed",
        "_data",
        "_evictions",
        "_expirations",
        "_expiry",
        "_flights",
        "_flights_lock",
        "_hint",
        "_hits",
        "_late",
        "_late_dead",
        "_leases",
        "_limit",
        "_lock",
        "_lookup",
        "_misses",
        "_pool",
        "_seq",
        "_tail",
        "_touch",
        "max",
        "min",
        "name",
        "priority",
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
        self._pool = pool
        self.name = name
        self.min = min
        self.max = max
        self.ttl = ttl
        self.priority = priority
        self._clock = pool._clock
        self._lock = pool._lock
        self._limit = 0  # the effective max, set by the pool
        self._data: OrderedDict[K, _Item] = OrderedDict()
        # Bound C methods: the read path calls them without attribute lookups.
        self._lookup: Callable[[K], _Item | None] = self._data.get
        self._touch: Callable[[K], None] = self._data.move_to_end
        # Expiry order (see the module docstring): key -> deadline in deadline order,
        # and a heap of (deadline, seq, key, item) for deadlines that came out of order.
        self._expiry: OrderedDict[K, float] = OrderedDict()
        self._tail = -_NEVER  # the largest deadline appended to _expiry
        self._late: list[tuple[float, int, K, _Item]] = []
        self._late_dead = 0  # heap records whose item is gone
        self._seq = itertools.count()
        # No live item expires before this (a lower bound, refreshed by _first_expiry):
        # one comparison tells a cache has nothing expired.
        self._hint = _NEVER
        self._hits = itertools.count()
        self._misses = itertools.count()
        self._evictions = 0
        self._expirations = 0
        self._closed = False
        self._leases = LocalLeases()
        self._flights: dict[K, _Flight] = {}
        self._flights_lock = threading.Lock()
        self._aflights: dict[K, asyncio.Task[V]] = {}

    # -- reads (no lock) ---------------------------------------------------------------

    def _now(self) -> float:
        clock = self._clock
        return clock() if clock is not None else _time.time()

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
        lookup = self._lookup
        item = lookup(key)
        if item is not None:
            deadline = item[1]
            if deadline is not _NEVER:
                clock = self._clock
                if deadline <= (clock() if clock is not None else _time.time()):
                    self._expired(key, item)
                    return None
            touch = self._touch
            try:
                touch(key)
            except KeyError:  # evicted by a writer since the lookup: still a valid read
                pass
            next(self._hits)
            value: V = item[0]
            return value
        self._missed()
        return None

    def _missed(self) -> None:
        # A closed cache holds nothing, so checking here keeps the hit path short.
        if self._closed:
            raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
        next(self._misses)

    def _expired(self, key: K, item: _Item) -> None:
        with self._lock:
            if self._data.get(key) is item:
                del self._data[key]
                self._forget(key, item)
                self._pool._used -= 1
                self._expirations += 1
        self._missed()

    def _find(self, key: K) -> V | _Missing:
        """Like :meth:`get` (counting, touching), with ``_MISSING`` for a miss."""
        lookup = self._lookup  # locals: see get
        item = lookup(key)
        if item is not None:
            deadline = item[1]
            if deadline is _NEVER or deadline > self._now():
                touch = self._touch
                try:
                    touch(key)
                except KeyError:
                    pass
                next(self._hits)
                value: V = item[0]
                return value
            self._expired(key, item)
            return _MISSING
        self._missed()
        return _MISSING

    def _peek(self, key: K) -> V | _Missing:
        """The live value under ``key`` or ``_MISSING``; not counted, not touched."""
        item = self._lookup(key)
        if item is None or (item[1] is not _NEVER and item[1] <= self._now()):
            return _MISSING
        value: V = item[0]
        return value

    def __contains__(self, key: object) -> bool:
        """Whether a live value is held under ``key`` (not counted, not touched)."""
        try:
            return self._peek(key) is not _MISSING  # type: ignore[arg-type]
        except TypeError:  # unhashable: certainly not a key
            return False

    def get_many(self, keys: Sequence[K]) -> list[V | None]:
        """Return the values of ``keys`` in order, ``None`` where missing (each counted)."""
        get = self.get
        return [get(key) for key in keys]

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[K]:
        """Return the keys held, least recently used first (a snapshot).

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
        # The common path is inlined (one Python frame): every load and every engine
        # fetch writes through here. acquire/release cost half of a ``with`` block.
        clock = self._clock
        now = clock() if clock is not None else _time.time()
        ttl = self.ttl
        deadline = _NEVER if ttl is None else now + ttl
        if isinstance(value, Entry) and value.expires_at < deadline:
            deadline = value.expires_at
        item = (value, deadline, key)
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:
                raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
            data = self._data
            old = data.get(key)
            if old is not None:
                data[key] = item
                data.move_to_end(key)
                if old[1] is not _NEVER:
                    self._forget(key, old)
            else:
                pool = self._pool
                if (len(data) >= self._limit or pool._used >= pool.capacity) and not (
                    self._make_room_for(now)
                ):
                    return
                data[key] = item
                pool._used += 1
            if deadline is not _NEVER:
                if deadline < self._hint:  # noqa: PLR1730 - no call on the hot path
                    self._hint = deadline
                # One ttl per cache: successive deadlines never decrease, so appending
                # keeps _expiry sorted. An earlier one (an Entry's own expires_at, a
                # clock set back) goes to the heap.
                if deadline >= self._tail:
                    self._expiry[key] = deadline
                    self._tail = deadline
                else:
                    heapq.heappush(self._late, (deadline, next(self._seq), key, item))
        finally:
            lock.release()

    def set_many(self, entries: Mapping[K, V]) -> None:
        """Store several values, each as :meth:`set`."""
        for key, value in entries.items():
            self.set(key, value)

    def _make_room_for(self, now: float) -> bool:
        """Free one slot for a new key of this cache; False if it keeps nothing.

        The eviction rules of the module docstring, inlined (helpers run only when a
        cache may hold an expired entry) because every write into a full pool runs
        this. Looks at each cache once, never at their entries. The pool's lock is held.
        """
        pool = self._pool
        if len(self._data) >= self._limit:
            if not self._data:  # max 0
                return False
            # 1. At its own max: its own earliest expired entry, else its LRU one.
            if self._hint <= now and self._drop_first_expired(now):
                return True
            victim = self
        else:
            # 2. A full pool: the expired entry with the earliest deadline of any cache.
            expired: PoolCache[Any, Any] | None = None
            earliest = _NEVER
            for cache in pool._caches.values():
                if cache._hint <= now:
                    deadline = cache._first_expiry()
                    if deadline <= now and deadline < earliest:
                        expired, earliest = cache, deadline
            if expired is not None:
                expired._drop_first_expired(now)
                return True
            # 3. The lowest-priority cache above its min (ties: most over its min),
            # 4. else the writer itself. The writer holds an entry then: a full pool
            # with every cache at its min and the writer empty would mean its max is
            # 0 (registration keeps max <= capacity - the other caches' mins).
            victim = self
            for group in pool._groups:
                most = 0
                for cache in group:
                    over = len(cache._data) - cache.min
                    if over > most:
                        victim, most = cache, over
                if most:
                    break
        # _evict_lru, inlined.
        key, item = victim._data.popitem(last=False)
        pool._used -= 1
        victim._evictions += 1
        if item[1] is not _NEVER and victim._expiry.pop(key, None) is None:
            victim._forget_late()
        return True

    def _forget(self, key: K, item: _Item) -> None:
        """Remove the expiry record of ``item``, gone from ``_data``; lock held."""
        if item[1] is not _NEVER and self._expiry.pop(key, None) is None:
            self._forget_late()

    def _forget_late(self) -> None:
        """Count one heap record as dead; rebuild the heap once half of it is dead.

        A heap cannot drop a record from its middle, so records of removed items stay
        until they reach the top or this rebuild, which costs O(heap) once per as many
        removals: O(1) amortised.
        """
        self._late_dead += 1
        if self._late_dead > (len(self._late) >> 1) + _COMPACT_SLACK:
            data = self._data
            late = [record for record in self._late if data.get(record[2]) is record[3]]
            heapq.heapify(late)
            self._late = late
            self._late_dead = 0

    def _first_expiry(self) -> float:
        """Return the earliest deadline of a live item (``inf`` if none); lock held.

        Dead records at the heap's top are dropped on the way (each once: O(1)
        amortised), and the answer becomes the new ``_hint``.
        """
        expiry = self._expiry
        first = next(iter(expiry.values())) if expiry else _NEVER
        if not expiry:
            self._tail = -_NEVER  # any deadline may be appended to an empty order
        late = self._late
        data = self._data
        while late:
            record = late[0]
            if data.get(record[2]) is record[3]:
                first = min(first, record[0])
                break
            heapq.heappop(late)
            self._late_dead -= 1
        self._hint = first
        return first

    def _drop_first_expired(self, now: float) -> bool:
        """Drop the live item with the earliest deadline if it is due; lock held."""
        if self._hint > now:
            return False
        first = self._first_expiry()
        if first > now:
            return False
        expiry = self._expiry
        if expiry and next(iter(expiry.values())) == first:
            key = next(iter(expiry))
            del expiry[key]
        else:  # the heap's top is the live item due first (_first_expiry cleaned it)
            key = heapq.heappop(self._late)[2]
        del self._data[key]
        self._pool._used -= 1
        self._expirations += 1
        return True

    def _evict_lru(self) -> None:
        """Remove the least recently used entry; lock held, the cache is not empty."""
        key, item = self._data.popitem(last=False)
        self._forget(key, item)
        self._pool._used -= 1
        self._evictions += 1

    def _make_own_room(self, now: float) -> None:
        """Free one slot of this cache: an expired entry, else the LRU one; lock held."""
        if not self._drop_first_expired(now):
            self._evict_lru()

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
            self._forget(key, item)
            self._pool._used -= 1
            return True

    def clear(self) -> None:
        """Remove every entry (counters are kept)."""
        with self._lock:
            self._clear_locked()

    def _clear_locked(self) -> None:
        self._pool._used -= len(self._data)
        self._data.clear()
        self._expiry.clear()
        self._tail = -_NEVER
        self._late.clear()
        self._late_dead = 0
        self._hint = _NEVER

    # -- loading -----------------------------------------------------------------------

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
        lookup = self._lookup  # locals: see get
        item = lookup(key)
        if item is not None:
            deadline = item[1]
            if deadline is _NEVER or deadline > self._now():
                touch = self._touch
                try:
                    touch(key)
                except KeyError:
                    pass
                next(self._hits)
                value: V = item[0]
                return value
        return self._load(key, loader)

    def _load(self, key: K, loader: Callable[[], V]) -> V:
        self._missed()
        with self._flights_lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                # A leader stores its value before ending its flight: look again.
                found = self._peek(key)
                if found is not _MISSING:
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
        if found is not _MISSING:
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

        See :class:`BatchLoader`.

        Args:
            load_many: Called with a list of missing keys; returns a mapping of key to
                value. Keys it leaves out raise ``KeyError`` for their callers only.
            max_wait: Seconds the first missing key of a batch waits for others.
            max_batch: Most keys per ``load_many`` call (a full batch goes at once).

        Raises:
            PoolConfigError: ``max_wait`` < 0 or ``max_batch`` < 1 (a ``ValueError``).
        """
        return BatchLoader(self, load_many, max_wait, max_batch)

    def abatch_loader(
        self,
        load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        max_wait: float = 0.005,
        max_batch: int = 100,
    ) -> AsyncBatchLoader[K, V]:
        """The asyncio twin of :meth:`batch_loader`: ``load_many`` is a coroutine function.

        See :class:`AsyncBatchLoader`.
        """
        return AsyncBatchLoader(self, load_many, max_wait, max_batch)

    # -- leases, stats, lifecycle -------------------------------------------------------

    def acquire_lease(self, key: K, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds unless someone holds it.

        Leases live in this process; engines sharing one cache then fetch a key once
        between them. Expiry is judged by the pool's clock.

        Raises:
            StorageUnavailableError: the cache was closed.
        """
        now = self._now()
        with self._lock:
            if self._closed:
                raise StorageUnavailableError(f"cache {self.name!r} of the pool is closed")
            return self._leases.acquire(key, ttl, now)

    def release_lease(self, key: K, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still holds it."""
        with self._lock:
            self._leases.release(key, token)

    def stats(self) -> CacheStats:
        """Return a snapshot of this cache's size and counters."""
        with self._lock:
            return self._stats_locked()

    def _stats_locked(self) -> CacheStats:
        return CacheStats(
            size=len(self._data),
            hits=_count_value(self._hits),
            misses=_count_value(self._misses),
            evictions=self._evictions,
            expirations=self._expirations,
        )

    def as_async(self) -> AsyncAdapter:
        """Return an asyncio view calling this cache inline (it never blocks)."""
        return AsyncAdapter(self, inline=True)  # type: ignore[arg-type]

    def close(self) -> None:
        """Unregister this cache from its pool and drop its entries. Idempotent.

        Its slots and its min go back to the pool (the name can be registered again);
        later calls raise :class:`~storage.errors.StorageUnavailableError`. Loads
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


class _Batch(Generic[K, V]):
    """Keys collected for one ``load_many`` call, with their callers' futures."""

    __slots__ = ("closed", "futures", "keys")

    def __init__(self) -> None:
        self.keys: list[K] = []
        self.futures: list[Future[V]] = []
        self.closed = threading.Event()


def _check_batching(load_many: object, max_wait: object, max_batch: object) -> tuple[float, int]:
    if not callable(load_many):
        raise TypeError(f"load_many must be callable, got {type(load_many).__name__}")
    if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
        raise TypeError(f"max_wait must be seconds as a number, got {max_wait!r}")
    if not (max_wait >= 0 and math.isfinite(max_wait)):
        raise PoolConfigError(f"max_wait must be a finite number of seconds >= 0, got {max_wait}")
    batch = _count("max_batch", max_batch)
    if batch < 1:
        raise PoolConfigError(f"max_batch must be >= 1, got {batch}")
    return float(max_wait), batch


def _as_mapping(result: object) -> Mapping[Any, Any]:
    if not isinstance(result, Mapping):
        raise TypeError(
            f"load_many must return a mapping of key to value, got {type(result).__name__}"
        )
    return result


def _as_awaitable(result: object) -> Awaitable[Any]:
    if not inspect.isawaitable(result):
        raise TypeError(
            f"load_many returned {type(result).__name__}, not an awaitable; "
            "use batch_loader for plain functions"
        )
    return result


def _missing_key(key: object) -> KeyError:
    return KeyError(f"load_many returned no value for key {key!r}")


class BatchLoader(Generic[K, V]):
    """Loads missing keys of a cache in batches: a DataLoader for threads.

    Example::

        load_user = users.batch_loader(db.users_by_ids, max_wait=0.005, max_batch=100)
        user = load_user(7)   # from many threads at once: few db.users_by_ids calls

    A call answers from the cache when it can. A missing key joins the open batch; the
    first key of a batch waits up to ``max_wait`` seconds for others, and a batch that
    reaches ``max_batch`` keys goes at once. The batch's ``load_many(keys)`` runs in the
    thread of the caller that closed it. Its results are cached, then handed to every
    caller; a key asked for again while it is being loaded joins that load.

    Args:
        cache: The cache to fill.
        load_many: ``(keys: list) -> Mapping[key, value]``.
        max_wait: Seconds a batch stays open for more keys.
        max_batch: Most distinct keys per batch.

    Raises:
        PoolConfigError: ``max_wait`` < 0 or ``max_batch`` < 1.
        TypeError: ``load_many`` is not callable, or a setting has the wrong type.

    Thread-safe. Every caller gets an answer once its batch's ``load_many`` returns:
    its value, ``KeyError`` if the result left its key out, or the exception
    ``load_many`` raised (every caller of that batch gets it; nothing is cached).
    """

    def __init__(
        self,
        cache: PoolCache[K, V],
        load_many: Callable[[list[K]], Mapping[K, V]],
        max_wait: float = 0.005,
        max_batch: int = 100,
    ) -> None:
        self.max_wait, self.max_batch = _check_batching(load_many, max_wait, max_batch)
        self._cache = cache
        self._load_many = load_many
        self._lock = threading.Lock()
        self._pending: dict[K, Future[V]] = {}
        self._open: _Batch[K, V] | None = None

    def __call__(self, key: K) -> V:
        """Return the value of ``key``, from the cache or from a batched ``load_many``.

        Raises:
            KeyError: ``load_many`` returned no value for ``key``.
            Exception: whatever ``load_many`` raised for this key's batch.
            StorageUnavailableError: the cache was closed.
        """
        found = self._cache._find(key)
        if found is not _MISSING:
            return found
        run: _Batch[K, V] | None = None
        lead: _Batch[K, V] | None = None
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                # A batch caches its values before forgetting its keys: look again.
                found = self._cache._peek(key)
                if found is not _MISSING:
                    return found
                future = self._pending[key] = Future()
                batch = self._open
                if batch is None:
                    batch = lead = self._open = _Batch()
                batch.keys.append(key)
                batch.futures.append(future)
                if len(batch.keys) >= self.max_batch:
                    self._open = None
                    run = batch
        if run is not None:
            run.closed.set()  # its first caller stops waiting
            self._dispatch(run)
        elif lead is not None:
            try:
                lead.closed.wait(self.max_wait)
            finally:
                # Even when interrupted, the batch must go: others wait on it.
                with self._lock:
                    if self._open is lead:
                        self._open = None
                        run = lead
                if run is not None:
                    self._dispatch(run)
        return future.result()

    def _dispatch(self, batch: _Batch[K, V]) -> None:
        keys, futures = batch.keys, batch.futures
        error: BaseException | None = None
        found: dict[K, V] = {}
        try:
            result = _as_mapping(self._load_many(list(keys)))
            for key in keys:
                if key in result:
                    found[key] = result[key]
            self._cache._store_many(found)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            error = exc
        finally:
            with self._lock:
                for key, future in zip(keys, futures, strict=True):
                    if self._pending.get(key) is future:
                        del self._pending[key]
            for key, future in zip(keys, futures, strict=True):
                if error is not None:
                    future.set_exception(error)
                elif key in found:
                    future.set_result(found[key])
                else:
                    future.set_exception(_missing_key(key))
        if error is not None and not isinstance(error, Exception):
            raise error


class _AsyncBatch(Generic[K, V]):
    __slots__ = ("futures", "keys", "timer")

    def __init__(self) -> None:
        self.keys: list[K] = []
        self.futures: list[asyncio.Future[V]] = []
        self.timer: asyncio.TimerHandle | None = None


class _AsyncBatchState(Generic[K, V]):
    """What an async batch loader tracks within one event loop."""

    __slots__ = ("loop", "open", "pending", "tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[K, asyncio.Future[V]] = {}
        self.open: _AsyncBatch[K, V] | None = None
        self.tasks: set[asyncio.Task[None]] = set()


class AsyncBatchLoader(Generic[K, V]):
    """The asyncio twin of :class:`BatchLoader`: ``await load(key)``.

    Example::

        load_user = users.abatch_loader(fetch_users, max_wait=0.005, max_batch=100)
        users_ = await asyncio.gather(*(load_user(i) for i in ids))   # one fetch_users

    Keys missing from the cache are collected for up to ``max_wait`` seconds (0: the
    keys asked for in the same turn of the event loop) or ``max_batch`` keys, then
    ``await load_many(keys)`` runs as a task of its own: a caller cancelled while
    waiting does not cancel it, and its results are still cached.

    Use it from one event loop at a time.

    Args:
        cache: The cache to fill.
        load_many: Coroutine function ``(keys: list) -> Mapping[key, value]``.
        max_wait: Seconds a batch stays open for more keys.
        max_batch: Most distinct keys per batch.

    Raises:
        PoolConfigError: ``max_wait`` < 0 or ``max_batch`` < 1.
        TypeError: ``load_many`` is not callable, or a setting has the wrong type.
    """

    def __init__(
        self,
        cache: PoolCache[K, V],
        load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        max_wait: float = 0.005,
        max_batch: int = 100,
    ) -> None:
        self.max_wait, self.max_batch = _check_batching(load_many, max_wait, max_batch)
        self._cache = cache
        self._load_many = load_many
        self._state: _AsyncBatchState[K, V] | None = None

    async def __call__(self, key: K) -> V:
        """Return the value of ``key``, from the cache or from a batched ``load_many``.

        Raises:
            KeyError: ``load_many`` returned no value for ``key``.
            Exception: whatever ``load_many`` raised for this key's batch.
            StorageUnavailableError: the cache was closed.
        """
        found = self._cache._find(key)
        if found is not _MISSING:
            return found
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            state = self._state = _AsyncBatchState(loop)
        future = state.pending.get(key)
        if future is None:
            future = state.pending[key] = loop.create_future()
            batch = state.open
            if batch is None:
                batch = state.open = _AsyncBatch()
                batch.timer = loop.call_later(self.max_wait, self._flush, state, batch)
            batch.keys.append(key)
            batch.futures.append(future)
            if len(batch.keys) >= self.max_batch:
                self._flush(state, batch)
        return await asyncio.shield(future)

    def _flush(self, state: _AsyncBatchState[K, V], batch: _AsyncBatch[K, V]) -> None:
        if state.open is not batch:
            return
        state.open = None
        if batch.timer is not None:
            batch.timer.cancel()
        task = state.loop.create_task(self._run(state, batch))
        state.tasks.add(task)  # a reference until it ends, so it is not collected
        task.add_done_callback(state.tasks.discard)

    async def _run(self, state: _AsyncBatchState[K, V], batch: _AsyncBatch[K, V]) -> None:
        keys, futures = batch.keys, batch.futures
        error: BaseException | None = None
        found: dict[K, V] = {}
        try:
            result = _as_mapping(await _as_awaitable(self._load_many(list(keys))))
            for key in keys:
                if key in result:
                    found[key] = result[key]
            self._cache._store_many(found)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            error = exc
        finally:
            for key, future in zip(keys, futures, strict=True):
                if state.pending.get(key) is future:
                    del state.pending[key]
                if future.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                elif error is not None:
                    future.set_exception(error)
                elif key in found:
                    future.set_result(found[key])
                else:
                    future.set_exception(_missing_key(key))
        if error is not None and not isinstance(error, Exception):
            raise error


class MemoryPool(Closeable):
    """Several typed in-process caches sharing one capacity, with priorities and mins.

    Example::

        with MemoryPool(capacity=10_000) as pool:
            users = pool.register("users", min=100, max=5_000, ttl=300, priority=10)
            sessions = pool.register("sessions", min=50, max=5_000, ttl=60, priority=5)
            users.set(1, user)
            pool.stats().used

    Args:
        capacity: Most entries held by all caches together.
        gc_interval: Seconds between background passes dropping expired entries (a
            daemon thread, stopped by :meth:`close`); ``None`` for no thread (expired
            entries then go when read, when room is needed, or on :meth:`collect`).
        clock: Zero-argument callable returning epoch seconds, judging every ttl and
            ``Entry.expires_at``. Default ``time.time``, looked up at each call (so
            freezegun works). Give it the same clock as an engine using the pool.

    Raises:
        PoolConfigError: ``capacity`` < 1 or ``gc_interval`` <= 0 (a ``ValueError``).
        TypeError: a setting has the wrong type.

    Thread-safe; a context manager closing the pool on exit.
    """

    def __init__(
        self,
        capacity: int,
        gc_interval: float | None = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        capacity = _count("capacity", capacity)
        if capacity < 1:
            raise PoolConfigError(f"capacity must be >= 1 entry, got {capacity}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        interval = None if gc_interval is None else _gc_seconds(gc_interval)
        self.capacity = capacity
        self.gc_interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._used = 0
        self._caches: dict[str, PoolCache[Any, Any]] = {}
        # Caches grouped by priority, lowest first, each group in registration order.
        self._groups: list[list[PoolCache[Any, Any]]] = []
        self._closed = False
        self._gc_stop = threading.Event()
        self._gc_thread: threading.Thread | None = None
        if interval is not None:
            # The thread holds only a weak reference, so a pool nobody closed can still
            # be garbage collected (its thread then ends at its next wake-up).
            self._gc_thread = threading.Thread(
                target=_gc_loop,
                args=(weakref.ref(self), self._gc_stop, interval),
                name="swr-pool-gc",
                daemon=True,
            )
            self._gc_thread.start()

    def _now(self) -> float:
        clock = self._clock
        return clock() if clock is not None else _time.time()

    def register(
        self,
        name: str,
        *,
        min: int = 0,
        max: int | None = None,
        ttl: float | timedelta | None = None,
        priority: int = 0,
    ) -> PoolCache[Any, Any]:
        """Create a cache in this pool and return it.

        Annotate the result to type it: ``users: PoolCache[int, User] = pool.register(...)``.

        Args:
            name: Non-empty, unique within the pool.
            min: Entries guaranteed to this cache: other caches' writes never push it
                below (its own writes, deletes and expiry may).
            max: Most entries it holds; ``None``: whatever the other caches' mins leave.
            ttl: Seconds (or a timedelta) an entry lives after it is written; ``None``:
                until evicted (an :class:`~storage.Entry` value still ends at its
                ``expires_at``).
            priority: When the pool is full, caches of lower priority give up entries
                (above their min) first.

        Returns:
            The new :class:`PoolCache`.

        Raises:
            CacheNameError: ``name`` is empty or already registered.
            CacheLimitsError: not ``0 <= min <= max``, or ``ttl`` <= 0.
            PoolCapacityError: the mins would add up to more than the capacity, or a
                cache's max (this one's, or one registered before) would exceed the
                capacity minus the other caches' mins.
            TypeError: a setting has the wrong type.
            StorageUnavailableError: the pool was closed.
        """
        if not isinstance(name, str):
            raise TypeError(f"cache name must be a str, got {type(name).__name__}: {name!r}")
        if not name:
            raise CacheNameError("cache name must not be empty")
        low = _count("min", min)
        high = None if max is None else _count("max", max)
        if low < 0:
            raise CacheLimitsError(f"cache {name!r}: min must be >= 0, got min={low}")
        if high is not None and high < low:
            raise CacheLimitsError(f"cache {name!r}: min must be <= max, got min={low}, max={high}")
        seconds = None if ttl is None else _seconds("ttl", ttl)
        rank = _count("priority", priority)
        with self._lock:
            if self._closed:
                raise StorageUnavailableError("the MemoryPool is closed")
            if name in self._caches:
                raise CacheNameError(f"a cache named {name!r} is already registered")
            self._check_fits(name, low, high)
            cache: PoolCache[Any, Any] = PoolCache(self, name, low, high, seconds, rank)
            self._caches[name] = cache
            self._rearrange()
        return cache

    def _check_fits(self, name: str, low: int, high: int | None) -> None:
        """Raise unless ``name``'s min and max fit beside the registered caches."""
        capacity = self.capacity
        mins = sum(cache.min for cache in self._caches.values())
        if mins + low > capacity:
            raise PoolCapacityError(
                f"cache {name!r}: the sum of all mins must be <= capacity: "
                f"{mins} (other caches) + {low} (min) = {mins + low} > {capacity}"
            )
        if high is not None and high > capacity - mins:
            raise PoolCapacityError(
                f"cache {name!r}: max must be <= capacity - the other caches' mins: "
                f"max={high} > {capacity} - {mins} = {capacity - mins}"
            )
        # The rule holds for every cache at all times, so a new min must leave each
        # earlier cache room for its own max too.
        for other in self._caches.values():
            if other.max is None:
                continue
            left = capacity - (mins - other.min + low)
            if other.max > left:
                raise PoolCapacityError(
                    f"cache {name!r}: min={low} would leave cache {other.name!r} less than "
                    f"its max: max={other.max} > {capacity} - {mins - other.min + low} "
                    f"(the other caches' mins) = {left}"
                )

    def _rearrange(self) -> None:
        """Recompute priority groups and effective maxes; trim caches now over theirs."""
        caches = list(self._caches.values())
        ranks = sorted({cache.priority for cache in caches})
        self._groups = [[c for c in caches if c.priority == rank] for rank in ranks]
        mins = sum(cache.min for cache in caches)
        now: float | None = None
        for cache in caches:
            if cache.max is not None:
                cache._limit = cache.max
            else:
                cache._limit = self.capacity - (mins - cache.min)
            while len(cache._data) > cache._limit:
                if now is None:
                    now = self._now()
                cache._make_own_room(now)

    def _unregister(self, cache: PoolCache[Any, Any]) -> None:
        """Forget a closed cache; the lock is held."""
        if self._caches.get(cache.name) is cache:
            del self._caches[cache.name]
            self._rearrange()

    def collect(self, limit: int | None = None) -> int:
        """Drop expired entries of every cache now; return how many were dropped.

        Works in steps of a few hundred entries, releasing the lock in between so
        writers are not held up. The background thread calls this every
        ``gc_interval`` seconds. A closed pool has nothing to collect.

        Args:
            limit: Most entries to drop; ``None`` for all that are expired.
        """
        removed = 0
        while True:
            budget = _GC_STEP if limit is None else min(_GC_STEP, limit - removed)
            if budget <= 0:
                return removed
            dropped = 0
            with self._lock:
                now = self._now()
                for cache in self._caches.values():
                    while dropped < budget and cache._drop_first_expired(now):
                        dropped += 1
            removed += dropped
            if dropped < budget:
                return removed

    def stats(self) -> PoolStats:
        """Return ``used``, ``capacity`` and every cache's stats, taken atomically."""
        with self._lock:
            return PoolStats(
                used=self._used,
                capacity=self.capacity,
                caches={name: cache._stats_locked() for name, cache in self._caches.items()},
            )

    def close(self, timeout: float = 5.0) -> None:
        """Stop the GC thread (waiting up to ``timeout`` s) and close every cache.

        Later calls on the pool's caches, and ``register``, raise
        :class:`~storage.errors.StorageUnavailableError`. Idempotent.
        """
        self._gc_stop.set()
        thread = self._gc_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            self._closed = True
            caches = list(self._caches.values())
        for cache in caches:
            cache.close()

    def __repr__(self) -> str:
        return (
            f"MemoryPool(capacity={self.capacity}, used={self._used}, caches={list(self._caches)})"
        )


def _gc_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(f"gc_interval must be seconds as a number or None, got {value!r}")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise PoolConfigError(f"gc_interval must be a finite number of seconds > 0, got {value}")
    return seconds


def _gc_loop(pool_ref: weakref.ref[MemoryPool], stop: threading.Event, interval: float) -> None:
    """Body of the GC thread: collect every ``interval`` seconds until stopped."""
    while not stop.wait(interval):
        pool = pool_ref()
        if pool is None:
            return
        try:
            pool.collect()
        except Exception as exc:  # noqa: BLE001 - a key's __eq__ may raise; keep going
            _log.warning("pool_gc_failed", error=repr(exc))
        del pool
