"""OpenTelemetryMetrics: an engine's metrics and spans on ``opentelemetry-api`` (``swr[otel]``).

Example::

    from swr import StaleEngine
    from swr.metrics.opentelemetry import OpenTelemetryMetrics

    metrics = OpenTelemetryMetrics()          # the global meter and tracer providers
    engine = StaleEngine(name="users", metrics=metrics)
    metrics.watch(engine)

Instruments (meter ``swr``), named in the semantic-convention style; attributes never
carry a cache key:

===============================  ============  =============================================
``swr.cache.requests``           {request}     answers, by ``swr.engine``, ``swr.cache.status``
``swr.cache.refreshes``          {refresh}     refresh events, by ``swr.refresh.outcome``
``swr.cache.fetch.errors``       {error}       failed foreground fetches
``swr.cache.storage.errors``     {error}       failed storage calls, by ``swr.storage.operation``
``swr.cache.circuit.transitions`` {transition}  breaker transitions, by ``swr.circuit.state``
``swr.cache.fetch.duration``     s             foreground fetches, by ``swr.fetch.outcome``
``swr.cache.refresh.duration``   s             refresh fetches, by ``swr.fetch.outcome``
``swr.cache.storage.duration``   s             storage calls, by ``swr.storage.kind``,
                                               ``swr.storage.operation``
``swr.cache.lease.wait.duration`` s            waits for another process's fetch
``swr.cache.refreshes.running``  {refresh}     refreshes running now (up-down counter)
``swr.cache.refreshes.queued``   {refresh}     refreshes waiting now (up-down counter)
``swr.cache.circuit.state``      1             0 closed, 1 half-open, 2 open (gauge)
``swr.cache.storage.health``     1             1 healthy, 0 not (gauge)
``swr.cache.storage.entries``    {entry}       entries held (up-down counter)
``swr.cache.storage.usage``      By            bytes used (up-down counter)
``swr.cache.storage.node.health`` 1            1 up, 0 down, by ``swr.storage.node`` (the
                                               ``host:port`` of each Redis Cluster master)
===============================  ============  =============================================

Answers are counted as plain integers and reported by an observable counter, and the
gauges are read from ``engine.stats()`` by callbacks: a HIT costs an integer increment,
never an SDK call. With ``spans=True`` (the default) each fetch runs inside a span
``swr.fetch`` (a caller waits) or ``swr.refresh`` (background), so the upstream's own
spans nest under it; the key is added as ``swr.cache.key`` only with ``record_keys=True``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.metrics import CallbackOptions, Observation

from swr import __version__
from swr.metrics import DURATION_BUCKETS
from swr.metrics._local import EngineGauges, LocalHook, check_sampling

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["OpenTelemetryMetrics"]

ENGINE = "swr.engine"
STATUS = "swr.cache.status"
REFRESH_OUTCOME = "swr.refresh.outcome"
FETCH_OUTCOME = "swr.fetch.outcome"
STORAGE_KIND = "swr.storage.kind"
STORAGE_OPERATION = "swr.storage.operation"
CIRCUIT_STATE = "swr.circuit.state"
STORAGE_NODE = "swr.storage.node"
KEY = "swr.cache.key"

# Observable instruments read from engine.stats(): name, unit, description, field.
_UP_DOWN = (
    (
        "swr.cache.refreshes.running",
        "{refresh}",
        "Background refreshes running now.",
        "refreshes_running",
    ),
    (
        "swr.cache.refreshes.queued",
        "{refresh}",
        "Background refreshes waiting for a worker.",
        "refreshes_queued",
    ),
    ("swr.cache.storage.entries", "{entry}", "Entries held by the storage.", "storage_entries"),
    (
        "swr.cache.storage.usage",
        "By",
        "Bytes used by the storage (keys and records).",
        "storage_bytes",
    ),
)
_GAUGES = (
    (
        "swr.cache.circuit.state",
        "1",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        "circuit_state",
    ),
    ("swr.cache.storage.health", "1", "1 when the storage answers, 0 when not.", "storage_healthy"),
)


class OpenTelemetryMetrics(LocalHook):
    """A metrics hook recording an engine's metrics and fetch spans with OpenTelemetry.

    Args:
        meter_provider: Where the instruments come from; default the global one
            (``opentelemetry.metrics.get_meter_provider()``, a no-op until an SDK is
            configured).
        tracer_provider: Where the spans come from; default the global one.
        spans: Whether each fetch runs inside a span.
        record_keys: Whether spans carry the cache key (``swr.cache.key``); off by
            default, since keys may hold personal data. Metrics never carry keys.
        buckets: Advisory histogram bucket bounds in seconds (the SDK's view may
            override them); default :data:`~swr.metrics.DURATION_BUCKETS`.
        storage_read_sampling: The engine times one storage read in this many on the
            path of ``execute`` (mostly HITs); every other storage call is timed. The
            SDK takes about 10 µs to record a value, ten times a memory HIT.

    Thread-safe; one instance serves any number of engines, sync and async.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        *,
        spans: bool = True,
        record_keys: bool = False,
        buckets: Sequence[float] = DURATION_BUCKETS,
        storage_read_sampling: int = 1024,
    ) -> None:
        super().__init__()
        self.storage_read_sampling = check_sampling(storage_read_sampling)
        self.spans = bool(spans)
        self.record_keys = bool(record_keys)
        meter = otel_metrics.get_meter("swr", __version__, meter_provider)
        self._tracer = otel_trace.get_tracer("swr", __version__, tracer_provider)
        self._attributes: dict[tuple[str, ...], dict[str, str]] = {}
        bounds = [float(b) for b in buckets]

        meter.create_observable_counter(
            "swr.cache.requests",
            callbacks=[self._observe_requests],
            unit="{request}",
            description="Answers of execute, by status.",
        )
        self._refreshes = meter.create_counter(
            "swr.cache.refreshes", unit="{refresh}", description="Background refresh events."
        )
        self._fetch_errors = meter.create_counter(
            "swr.cache.fetch.errors", unit="{error}", description="Failed foreground fetches."
        )
        self._storage_errors = meter.create_counter(
            "swr.cache.storage.errors", unit="{error}", description="Storage calls that raised."
        )
        self._transitions = meter.create_counter(
            "swr.cache.circuit.transitions",
            unit="{transition}",
            description="Circuit breaker transitions.",
        )

        def histogram(name: str, description: str) -> Any:
            return meter.create_histogram(
                name, unit="s", description=description, explicit_bucket_boundaries_advisory=bounds
            )

        self._fetch_duration = histogram("swr.cache.fetch.duration", "Foreground fetch time.")
        self._refresh_duration = histogram(
            "swr.cache.refresh.duration", "Background refresh fetch time."
        )
        self._storage_duration = histogram("swr.cache.storage.duration", "Storage call time.")
        self._lease_wait = histogram(
            "swr.cache.lease.wait.duration", "Time waiting for another process's fetch."
        )
        for name, unit, description, field in _UP_DOWN:
            meter.create_observable_up_down_counter(
                name, callbacks=[self._observer(field)], unit=unit, description=description
            )
        for name, unit, description, field in _GAUGES:
            meter.create_observable_gauge(
                name, callbacks=[self._observer(field)], unit=unit, description=description
            )
        meter.create_observable_gauge(
            "swr.cache.storage.node.health",
            callbacks=[self._observe_nodes],
            unit="1",
            description="1 when a Redis Cluster master answers, 0 when not.",
        )

    def _attrs(self, *pairs: str) -> dict[str, str]:
        """The attribute dict of ``name, value, name, value...``, built once and reused."""
        try:
            return self._attributes[pairs]
        except KeyError:
            attrs = self._attributes[pairs] = dict(zip(pairs[::2], pairs[1::2], strict=True))
            return attrs

    # -- the hook -------------------------------------------------------------------------

    def record_refresh(self, engine: str, outcome: str) -> None:
        """Count one refresh event (``swr.cache.refreshes``)."""
        self._refreshes.add(1, self._attrs(ENGINE, engine, REFRESH_OUTCOME, outcome))

    def record_error(self, engine: str, kind: str) -> None:
        """Count a fetch error or a storage error of ``kind``."""
        if kind == "fetch":
            self._fetch_errors.add(1, self._attrs(ENGINE, engine))
        else:
            operation = kind.removeprefix("storage_")
            self._storage_errors.add(1, self._attrs(ENGINE, engine, STORAGE_OPERATION, operation))

    def record_fetch(self, engine: str, outcome: str, seconds: float) -> None:
        """Record a foreground fetch's duration."""
        self._fetch_duration.record(seconds, self._attrs(ENGINE, engine, FETCH_OUTCOME, outcome))

    def record_refresh_duration(self, engine: str, outcome: str, seconds: float) -> None:
        """Record a background refresh's fetch duration."""
        self._refresh_duration.record(seconds, self._attrs(ENGINE, engine, FETCH_OUTCOME, outcome))

    def record_storage(self, engine: str, storage: str, operation: str, seconds: float) -> None:
        """Record a storage call's duration."""
        self._storage_duration.record(
            seconds,
            self._attrs(ENGINE, engine, STORAGE_KIND, storage, STORAGE_OPERATION, operation),
        )

    def record_lease_wait(self, engine: str, seconds: float) -> None:
        """Record a wait for another process's fetch."""
        self._lease_wait.record(seconds, self._attrs(ENGINE, engine))

    def record_circuit(self, engine: str, state: str) -> None:
        """Count one circuit breaker transition into ``state``."""
        self._transitions.add(1, self._attrs(ENGINE, engine, CIRCUIT_STATE, state))

    def trace_fetch(
        self, engine: str, key: str, background: bool
    ) -> contextlib.AbstractContextManager[object]:
        """A span around one fetch (``swr.refresh`` when ``background``, else ``swr.fetch``).

        The span records the fetch's exception and sets an error status when it raises.
        """
        if not self.spans:
            return contextlib.nullcontext()
        attributes: dict[str, str | bool] = {ENGINE: engine, "swr.fetch.background": background}
        if self.record_keys:
            attributes[KEY] = key
        return self._tracer.start_as_current_span(
            "swr.refresh" if background else "swr.fetch", attributes=attributes
        )

    # -- observable callbacks ---------------------------------------------------------------

    def _observe_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(total, self._attrs(ENGINE, engine, STATUS, status))
            for (engine, status), total in self.status_counts().items()
        ]

    def _observe_nodes(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(up, self._attrs(ENGINE, reading.engine, STORAGE_NODE, node))
            for reading in self._sources.read()
            for node, up in reading.nodes
        ]

    def _observer(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            readings: list[EngineGauges] = list(self._sources.read())
            return [
                Observation(value, self._attrs(ENGINE, reading.engine))
                for reading in readings
                if (value := getattr(reading, field)) is not None
            ]

        return observe

    def __repr__(self) -> str:
        return f"OpenTelemetryMetrics(spans={self.spans}, record_keys={self.record_keys})"
