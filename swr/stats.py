"""Counters of an engine and the snapshot ``engine.stats()`` returns."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Counter", "EngineStats"]


class Counter:
    """A thread-safe counter that is cheap to increment.

    ``itertools.count.__next__`` is one atomic C call, so concurrent increments from
    threads are never lost and cost a few tens of nanoseconds, less than a lock.
    """

    __slots__ = ("_count", "incr")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.incr = self._count.__next__

    @property
    def value(self) -> int:
        """The number of increments so far."""
        # repr is "count(N)" where N is the next value, i.e. the increments so far.
        return int(repr(self._count)[6:-1])


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of an engine's counters (all since the engine was created).

    Attributes:
        hits, stale, expired, misses, fallbacks: ``execute`` results by status.
        refreshes_started: background refreshes that began running.
        refreshes_succeeded: background refreshes whose fetch returned in time.
        refreshes_failed: background refreshes that raised or timed out.
        refreshes_timed_out: of those, the ones past ``refresh_timeout``.
        refreshes_dropped: refreshes not queued because the queue was full.
        refreshes_skipped: refreshes not started: the key was backing off after a
            failure, or another process held its lease.
        refreshes_in_flight: background refreshes running now.
        refreshes_queued: background refreshes waiting for a worker now.
        fetch_errors: foreground fetches that raised or timed out.
        storage_read_errors: storage reads that raised (read as misses).
        storage_write_errors: storage writes that raised (values still returned).
        circuit_rejected: fetches and refreshes not attempted because the circuit
            breaker refused them (the entry was served as FALLBACK, or the caller got
            ``CircuitOpenError``).
        storage: the storage's own counters, when it keeps any (e.g. corrupt entries).
        circuit: the circuit breaker's state and transition counts (shared by every
            engine using that breaker); empty without a breaker.
    """

    hits: int = 0
    stale: int = 0
    expired: int = 0
    misses: int = 0
    fallbacks: int = 0
    refreshes_started: int = 0
    refreshes_succeeded: int = 0
    refreshes_failed: int = 0
    refreshes_timed_out: int = 0
    refreshes_dropped: int = 0
    refreshes_skipped: int = 0
    refreshes_in_flight: int = 0
    refreshes_queued: int = 0
    fetch_errors: int = 0
    storage_read_errors: int = 0
    storage_write_errors: int = 0
    circuit_rejected: int = 0
    storage: dict[str, Any] = field(default_factory=dict)
    circuit: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Calls of ``execute`` answered, all statuses together."""
        return self.hits + self.stale + self.expired + self.misses + self.fallbacks

    @property
    def storage_errors(self) -> int:
        """Storage reads and writes that raised."""
        return self.storage_read_errors + self.storage_write_errors

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (for logging or JSON)."""
        return asdict(self)
