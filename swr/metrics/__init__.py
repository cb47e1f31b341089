"""The metrics hook: attach Prometheus, StatsD or anything else to an engine.

The engine calls the hook for every answered request, refresh outcome and error.
Label values are engine names, statuses, outcomes and error kinds, never keys, so
the number of series stays small. Hooks are called on the request path: keep them
fast and never raise (an exception from a hook reaches the caller).

Three methods are required (:class:`MetricsHook`). The others are optional: a hook
that subclasses :class:`BaseMetrics` overrides the ones it wants (durations, gauges,
spans), and the engine measures a duration (with ``time.perf_counter()``) only when
the installed hook overrides the method that receives it; :func:`bind_hook` tells the
engine which. Two adapters ship with swr: :mod:`swr.metrics.prometheus` (extra
``swr[prometheus]``) and :mod:`swr.metrics.opentelemetry` (extra ``swr[otel]``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from swr.metrics._hooks import (
    CIRCUIT_STATES,
    DURATION_BUCKETS,
    FETCH_OUTCOMES,
    OPTIONAL_METHODS,
    STORAGE_OPERATIONS,
    BaseMetrics,
    BoundHook,
    StatsSource,
    bind_hook,
    fetch_outcome,
    storage_health,
    storage_kind,
)
from swr.policy import Status

__all__ = [
    "CIRCUIT_STATES",
    "DURATION_BUCKETS",
    "ERROR_KINDS",
    "FETCH_OUTCOMES",
    "OPTIONAL_METHODS",
    "REFRESH_OUTCOMES",
    "STORAGE_OPERATIONS",
    "BaseMetrics",
    "BoundHook",
    "MetricsHook",
    "StatsSource",
    "bind_hook",
    "fetch_outcome",
    "storage_health",
    "storage_kind",
]

REFRESH_OUTCOMES = ("started", "succeeded", "failed", "timed_out", "dropped", "skipped")
"""Values passed as ``outcome`` to :meth:`MetricsHook.record_refresh`.

A refresh that times out is reported twice: ``timed_out``, then ``failed``.
"""

ERROR_KINDS = ("fetch", "storage_read", "storage_write")
"""Values passed as ``kind`` to :meth:`MetricsHook.record_error`."""


@runtime_checkable
class MetricsHook(Protocol):
    """Receives the engine's events as counter increments.

    These three methods are all a hook needs; the optional ones of
    :class:`BaseMetrics` are called too when the hook has them.

    Example (prometheus_client by hand; :mod:`swr.metrics.prometheus` ships an adapter)::

        class PrometheusHook:
            def __init__(self):
                self.requests = Counter("swr_requests", "answers", ["engine", "status"])
                self.refreshes = Counter("swr_refreshes", "refreshes", ["engine", "outcome"])
                self.errors = Counter("swr_errors", "errors", ["engine", "kind"])

            def record_status(self, engine, status):
                self.requests.labels(engine, status.value).inc()

            def record_refresh(self, engine, outcome):
                self.refreshes.labels(engine, outcome).inc()

            def record_error(self, engine, kind):
                self.errors.labels(engine, kind).inc()
    """

    def record_status(self, engine: str, status: Status) -> None:
        """One ``execute`` call was answered with ``status``."""
        ...

    def record_refresh(self, engine: str, outcome: str) -> None:
        """A background refresh reached ``outcome`` (one of ``REFRESH_OUTCOMES``)."""
        ...

    def record_error(self, engine: str, kind: str) -> None:
        """An error of ``kind`` (one of ``ERROR_KINDS``) was absorbed or raised."""
        ...
