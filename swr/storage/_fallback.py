"""Every decision of the fallback storages, without I/O: routing, the outage map, repair.

The storages are written once, as asyncio code, in :mod:`swr.storage._async.fallback`;
the thread twin is generated from it. See :mod:`swr.storage.fallback`.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from swr.storage._clock import now
from swr.storage._log import logger
from swr.storage._validate import check_int
from swr.storage._views import add_tier_stats, as_async
from swr.storage.base import CounterEntry, Entry
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage._async.fallback import AsyncFallbackStorage

__all__ = [
    "FROM_FALLBACK",
    "FROM_PRIMARY",
    "Action",
    "SyncTwin",
    "WarmCopies",
    "approx_size",
    "reconcile",
]

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


def approx_size(value: object, budget: int = 256) -> int:
    """An estimate of the bytes ``value`` holds: ``sys.getsizeof`` over at most
    ``budget`` objects of its tree, the rest extrapolated from their average.
    """  # noqa: D205 - the estimate is the summary
    stack = [value]
    total = seen = 0
    while stack and seen < budget:
        item = stack.pop()
        seen += 1
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return total + (len(stack) * total) // seen


class WarmCopies:
    """The keys copied into the fallback because they were *read* from the primary.

    Oldest first, bounded by count and by estimated bytes: past either bound the oldest
    copies are deleted from the fallback again (copies of writes are never counted or
    deleted here; the fallback's own bound applies to them).
    """

    __slots__ = ("bytes", "copied", "lock", "max_bytes", "max_entries", "sizes")

    def __init__(self, max_entries: Any, max_bytes: Any) -> None:
        for name, value in (("warm_max_entries", max_entries), ("warm_max_bytes", max_bytes)):
            check_int(name, value, 1, type_error=ValueError)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.copied: dict[str, Entry] = {}
        self.sizes: OrderedDict[str, int] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def add(self, copies: dict[str, Entry]) -> list[str]:
        """Record ``copies``; return the oldest keys to delete from the fallback."""
        evicted: list[str] = []
        with self.lock:
            for key, entry in copies.items():
                size = approx_size(entry.value) + 64
                self.bytes += size - self.sizes.pop(key, 0)
                self.sizes[key] = size
                self.copied[key] = entry
            while self.sizes and (
                len(self.sizes) > self.max_entries or self.bytes > self.max_bytes
            ):
                key, size = self.sizes.popitem(last=False)
                self.bytes -= size
                del self.copied[key]
                evicted.append(key)
        return evicted

    def forget(self, key: str) -> None:
        """Stop counting ``key`` (the application wrote or deleted it)."""
        with self.lock:
            size = self.sizes.pop(key, None)
            if size is not None:
                self.bytes -= size
                self.copied.pop(key, None)


class _FallbackBase:
    """Counters, the outage map and every routing decision of both fallback storages."""

    def _setup(
        self,
        primary: Any,
        fallback: Any,
        clock: Callable[[], float] | None,
        max_dirty: Any,
        warm_reads: WarmCopies | None = None,
    ) -> None:
        if primary is fallback:
            raise ValueError("primary and fallback must be two different storages")
        check_int("max_dirty", max_dirty, 0, type_error=ValueError)
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        self.primary = primary
        self.fallback = fallback
        self._clock = clock
        self._own_clock = clock
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
        self._warm = warm_reads

    def adopt_clock(self, clock: Callable[[], float] | None) -> Callable[[], float] | None:
        """Pass an engine's clock to both storages and use it unless given one."""
        from swr.storage._tiered import adopt_clock_in  # noqa: PLC0415 - import cycle

        if self._own_clock is None:
            self._clock = clock
        found = adopt_clock_in((self.primary, self.fallback), clock)
        return self._own_clock if found is None else found

    def _now(self) -> float:
        return now(self._clock)

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

    def _mark_all(self, keys: Sequence[str], mark: float | None) -> None:
        for key in keys:
            self._mark(key, mark)

    def _warm_copies(
        self, keys: Sequence[str], entries: Sequence[Entry | None]
    ) -> dict[str, Entry]:
        """The entries read from the primary to copy into the fallback (new ones only)."""
        warm = self._warm
        if warm is None:
            return {}
        copied = warm.copied
        return {
            key: entry
            for key, entry in zip(keys, entries, strict=True)
            if entry is not None
            and copied.get(key) is not entry
            and type(entry) is not CounterEntry  # its death only the primary knows
        }

    def _written(self, key: str) -> None:
        """``key`` was written or deleted by the application: its copy is not a read's."""
        warm = self._warm
        if warm is not None and key in warm.copied:
            warm.forget(key)

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
        forgotten because more than ``max_dirty`` changed; ``primary_available`` is 0/1;
        ``warm_copies`` / ``warm_bytes`` the entries read from the primary kept in the
        fallback and their estimated size.
        """
        warm = self._warm
        stats = {
            "warm_copies": 0 if warm is None else len(warm.copied),
            "warm_bytes": 0 if warm is None else warm.bytes,
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


def warm_settings(warm: WarmCopies | None) -> dict[str, Any]:
    """The constructor arguments that rebuild ``warm`` (for views and twins)."""
    if warm is None:
        return {"warm_reads": False}
    return {"warm_max_entries": warm.max_entries, "warm_max_bytes": warm.max_bytes}


class SyncTwin:
    """What only the synchronous storage has: :meth:`as_async`, its asyncio twin."""

    primary: Any
    fallback: Any
    _clock: Callable[[], float] | None
    _max_dirty: int
    _warm: WarmCopies | None

    def as_async(self) -> AsyncFallbackStorage:
        """The asyncio twin over each tier's asyncio view."""
        from swr.storage._async.fallback import AsyncFallbackStorage  # noqa: PLC0415 - cycle

        return AsyncFallbackStorage(
            as_async(self.primary),
            as_async(self.fallback),
            clock=self._clock,
            max_dirty=self._max_dirty,
            **warm_settings(self._warm),
        )
