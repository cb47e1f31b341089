"""Atomic operations and leaderboards of a PoolCache used as a storage (Entry values).

Each operation reads, decides with :mod:`swr.storage._atomic` and writes under the
cache's ``_atomic_lock``, so atomic operations on one cache never interleave. The
write goes through ``set`` (the pool's lock, its eviction rules): a plain ``set``
racing an atomic operation on the same key may be overwritten by it, as if it had come
first. The pool's own ``ttl`` still bounds every entry.
"""

from __future__ import annotations

import threading
from typing import Any

from swr.storage import _atomic
from swr.storage.base import Entry
from swr.storage.leaderboard import MemoryLeaderboard
from swr.storage.pool._loading import MISSING

__all__ = ["PoolAtomicOps"]


class PoolAtomicOps:
    """Mixed into :class:`~swr.storage.pool.PoolCache`: ``AtomicOps`` and ``Leaderboards``."""

    __slots__ = ()

    _atomic_lock: threading.Lock
    _boards: dict[str, MemoryLeaderboard]

    def _now(self) -> float:  # pragma: no cover - PoolCache's
        raise NotImplementedError

    def _peek(self, key: Any) -> Any:  # pragma: no cover - PoolCache's
        raise NotImplementedError

    def set(self, key: Any, value: Any) -> None:  # pragma: no cover - PoolCache's
        raise NotImplementedError

    def _live(self, key: str, now: float) -> Entry | None:
        value = self._peek(key)
        if value is MISSING:
            return None
        if not isinstance(value, Entry):
            raise TypeError(
                f"atomic operations need Entry values (a storage's), got {type(value).__name__}"
            )
        return value if value.expires_at > now else None

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to the ``int`` under ``key`` (see ``AtomicOps``); return it."""
        delta = _atomic.check_delta(delta)
        ttl = _atomic.check_ttl(ttl)
        with self._atomic_lock:
            now = self._now()
            entry = _atomic.incremented(self._live(key, now), delta, now, ttl)
            self.set(key, entry)
        value: int = entry.value
        return value

    def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """:meth:`incr` by ``-delta``."""
        return self.incr(key, -_atomic.check_delta(delta), ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent or dead; return whether it did."""
        ttl = _atomic.check_ttl(ttl)
        with self._atomic_lock:
            now = self._now()
            if self._live(key, now) is not None:
                return False
            self.set(key, _atomic.created(value, now, ttl))
        return True

    def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """The live entry under ``key`` and its version (the entry object itself)."""
        entry = self._live(key, self._now())
        return None if entry is None else (entry, entry)

    def replace_if(self, key: str, version: Any, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` if the live entry under ``key`` is still ``version``."""
        ttl = _atomic.check_ttl(ttl)
        with self._atomic_lock:
            now = self._now()
            entry = self._live(key, now)
            if entry is None or entry is not version:
                return False
            new = (
                _atomic.replaced(entry, value) if ttl is None else _atomic.created(value, now, ttl)
            )
            self.set(key, new)
        return True

    def append(self, key: str, data: bytes | str, ttl: float | None = None) -> int:
        """Append ``data`` to the ``bytes`` or ``str`` under ``key``; return the new length."""
        data = _atomic.check_data(data)
        ttl = _atomic.check_ttl(ttl)
        with self._atomic_lock:
            now = self._now()
            entry = _atomic.appended(self._live(key, now), data, now, ttl)
            self.set(key, entry)
        return len(entry.value)

    def leaderboard(self, name: str, *, max_size: int | None = None) -> MemoryLeaderboard:
        """The leaderboard ``name`` of this cache, in memory (the same object each call).

        Leaderboards are not entries: the pool's capacity and eviction do not apply.
        """
        with self._atomic_lock:
            board = self._boards.get(name)
            if board is None:
                board = self._boards[name] = MemoryLeaderboard(name, max_size=max_size)
            elif max_size is not None and board.max_size != max_size:
                raise ValueError(
                    f"leaderboard {name!r} already exists with max_size={board.max_size}"
                )
        return board
