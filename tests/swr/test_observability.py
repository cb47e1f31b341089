"""Metrics hook and structlog events."""

from __future__ import annotations

import threading

from structlog.testing import capture_logs

from swr import CacheTTL, Status
from swr.metrics import MetricsHook
from swr.stats import Counter
from swr.testing import RecordingMetrics
from tests.swr.upstream import Upstream

TTL = CacheTTL(fresh=10, stale=20, expired=30)


def test_metrics_hook_sees_statuses_refreshes_and_errors_never_keys(make_driver, clock):
    metrics = RecordingMetrics()
    assert isinstance(metrics, MetricsHook)
    d = make_driver(ttl=TTL, clock=clock, metrics=metrics, name="users")
    up = Upstream()
    d.execute("user:secret-key", up)
    d.execute("user:secret-key", up)
    clock.advance(15)
    d.execute("user:secret-key", up)
    d.settle()
    clock.advance(35)
    up.fail_with()
    d.execute("user:secret-key", up)
    assert metrics.statuses == {
        ("users", "miss"): 1,
        ("users", "hit"): 1,
        ("users", "stale"): 1,
        ("users", "fallback"): 1,
    }
    assert metrics.refreshes == {("users", "started"): 1, ("users", "succeeded"): 1}
    assert metrics.errors == {("users", "fetch"): 1}
    labels = {
        v for c in (metrics.statuses, metrics.refreshes, metrics.errors) for k in c for v in k
    }
    assert not any("secret" in label for label in labels)


def test_stats_snapshot(make_driver, clock):
    d = make_driver(ttl=TTL, clock=clock)
    up = Upstream()
    d.execute("a", up)
    d.execute("a", up)
    s = d.stats()
    assert (s.misses, s.hits, s.requests, s.storage_errors) == (1, 1, 2, 0)
    assert s.as_dict()["storage"] == {"entries": 1, "evictions": 0}


def test_events_are_snake_case_and_carry_context(make_driver, clock):
    d = make_driver(ttl=TTL, clock=clock, name="billing")
    up = Upstream()
    d.execute("k", up)
    clock.advance(15)
    up.fail_with()
    with capture_logs() as logs:
        assert d.execute("k", up).status is Status.STALE
        d.settle()
    event = next(e for e in logs if e["event"] == "refresh_failed")
    assert event["engine"] == "billing"
    assert event["key"] == "k"
    assert event["failures"] == 1
    assert event["log_level"] == "warning"
    assert "UpstreamError" in event["error"]


def test_counter_value_counts_increments_from_many_threads_and_reads():
    counter = Counter()
    assert counter.value == 0
    assert counter.value == 0  # reading does not count as an increment

    def bump() -> None:
        for _ in range(10_000):
            counter.incr()

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    readings = [counter.value for _ in range(100)]
    for t in threads:
        t.join()
    assert counter.value == 40_000
    assert readings == sorted(readings)  # never goes backwards
