"""MemoryStorage: a thread-safe, LRU-bounded store of entries in this process.

How it works: a ``dict`` from key to :class:`~storage.base.Entry`, and the eviction
order of a second-chance ("clock") approximation of LRU:

- a ``deque`` of the keys in the order they were stored (8 bytes per entry; an
  ``OrderedDict`` cost about 55 bytes per entry more than a ``dict``);
- ``_marked``, the set of keys read since they last reached the front of that queue.

A read marks its key (``set.add``, one C call, like ``move_to_end`` was). When a write
needs room, the key at the front leaves; a marked one loses its mark and goes to the
back instead (its second chance). So a key read since the queue last came round to it
is never the one evicted, and entries nobody reads go first, oldest first. Every mark
is paid for by the read that set it, so eviction costs O(1) amortised. A key deleted
(or dropped dead) stays in the queue as a ghost, counted in ``_ghosts`` and skipped
when it reaches the front; the queue is rebuilt (O(n), once per as many removals) when
ghosts outnumber live keys.

Reads take no lock: ``dict.get`` and ``set.add`` are each atomic under the GIL. Writes
and deletes take one lock (without queueing on it: :mod:`swr.storage._lock`), so
``len(self) <= max_entries`` always holds after a write. Entries past ``expires_at``
read as absent and are dropped when met. After ``close()`` every call raises
:class:`~storage.errors.StorageUnavailableError`.

Values are kept as the Python objects themselves, never serialized: a hit costs a
dictionary lookup, and every caller receives the same object. Treat cached values as
read-only (or cache immutable ones).
"""

from __future__ import annotations

import math
import threading
import time as _time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from swr.storage import _atomic, _tokens
from swr.storage._clock import now
from swr.storage._leases import LocalLeases
from swr.storage._lock import take
from swr.storage._validate import check_int
from swr.storage._verbs import check_key, check_times, checked_tags, checked_times
from swr.storage.base import Entry, EntryTimes, StorageMixin
from swr.storage.errors import StorageUnavailableError
from swr.storage.leaderboard import MemoryLeaderboard

if TYPE_CHECKING:
    from swr.storage.adapters import AsyncAdapter

__all__ = ["MemoryStorage"]

_INF = math.inf
_NEG_INF = -math.inf


class MemoryStorage(StorageMixin):
    """Entries kept as objects in this process, bounded by count, least recently used out.

    (Approximately: see the module's docstring for the second-chance order.)

    Example::

        store = MemoryStorage(max_entries=50_000)
        engine = StaleEngine(store, ttl=CacheTTL(fresh=30, stale=300))

    Args:
        max_entries: Most entries kept; the least recently used go first.
        clock: Zero-argument callable returning epoch seconds, used to drop entries
            past ``expires_at``. Default: the clock of the engine it is given to
            (``adopt_clock``), else ``time.time`` looked up at each call (so freezegun
            works). An engine refuses a storage whose explicit clock is not its own.

    Raises:
        ValueError: ``max_entries`` < 1.

    Thread-safe. Objects are shared between callers, not copied.
    """

    def __init__(
        self, max_entries: int = 100_000, *, clock: Callable[[], float] | None = None
    ) -> None:
        check_int("max_entries", max_entries, 1)
        self.max_entries = max_entries
        self._clock = clock
        self._own_clock = clock
        self._data: dict[str, Entry] = {}
        # The eviction order (see the module docstring): keys oldest first, ghosts
        # included; keys read since they last reached the front; ghosts per key.
        self._order: deque[str] = deque()
        self._marked: set[str] = set()
        self._ghosts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._leases = LocalLeases()
        self._held = self._leases.held  # the same dict, for the inline lease steps
        self._evictions = 0
        self._boards: dict[str, MemoryLeaderboard] = {}
        # The tag index: tag -> keys, and key -> its tags (to forget a key rewritten or
        # removed). Both empty, and never consulted, until set_tagged is called.
        self._tagged: dict[str, set[str]] = {}
        self._tags_of: dict[str, tuple[str, ...]] = {}

    def adopt_clock(self, clock: Callable[[], float] | None) -> Callable[[], float] | None:
        """Judge expiry with ``clock`` (an engine's) unless one was given; return that one."""
        if self._own_clock is None:
            self._clock = clock
        return self._own_clock

    def _now(self) -> float:
        return now(self._clock)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailableError("MemoryStorage is closed")

    def get(self, key: str) -> Entry | None:
        """Return the live entry under ``key`` (marking it recently used), or ``None``."""
        if self._closed:
            self._check_open()
        data = self._data
        entry = data.get(key)
        if entry is None:
            return None
        clock = self._clock
        if entry.expires_at <= (clock() if clock is not None else _time.time()):
            self._drop_if_same(key, entry)
            return None
        self._marked.add(key)
        return entry

    def lookup_functions(
        self,
    ) -> tuple[Callable[[str], Entry | None], Callable[[str], None]]:
        """Return ``(lookup, touch)`` for callers that check windows themselves.

        ``lookup(key)`` returns the stored entry without judging its expiry and
        ``touch(key)`` marks it recently used (a key gone meanwhile is marked for
        nothing). Both are bound methods of built-in containers (``dict.get``,
        ``set.add``): the engine's hit path calls them directly, two C calls instead of
        a Python method. After ``close()`` lookups find nothing.
        """
        return self._data.get, self._marked.add

    def _drop_if_same(self, key: str, entry: Entry) -> None:
        lock = self._lock
        if not lock.acquire(False):
            take(lock)
        try:
            if self._data.get(key) is entry:
                del self._data[key]
                self._forget_locked(key)
        finally:
            lock.release()

    def _forget_locked(self, key: str) -> None:
        """``key`` left the dict: its place in the queue is a ghost now."""
        ghosts = self._ghosts
        ghosts[key] = ghosts.get(key, 0) + 1
        self._marked.discard(key)
        if len(self._order) > 2 * len(self._data) + 64:
            self._compact_locked()

    def _compact_locked(self) -> None:
        """Rebuild the queue without its ghosts, and drop marks of keys not held."""
        ghosts = self._ghosts
        live: list[str] = []
        for key in self._order:
            count = ghosts.get(key)
            if count:
                ghosts[key] = count - 1
            else:
                live.append(key)
        self._order = deque(live)
        ghosts.clear()
        self._marked.intersection_update(self._data)

    def _store_locked(self, entries: Mapping[str, Entry], now: float) -> None:
        """Store checked ``entries`` (see :meth:`set`), evicting while over the bound."""
        if self._closed:
            self._check_open()
        data = self._data
        if self._tags_of:
            self._untag_locked(entries)
        for key, entry in entries.items():
            if entry.expires_at <= now:  # dead already: accepted, and nothing is kept
                if data.pop(key, None) is not None:
                    self._forget_locked(key)  # (may rebuild self._order)
                continue
            if key in data:
                data[key] = entry
                self._marked.add(key)  # a write is a use
            else:
                data[key] = entry
                self._order.append(key)
        if len(data) > self.max_entries:
            self._evict_locked()

    def _evict_locked(self) -> None:
        """Drop entries from the front of the queue until the bound holds."""
        data = self._data
        order = self._order
        marked = self._marked
        ghosts = self._ghosts
        limit = self.max_entries
        while len(data) > limit:
            key = order.popleft()
            if ghosts:
                count = ghosts.get(key)
                if count:  # an occurrence older than the live one, if any: a ghost
                    if count == 1:
                        del ghosts[key]
                    else:
                        ghosts[key] = count - 1
                    continue
            if key in marked:  # read since it last got here: its second chance
                marked.discard(key)
                order.append(key)
                continue
            del data[key]
            self._evictions += 1
            if self._tags_of:
                self._untag_locked((key,))

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` under ``key``, evicting the least recently used when full."""
        # Its body, called as a plain function: a subclass overriding set_and_release
        # (to count leased writes, say) does not see plain writes go through it.
        MemoryStorage.set_and_release(self, key, entry, None)

    def _checked(self, entries: Mapping[str, Entry]) -> float:
        """Check ``entries`` as :meth:`set` does; return the time to judge them by."""
        for key, entry in entries.items():
            check_key(key)
            check_times(entry)
        return self._now()

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries under one lock."""
        now = self._checked(entries)
        with self._lock:
            self._store_locked(entries, now)

    def set_and_release(self, key: str, entry: Entry, token: str | None) -> None:
        """Store ``entry`` and release the lease ``token`` holds on ``key``, under one lock.

        Also :meth:`set`'s body (``token`` ``None``: no lease to release). Inlined, one
        Python frame: every miss of an engine stores here.
        """
        if type(key) is not str or not key:
            check_key(key)
        # check_times' test, inline; check_times says what is wrong.
        item: object = entry  # a caller's object, whatever its annotation
        if not isinstance(item, Entry) or not (
            _NEG_INF < item.stored_at <= item.fresh_until <= item.stale_until <= item.expires_at
            and item.stored_at < _INF
        ):
            check_times(entry)
        clock = self._clock
        now = clock() if clock is not None else _time.time()
        lock = self._lock
        if not lock.acquire(False):
            take(lock)  # without queueing on it: see swr.storage._lock
        try:
            data = self._data
            if self._closed:
                self._check_open()
            if self._tags_of or entry.expires_at <= now:
                self._store_locked({key: entry}, now)
            elif key in data:
                data[key] = entry
                self._marked.add(key)  # a write is a use
            else:
                data[key] = entry
                order = self._order
                order.append(key)
                if len(data) > self.max_entries:
                    # _evict_locked's common case, inline: the front key is neither a
                    # ghost nor marked, and one eviction restores the bound.
                    first = order[0]
                    if self._ghosts or first in self._marked:
                        self._evict_locked()
                    else:
                        order.popleft()
                        del data[first]
                        self._evictions += 1
                        if len(data) > self.max_entries:
                            self._evict_locked()
            if token is not None:
                # LocalLeases.release, inline.
                held = self._held
                lease = held.get(key)
                if lease is not None and lease[0] == token:
                    del held[key]
        finally:
            lock.release()

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the live entries of ``keys``, in order."""
        return [self.get(key) for key in keys]

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it held an entry (live or not)."""
        with self._lock:
            self._check_open()
            if self._tags_of:
                self._untag_locked((key,))
            if self._data.pop(key, None) is None:
                return False
            self._forget_locked(key)
            return True

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` under one lock; return how many held an entry."""
        with self._lock:
            self._check_open()
            return self._delete_locked(keys)

    def _delete_locked(self, keys: Collection[str]) -> int:
        data = self._data
        if self._tags_of:
            self._untag_locked(keys)
        removed = 0
        for key in keys:
            if data.pop(key, None) is not None:
                self._forget_locked(key)
                removed += 1
        return removed

    def exists(self, key: str) -> bool:
        """Whether a live entry is under ``key`` (not marked recently used)."""
        self._check_open()
        entry = self._data.get(key)
        return entry is not None and entry.expires_at > self._now()

    def touch(self, key: str, times: EntryTimes) -> bool:
        """Give the live entry under ``key`` the instants ``times``; whether one was there.

        The value object is kept (the entry is replaced by one of the same type holding
        the same value and the new instants).
        """
        instants = checked_times(times)
        now = self._now()
        with self._lock:
            self._check_open()
            entry = self._data.get(key)
            if entry is None or entry.expires_at <= now:
                return False
            self._data[key] = type(entry)(entry.value, *instants)
            return True

    def scan(self, prefix: str = "") -> Iterator[str]:
        """The keys of live entries starting with the literal ``prefix`` (a snapshot)."""
        self._check_open()
        now = self._now()
        with self._lock:
            keys = [k for k, e in self._data.items() if k.startswith(prefix) and e.expires_at > now]
        return iter(keys)

    def clear(self) -> None:
        """Remove every entry (and the tag index)."""
        with self._lock:
            self._clear_locked()

    def _clear_locked(self) -> None:
        self._data.clear()
        self._order.clear()
        self._marked.clear()
        self._ghosts.clear()
        self._tagged.clear()
        self._tags_of.clear()

    def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Store ``entry`` under ``key`` and record it under each of ``tags``."""
        names = checked_tags(tags)
        entries = {key: entry}
        now = self._checked(entries)
        with self._lock:
            self._store_locked(entries, now)
            if key not in self._data:  # evicted at once (max_entries reached)
                return
            unique = tuple(dict.fromkeys(names))
            self._tags_of[key] = unique
            for tag in unique:
                self._tagged.setdefault(tag, set()).add(key)

    def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry recorded under one of ``tags``; return how many."""
        names = checked_tags(tags)
        with self._lock:
            self._check_open()
            keys: set[str] = set()
            for tag in names:
                keys |= self._tagged.get(tag, set())
            return self._delete_locked(keys)

    def _untag_locked(self, keys: Collection[str]) -> None:
        """Forget the tags of ``keys`` (rewritten or removed)."""
        tags_of = self._tags_of
        tagged = self._tagged
        for key in keys:
            for tag in tags_of.pop(key, ()):
                members = tagged.get(tag)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del tagged[tag]

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def stats(self) -> dict[str, int]:
        """Return ``entries`` (count held, live or not) and ``evictions`` (LRU drops)."""
        return {"entries": len(self._data), "evictions": self._evictions}

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds unless someone holds it.

        Two engines sharing one MemoryStorage then fetch a key once between them.
        """
        if self._closed:
            self._check_open()
        clock = self._clock
        now = clock() if clock is not None else _time.time()
        # LocalLeases.take's free key, inline: every miss of an engine takes one here.
        token = _tokens._TOKEN(_tokens._prefix, next(_tokens._serial)).hex()
        mine = (token, now + ttl)
        if self._held.setdefault(key, mine) is mine:
            return token
        return self._leases.take_met(key, ttl, now, self._lock)

    def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still holds it."""
        lock = self._lock
        if not lock.acquire(False):
            take(lock)
        try:
            self._leases.release(key, token)
        finally:
            lock.release()

    # -- atomic operations (AtomicOps): each under the write lock --------------------

    def _live_locked(self, key: str, now: float) -> Entry | None:
        self._check_open()
        entry = self._data.get(key)
        return entry if entry is not None and entry.expires_at > now else None

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to the ``int`` under ``key`` (absent or dead: 0, with ``ttl``).

        Returns:
            The new value.

        Raises:
            TypeError: ``delta`` or the stored value is not an ``int``.
            ValueError: ``ttl`` is not a finite number of seconds > 0 (or ``None``).
        """
        delta = _atomic.check_delta(delta)
        ttl = _atomic.check_ttl(ttl)
        now = self._now()
        with self._lock:
            entry = _atomic.incremented(self._live_locked(key, now), delta, now, ttl)
            self._store_locked({key: entry}, now)
        value: int = entry.value
        return value

    def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """:meth:`incr` by ``-delta``."""
        return self.incr(key, -_atomic.check_delta(delta), ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent or dead; return whether it did."""
        ttl = _atomic.check_ttl(ttl)
        now = self._now()
        with self._lock:
            if self._live_locked(key, now) is not None:
                return False
            self._store_locked({key: _atomic.created(value, now, ttl)}, now)
        return True

    def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """The live entry under ``key`` and its version (the entry object itself)."""
        entry = self.get(key)
        return None if entry is None else (entry, entry)

    def replace_if(self, key: str, version: Any, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` if the live entry under ``key`` is still ``version``.

        The new entry keeps the replaced entry's windows, or takes ``ttl`` (from now)
        when one is given. Returns whether it stored.
        """
        ttl = _atomic.check_ttl(ttl)
        now = self._now()
        with self._lock:
            entry = self._live_locked(key, now)
            if entry is None or entry is not version:
                return False
            if ttl is None:
                new = _atomic.replaced(entry, value)
            else:
                new = _atomic.created(value, now, ttl)
            self._store_locked({key: new}, now)
        return True

    def append(self, key: str, data: bytes | str, ttl: float | None = None) -> int:
        """Append ``data`` to the ``bytes`` or ``str`` under ``key``; return the new length.

        Raises:
            TypeError: ``data`` is not ``bytes``/``str``, or differs from the stored type.
        """
        data = _atomic.check_data(data)
        ttl = _atomic.check_ttl(ttl)
        now = self._now()
        with self._lock:
            entry = _atomic.appended(self._live_locked(key, now), data, now, ttl)
            self._store_locked({key: entry}, now)
        return len(entry.value)

    def leaderboard(self, name: str, *, max_size: int | None = None) -> MemoryLeaderboard:
        """The leaderboard ``name`` of this storage (the same object on every call).

        Its ``max_size`` is set by the first call; a later call giving another one
        raises ``ValueError``.
        """
        with self._lock:
            self._check_open()
            board = self._boards.get(name)
            if board is None:
                board = self._boards[name] = MemoryLeaderboard(name, max_size=max_size)
            elif max_size is not None and board.max_size != max_size:
                raise ValueError(
                    f"leaderboard {name!r} already exists with max_size={board.max_size}"
                )
        return board

    def as_async(self) -> AsyncAdapter:
        """Return an asyncio view calling this storage inline (it never blocks)."""
        from swr.storage.adapters import AsyncAdapter  # noqa: PLC0415 - avoids an import cycle

        return AsyncAdapter(self, inline=True)

    def close(self) -> None:
        """Drop every entry; later calls raise ``StorageUnavailableError``. Idempotent."""
        with self._lock:
            self._closed = True
            self._clear_locked()
            self._leases.clear()
            self._boards.clear()

    def __repr__(self) -> str:
        return f"MemoryStorage(max_entries={self.max_entries}, entries={len(self._data)})"
