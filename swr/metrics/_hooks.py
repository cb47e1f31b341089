"""The optional half of the metrics hook: durations, gauges, spans, and how an engine binds them.

Everything here is re-exported by :mod:`swr.metrics`; import it from there.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from swr.errors import FetchTimeoutError
from swr.policy import Status
from swr.stats import Counter, storage_healthy
from swr.storage._validate import check_int

if TYPE_CHECKING:
    from swr.metrics import MetricsHook
    from swr.stats import EngineStats

__all__ = [
    "CIRCUIT_STATES",
    "DURATION_BUCKETS",
    "FETCH_OUTCOMES",
    "OPTIONAL_METHODS",
    "STORAGE_OPERATIONS",
    "BaseMetrics",
    "BoundHook",
    "StatsSource",
    "bind_hook",
    "fetch_outcome",
    "storage_health",
    "storage_kind",
]

FETCH_OUTCOMES = ("ok", "error", "timeout")
"""Values passed as ``outcome`` to :meth:`BaseMetrics.record_fetch` and
:meth:`BaseMetrics.record_refresh_duration`; see :func:`fetch_outcome`."""

STORAGE_OPERATIONS = (
    "get",
    "set",
    "delete",
    "get_many",
    "set_many",
    "set_and_release",
    "lease_acquire",
    "lease_release",
)
"""Values passed as ``operation`` to :meth:`BaseMetrics.record_storage`."""

CIRCUIT_STATES = ("closed", "half_open", "open")
"""Values passed as ``state`` to :meth:`BaseMetrics.record_circuit`, in the order of
the numeric circuit-state gauges (0, 1, 2)."""

DURATION_BUCKETS = (
    0.000001,
    0.0000025,
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Histogram bucket bounds in seconds: a memory read (a microsecond) to a hung
upstream cut by ``RefreshOptions.timeout`` (ten seconds by default)."""


StatsSource = Callable[[], "EngineStats"]
"""A zero-argument callable returning an engine's stats (``engine.stats``)."""

F = TypeVar("F", bound=Callable[..., Any])


def weak_callable(fn: F) -> Callable[[], F | None]:
    """A reference to ``fn``: weak for a bound method (``None`` once its object is gone),
    strong for any other callable. Lets a registry of callbacks never keep an engine alive.
    """  # noqa: D205 - the two cases are the summary
    if hasattr(fn, "__self__") and hasattr(fn, "__func__"):
        return weakref.WeakMethod(fn)

    def strong() -> F:
        return fn

    return strong


class BaseMetrics:
    """A metrics hook that records nothing: subclass it and override what you need.

    Every method is a no-op here. The engine skips measuring a duration when the
    installed hook does not override the method that receives it, so an unused
    method costs nothing, not even a clock read.

    Methods are called from request threads, refresh workers and event loops at
    once: they must be thread-safe, fast and never raise. No argument ever carries
    a cache key, except ``key`` of :meth:`trace_fetch`.

    Attributes:
        storage_read_sampling: The engine times one read in this many on the path of
            ``execute`` (mostly HITs: a memory read costs less than timing it); other
            reads, writes and lease calls are always timed. ``1`` times every read.
    """

    storage_read_sampling: int = 1

    # -- required by MetricsHook ------------------------------------------------------

    def record_status(self, engine: str, status: Status) -> None:
        """One ``execute`` call was answered with ``status``."""

    def record_refresh(self, engine: str, outcome: str) -> None:
        """A background refresh reached ``outcome`` (one of ``REFRESH_OUTCOMES``)."""

    def record_error(self, engine: str, kind: str) -> None:
        """An error of ``kind`` (one of ``ERROR_KINDS``) was absorbed or raised."""

    # -- optional ---------------------------------------------------------------------

    def status_counter(self, engine: str, status: Status) -> Callable[[], object]:
        """A zero-argument callable counting one answer of ``engine`` with ``status``.

        An engine asks for it once per status when it is built and calls it on its
        hot paths instead of :meth:`record_status`: one call, no arguments. The result
        must have the same effect as ``record_status(engine, status)``; this default
        is exactly that.
        """
        return functools.partial(self.record_status, engine, status)

    def record_fetch(self, engine: str, outcome: str, seconds: float) -> None:
        """A foreground fetch (a caller waiting for it) ended after ``seconds``.

        Reported once per fetch by the caller that ran it, not by the callers that
        shared it. ``outcome`` is one of ``FETCH_OUTCOMES``.
        """

    def record_refresh_duration(self, engine: str, outcome: str, seconds: float) -> None:
        """A background refresh's fetch ended after ``seconds`` with ``outcome``.

        ``outcome`` is one of ``FETCH_OUTCOMES``; a refresh skipped before fetching
        (lease held elsewhere, circuit open) is not timed.
        """

    def record_storage(self, engine: str, storage: str, operation: str, seconds: float) -> None:
        """A storage call took ``seconds``, whether it succeeded or raised.

        Args:
            engine: The engine's name.
            storage: The storage's kind (see :func:`storage_kind`): ``memory``,
                ``lmdb``, ``redis``, ``tiered``, ``fallback``, ...
            operation: One of ``STORAGE_OPERATIONS``.
            seconds: Wall time of the call, from ``time.perf_counter()``.
        """

    def record_lease_wait(self, engine: str, seconds: float) -> None:
        """A caller waited ``seconds`` for another process's fetch (cross-process lease).

        Reported when the wait ends: the entry appeared, the lease was won, or the
        lease period ran out and the caller fetched itself.
        """

    def record_circuit(self, engine: str, state: str) -> None:
        """The engine's circuit breaker moved to ``state`` (one of ``CIRCUIT_STATES``)."""

    def register_stats(self, engine: str, stats: StatsSource) -> None:
        """Read gauges (refreshes running and queued, storage size and health) from ``stats``.

        Called once per engine; calling it again for the same name replaces the
        source. Adapters keep a bound method weakly, so registering an engine never
        keeps it alive.
        """

    def trace_fetch(
        self, engine: str, key: str, background: bool
    ) -> contextlib.AbstractContextManager[object]:
        """A context manager wrapped around one fetch (a tracing span, say).

        ``key`` is the caller's key: a hook must not put it in a metric label.
        ``background`` is true for refreshes.
        """
        return contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class BoundHook:
    """The methods of one hook, resolved once when the engine is built.

    An optional method is ``None`` when the hook lacks it or inherits the no-op of
    :class:`BaseMetrics`; the engine then neither calls it nor reads the clock for it.
    """

    hook: MetricsHook
    record_status: Callable[[str, Status], None]
    record_refresh: Callable[[str, str], None]
    record_error: Callable[[str, str], None]
    status_counter: Callable[[str, Status], Callable[[], object]] | None
    adopt_status_counters: Callable[[str, Mapping[Status, Counter]], Callable[[], object]] | None
    record_fetch: Callable[[str, str, float], None] | None
    record_refresh_duration: Callable[[str, str, float], None] | None
    record_storage: Callable[[str, str, str, float], None] | None
    record_lease_wait: Callable[[str, float], None] | None
    record_circuit: Callable[[str, str], None] | None
    register_stats: Callable[[str, StatsSource], None] | None
    trace_fetch: Callable[[str, str, bool], contextlib.AbstractContextManager[object]] | None
    storage_read_sampling: int

    def counter(self, engine: str, status: Status) -> Callable[[], object]:
        """The zero-argument callable counting answers of ``engine`` with ``status``.

        The hook's own :meth:`BaseMetrics.status_counter` when it has one, else a
        partial of ``record_status``.
        """
        if self.status_counter is not None:
            return self.status_counter(engine, status)
        return functools.partial(self.record_status, engine, status)


OPTIONAL_METHODS = (
    "status_counter",
    "adopt_status_counters",
    "record_fetch",
    "record_refresh_duration",
    "record_storage",
    "record_lease_wait",
    "record_circuit",
    "register_stats",
    "trace_fetch",
)
"""The hook methods an engine calls only when the hook has them (see :func:`bind_hook`)."""


def _own_method(hook: object, name: str) -> Any:
    method = getattr(hook, name, None)
    if not callable(method):
        return None
    if getattr(type(hook), name, None) is getattr(BaseMetrics, name, ()):
        return None  # the inherited no-op (adopt_status_counters has none)
    return method


def bind_hook(hook: MetricsHook) -> BoundHook:
    """Resolve ``hook``'s methods once, for an engine to call without lookups.

    Raises:
        TypeError: ``hook`` lacks one of the three required methods, or its
            ``storage_read_sampling`` is not an int >= 1.
    """
    missing = [
        name
        for name in ("record_status", "record_refresh", "record_error")
        if not callable(getattr(hook, name, None))
    ]
    if missing:
        raise TypeError(
            f"metrics hook {type(hook).__name__} lacks {', '.join(missing)}; "
            "subclass swr.metrics.BaseMetrics or implement MetricsHook"
        )
    sampling = getattr(hook, "storage_read_sampling", 1)
    check_int(f"{type(hook).__name__}.storage_read_sampling", sampling, 1, error=TypeError)
    optional = {name: _own_method(hook, name) for name in OPTIONAL_METHODS}
    return BoundHook(
        hook=hook,
        record_status=hook.record_status,
        record_refresh=hook.record_refresh,
        record_error=hook.record_error,
        storage_read_sampling=sampling,
        **optional,
    )


def fetch_outcome(error: BaseException | None) -> str:
    """The ``outcome`` of a fetch that raised ``error`` (``None``: it returned).

    ``"ok"``, ``"timeout"`` for :class:`~swr.FetchTimeoutError`, else ``"error"``.
    """
    if error is None:
        return "ok"
    if isinstance(error, FetchTimeoutError):
        return "timeout"
    return "error"


_KIND_SUFFIXES = ("storage", "cache", "adapter")


def storage_kind(storage: object) -> str:
    """A short, stable label naming a storage's class: ``memory``, ``lmdb``, ``redis``...

    The ``Async`` prefix and a ``Storage`` suffix are dropped, so a sync storage and
    its asyncio twin share a label; an :class:`~swr.storage.AsyncAdapter` is named
    after the storage it wraps, and a view (``with_serializer``) after its class.
    """
    inner = getattr(storage, "sync", None)
    if inner is not None and type(storage).__name__ == "AsyncAdapter":
        storage = inner
    name = type(storage).__name__
    name = name.removeprefix("Async")
    lowered = name.lower()
    for suffix in _KIND_SUFFIXES:
        if lowered.endswith(suffix) and lowered != suffix:
            lowered = lowered[: -len(suffix)]
            break
    return lowered.lstrip("_") or "storage"


def storage_health(storage_stats: Mapping[str, Any]) -> float:
    """1.0 when a storage's stats report it healthy, else 0.0.

    Unhealthy: its ``stats()`` raised (the engine then reports ``error``), or it
    reports ``healthy``, ``available`` (a Redis storage marked down; on a cluster,
    every master down) or ``primary_available`` (a fallback storage whose primary is
    down) as false. See :func:`swr.stats.storage_healthy`.
    """
    return 1.0 if storage_healthy(storage_stats) else 0.0
