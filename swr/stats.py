"""Counters of an engine and the snapshot ``engine.stats()`` returns.

One :class:`EngineStats` holds everything an operator asks of a running engine: the
answers by status and the hit ratio, refresh outcomes and the refresh queue now, errors,
the storage's own counters (size, health) and, on a Redis Cluster, each node's state,
and the circuit breaker's.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["STATUS_FIELDS", "Counter", "EngineCounters", "EngineStats", "storage_healthy"]

STATUS_FIELDS = {
    "hit": "hits",
    "stale": "stale",
    "expired": "expired",
    "miss": "misses",
    "fallback": "fallbacks",
}
"""The field of :class:`EngineStats` counting each status (by ``Status`` value)."""

_HEALTH_FIELDS = ("healthy", "available", "primary_available")


def storage_healthy(storage_stats: Mapping[str, Any]) -> bool:
    """Whether a storage's stats (``EngineStats.storage``) report it healthy.

    Unhealthy: reading its stats raised (the engine then reports ``error``), or it
    reports ``healthy``, ``available`` (a Redis storage marked down; on a cluster,
    every master down) or ``primary_available`` (a fallback storage serving from its
    secondary) as false. A storage reporting none of these is healthy.
    """
    if "error" in storage_stats:
        return False
    return all(storage_stats[name] for name in _HEALTH_FIELDS if name in storage_stats)


class Counter:
    """A thread-safe counter that is cheap to increment.

    ``itertools.count.__next__`` is one atomic C call, so concurrent increments from
    threads are never lost and cost a few tens of nanoseconds, less than a lock.
    Reading the value takes one number from the same sequence too (under a lock, so
    reads are counted exactly): the value is that number minus the reads before it.
    """

    __slots__ = ("_read_lock", "_reads", "incr", "numbers")

    def __init__(self) -> None:
        # The sequence itself: ``next(counter.numbers)`` increments too, and on a hot
        # path costs less than calling ``incr`` (a method-wrapper) kept in a slot.
        self.numbers = itertools.count()
        self.incr = self.numbers.__next__
        self._read_lock = threading.Lock()
        self._reads = 0

    @property
    def value(self) -> int:
        """The number of increments so far."""
        with self._read_lock:
            value = next(self.numbers) - self._reads
            self._reads += 1
            return value


class EngineCounters:
    """An engine's counters, one :class:`Counter` attribute each (see :class:`EngineStats`)."""

    __slots__ = (
        "bypasses",
        "circuit_rejected",
        "expired",
        "fallbacks",
        "fetch_errors",
        "fetches_backed_off",
        "hits",
        "misses",
        "refreshes_dropped",
        "refreshes_failed",
        "refreshes_skipped",
        "refreshes_started",
        "refreshes_succeeded",
        "refreshes_timed_out",
        "stale",
        "storage_read_errors",
        "storage_write_errors",
    )

    def __init__(self) -> None:
        self.hits = Counter()
        self.stale = Counter()
        self.expired = Counter()
        self.misses = Counter()
        self.fallbacks = Counter()
        self.refreshes_started = Counter()
        self.refreshes_succeeded = Counter()
        self.refreshes_failed = Counter()
        self.refreshes_timed_out = Counter()
        self.refreshes_dropped = Counter()
        self.refreshes_skipped = Counter()
        self.fetch_errors = Counter()
        self.fetches_backed_off = Counter()
        self.storage_read_errors = Counter()
        self.storage_write_errors = Counter()
        self.circuit_rejected = Counter()
        self.bypasses = Counter()

    def values(self) -> dict[str, int]:
        """Every counter's value, by name."""
        return {name: getattr(self, name).value for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of an engine's counters (all since the engine was created).

    Attributes:
        hits, stale, expired, misses, fallbacks: ``execute`` results by status.
        refreshes_started: background refreshes that began running.
        refreshes_succeeded: background refreshes whose fetch returned in time.
        refreshes_failed: background refreshes that raised or timed out.
        refreshes_timed_out: of those, the ones past ``RefreshOptions.timeout``.
        refreshes_dropped: refreshes not queued because the queue was full.
        refreshes_skipped: refreshes not started: the key was backing off after a
            failure, or another process held its lease.
        refreshes_in_flight: background refreshes running now.
        refreshes_queued: background refreshes waiting for a worker now.
        fetch_errors: foreground fetches that raised or timed out.
        fetches_backed_off: foreground fetches not made because the key was backing
            off after a failed fetch (its entry was served as FALLBACK).
        storage_read_errors: storage reads that raised (read as misses).
        storage_write_errors: storage writes that raised (values still returned).
        circuit_rejected: fetches and refreshes not attempted because the circuit
            breaker refused them (the entry was served as FALLBACK, or the caller got
            ``CircuitOpenError``).
        bypasses: ``execute(..., bypass=True)`` calls: fetched without reading or
            writing the cache (not in ``requests``; their results say MISS).
        storage: the storage's own counters, when it keeps any: ``entries`` and
            ``bytes`` (memory, LMDB), ``available`` (storages with a health flag),
            ``corrupt_entries``...; ``{"error": ...}`` when reading them failed.
        storage_nodes: on a Redis Cluster storage, one dict per master met (at most
            ``MAX_NODES``): ``address`` (``host:port``), ``up``, ``errors``, ``refused``,
            ``recoveries``, ``last_change``; empty otherwise.
        circuit: the circuit breaker's state and transition counts (shared by every
            engine using that breaker); empty without a breaker.

    Derived (properties, also in :meth:`as_dict`): ``requests``, ``statuses``,
    ``hit_ratio``, ``storage_errors``, ``storage_healthy``, ``refreshes_running``.
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
    fetches_backed_off: int = 0
    storage_read_errors: int = 0
    storage_write_errors: int = 0
    circuit_rejected: int = 0
    bypasses: int = 0
    storage: dict[str, Any] = field(default_factory=dict)
    storage_nodes: list[dict[str, Any]] = field(default_factory=list)
    circuit: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Calls of ``execute`` answered, all statuses together."""
        return self.hits + self.stale + self.expired + self.misses + self.fallbacks

    @property
    def statuses(self) -> dict[str, int]:
        """Answers by status value: ``{"hit": ..., "stale": ..., "expired": ..., ...}``."""
        return {status: getattr(self, name) for status, name in STATUS_FIELDS.items()}

    @property
    def hit_ratio(self) -> float:
        """Answers served from the cache without waiting, over all answers.

        ``(hits + stale) / requests``: a FALLBACK (an old value served because the
        upstream failed) and an EXPIRED or MISS (the caller waited for a fetch) count
        against it. ``0.0`` before the first answer.
        """
        requests = self.requests
        return (self.hits + self.stale) / requests if requests else 0.0

    @property
    def refreshes_running(self) -> int:
        """Background refreshes running now (the same as ``refreshes_in_flight``)."""
        return self.refreshes_in_flight

    @property
    def storage_healthy(self) -> bool:
        """Whether the storage reports itself healthy; see :func:`storage_healthy`."""
        return storage_healthy(self.storage)

    @property
    def storage_errors(self) -> int:
        """Storage reads and writes that raised."""
        return self.storage_read_errors + self.storage_write_errors

    def as_dict(self) -> dict[str, Any]:
        """The counters and the derived values as a plain dict (for logging or JSON)."""
        values = asdict(self)
        values.update(
            requests=self.requests,
            statuses=self.statuses,
            hit_ratio=self.hit_ratio,
            storage_errors=self.storage_errors,
            storage_healthy=self.storage_healthy,
            refreshes_running=self.refreshes_running,
        )
        return values
