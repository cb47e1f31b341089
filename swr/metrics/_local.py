"""What both adapters share: request counts kept as plain integers, gauges read from stats.

The HIT path calls ``record_status`` for every answer. A ``prometheus_client`` counter
costs about a microsecond per increment (a label lookup and a lock) and an
OpenTelemetry counter more, several times the HIT itself; so the adapters count
answers with ``itertools.count`` (one atomic C call under the GIL) and hand the totals
to their library only when it collects. Everything rarer (refreshes, errors,
durations) goes straight to the library.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from swr.metrics import CIRCUIT_STATES, BaseMetrics, StatsSource, storage_health, storage_kind
from swr.metrics._hooks import weak_callable
from swr.policy import Status
from swr.stats import Counter
from swr.storage._validate import check_int

if TYPE_CHECKING:
    from swr.stats import EngineStats

__all__ = [
    "PROCESS_LOCAL_KINDS",
    "EngineGauges",
    "LocalHook",
    "StatsSources",
    "Watchable",
    "check_sampling",
    "storage_shared",
]

PROCESS_LOCAL_KINDS = frozenset({"memory"})
"""Storage kinds (:func:`~swr.metrics.storage_kind`) whose entries live in one process:
across processes their sizes add up. Every other storage reporting a size (LMDB) is
shared by the processes, which all read the same size."""


def storage_shared(stats: object) -> bool:
    """Whether the engine behind ``stats`` (its bound ``stats`` method) has a shared storage.

    False for the kinds of :data:`PROCESS_LOCAL_KINDS` and for a source that is not an
    engine's method (nothing tells: each process then reports its own reading).
    """
    storage = getattr(getattr(stats, "__self__", None), "storage", None)
    return storage is not None and storage_kind(storage) not in PROCESS_LOCAL_KINDS


def check_sampling(value: object) -> int:
    """Validate a ``storage_read_sampling`` argument."""
    return check_int("storage_read_sampling", value, 1)


class Watchable(Protocol):
    """What ``watch`` needs of an engine: its name and its stats."""

    name: str

    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters and gauges."""
        ...


class LocalHook(BaseMetrics):
    """A hook base counting answers as local integers and reading gauges from stats.

    ``record_status`` only increments an integer. Thread-safe: increments are atomic;
    a new engine name takes a lock once.
    """

    def __init__(self) -> None:
        self._sources = StatsSources()
        self._status_counters: dict[str, dict[Status, Callable[[], int]]] = {}
        self._status_values: dict[tuple[str, str], Counter] = {}
        self._status_lock = threading.Lock()
        # Engines' own counters (adopt_status_counters), by adoption number; the totals
        # of engines gone; the adoption numbers of engines gone, not yet folded in.
        self._adopted: dict[int, tuple[str, dict[Status, Counter]]] = {}
        self._folded: dict[tuple[str, str], int] = {}
        self._gone: list[int] = []
        self._adoptions = itertools.count()

    def record_status(self, engine: str, status: Status) -> None:
        """Count one answer of ``engine`` with ``status``."""
        try:
            self._status_counters[engine][status]()
        except KeyError:
            self._new_engine(engine)[status]()

    def status_counter(self, engine: str, status: Status) -> Callable[[], object]:
        """The C-level increment of ``(engine, status)``: the cheapest call there is."""
        try:
            return self._status_counters[engine][status]
        except KeyError:
            return self._new_engine(engine)[status]

    def _new_engine(self, engine: str) -> dict[Status, Callable[[], int]]:
        if not isinstance(engine, str):
            raise TypeError(f"engine must be a str, got {type(engine).__name__}")
        with self._status_lock:
            incrs = self._status_counters.get(engine)
            if incrs is None:
                incrs = {}
                for status in Status:
                    counter = self._status_values[engine, status.value] = Counter()
                    incrs[status] = counter.incr
                self._status_counters[engine] = incrs
            return incrs

    def adopt_status_counters(
        self, engine: str, counters: Mapping[Status, Counter]
    ) -> Callable[[], object]:
        """Read the answers of one engine named ``engine`` from its own ``counters``.

        The engine increments these for its own stats; reading them here spares its
        hot path a second increment per answer. Returns the callable to call once the
        engine is gone: its totals are kept, its counters dropped at the next read.
        That callable takes no lock (a finalizer calls it: it may run in the middle
        of a read on the same thread), it only appends to a list.
        """
        if not isinstance(engine, str):
            raise TypeError(f"engine must be a str, got {type(engine).__name__}")
        kept = dict(counters)
        if set(kept) != set(Status) or not all(isinstance(c, Counter) for c in kept.values()):
            raise TypeError("counters must map every Status to a swr.stats.Counter")
        number = next(self._adoptions)
        with self._status_lock:
            self._adopted[number] = (engine, kept)
        return functools.partial(self._gone.append, number)

    def status_counts(self) -> dict[tuple[str, str], int]:
        """``(engine, status) -> answers`` since this hook was created, in this process."""
        with self._status_lock:
            while self._gone:
                gone = self._adopted.pop(self._gone.pop(), None)
                if gone is not None:  # not released twice
                    _add_counts(self._folded, *gone)
            counts = dict(self._folded)
            own = list(self._status_values.items())
            adopted = list(self._adopted.values())
        for labels, counter in own:
            counts[labels] = counts.get(labels, 0) + counter.value
        for engine, by_status in adopted:
            _add_counts(counts, engine, by_status)
        return counts

    def register_stats(self, engine: str, stats: StatsSource) -> None:
        """Read ``engine``'s gauges from ``stats`` (kept weakly if a bound method)."""
        self._sources.register(engine, stats)

    def watch(self, engine: Watchable) -> None:
        """Report ``engine``'s refresh queue, circuit and storage gauges; idempotent.

        The same as ``register_stats(engine.name, engine.stats)``.
        """
        self.register_stats(engine.name, engine.stats)

    def gauges(self) -> list[EngineGauges]:
        """The gauge readings of every watched engine, read now."""
        return list(self._sources.read())


def _add_counts(
    totals: dict[tuple[str, str], int], engine: str, counters: Mapping[Status, Counter]
) -> None:
    """Add the values of one engine's adopted ``counters`` to ``totals``."""
    for status, counter in counters.items():
        labels = (engine, status.value)
        totals[labels] = totals.get(labels, 0) + counter.value


@dataclass(frozen=True, slots=True)
class EngineGauges:
    """The gauge readings of one engine at one moment (``None``: not reported)."""

    engine: str
    refreshes_running: int
    refreshes_queued: int
    circuit_state: int | None
    storage_healthy: float
    storage_entries: int | None
    storage_bytes: int | None
    nodes: tuple[tuple[str, int], ...] = ()
    """``(address, up)`` per Redis Cluster master the storage met (1 up, 0 down)."""
    storage_shared: bool = False
    """Whether the storage is shared by processes (LMDB), not one process's (memory)."""

    @classmethod
    def from_stats(cls, engine: str, stats: EngineStats, shared: bool = False) -> EngineGauges:
        """Read the gauges from an engine's stats snapshot."""
        state = stats.circuit.get("state")
        storage = stats.storage
        entries = storage.get("entries")
        size = storage.get("bytes")
        return cls(
            engine=engine,
            refreshes_running=stats.refreshes_in_flight,
            refreshes_queued=stats.refreshes_queued,
            circuit_state=CIRCUIT_STATES.index(state) if state in CIRCUIT_STATES else None,
            storage_healthy=storage_health(storage),
            storage_entries=entries if isinstance(entries, int) else None,
            storage_bytes=size if isinstance(size, int) else None,
            nodes=tuple(
                (str(node["address"]), int(bool(node.get("up"))))
                for node in stats.storage_nodes
                if "address" in node
            ),
            storage_shared=shared,
        )

    @classmethod
    def unreadable(cls, engine: str, shared: bool = False) -> EngineGauges:
        """The readings of an engine whose ``stats()`` raised: its storage is unhealthy."""
        return cls(engine, 0, 0, None, 0.0, None, None, storage_shared=shared)


class StatsSources:
    """The engines whose stats feed the gauges, held weakly.

    A bound method (``engine.stats``) is kept as a :class:`weakref.WeakMethod`: once
    the engine is gone its gauges disappear. Any other callable is kept as it is.
    """

    def __init__(self) -> None:
        self._sources: dict[str, Callable[[], StatsSource | None]] = {}
        self._shared: dict[str, bool] = {}
        self._lock = threading.Lock()

    def register(self, engine: str, stats: StatsSource) -> None:
        """Read ``engine``'s gauges from ``stats`` from now on (replacing any source).

        Whether its storage is shared by processes is told by :func:`storage_shared`.
        """
        if not isinstance(engine, str):
            raise TypeError(f"engine must be a str, got {type(engine).__name__}")
        if not callable(stats):
            raise TypeError(f"stats must be a callable returning EngineStats, got {stats!r}")
        ref = weak_callable(stats)
        shared = storage_shared(stats)
        with self._lock:
            self._sources[engine] = ref
            self._shared[engine] = shared

    def read(self) -> Iterator[EngineGauges]:
        """The gauges of every live engine, read now; dead engines are forgotten."""
        with self._lock:
            sources = list(self._sources.items())
            shared = dict(self._shared)
        for engine, ref in sources:
            stats = ref()
            if stats is None:
                with self._lock:
                    if self._sources.get(engine) is ref:
                        del self._sources[engine]
                        self._shared.pop(engine, None)
                continue
            on_shared = shared.get(engine, False)
            try:
                gauges = EngineGauges.from_stats(engine, stats(), on_shared)
            except Exception:  # noqa: BLE001 - a scrape must never fail on one engine
                gauges = EngineGauges.unreadable(engine, on_shared)
            yield gauges
