"""PrometheusMetrics: an engine's metrics on ``prometheus_client`` (extra ``swr[prometheus]``).

Example::

    from prometheus_client import start_http_server
    from swr import StaleEngine
    from swr.metrics.prometheus import PrometheusMetrics

    metrics = PrometheusMetrics()
    engine = StaleEngine(name="users", metrics=metrics)
    metrics.watch(engine)
    start_http_server(9100)

Series (``swr`` is the default ``namespace``; labels never carry a cache key):

==========================================  ===========================================
``swr_requests_total``                      answers by ``engine``, ``status``
``swr_refreshes_total``                     refresh events by ``engine``, ``outcome``
``swr_fetch_errors_total``                  failed foreground fetches by ``engine``
``swr_storage_errors_total``                failed storage calls by ``engine``, ``operation``
``swr_circuit_transitions_total``           breaker transitions by ``engine``, ``state``
``swr_fetch_duration_seconds``              foreground fetches by ``engine``, ``outcome``
``swr_refresh_duration_seconds``            refresh fetches by ``engine``, ``outcome``
``swr_storage_duration_seconds``            storage calls by ``engine``, ``storage``,
                                            ``operation``
``swr_lease_wait_seconds``                  waits for another process's fetch by ``engine``
``swr_refreshes_running`` / ``_queued``     background refreshes now, by ``engine``
``swr_circuit_state``                       0 closed, 1 half-open, 2 open, by ``engine``
``swr_storage_healthy``                     1 healthy, 0 not, by ``engine``
``swr_storage_entries`` / ``_bytes``        storage size when the storage reports it
``swr_storage_node_up``                     1 up, 0 down, by ``engine``, ``node`` (the
                                            ``host:port`` of each Redis Cluster master)
==========================================  ===========================================

How it stays cheap: answers are counted as plain integers and read when Prometheus
scrapes, gauges are read from ``engine.stats()`` at scrape time, and only rarer events
(refreshes, errors, durations) touch ``prometheus_client`` as they happen.

Multiprocess mode (gunicorn with ``PROMETHEUS_MULTIPROC_DIR``): ``prometheus_client``
then keeps values in per-process files that one ``MultiProcessCollector`` reads. A
scrape cannot reach into other processes, so each process copies its answer counts and
gauges into those files from a daemon thread every ``flush_interval`` seconds, after a
fork in the child, and at exit; :meth:`PrometheusMetrics.flush` does it at once. The
collector combines the processes' gauges: refreshes running and queued add up, the
circuit state is the worst (max), storage health and node health the worst (min), and
the storage sizes add up over processes for a process-local storage (memory), while a
shared one (LMDB) is counted once, by whichever process holds its lock file.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as _values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swr._log import logger
from swr.errors import ConfigError
from swr.metrics import DURATION_BUCKETS
from swr.metrics._local import EngineGauges, LocalHook, check_sampling
from swr.storage._validate import check_seconds

__all__ = ["PrometheusMetrics"]

# The gauges read from engine.stats(): name suffix, help, EngineGauges field, and how
# multiprocess mode combines the processes' values.
_GAUGES = (
    ("refreshes_running", "Background refreshes running now.", "refreshes_running", "livesum"),
    (
        "refreshes_queued",
        "Background refreshes waiting for a worker.",
        "refreshes_queued",
        "livesum",
    ),
    (
        "circuit_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        "circuit_state",
        "livemax",
    ),
    ("storage_healthy", "1 when the storage answers, 0 when not.", "storage_healthy", "livemin"),
    ("storage_entries", "Entries held by the storage.", "storage_entries", "livesum"),
    ("storage_bytes", "Bytes used by the storage (keys and records).", "storage_bytes", "livesum"),
)
# The sizes: per process for a process-local storage (they add up), reported by one
# process for a shared one (see _SizeReporters).
_SIZE_FIELDS = frozenset({"storage_entries", "storage_bytes"})
_NODE_UP = ("storage_node_up", "1 when a Redis Cluster master answers, 0 when not.")


def _multiprocess_active() -> bool:
    return bool(getattr(_values.ValueClass, "_multiprocess", False))


class PrometheusMetrics(LocalHook):
    """A metrics hook exporting an engine's metrics through ``prometheus_client``.

    Args:
        registry: Where the metrics are registered; default the global
            ``prometheus_client.REGISTRY``.
        namespace: Prefix of every metric name.
        buckets: Histogram bucket bounds in seconds; default
            :data:`~swr.metrics.DURATION_BUCKETS` (1 µs to 30 s).
        multiprocess: Whether ``prometheus_client`` runs in multiprocess mode; default
            detected (``PROMETHEUS_MULTIPROC_DIR`` set before it was imported).
        flush_interval: Seconds between copies of the answer counts and gauges into
            the multiprocess files; unused otherwise.
        storage_read_sampling: The engine times one storage read in this many on the
            path of ``execute`` (mostly HITs); every other storage call is timed.

    Raises:
        ConfigError: ``multiprocess=True`` while ``prometheus_client`` is not in
            multiprocess mode, or a bad ``flush_interval`` or ``buckets``.
        ValueError: a metric of the same name is already in ``registry`` (one adapter
            per registry serves every engine: they differ by the ``engine`` label).

    Thread-safe; one instance serves any number of engines, sync and async.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "swr",
        buckets: Sequence[float] = DURATION_BUCKETS,
        multiprocess: bool | None = None,
        flush_interval: float = 1.0,
        storage_read_sampling: int = 256,
    ) -> None:
        super().__init__()
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise TypeError(f"registry must be a CollectorRegistry, got {registry!r}")
        active = _multiprocess_active()
        if multiprocess is None:
            multiprocess = active
        elif multiprocess and not active:
            raise ConfigError(
                "multiprocess=True but prometheus_client is not in multiprocess mode: set "
                "PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported"
            )
        check_seconds("flush_interval", flush_interval, error=ConfigError)
        bounds = [float(b) for b in buckets]
        if not bounds or bounds != sorted(set(bounds)) or bounds[0] <= 0:
            raise ConfigError(f"buckets must be increasing positive seconds, got {list(buckets)}")
        self.storage_read_sampling = check_sampling(storage_read_sampling)
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self.multiprocess = multiprocess
        self.flush_interval = float(flush_interval)
        self._owned: list[Collector] = []
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        self._closed = False

        self._flush_lock = threading.Lock()
        self._flushed: dict[tuple[str, str], int] = {}
        self._claimed: dict[str, str] = {}  # shared storages whose size this process reports
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._register(bounds)
        except BaseException:
            self._unregister()  # a name taken in the registry: leave it as it was
            raise
        if multiprocess:
            self._start_flusher()
            _track_process(self)

    # -- construction helpers -----------------------------------------------------------

    def _register(self, bounds: list[float]) -> None:
        self._refreshes = self._counter("refreshes", "Background refresh events.", "outcome")
        self._fetch_errors = self._counter("fetch_errors", "Failed foreground fetches.")
        self._storage_errors = self._counter(
            "storage_errors", "Storage calls that raised.", "operation"
        )
        self._transitions = self._counter(
            "circuit_transitions", "Circuit breaker transitions.", "state"
        )
        self._fetch_duration = self._histogram(
            "fetch_duration_seconds", "Foreground fetch time.", bounds, "outcome"
        )
        self._refresh_duration = self._histogram(
            "refresh_duration_seconds", "Background refresh fetch time.", bounds, "outcome"
        )
        self._storage_duration = self._histogram(
            "storage_duration_seconds", "Storage call time.", bounds, "storage", "operation"
        )
        self._lease_wait = self._histogram(
            "lease_wait_seconds", "Time waiting for another process's fetch.", bounds
        )
        self._errors: dict[str, tuple[Counter, tuple[str, ...]]] = {
            "fetch": (self._fetch_errors, ()),
            "storage_read": (self._storage_errors, ("read",)),
            "storage_write": (self._storage_errors, ("write",)),
        }

        if self.multiprocess:
            self._requests_mp = self._counter("requests", "Answers of execute.", "status")
            self._gauges_mp = {
                field: self._own(
                    Gauge(
                        f"{self.namespace}_{suffix}",
                        doc,
                        ["engine"],
                        registry=self.registry,
                        multiprocess_mode=mode,  # type: ignore[arg-type]  # one of the modes
                    )
                )
                for suffix, doc, field, mode in _GAUGES
            }
            self._node_up_mp = self._own(
                Gauge(
                    f"{self.namespace}_{_NODE_UP[0]}",
                    _NODE_UP[1],
                    ["engine", "node"],
                    registry=self.registry,
                    multiprocess_mode="livemin",
                )
            )
        else:
            collector = _ScrapeCollector(self)
            self.registry.register(collector)
            self._owned.append(collector)

    def _unregister(self) -> None:
        for collector in self._owned:
            with contextlib.suppress(KeyError):  # unregistered by the application already
                self.registry.unregister(collector)
        self._owned.clear()

    def _own(self, metric: Any) -> Any:
        self._owned.append(metric)
        return metric

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        metric = Counter(
            f"{self.namespace}_{name}", doc, ["engine", *labels], registry=self.registry
        )
        return self._own(metric)  # type: ignore[no-any-return]

    def _histogram(self, name: str, doc: str, bounds: list[float], *labels: str) -> Histogram:
        metric = Histogram(
            f"{self.namespace}_{name}",
            doc,
            ["engine", *labels],
            registry=self.registry,
            buckets=bounds,
        )
        return self._own(metric)  # type: ignore[no-any-return]

    def _child(self, metric: Counter | Histogram | Gauge, labels: tuple[str, ...]) -> Any:
        """``metric.labels(*labels)``, cached: a label lookup costs more than the update."""
        try:
            return self._children[metric, labels]
        except KeyError:
            child = self._children[metric, labels] = metric.labels(*labels)
            return child

    # -- the hook -------------------------------------------------------------------------

    def record_refresh(self, engine: str, outcome: str) -> None:
        """Count one refresh event (``swr_refreshes_total``)."""
        self._child(self._refreshes, (engine, outcome)).inc()

    def record_error(self, engine: str, kind: str) -> None:
        """Count a fetch error or a storage error of ``kind``."""
        metric, extra = self._errors.get(kind, (self._storage_errors, (kind,)))
        self._child(metric, (engine, *extra)).inc()

    def record_fetch(self, engine: str, outcome: str, seconds: float) -> None:
        """Observe a foreground fetch's duration."""
        self._child(self._fetch_duration, (engine, outcome)).observe(seconds)

    def record_refresh_duration(self, engine: str, outcome: str, seconds: float) -> None:
        """Observe a background refresh's fetch duration."""
        self._child(self._refresh_duration, (engine, outcome)).observe(seconds)

    def record_storage(self, engine: str, storage: str, operation: str, seconds: float) -> None:
        """Observe a storage call's duration."""
        self._child(self._storage_duration, (engine, storage, operation)).observe(seconds)

    def record_lease_wait(self, engine: str, seconds: float) -> None:
        """Observe a wait for another process's fetch."""
        self._child(self._lease_wait, (engine,)).observe(seconds)

    def record_circuit(self, engine: str, state: str) -> None:
        """Count one circuit breaker transition into ``state``."""
        self._child(self._transitions, (engine, state)).inc()

    # -- reading ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Copy answer counts and gauges into ``prometheus_client`` (multiprocess mode).

        Runs by itself every ``flush_interval`` seconds; call it before reading the
        files yourself. A no-op outside multiprocess mode, where scrapes read live.
        """
        if self.multiprocess:
            self._flush(closing=self._closed)

    def _flush(self, *, closing: bool) -> None:
        """:meth:`flush`; ``closing``: hand every shared storage's size over to others."""
        with self._flush_lock:
            for labels, total in self.status_counts().items():
                delta = total - self._flushed.get(labels, 0)
                if delta > 0:
                    self._child(self._requests_mp, labels).inc(delta)
                    self._flushed[labels] = total
            reporting: dict[str, str] = {}  # the shared storages this process reports
            for reading in self._sources.read():
                reports_size = True
                if reading.storage_shared:
                    claim = f"{self.namespace}\0{reading.engine}"
                    reports_size = not closing and _SIZE_REPORTERS.claim(claim)
                    if reports_size:
                        reporting[claim] = reading.engine
                for field, gauge in self._gauges_mp.items():
                    value = getattr(reading, field)
                    if value is not None:
                        if field in _SIZE_FIELDS and not reports_size:
                            value = 0  # another process reports this shared storage's size
                        self._child(gauge, (reading.engine,)).set(value)
                for node, up in reading.nodes:
                    self._child(self._node_up_mp, (reading.engine, node)).set(up)
            for claim, engine in self._claimed.items():
                if claim not in reporting:  # the engine is gone, or closing: hand over
                    for field in _SIZE_FIELDS:
                        self._child(self._gauges_mp[field], (engine,)).set(0)
                    _SIZE_REPORTERS.release(claim)
            self._claimed = reporting

    def close(self) -> None:
        """Flush, stop the flush thread and unregister every metric. Idempotent.

        In multiprocess mode the sizes of shared storages this process reported are set
        to 0 and left for another process to report.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(1.0, 2 * self.flush_interval))
        if self.multiprocess:
            self._flush(closing=True)
        self._unregister()

    # -- multiprocess plumbing ----------------------------------------------------------------

    def _start_flusher(self) -> None:
        self._stop = threading.Event()
        thread = threading.Thread(
            target=_flush_loop,
            args=(weakref.ref(self), self._stop, self.flush_interval),
            name="swr-metrics-flush",
            daemon=True,
        )
        self._thread = thread
        thread.start()

    def _after_fork_in_child(self) -> None:
        """The parent's counts are the parent's to flush: start counting from here."""
        self._flush_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._flushed = self.status_counts()
        self._claimed = {}  # the parent's to report
        if not self._closed:
            self._start_flusher()

    def __repr__(self) -> str:
        mode = "multiprocess" if self.multiprocess else "single-process"
        return f"PrometheusMetrics(namespace={self.namespace!r}, {mode})"


class _ScrapeCollector(Collector):
    """Answer counts and gauges, read when the registry is collected."""

    def __init__(self, owner: PrometheusMetrics) -> None:
        self._owner = weakref.ref(owner)
        self._namespace = owner.namespace

    def describe(self) -> Iterable[Metric]:
        return self._families([], [])

    def collect(self) -> Iterable[Metric]:
        owner = self._owner()
        if owner is None:
            return []
        return self._families(list(owner.status_counts().items()), owner.gauges())

    def _families(
        self, counts: list[tuple[tuple[str, str], int]], readings: list[EngineGauges]
    ) -> list[Metric]:
        ns = self._namespace
        requests = CounterMetricFamily(
            f"{ns}_requests", "Answers of execute.", labels=["engine", "status"]
        )
        for labels, total in counts:
            requests.add_metric(list(labels), total)
        families: list[Metric] = [requests]
        for suffix, doc, field, _ in _GAUGES:
            family = GaugeMetricFamily(f"{ns}_{suffix}", doc, labels=["engine"])
            for reading in readings:
                value = getattr(reading, field)
                if value is not None:
                    family.add_metric([reading.engine], value)
            families.append(family)
        nodes = GaugeMetricFamily(f"{ns}_{_NODE_UP[0]}", _NODE_UP[1], labels=["engine", "node"])
        for reading in readings:
            for node, up in reading.nodes:
                nodes.add_metric([reading.engine, node], up)
        families.append(nodes)
        return families


def _flush_loop(
    ref: Callable[[], PrometheusMetrics | None], stop: threading.Event, interval: float
) -> None:
    while not stop.wait(interval):
        metrics = ref()
        if metrics is None:
            return
        try:
            metrics.flush()
        except Exception as exc:  # noqa: BLE001 - the thread must outlive one bad flush
            logger.warning("metrics_flush_failed", error=repr(exc))
        del metrics


class _SizeReporters:
    """Which process reports a shared storage's size in multiprocess mode.

    ``prometheus_client`` merges a gauge's values with one mode per metric name, so the
    sizes use ``livesum``: right for process-local storages, whose entries add up, but
    N times too much for a storage every process sees whole (LMDB). For those, one
    process per engine reports the size and the others report 0: the one holding an
    exclusive lock (``fcntl.lockf``) on ``swr_size_<hash>.lock`` in
    ``PROMETHEUS_MULTIPROC_DIR``. The kernel releases it when that process dies, and
    another process takes it at its next flush; so does an adapter that closes, after
    writing 0 for the sizes it reported, and one whose engine is gone. Such locks are
    not inherited by a forked child. Without ``fcntl`` (Windows) every process reports.
    """

    def __init__(self) -> None:
        self._held: dict[str, int] = {}  # lock file -> descriptor, kept open while alive
        self._lock = threading.Lock()

    def claim(self, name: str) -> bool:
        """Whether this process reports ``name``'s size: it holds, or just took, the lock."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        try:
            import fcntl  # noqa: PLC0415 - POSIX only
        except ImportError:
            return True
        if not directory:
            return True
        path = self._path(directory, name)
        with self._lock:
            if path in self._held:
                return True
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return False
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # this process held no lock on it: closing releases nothing
                return False
            self._held[path] = fd
            return True

    def release(self, name: str) -> None:
        """Stop reporting ``name``'s size: let another process take the lock."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return
        with self._lock:
            fd = self._held.pop(self._path(directory, name), None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # releases this process's lock on that file

    @staticmethod
    def _path(directory: str, name: str) -> str:
        digest = hashlib.sha256(name.encode()).hexdigest()[:24]
        return os.path.join(directory, f"swr_size_{digest}.lock")

    def reporting(self) -> int:
        """How many shared storages' sizes this process reports now."""
        with self._lock:
            return len(self._held)

    def after_fork_in_child(self) -> None:
        """The parent's locks stay the parent's: forget (and close) its descriptors."""
        self._lock = threading.Lock()
        held, self._held = self._held, {}
        for fd in held.values():
            with contextlib.suppress(OSError):
                os.close(fd)


_SIZE_REPORTERS = _SizeReporters()

# Adapters in multiprocess mode, for the fork and exit hooks (held weakly).
_LIVE: weakref.WeakSet[PrometheusMetrics] = weakref.WeakSet()


def _track_process(metrics: PrometheusMetrics) -> None:
    _LIVE.add(metrics)


def _after_fork_in_child() -> None:
    _SIZE_REPORTERS.after_fork_in_child()
    for metrics in list(_LIVE):
        metrics._after_fork_in_child()


def _flush_at_exit() -> None:
    for metrics in list(_LIVE):
        with contextlib.suppress(Exception):  # exiting: nothing left to tell
            metrics.flush()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)
