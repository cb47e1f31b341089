"""OpenTelemetryMetrics, read back through the SDK's in-memory metric reader and exporter."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from swr import AsyncStaleEngine, StaleEngine
from swr.metrics import DURATION_BUCKETS, bind_hook
from swr.metrics.opentelemetry import OpenTelemetryMetrics
from tests.metrics import scenario as sc

Points = dict[str, dict[frozenset[tuple[str, object]], object]]


class Otel:
    """An SDK meter and tracer provider whose data the test reads."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))

    def points(self) -> Points:
        """Every data point, by instrument name and attributes."""
        data = self.reader.get_metrics_data()
        out: Points = {}
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "swr"
                for metric in scope.metrics:
                    out[metric.name] = {
                        frozenset(p.attributes.items()): p for p in metric.data.data_points
                    }
        return out

    def units(self) -> dict[str, str]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            m.name: m.unit
            for r in data.resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
        }


@pytest.fixture
def otel():
    sdk = Otel()
    yield sdk
    sdk.meters.shutdown()
    sdk.tracers.shutdown()


def values(points: Points, name: str) -> dict[frozenset[tuple[str, object]], object]:
    return {attrs: p.value for attrs, p in points[name].items()}  # type: ignore[attr-defined]


E = {"swr.engine": sc.ENGINE}


def keyed(**kv: object) -> frozenset[tuple[str, object]]:
    return frozenset({**E, **kv}.items())


def assert_histogram(points: Points, name: str, observed: list[float], **kv: object) -> None:
    point = points[name][keyed(**kv)]
    assert point.count == len(observed)
    assert point.sum == pytest.approx(sum(observed))
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    expected = [0] * (len(DURATION_BUCKETS) + 1)
    for o in observed:
        expected[next((i for i, b in enumerate(DURATION_BUCKETS) if o <= b), -1)] += 1
    assert list(point.bucket_counts) == expected


def test_a_scripted_run_reads_back_exactly(otel, clock, perf, kind):
    hook = OpenTelemetryMetrics(otel.meters, otel.tracers, storage_read_sampling=1)
    _driver, release = sc.run_scenario(hook, clock, perf, kind)
    try:
        points = otel.points()
        spans = otel.spans.get_finished_spans()
    finally:
        release()
    assert values(points, "swr.cache.requests") == {
        keyed(**{"swr.cache.status": s}): n for s, n in sc.STATUSES.items()
    }
    assert values(points, "swr.cache.refreshes") == {
        keyed(**{"swr.refresh.outcome": o}): n for o, n in sc.REFRESHES.items()
    }
    assert values(points, "swr.cache.fetch.errors") == {keyed(): sc.FETCH_ERRORS}
    assert values(points, "swr.cache.storage.errors") == {
        keyed(**{"swr.storage.operation": op}): n for op, n in sc.STORAGE_ERRORS.items()
    }
    assert values(points, "swr.cache.circuit.transitions") == {
        keyed(**{"swr.circuit.state": s}): 1 for s in sc.TRANSITIONS
    }
    assert set(points["swr.cache.fetch.duration"]) == {
        keyed(**{"swr.fetch.outcome": o}) for o in sc.FETCHES
    }
    for outcome, observed in sc.FETCHES.items():
        assert_histogram(
            points, "swr.cache.fetch.duration", observed, **{"swr.fetch.outcome": outcome}
        )
    for outcome, observed in sc.REFRESH_DURATIONS.items():
        assert_histogram(
            points, "swr.cache.refresh.duration", observed, **{"swr.fetch.outcome": outcome}
        )
    assert set(points["swr.cache.storage.duration"]) == {
        keyed(**{"swr.storage.kind": "flaky", "swr.storage.operation": op})
        for op in sc.STORAGE_CALLS
    }
    for operation, observed in sc.STORAGE_CALLS.items():
        assert_histogram(
            points,
            "swr.cache.storage.duration",
            observed,
            **{"swr.storage.kind": "flaky", "swr.storage.operation": operation},
        )
    assert_histogram(points, "swr.cache.lease.wait.duration", sc.LEASE_WAITS)
    gauges = {
        "swr.cache.refreshes.running": sc.GAUGES["refreshes_running"],
        "swr.cache.refreshes.queued": sc.GAUGES["refreshes_queued"],
        "swr.cache.circuit.state": sc.GAUGES["circuit_state"],
        "swr.cache.storage.health": sc.GAUGES["storage_healthy"],
        "swr.cache.storage.entries": sc.GAUGES["storage_entries"],
        "swr.cache.storage.usage": sc.GAUGES["storage_bytes"],
    }
    for name, expected in gauges.items():
        assert values(points, name) == {keyed(): expected}, name
    assert "swr.cache.storage.node.health" not in points  # not a Redis Cluster
    # One span per fetch that ran: foreground (7) and background (2 ended; d's hangs).
    names = sorted(span.name for span in spans)
    assert names == ["swr.fetch"] * 7 + ["swr.refresh"] * 2
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert sorted(s.name for s in failed) == ["swr.fetch", "swr.refresh"]
    assert all("swr.cache.key" not in span.attributes for span in spans)


def test_units_follow_the_conventions(otel):
    hook = OpenTelemetryMetrics(otel.meters, otel.tracers)
    engine = StaleEngine(name="u", metrics=hook)
    hook.watch(engine)
    engine.execute("k", lambda: 1)
    for name in ("record_fetch", "record_refresh_duration"):
        getattr(hook, name)("u", "ok", 0.1)
    hook.record_storage("u", "memory", "get", 0.1)
    hook.record_lease_wait("u", 0.1)
    hook.record_refresh("u", "started")
    hook.record_error("u", "fetch")
    hook.record_error("u", "storage_read")
    hook.record_circuit("u", "open")
    assert otel.units() == {
        "swr.cache.requests": "{request}",
        "swr.cache.refreshes": "{refresh}",
        "swr.cache.fetch.errors": "{error}",
        "swr.cache.storage.errors": "{error}",
        "swr.cache.circuit.transitions": "{transition}",
        "swr.cache.fetch.duration": "s",
        "swr.cache.refresh.duration": "s",
        "swr.cache.storage.duration": "s",
        "swr.cache.lease.wait.duration": "s",
        "swr.cache.refreshes.running": "{refresh}",
        "swr.cache.refreshes.queued": "{refresh}",
        "swr.cache.storage.entries": "{entry}",
        "swr.cache.storage.health": "1",
    }
    engine.close()


def test_spans_wrap_fetches_and_leave_the_key_out(otel):
    hook = OpenTelemetryMetrics(otel.meters, otel.tracers)
    with hook.trace_fetch("users", "user:42", background=False):
        pass
    with pytest.raises(RuntimeError), hook.trace_fetch("users", "user:43", background=True):
        raise RuntimeError("upstream down")
    fetch, refresh = otel.spans.get_finished_spans()
    assert (fetch.name, dict(fetch.attributes)) == (
        "swr.fetch",
        {"swr.engine": "users", "swr.fetch.background": False},
    )
    assert refresh.name == "swr.refresh"
    assert refresh.status.status_code is StatusCode.ERROR
    assert [e.name for e in refresh.events] == ["exception"]
    assert "swr.cache.key" not in refresh.attributes


def test_record_keys_puts_the_key_on_spans_only(otel):
    hook = OpenTelemetryMetrics(otel.meters, otel.tracers, record_keys=True)
    with hook.trace_fetch("users", "user:42", background=False):
        hook.record_fetch("users", "ok", 0.01)
    (span,) = otel.spans.get_finished_spans()
    assert span.attributes["swr.cache.key"] == "user:42"
    for points in otel.points().values():
        for attributes in points:
            assert "user:42" not in dict(attributes).values()


def test_upstream_spans_nest_under_the_fetch_span(otel):
    hook = OpenTelemetryMetrics(otel.meters, otel.tracers)
    tracer = otel.tracers.get_tracer("app")

    async def fetch() -> int:
        with tracer.start_as_current_span("GET /users/42"):
            return 42

    async def main() -> None:
        with hook.trace_fetch("users", "user:42", background=False):
            assert await asyncio.ensure_future(fetch()) == 42

    asyncio.run(main())
    upstream, outer = otel.spans.get_finished_spans()
    assert upstream.parent is not None
    assert upstream.parent.span_id == outer.context.span_id


def test_spans_off_is_a_null_context(otel):
    hook = OpenTelemetryMetrics(otel.meters, otel.tracers, spans=False)
    with hook.trace_fetch("users", "k", background=False):
        pass
    assert otel.spans.get_finished_spans() == ()
    assert bind_hook(hook).trace_fetch is not None


async def test_the_async_engine_counts_the_same_way(otel, clock):
    hook = OpenTelemetryMetrics(otel.meters, otel.tracers)
    engine = AsyncStaleEngine(ttl=sc.TTL, clock=clock, name="aio", metrics=hook)
    hook.watch(engine)

    async def fetch() -> int:
        return 1

    await engine.execute("k", fetch)
    await engine.execute("k", fetch)
    points = otel.points()
    assert (
        values(points, "swr.cache.requests")[
            frozenset({"swr.engine": "aio", "swr.cache.status": "hit"}.items())
        ]
        == 1
    )
    assert values(points, "swr.cache.storage.entries") == {
        frozenset({"swr.engine": "aio"}.items()): 1
    }
    await engine.aclose()


def test_without_an_sdk_the_global_providers_cost_nothing_and_work(clock):
    hook = OpenTelemetryMetrics()  # the API's no-op providers unless an SDK is set
    engine = StaleEngine(clock=clock, name="noop", metrics=hook)
    hook.watch(engine)
    engine.execute("k", lambda: 1)
    hook.record_fetch("noop", "ok", 0.1)
    with hook.trace_fetch("noop", "k", background=False):
        pass
    assert hook.status_counts()["noop", "miss"] == 1
    engine.close()


def test_bad_sampling_names_the_problem():
    with pytest.raises(TypeError, match="storage_read_sampling"):
        OpenTelemetryMetrics(storage_read_sampling=2.5)  # type: ignore[arg-type]
