"""PrometheusMetrics, read back through prometheus_client's own exposition and parser."""

from __future__ import annotations

import gc
import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swr import StaleEngine, Status
from swr.errors import ConfigError
from swr.metrics import DURATION_BUCKETS, bind_hook
from swr.metrics.prometheus import PrometheusMetrics
from tests.metrics import scenario as sc

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of the registry's exposition text, by name and labels."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def family(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def assert_histogram(samples: Samples, name: str, observed: list[float], **labels: str) -> None:
    """Count, sum and every cumulative bucket of one histogram series."""
    assert value(samples, f"{name}_count", **labels) == len(observed)
    assert value(samples, f"{name}_sum", **labels) == pytest.approx(sum(observed))
    for bound in (*DURATION_BUCKETS, math.inf):
        le = "+Inf" if bound == math.inf else str(bound)
        expected = sum(1 for o in observed if o <= bound)
        assert value(samples, f"{name}_bucket", **labels, le=le) == expected, (name, le)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    hook = PrometheusMetrics(registry, storage_read_sampling=1)
    yield hook
    hook.close()


def test_a_scripted_run_reads_back_exactly(metrics, registry, clock, perf, kind):
    driver, release = sc.run_scenario(metrics, clock, perf, kind)
    try:
        samples = scrape(registry)
    finally:
        release()
    e = sc.ENGINE
    assert family(samples, "swr_requests_total") == {
        frozenset({("engine", e), ("status", status)}): float(n)
        for status, n in sc.STATUSES.items()
    }
    assert family(samples, "swr_refreshes_total") == {
        frozenset({("engine", e), ("outcome", outcome)}): float(n)
        for outcome, n in sc.REFRESHES.items()
    }
    assert family(samples, "swr_fetch_errors_total") == {
        frozenset({("engine", e)}): sc.FETCH_ERRORS
    }
    assert family(samples, "swr_storage_errors_total") == {
        frozenset({("engine", e), ("operation", op)}): float(n)
        for op, n in sc.STORAGE_ERRORS.items()
    }
    # Reported by the engine's breaker listener, as they happened.
    assert family(samples, "swr_circuit_transitions_total") == {
        frozenset({("engine", e), ("state", state)}): 1.0 for state in sc.TRANSITIONS
    }
    # Every duration measured by the engine itself.
    for outcome, observed in sc.FETCHES.items():
        assert_histogram(samples, "swr_fetch_duration_seconds", observed, engine=e, outcome=outcome)
    for outcome, observed in sc.REFRESH_DURATIONS.items():
        assert_histogram(
            samples, "swr_refresh_duration_seconds", observed, engine=e, outcome=outcome
        )
    assert {dict(labels)["outcome"] for labels in histogram_series(samples, "fetch")} == {
        "ok",
        "error",
    }
    for operation, observed in sc.STORAGE_CALLS.items():
        assert_histogram(
            samples,
            "swr_storage_duration_seconds",
            observed,
            engine=e,
            storage="flaky",
            operation=operation,
        )
    assert {dict(labels)["operation"] for labels in histogram_series(samples, "storage")} == set(
        sc.STORAGE_CALLS
    )
    assert_histogram(samples, "swr_lease_wait_seconds", sc.LEASE_WAITS, engine=e)
    for gauge, expected in sc.GAUGES.items():
        assert family(samples, f"swr_{gauge}") == {frozenset({("engine", e)}): expected}, gauge
    assert family(samples, "swr_storage_node_up") == {}  # not a Redis Cluster
    # The engine's own counters tell the same story.
    stats = driver.stats()
    assert stats.statuses == sc.STATUSES
    assert stats.hit_ratio == pytest.approx((3 + 5) / 18)


def histogram_series(samples: Samples, what: str) -> set[frozenset[tuple[str, str]]]:
    """The label sets of ``swr_<what>_duration_seconds``."""
    return set(family(samples, f"swr_{what}_duration_seconds_count"))


def test_refreshes_that_ended_leave_the_running_gauge(metrics, registry, clock, perf, kind):
    _driver, release = sc.run_scenario(metrics, clock, perf, kind)
    release()  # lets the held refreshes finish, then closes the engine
    samples = scrape(registry)
    assert value(samples, "swr_refreshes_running", engine=sc.ENGINE) == 0
    assert value(samples, "swr_refreshes_queued", engine=sc.ENGINE) == 0
    assert value(samples, "swr_refreshes_total", engine=sc.ENGINE, outcome="succeeded") == 2


def test_gauges_follow_the_engine_and_vanish_with_it(metrics, registry, clock):
    engine = StaleEngine(clock=clock, name="short-lived", metrics=metrics)
    metrics.watch(engine)
    metrics.watch(engine)  # idempotent
    engine.execute("k", lambda: 1)
    assert value(scrape(registry), "swr_storage_entries", engine="short-lived") == 1
    engine.close()
    del engine
    gc.collect()
    samples = scrape(registry)
    assert family(samples, "swr_storage_entries") == {}
    # Counters outlive the engine: they are totals.
    assert value(samples, "swr_requests_total", engine="short-lived", status="miss") == 1


def test_a_failing_stats_source_reads_as_an_unhealthy_storage(metrics, registry):
    def broken_stats():
        raise RuntimeError("stats down")

    metrics.register_stats("broken", broken_stats)
    samples = scrape(registry)
    assert value(samples, "swr_storage_healthy", engine="broken") == 0
    # Nothing else is known: no series rather than made-up zeros.
    assert family(samples, "swr_storage_bytes") == {}
    assert family(samples, "swr_circuit_state") == {}


def test_engines_are_told_apart_by_label_only(metrics, registry, clock):
    one = StaleEngine(clock=clock, name="one", metrics=metrics)
    two = StaleEngine(clock=clock, name="two", metrics=metrics)
    for _ in range(3):
        one.execute("k", lambda: 1)
    two.execute("k", lambda: 1)
    samples = scrape(registry)
    assert value(samples, "swr_requests_total", engine="one", status="hit") == 2
    assert value(samples, "swr_requests_total", engine="two", status="hit") == 0
    assert value(samples, "swr_requests_total", engine="two", status="miss") == 1
    one.close()
    two.close()


def test_namespace_prefixes_every_series(registry):
    hook = PrometheusMetrics(registry, namespace="shop_cache")
    hook.record_status("e", Status.HIT)
    hook.record_fetch("e", "ok", 0.1)
    names = {name for name, _ in scrape(registry)}
    assert names and all(name.startswith("shop_cache_") for name in names), names
    hook.close()


def test_close_unregisters_so_a_new_adapter_can_take_the_registry(registry):
    first = PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry)
    first.close()
    first.close()  # idempotent
    assert scrape(registry) == {}
    PrometheusMetrics(registry).close()


def test_default_registry_is_the_global_one():
    from prometheus_client import REGISTRY

    hook = PrometheusMetrics()
    try:
        assert hook.registry is REGISTRY
        hook.record_status("global-check", Status.MISS)
        assert (
            REGISTRY.get_sample_value(
                "swr_requests_total", {"engine": "global-check", "status": "miss"}
            )
            == 1
        )
    finally:
        hook.close()
    assert REGISTRY.get_sample_value("swr_requests_total", {"engine": "global-check"}) is None


def test_the_engine_sees_every_optional_method():
    bound = bind_hook(PrometheusMetrics(CollectorRegistry()))
    assert bound.record_fetch is not None
    assert bound.record_refresh_duration is not None
    assert bound.record_storage is not None
    assert bound.record_lease_wait is not None
    assert bound.record_circuit is not None
    assert bound.register_stats is not None
    assert bound.trace_fetch is None  # no spans here
    assert bound.storage_read_sampling == 256


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"multiprocess": True}, ConfigError, "PROMETHEUS_MULTIPROC_DIR"),
        ({"flush_interval": 0}, ConfigError, "flush_interval"),
        ({"flush_interval": "1"}, TypeError, "flush_interval"),
        ({"buckets": [0.1, 0.01]}, ConfigError, "buckets"),
        ({"buckets": []}, ConfigError, "buckets"),
        ({"storage_read_sampling": 0}, ValueError, "storage_read_sampling"),
        ({"registry": "global"}, TypeError, "registry"),
    ],
)
def test_bad_settings_name_the_problem(kwargs, error, message):
    kwargs.setdefault("registry", CollectorRegistry())
    with pytest.raises(error, match=message):
        PrometheusMetrics(**kwargs)


def test_a_name_taken_in_the_registry_leaves_it_as_it_was(registry):
    from prometheus_client import Gauge

    Gauge("swr_storage_bytes", "the application's own", registry=registry)
    before = scrape(registry)
    with pytest.raises(ValueError, match="swr_storage_bytes"):
        PrometheusMetrics(registry)
    assert scrape(registry) == before
