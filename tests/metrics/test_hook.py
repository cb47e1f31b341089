"""The hook protocol: optional methods, how the engine binds them, and the label helpers."""

from __future__ import annotations

import contextlib

import pytest

from swr import AsyncStaleEngine, FetchTimeoutError, StaleEngine, Status
from swr.metrics import (
    CIRCUIT_STATES,
    OPTIONAL_METHODS,
    BaseMetrics,
    MetricsHook,
    bind_hook,
    fetch_outcome,
    storage_health,
    storage_kind,
)
from swr.stats import EngineStats
from swr.storage import LMDBStorage, MemoryStorage, TieredStorage
from swr.testing import RecordingMetrics


class Durations(BaseMetrics):
    storage_read_sampling = 4

    def __init__(self) -> None:
        self.fetches: list[tuple[str, str, float]] = []

    def record_fetch(self, engine: str, outcome: str, seconds: float) -> None:
        self.fetches.append((engine, outcome, seconds))


def test_base_metrics_is_a_hook_that_does_nothing(clock):
    hook = BaseMetrics()
    assert isinstance(hook, MetricsHook)
    engine = StaleEngine(clock=clock, metrics=hook)
    assert engine.execute("k", lambda: 1).status is Status.MISS
    hook.record_fetch("e", "ok", 0.1)
    hook.record_refresh_duration("e", "ok", 0.1)
    hook.record_storage("e", "memory", "get", 0.1)
    hook.record_lease_wait("e", 0.1)
    hook.record_circuit("e", "open")
    hook.register_stats("e", engine.stats)
    with hook.trace_fetch("e", "k", background=False) as span:
        assert span is None
    engine.close()


def test_bind_hook_leaves_out_what_the_hook_does_not_override():
    bound = bind_hook(Durations())
    assert bound.record_fetch is not None
    for name in OPTIONAL_METHODS:
        if name != "record_fetch":
            assert getattr(bound, name) is None, name
    assert bound.storage_read_sampling == 4
    bound.record_fetch("e", "ok", 0.5)
    assert bound.hook.fetches == [("e", "ok", 0.5)]  # type: ignore[attr-defined]


def test_a_hook_with_only_the_three_counters_still_binds():
    hook = RecordingMetrics()
    bound = bind_hook(hook)
    assert (bound.record_fetch, bound.record_storage, bound.trace_fetch) == (None, None, None)
    assert bound.storage_read_sampling == 1
    bound.record_status("e", Status.HIT)
    assert hook.statuses == {("e", "hit"): 1}


def test_a_plain_class_with_the_optional_methods_binds_them():
    class Duck:
        def record_status(self, engine, status): ...
        def record_refresh(self, engine, outcome): ...
        def record_error(self, engine, kind): ...
        def record_lease_wait(self, engine, seconds): ...
        def trace_fetch(self, engine, key, background):
            return contextlib.nullcontext()

    bound = bind_hook(Duck())
    assert bound.record_lease_wait is not None
    assert bound.trace_fetch is not None
    assert bound.record_fetch is None


def test_bind_hook_names_what_is_missing():
    class Half:
        def record_status(self, engine, status): ...

    with pytest.raises(TypeError, match="record_refresh, record_error"):
        bind_hook(Half())  # type: ignore[arg-type]


@pytest.mark.parametrize("sampling", [0, -1, 1.5, True, "4"])
def test_bind_hook_refuses_bad_sampling(sampling):
    hook = Durations()
    hook.storage_read_sampling = sampling  # type: ignore[assignment]
    with pytest.raises(TypeError, match="storage_read_sampling"):
        bind_hook(hook)


def test_fetch_outcomes():
    assert fetch_outcome(None) == "ok"
    assert fetch_outcome(FetchTimeoutError("slow")) == "timeout"
    assert fetch_outcome(TimeoutError("a socket's own timeout")) == "error"
    assert fetch_outcome(KeyError("x")) == "error"


def test_storage_kinds_are_short_and_shared_by_twins(tmp_path):
    memory = MemoryStorage()
    assert storage_kind(memory) == "memory"
    assert storage_kind(memory.as_async()) == "memory"
    lmdb = LMDBStorage(tmp_path / "db")
    assert storage_kind(lmdb) == "lmdb"
    assert storage_kind(AsyncStaleEngine(lmdb).storage) == "lmdb"
    assert storage_kind(TieredStorage(MemoryStorage(), MemoryStorage())) == "tiered"

    class AsyncRedisStorage:  # the name is all that counts
        pass

    assert storage_kind(AsyncRedisStorage()) == "redis"
    lmdb.close()


def test_storage_health():
    assert storage_health({"entries": 3}) == 1.0
    assert storage_health({}) == 1.0
    assert storage_health({"error": "RuntimeError()"}) == 0.0
    assert storage_health({"primary_available": 0}) == 0.0
    assert storage_health({"primary_available": 1}) == 1.0
    assert storage_health({"healthy": False}) == 0.0


def test_circuit_states_match_the_breaker():
    assert set(CIRCUIT_STATES) == {"closed", "open", "half_open"}
    stats = EngineStats(circuit={"state": "half_open"})
    assert CIRCUIT_STATES.index(stats.circuit["state"]) == 1


def test_bound_counter_falls_back_to_record_status():
    hook = RecordingMetrics()
    hit = bind_hook(hook).counter("e", Status.HIT)
    hit()
    hit()
    assert hook.statuses == {("e", "hit"): 2}
    base = BaseMetrics()
    assert bind_hook(base).status_counter is None


def test_adapters_hand_out_a_zero_argument_counter():
    from prometheus_client import CollectorRegistry

    from swr.metrics.prometheus import PrometheusMetrics

    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry)
    bound = bind_hook(hook)
    assert bound.status_counter is not None
    stale = bound.counter("e", Status.STALE)
    for _ in range(3):
        stale()
    hook.record_status("e", Status.STALE)
    assert registry.get_sample_value("swr_requests_total", {"engine": "e", "status": "stale"}) == 4
    assert bound.counter("e", Status.STALE) is stale  # one counter per engine and status
    hook.close()


def _prometheus_hook():
    from prometheus_client import CollectorRegistry

    from swr.metrics.prometheus import PrometheusMetrics

    return PrometheusMetrics(CollectorRegistry())


def test_adapters_read_the_answers_from_the_engines_own_counters(clock):
    hook = _prometheus_hook()
    assert bind_hook(hook).adopt_status_counters is not None
    engine = StaleEngine(clock=clock, metrics=hook, name="e")
    engine.execute("a", lambda: 1)  # miss
    for _ in range(3):
        engine.execute("a", lambda: 1)  # hits
    assert engine.execute_many(["a", "b"], lambda keys: dict.fromkeys(keys, 2))["a"].value == 1
    clock.advance(engine._ttl.fresh)  # stale now
    engine.execute("a", lambda: 1)
    counts = {status: n for (name, status), n in hook.status_counts().items() if name == "e"}
    stats = engine.stats()
    # Counted once each: neither missing nor also counted through status_counter.
    assert (
        counts == stats.statuses == {"hit": 4, "stale": 1, "expired": 0, "miss": 2, "fallback": 0}
    )
    engine.close()
    hook.close()


def test_adopted_counts_outlive_their_engine_and_add_up_by_name(clock):
    import gc

    hook = _prometheus_hook()
    first = StaleEngine(clock=clock, metrics=hook, name="e")
    first.execute("a", lambda: 1)
    first.execute("a", lambda: 1)
    second = StaleEngine(clock=clock, metrics=hook, name="e")
    second.execute("b", lambda: 1)
    assert hook.status_counts()[("e", "hit")] == 1
    assert hook.status_counts()[("e", "miss")] == 2
    first.close()
    del first
    gc.collect()
    assert hook.status_counts()[("e", "miss")] == 2  # the totals of the engine gone stay
    assert len(hook._adopted) == 1  # and its counters are dropped
    second.execute("b", lambda: 1)
    assert hook.status_counts()[("e", "hit")] == 2
    second.close()
    hook.close()


def test_a_released_adoption_keeps_its_totals_and_drops_its_counters():
    import sys

    from swr.stats import Counter

    hook = _prometheus_hook()
    counters = {status: Counter() for status in Status}
    release = hook.adopt_status_counters("e", counters)
    for _ in range(5):
        counters[Status.HIT].incr()
    assert hook.status_counts()[("e", "hit")] == 5
    hit = counters.pop(Status.HIT)
    held = sys.getrefcount(hit)
    release()
    release()  # a second call changes nothing
    assert hook.status_counts()[("e", "hit")] == 5
    assert sys.getrefcount(hit) == held - 1  # folded into the totals, no longer held
    hit.incr()  # the engine is gone: nothing reads this any more
    assert hook.status_counts()[("e", "hit")] == 5
    with pytest.raises(TypeError, match="every Status"):
        hook.adopt_status_counters("e", {Status.HIT: Counter()})
    with pytest.raises(TypeError, match="engine must be a str"):
        hook.adopt_status_counters(3, {status: Counter() for status in Status})  # type: ignore[arg-type]
    hook.close()
