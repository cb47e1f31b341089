"""Every decision of the fallback storages, without I/O: routing, the outage map, repair.

The storages are written once, as asyncio code, in :mod:`swr.storage._async.fallback`;
the thread twin is generated from it. See :mod:`swr.storage.fallback`.
"""

from __future__ import annotations

import threading
import time as _time
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from swr.storage._log import logger
from swr.storage._views import add_tier_stats, as_async
from swr.storage.base import Entry
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage._async.fallback import AsyncFallbackStorage

__all__ = ["FROM_FALLBACK", "FROM_PRIMARY", "Action", "SyncTwin", "reconcile"]

FROM_PRIMARY = "p"
FROM_FALLBACK = "f"


class Action(Enum):
    """What reconciling a key changed during an outage does to the primary."""

    NOTHING = "nothing"
    WRITE = "write"  # copy the fallback's entry to the primary
    DELETE = "delete"  # delete the primary's entry


def reconcile(
    mark: float | None, primary: Entry | None, fallback: Entry | None
) -> tuple[Entry | None, Action]:
    """Decide the entry to serve for a key changed during an outage, and the repair.

    Args:
        mark: ``None`` when the key was written during the outage, else the instant
            (epoch seconds) it was deleted.
        primary: What the primary holds now.
        fallback: What the fallback holds now.

    Returns:
        The entry to return to the caller and what to do to the primary.
    """
    if mark is None:
        if fallback is not None and (primary is None or fallback.stored_at > primary.stored_at):
            return fallback, Action.WRITE
        return primary, Action.NOTHING
    if primary is not None and primary.stored_at <= mark:
        return None, Action.DELETE
    return primary, Action.NOTHING


def _available_probe(primary: Any) -> Callable[[], bool]:
    """A cheap check of the primary's health: its ``available`` flag, or always true."""
    if isinstance(getattr(type(primary), "available", None), property):
        return lambda: bool(primary.available)
    return lambda: True


class _FallbackBase:
    """Counters, the outage map and every routing decision of both fallback storages."""

    def _setup(
        self, primary: Any, fallback: Any, clock: Callable[[], float] | None, max_dirty: Any
    ) -> None:
        if primary is fallback:
            raise ValueError("primary and fallback must be two different storages")
        if isinstance(max_dirty, bool) or not isinstance(max_dirty, int) or max_dirty < 0:
            raise ValueError(f"max_dirty must be an int >= 0, got {max_dirty!r}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        self.primary = primary
        self.fallback = fallback
        self._clock = clock
        self._max_dirty = max_dirty
        self._primary_up = _available_probe(primary)
        self._dirty: OrderedDict[str, float | None] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        self._served_primary = 0
        self._served_fallback = 0
        self._primary_errors = 0
        self._reconciled = 0
        self._dirty_dropped = 0
        self._store_release = callable(getattr(primary, "set_and_release", None))

    def _now(self) -> float:
        clock = self._clock
        return clock() if clock is not None else _time.time()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailableError(f"{type(self).__name__} is closed")

    def _primary_failed(self, exc: StorageUnavailableError) -> None:
        self._primary_errors += 1
        logger.debug("fallback_serving", error=str(exc))

    def _mark(self, key: str, mark: float | None) -> None:
        """Remember that ``key`` changed while the primary was unavailable."""
        if not self._max_dirty:
            return
        with self._lock:
            dirty = self._dirty
            dirty[key] = mark
            dirty.move_to_end(key)
            while len(dirty) > self._max_dirty:
                dirty.popitem(last=False)
                self._dirty_dropped += 1

    def _clear(self, key: str) -> None:
        if self._dirty:
            with self._lock:
                self._dirty.pop(key, None)

    def _pending(self, key: str) -> tuple[bool, float | None]:
        """``(True, mark)`` when ``key`` changed during an outage and is not reconciled."""
        dirty = self._dirty
        if dirty and key in dirty:
            try:
                return True, dirty[key]
            except KeyError:  # reconciled by another thread meanwhile
                return False, None
        return False, None

    def _reconciled_key(self, key: str, mark: float | None) -> None:
        with self._lock:
            if key in self._dirty and self._dirty[key] == mark:
                del self._dirty[key]
        self._reconciled += 1

    @staticmethod
    def _split_token(token: str) -> tuple[str, str]:
        if not token or token[0] not in (FROM_PRIMARY, FROM_FALLBACK):
            return "", token
        return token[0], token[1:]

    def stats(self) -> dict[str, int]:
        """Counters of this storage, then each tier's own (prefixed ``primary_``/``fallback_``).

        ``served_by_primary`` / ``served_by_fallback`` count reads each tier answered;
        ``primary_errors`` the calls the primary failed; ``reconciled`` the keys repaired
        after an outage; ``dirty_keys`` those still waiting; ``dirty_dropped`` those
        forgotten because more than ``max_dirty`` changed; ``primary_available`` is 0/1.
        """
        stats = {
            "served_by_primary": self._served_primary,
            "served_by_fallback": self._served_fallback,
            "primary_errors": self._primary_errors,
            "reconciled": self._reconciled,
            "dirty_keys": len(self._dirty),
            "dirty_dropped": self._dirty_dropped,
            "primary_available": int(self._primary_up()),
        }
        return add_tier_stats(stats, {"primary": self.primary, "fallback": self.fallback})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(primary={self.primary!r}, fallback={self.fallback!r})"


class SyncTwin:
    """What only the synchronous storage has: :meth:`as_async`, its asyncio twin."""

    primary: Any
    fallback: Any
    _clock: Callable[[], float] | None
    _max_dirty: int

    def as_async(self) -> AsyncFallbackStorage:
        """The asyncio twin over each tier's asyncio view."""
        from swr.storage._async.fallback import AsyncFallbackStorage  # noqa: PLC0415 - cycle

        return AsyncFallbackStorage(
            as_async(self.primary),
            as_async(self.fallback),
            clock=self._clock,
            max_dirty=self._max_dirty,
        )
