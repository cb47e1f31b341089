"""Which entry goes when a pool needs room, and when an entry expires.

Each cache of a pool keeps:

- an ``OrderedDict`` from key to item ``(value, deadline)``, in eviction order: a
  second-chance ("clock") approximation of LRU. A write puts its key at the back. A
  hit only marks its key (``_marked``, a set: ``set.add`` touches one hash slot where
  ``move_to_end`` relinks three list nodes, each most likely out of the CPU caches over
  a large working set). When the cache loses its least recently used entry, a marked
  key at the front loses its mark and goes to the back instead (its second chance), so
  a key read since it was queued is never the one evicted, and entries nobody reads go
  first, oldest first. Every mark is paid for by the hit that set it: O(1) amortised.
  ``deadline`` is when the item expires: ``stored + ttl``, or earlier when the value is
  an :class:`~swr.storage.base.Entry` whose ``expires_at`` comes first; ``inf`` when
  nothing expires it. Every write makes a new item with a float object of its own as
  its deadline, so a record naming that float by identity describes that item only.
- its expiry order: two deques, keys and deadlines, in deadline order. With one ttl per
  cache, the deadlines of successive writes never decrease, so appending keeps them
  sorted: 16 bytes per entry (an ``OrderedDict`` took about 90). A record whose item
  is gone (overwritten, deleted, evicted) is dead: removed at once when it is the
  first record (the common case for an LRU eviction), else counted and dropped when it
  reaches the front. A deadline earlier than the last one appended (an entry with an
  early ``expires_at``, jittered or per-key ttls, a clock set back) goes to a heap of
  ``(deadline, seq, key, item)`` instead: O(log n). Once half of the records of both are
  dead they are rebuilt (O(n), once per as many removals: O(1) amortised), so dead
  records never outnumber live ones by much; they hold a key and a float, never a value.
- ``_hint``, a lower bound of its earliest deadline: when it is in the future, one
  comparison shows the cache has nothing expired (a hit then skips reading its item's
  deadline, a float object most likely out of the CPU caches over a large working set).

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

Every method here runs under the pool's lock.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from swr.storage.pool._pool import MemoryPool

__all__ = ["NEVER", "EvictingCache", "Item"]

K = TypeVar("K")
V = TypeVar("V")

# Deadline of items nothing expires; compared by identity on the read path so that a
# cache without a ttl never reads the clock.
NEVER = math.inf
# Dead heap records beyond half the heap (plus this slack) trigger a rebuild.
_COMPACT_SLACK = 64
# Marks of removed keys (left by a hit racing a removal) tolerated before a cleanup.
_GHOST_SLACK = 64

# (value, deadline): one per write; its deadline's identity marks its expiry record.
Item = tuple[Any, float]


class EvictingCache(Generic[K, V]):
    """The entries of one cache in LRU and expiry order, and the pool's eviction rules.

    The base of :class:`~swr.storage.pool.PoolCache`; it holds no lock of its own (its
    callers hold the pool's).

    Attributes:
        min: Entries guaranteed against other caches' writes.
        priority: Higher keeps its entries longer when the pool is full.
    """

    __slots__ = (
        "_data",
        "_dead",
        "_deadlines",
        "_evictions",
        "_expirations",
        "_hint",
        "_keys",
        "_late",
        "_limit",
        "_marked",
        "_pool",
        "_seq",
        "_tail",
        "min",
        "priority",
    )

    def __init__(self, pool: MemoryPool, min: int, priority: int) -> None:
        self._pool = pool
        self.min = min
        self.priority = priority
        self._limit = 0  # the effective max, set by the pool
        self._data: OrderedDict[K, Item] = OrderedDict()
        self._marked: set[K] = set()  # keys hit since they were queued (second chance)
        # Expiry order (see the module docstring): keys and deadlines in deadline
        # order, and a heap of (deadline, seq, key, item) for those out of order.
        self._keys: deque[K] = deque()
        self._deadlines: deque[float] = deque()
        self._tail = -NEVER  # the largest deadline appended to the deques
        self._late: list[tuple[float, int, K, Item]] = []
        self._dead = 0  # records of both whose item is gone
        self._seq = itertools.count()
        # No live item expires before this (a lower bound, refreshed by _first_expiry):
        # one comparison tells a cache has nothing expired.
        self._hint = NEVER
        self._evictions = 0
        self._expirations = 0

    def _remember(self, key: K, deadline: float, item: Item) -> None:
        """Record the finite ``deadline`` of ``item``, just stored under ``key``.

        The writer has lowered ``_hint`` to ``deadline`` already, before publishing the
        item (lock-free readers skip the item's own deadline while ``_hint`` is ahead).
        """
        # One ttl per cache: successive deadlines never decrease, so appending keeps
        # the deques sorted. An earlier one (an Entry's own expires_at, a clock set
        # back) goes to the heap.
        if deadline >= self._tail:
            self._keys.append(key)
            self._deadlines.append(deadline)
            self._tail = deadline
        else:
            heapq.heappush(self._late, (deadline, next(self._seq), key, item))

    def _make_room_for(self, now: float) -> bool:
        """Free one slot for a new key of this cache; False if it keeps nothing.

        The eviction rules of the module docstring, inlined (helpers run only when a
        cache may hold an expired entry) because every write into a full pool runs
        this. Looks at each cache once, never at their entries.
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
            expired: EvictingCache[Any, Any] | None = None
            earliest = NEVER
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
        if victim._marked:
            victim._give_second_chances()
        key, item = victim._data.popitem(last=False)
        victim._marked.discard(key)  # (marked by a hit racing this write)
        pool._used -= 1
        victim._evictions += 1
        deadline = item[1]
        if deadline is not NEVER:
            deadlines = victim._deadlines
            if deadlines and deadlines[0] is deadline:  # its record is first: drop it
                deadlines.popleft()
                victim._keys.popleft()
            else:
                victim._forget_record()
        return True

    def _forget(self, item: Item) -> None:
        """Mark the expiry record of ``item``, gone from ``_data``, as dead."""
        deadline = item[1]
        if deadline is NEVER:
            return
        deadlines = self._deadlines
        if deadlines and deadlines[0] is deadline:  # its record is first: drop it now
            deadlines.popleft()
            self._keys.popleft()
        else:
            self._forget_record()

    def _forget_record(self) -> None:
        """Count one record as dead; rebuild the records once half of them are dead.

        Neither a deque nor a heap can drop a record from its middle, so records of
        removed items stay until they reach the front or this rebuild, which costs
        O(records) once per as many removals: O(1) amortised.
        """
        self._dead += 1
        if self._dead > ((len(self._keys) + len(self._late)) >> 1) + _COMPACT_SLACK:
            data = self._data
            keys: deque[K] = deque()
            deadlines: deque[float] = deque()
            for key, deadline in zip(self._keys, self._deadlines, strict=True):
                item = data.get(key)
                if item is not None and item[1] is deadline:
                    keys.append(key)
                    deadlines.append(deadline)
            self._keys, self._deadlines = keys, deadlines
            late = [record for record in self._late if data.get(record[2]) is record[3]]
            heapq.heapify(late)
            self._late = late
            self._dead = 0

    def _first_expiry(self) -> float:
        """Return the earliest deadline of a live item (``inf`` if none).

        Dead records at the fronts are dropped on the way (each once: O(1) amortised),
        and the answer becomes the new ``_hint``.
        """
        data = self._data
        keys, deadlines = self._keys, self._deadlines
        first = NEVER
        while keys:
            item = data.get(keys[0])
            if item is not None and item[1] is deadlines[0]:
                first = deadlines[0]
                break
            keys.popleft()
            deadlines.popleft()
            self._dead -= 1
        else:
            self._tail = -NEVER  # any deadline may be appended to an empty order
        late = self._late
        while late:
            record = late[0]
            if data.get(record[2]) is record[3]:
                first = min(first, record[0])
                break
            heapq.heappop(late)
            self._dead -= 1
        self._hint = first
        return first

    def _drop_first_expired(self, now: float) -> bool:
        """Drop the live item with the earliest deadline if it is due."""
        if self._hint > now:
            return False
        first = self._first_expiry()
        if first > now:
            return False
        deadlines = self._deadlines
        if deadlines and deadlines[0] == first:
            deadlines.popleft()
            key = self._keys.popleft()
        else:  # the heap's top is the live item due first (_first_expiry cleaned it)
            key = heapq.heappop(self._late)[2]
        del self._data[key]
        self._marked.discard(key)
        self._pool._used -= 1
        self._expirations += 1
        return True

    def _give_second_chances(self) -> None:
        """Move the marked keys at the front of the order to its back, unmarking each.

        Then the front key is the one to evict. Bounded by the cache's size, so hits
        re-marking keys meanwhile cannot hold a writer up: after a full round the
        front key goes anyway.
        """
        data = self._data
        marked = self._marked
        if len(marked) > len(data) + _GHOST_SLACK:
            # Marks of keys gone (a hit racing the removal of its key): drop them.
            marked.intersection_update(data)
        move_to_end = data.move_to_end
        for _ in range(len(data)):
            key = next(iter(data))
            if key not in marked:
                return
            marked.discard(key)
            move_to_end(key)

    def _evict_lru(self) -> None:
        """Remove the least recently used entry (second chance); the cache is not empty."""
        if self._marked:
            self._give_second_chances()
        key, item = self._data.popitem(last=False)
        self._marked.discard(key)
        self._forget(item)
        self._pool._used -= 1
        self._evictions += 1

    def _make_own_room(self, now: float) -> None:
        """Free one slot of this cache: an expired entry, else the LRU one."""
        if not self._drop_first_expired(now):
            self._evict_lru()

    def _clear_locked(self) -> None:
        """Remove every entry and expiry record."""
        self._pool._used -= len(self._data)
        self._data.clear()
        self._marked.clear()
        self._keys.clear()
        self._deadlines.clear()
        self._tail = -NEVER
        self._late.clear()
        self._dead = 0
        self._hint = NEVER
