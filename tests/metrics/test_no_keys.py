"""No metric label or attribute ever carries a cache key, whatever the keys are."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swr import CacheTTL, StaleEngine, Status
from swr.metrics import (
    CIRCUIT_STATES,
    DURATION_BUCKETS,
    ERROR_KINDS,
    FETCH_OUTCOMES,
    REFRESH_OUTCOMES,
    STORAGE_OPERATIONS,
    BaseMetrics,
)
from swr.metrics.opentelemetry import OpenTelemetryMetrics
from swr.metrics.prometheus import PrometheusMetrics
from swr.testing import FakeClock
from tests.metrics.scenario import drive_keys

ENGINE = "catalog"
# Every label value an adapter may emit for this engine: a fixed vocabulary.
VOCABULARY = {
    ENGINE,
    "memory",
    "get",
    "read",
    "write",
    "+Inf",
    *(s.value for s in Status),
    *REFRESH_OUTCOMES,
    *FETCH_OUTCOMES,
    *ERROR_KINDS,
    *CIRCUIT_STATES,
    *STORAGE_OPERATIONS,
    *(str(b) for b in DURATION_BUCKETS),
}

keys = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5)


def exercise(hook: BaseMetrics, key_list: list[str]) -> StaleEngine:
    """Every kind of answer for each key (the engine times its fetches, storage calls
    and leases), plus every duration method called directly.
    """
    clock = FakeClock()
    engine = StaleEngine(
        ttl=CacheTTL(fresh=10, stale=20, expired=30), clock=clock, name=ENGINE, metrics=hook
    )
    hook.register_stats(engine.name, engine.stats)
    drive_keys(engine, key_list, clock)
    hook.record_fetch(ENGINE, "ok", 0.01)
    hook.record_refresh_duration(ENGINE, "error", 0.01)
    hook.record_storage(ENGINE, "memory", "get", 0.00001)
    hook.record_lease_wait(ENGINE, 0.01)
    hook.record_circuit(ENGINE, "open")
    hook.record_error(ENGINE, "storage_read")
    return engine


def prometheus_labels(key_list: list[str]) -> set[str]:
    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry)
    engine = exercise(hook, key_list)
    text = generate_latest(registry).decode()
    engine.close()
    hook.close()
    return {
        v
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for v in sample.labels.values()
    }


def otel_attributes(key_list: list[str]) -> set[object]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    hook = OpenTelemetryMetrics(provider, spans=False)
    engine = exercise(hook, key_list)
    data = reader.get_metrics_data()
    engine.close()
    provider.shutdown()
    assert data is not None
    return {
        v
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        for p in m.data.data_points
        for v in p.attributes.values()
    }


BASELINE_PROMETHEUS = prometheus_labels(["k"])
BASELINE_OTEL = otel_attributes(["k"])


def test_the_baselines_cover_the_vocabulary_they_are_judged_by():
    assert BASELINE_PROMETHEUS <= VOCABULARY
    assert BASELINE_OTEL <= VOCABULARY
    assert {"hit", "stale", "miss", "fallback", ENGINE} <= BASELINE_PROMETHEUS
    # The engine's own durations are among them: storage calls and fetch outcomes.
    assert {"lease_acquire", "set_and_release", "ok", "error"} <= BASELINE_PROMETHEUS
    assert {"lease_acquire", "set_and_release", "ok", "error"} <= BASELINE_OTEL


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys)
def test_prometheus_labels_never_depend_on_keys(key_list):
    assert prometheus_labels(key_list) == BASELINE_PROMETHEUS


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys)
def test_otel_attributes_never_depend_on_keys(key_list):
    assert otel_attributes(key_list) == BASELINE_OTEL
