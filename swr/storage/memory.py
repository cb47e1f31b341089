"""MemoryStorage: a thread-safe, LRU-bounded store of entries in this process.

How it works: one ``OrderedDict`` from key to :class:`~storage.base.Entry`, least
recently used first. Reads take no lock: a ``dict`` lookup and ``move_to_end`` are each
atomic under the GIL, and a key evicted between the two just skips the move. Writes and
deletes take one lock, so ``len(self) <= max_entries`` always holds after a write.
Entries past ``expires_at`` read as absent and are dropped when met. After ``close()``
every call raises :class:`~storage.errors.StorageUnavailableError`.

Values are kept as the Python objects themselves, never serialized: a hit costs a
dictionary lookup, and every caller receives the same object. Treat cached values as
read-only (or cache immutable ones).
"""

from __future__ import annotations

import threading
import time as _time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from swr.storage._leases import LocalLeases
from swr.storage._redis import check_key, check_times
from swr.storage.base import Entry, StorageMixin
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage.adapters import AsyncAdapter

__all__ = ["MemoryStorage"]


class MemoryStorage(StorageMixin):
    """Entries kept as objects in this process, bounded by count, least recently used out.

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
        if isinstance(max_entries, bool) or not isinstance(max_entries, int):
            raise TypeError(f"max_entries must be an int, got {type(max_entries).__name__}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._own_clock = clock
        self._data: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        self._leases = LocalLeases()
        self._evictions = 0

    def adopt_clock(self, clock: Callable[[], float] | None) -> Callable[[], float] | None:
        """Judge expiry with ``clock`` (an engine's) unless one was given; return that one."""
        if self._own_clock is None:
            self._clock = clock
        return self._own_clock

    def _now(self) -> float:
        clock = self._clock
        return clock() if clock is not None else _time.time()

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
        try:
            data.move_to_end(key)
        except KeyError:  # evicted by a writer since the lookup: still a valid read
            pass
        return entry

    def lookup_functions(
        self,
    ) -> tuple[Callable[[str], Entry | None], Callable[[str], None]]:
        """Return ``(lookup, touch)`` for callers that check windows themselves.

        ``lookup(key)`` returns the stored entry without judging its expiry and
        ``touch(key)`` marks it recently used (``KeyError`` if it is gone). Both are
        bound methods of the underlying dict: the engine's hit path calls them directly,
        two C calls instead of a Python method. After ``close()`` lookups find nothing.
        """
        return self._data.get, self._data.move_to_end

    def _drop_if_same(self, key: str, entry: Entry) -> None:
        with self._lock:
            if self._data.get(key) is entry:
                del self._data[key]

    def _store_locked(self, entries: Mapping[str, Entry]) -> None:
        self._check_open()
        for key, entry in entries.items():
            check_key(key)
            check_times(entry)
        data = self._data
        now = self._now()
        for key, entry in entries.items():
            if entry.expires_at <= now:  # dead already: accepted, and nothing is kept
                data.pop(key, None)
                continue
            data[key] = entry
            data.move_to_end(key)
        while len(data) > self.max_entries:
            data.popitem(last=False)
            self._evictions += 1

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` under ``key``, evicting the least recently used when full."""
        with self._lock:
            self._store_locked({key: entry})

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries under one lock."""
        with self._lock:
            self._store_locked(entries)

    def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store ``entry`` and release the lease ``token`` holds on ``key``, under one lock."""
        with self._lock:
            self._store_locked({key: entry})
            self._leases.release(key, token)

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the live entries of ``keys``, in order."""
        return [self.get(key) for key in keys]

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it held an entry (live or not)."""
        with self._lock:
            self._check_open()
            return self._data.pop(key, None) is not None

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._data.clear()

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
        now = self._now()
        with self._lock:
            self._check_open()
            return self._leases.acquire(key, ttl, now)

    def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still holds it."""
        with self._lock:
            self._leases.release(key, token)

    def as_async(self) -> AsyncAdapter:
        """Return an asyncio view calling this storage inline (it never blocks)."""
        from swr.storage.adapters import AsyncAdapter  # noqa: PLC0415 - avoids an import cycle

        return AsyncAdapter(self, inline=True)

    def close(self) -> None:
        """Drop every entry; later calls raise ``StorageUnavailableError``. Idempotent."""
        with self._lock:
            self._closed = True
            self._data.clear()
            self._leases.clear()

    def __repr__(self) -> str:
        return f"MemoryStorage(max_entries={self.max_entries}, entries={len(self._data)})"
