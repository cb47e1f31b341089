"""How the engine feeds its hook: sampling, no clock without a hook, breaker listeners, stats."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

import swr._engine
from swr import AsyncStaleEngine, CacheTTL, CircuitBreaker, RefreshOptions, StaleEngine, Status
from swr.metrics import BaseMetrics
from swr.metrics.prometheus import PrometheusMetrics
from swr.storage import MemoryStorage
from swr.testing import RecordingMetrics

TTL = CacheTTL(fresh=10, stale=20, expired=30)


class Recorder(BaseMetrics):
    """Keeps every duration and transition it receives."""

    def __init__(self, sampling: int = 1) -> None:
        self.storage_read_sampling = sampling
        self.storage: list[tuple[str, str, float]] = []
        self.fetches: list[tuple[str, float]] = []
        self.circuit: list[tuple[str, str]] = []

    def record_storage(self, engine: str, storage: str, operation: str, seconds: float) -> None:
        self.storage.append((storage, operation, seconds))

    def record_fetch(self, engine: str, outcome: str, seconds: float) -> None:
        self.fetches.append((outcome, seconds))

    def record_circuit(self, engine: str, state: str) -> None:
        self.circuit.append((engine, state))


def test_hit_path_reads_are_sampled(clock, perf):
    hook = Recorder(sampling=4)
    engine = StaleEngine(ttl=TTL, clock=clock, metrics=hook)
    engine.execute("k", lambda: 1)  # miss: its lease re-read is timed, the first read not
    assert [op for _, op, _ in hook.storage] == ["lease_acquire", "get", "set_and_release"]
    hook.storage.clear()
    for _ in range(8):
        assert engine.execute("k", lambda: 1).status is Status.HIT
    # The hits numbered 0 and 4 each have the read after them timed: hits 2 and 6.
    assert [(kind, op) for kind, op, _ in hook.storage] == [("memory", "get")] * 2
    engine.close()


async def test_explicit_writes_are_timed_on_both_engines(clock, perf):
    hook = Recorder()
    engine = StaleEngine(ttl=TTL, clock=clock, metrics=hook)
    engine.set("k", 1)
    assert [(kind, op) for kind, op, _ in hook.storage] == [("memory", "set")]
    assert engine.get("k").value == 1
    ahook = Recorder()
    aengine = AsyncStaleEngine(ttl=TTL, clock=clock, metrics=ahook)
    await aengine.set("k", 2)
    assert [(kind, op) for kind, op, _ in ahook.storage] == [("memory", "set")]
    assert (await aengine.get("k")).value == 2
    engine.close()
    await aengine.aclose()


def test_without_a_duration_method_the_clock_is_never_read(clock, monkeypatch):
    def no_clock() -> float:
        raise AssertionError("the duration clock was read")

    monkeypatch.setattr(swr._engine, "perf_counter", no_clock)
    for hook in (None, RecordingMetrics(), BaseMetrics()):
        engine = StaleEngine(ttl=TTL, clock=clock, metrics=hook)
        engine.execute("k", lambda: 1)
        engine.execute("k", lambda: 1)
        clock.advance(15)
        assert engine.execute("k", lambda: 2).status is Status.STALE
        engine.set("j", 3)
        assert engine.delete("j")
        engine.close()


def test_a_shared_breaker_reports_to_every_engine_until_it_closes(clock):
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    hook = Recorder()
    one = StaleEngine(ttl=TTL, clock=clock, name="one", metrics=hook, breaker=breaker)
    two = StaleEngine(ttl=TTL, clock=clock, name="two", metrics=hook, breaker=breaker)

    def fail() -> int:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        one.execute("k", fail)
    assert hook.circuit == [("one", "open"), ("two", "open")]
    two.close()
    breaker.reset()
    assert hook.circuit[2:] == [("one", "closed")]  # a closed engine no longer reports
    one.close()


def test_a_failing_listener_is_logged_and_the_breaker_carries_on(clock):
    breaker = CircuitBreaker(failure_threshold=1, clock=clock, name="api")

    def broken(state: str) -> None:
        raise ValueError(state)

    breaker.add_listener(broken)
    with capture_logs() as logs:
        breaker.record_failure(breaker.acquire())  # type: ignore[arg-type]
    assert breaker.state == "open"
    assert [e["state"] for e in logs if e["event"] == "circuit_listener_failed"] == ["open"]
    breaker.remove_listener(broken)
    breaker.reset()
    with pytest.raises(TypeError, match="listener must be a callable"):
        breaker.add_listener("not callable")  # type: ignore[arg-type]


async def test_an_async_fetch_cut_by_the_timeout_is_timed_as_timeout(clock):
    hook = Recorder()
    engine = AsyncStaleEngine(
        ttl=TTL, clock=clock, metrics=hook, refresh=RefreshOptions(timeout=0.05)
    )

    async def hang() -> int:
        await asyncio.sleep(5)
        return 1

    with pytest.raises(TimeoutError):
        await engine.execute("k", hang)
    ((outcome, seconds),) = hook.fetches
    assert outcome == "timeout"
    assert 0.04 <= seconds < 5
    await engine.aclose()


class ClusterLike(MemoryStorage):
    """A storage reporting cluster nodes, as a Redis Cluster storage does."""

    def __init__(self) -> None:
        super().__init__()
        self.masters = [("10.0.0.1:7000", True), ("10.0.0.2:7000", False)]

    def nodes(self) -> list[dict[str, Any]]:
        return [{"address": a, "up": up, "errors": int(not up)} for a, up in self.masters]


def test_stats_carry_the_nodes_and_the_adapter_exports_their_health(clock):
    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry)
    engine = StaleEngine(ClusterLike(), ttl=TTL, clock=clock, name="c", metrics=hook)
    engine.execute("k", lambda: 1)
    engine.execute("k", lambda: 1)
    stats = engine.stats()
    assert [n["address"] for n in stats.storage_nodes] == ["10.0.0.1:7000", "10.0.0.2:7000"]
    assert (stats.hit_ratio, stats.statuses["hit"], stats.storage_healthy) == (0.5, 1, True)
    for node, up in (("10.0.0.1:7000", 1), ("10.0.0.2:7000", 0)):
        assert registry.get_sample_value("swr_storage_node_up", {"engine": "c", "node": node}) == up
    engine.close()
    hook.close()


def test_a_real_cluster_reports_each_master(redis_cluster, clock):
    from swr.storage import RedisStorage

    storage = RedisStorage.from_url(redis_cluster.url, cluster=True, prefix="wiring:")
    engine = StaleEngine(storage, ttl=TTL, clock=clock, name="cluster")
    for i in range(40):  # keys on every master
        engine.execute(f"k{i}", lambda: 1)
    nodes = engine.stats().storage_nodes
    assert {n["address"] for n in nodes} == {f"127.0.0.1:{n.port}" for n in redis_cluster.nodes}
    assert all(n["up"] for n in nodes)
    assert engine.stats().storage_healthy
    engine.close()
    storage.close()
