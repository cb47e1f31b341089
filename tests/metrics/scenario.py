"""One scripted run of a real engine, shared by the Prometheus and OpenTelemetry tests.

``run_scenario(hook)`` drives a ``StaleEngine`` named ``users`` through hits, stales,
misses, an expired fetch, fallbacks, a refresh failure, storage errors, and the circuit
breaker opening, half-opening and closing; then calls the duration methods directly
(the engine does not time its calls yet). It leaves two refreshes pending (one running,
one queued) for the gauges, and returns a callable that releases them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from swr import (
    CacheTTL,
    CircuitBreaker,
    CircuitOpenError,
    RefreshOptions,
    StaleEngine,
    Status,
)
from swr.metrics import BaseMetrics
from swr.storage import Entry, MemoryStorage, StorageUnavailableError
from swr.testing import FakeClock
from tests.helpers import wait_until

ENGINE = "users"
TTL = CacheTTL(fresh=10, stale=20, expired=30)

# What the scenario produces, by (engine, label value).
STATUSES = {"hit": 3, "stale": 5, "expired": 1, "miss": 6, "fallback": 2}
REFRESHES = {"started": 3, "succeeded": 1, "failed": 1, "skipped": 1}
FETCH_ERRORS = 1
STORAGE_ERRORS = {"read": 1, "write": 1}
# Direct calls: (outcome, seconds) per duration method.
FETCHES = [("ok", 0.002), ("ok", 0.004), ("error", 0.3), ("timeout", 10.0)]
REFRESH_DURATIONS = [("ok", 0.05), ("error", 1.5)]
STORAGE_CALLS = [("memory", "get", 0.000003), ("memory", "get", 0.000004), ("lmdb", "set", 0.0007)]
LEASE_WAITS = [0.02]
TRANSITIONS = ["open", "half_open", "closed"]
# Gauges at the end: refreshes held (one running, one queued), circuit closed (0),
# storage reported unhealthy, and the entries it holds.
GAUGES = {
    "refreshes_running": 1,
    "refreshes_queued": 1,
    "circuit_state": 0,
    "storage_healthy": 0,
    "storage_entries": 4,
    "storage_bytes": 400,
}


class FlakyStorage(MemoryStorage):
    """A memory storage whose calls for chosen keys raise, and whose health can be set."""

    # Every read goes through get(), once per call: no dict fast path, no leases.
    lookup_functions = None
    acquire_lease = None
    release_lease = None

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.broken: set[str] = set()
        self.healthy = True

    def get(self, key: str) -> Entry | None:
        if key in self.broken:
            raise StorageUnavailableError(f"{key} is unreachable")
        return super().get(key)

    def set(self, key: str, entry: Entry) -> None:
        if key in self.broken:
            raise StorageUnavailableError(f"{key} is unreachable")
        super().set(key, entry)

    def stats(self) -> dict[str, int]:
        inner = super().stats()
        return {**inner, "bytes": 100 * inner["entries"], "healthy": int(self.healthy)}


class Upstream:
    """Returns numbered values; fails while ``failing``; blocks while ``gate`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False
        self.gate: threading.Event | None = None

    def __call__(self) -> str:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(10), "the scenario never released its refreshes"
        if self.failing:
            raise RuntimeError("upstream down")
        return f"v{self.calls}"


def drive_keys(engine: StaleEngine, keys: Sequence[str], clock: FakeClock) -> None:
    """Every kind of answer for each of ``keys``: miss, hit, stale, failed refresh, fallback."""
    upstream = Upstream()
    distinct = len(set(keys))
    for key in keys:
        engine.execute(key, upstream)
        engine.execute(key, upstream)
    clock.advance(15)
    for key in keys:
        engine.execute(key, upstream)
    settle(engine, started=distinct)
    upstream.failing = True
    clock.advance(25)
    for key in keys:
        engine.execute(key, upstream)
    settle(engine, started=2 * distinct)
    clock.advance(20)
    for key in keys:
        engine.execute(key, upstream)


def settle(engine: StaleEngine, started: int) -> None:
    """Wait until ``started`` refreshes have ended (succeeded, failed or skipped)."""

    def done() -> bool:
        s = engine.stats()
        ended = s.refreshes_succeeded + s.refreshes_failed + s.refreshes_skipped
        return ended >= started and s.refreshes_in_flight == 0 and s.refreshes_queued == 0

    wait_until(done)


def run_scenario(hook: BaseMetrics, clock: FakeClock) -> tuple[StaleEngine, Callable[[], None]]:
    storage = FlakyStorage(clock)
    breaker = CircuitBreaker(failure_threshold=2, success_threshold=1, reset_timeout=5, clock=clock)
    engine = StaleEngine(
        storage,
        ttl=TTL,
        clock=clock,
        name=ENGINE,
        metrics=hook,
        breaker=breaker,
        refresh=RefreshOptions(max_concurrent=1, backoff_initial=1000, backoff_max=1000),
    )
    hook.register_stats(engine.name, engine.stats)
    up = Upstream()
    assert engine.execute("a", up).status is Status.MISS
    assert engine.execute("b", up).status is Status.MISS
    assert engine.execute("a", up).status is Status.HIT
    assert engine.execute("a", up).status is Status.HIT
    clock.advance(15)
    assert engine.execute("a", up).status is Status.STALE
    settle(engine, started=1)
    assert engine.execute("a", up).status is Status.HIT
    # A storage that fails: the read counts as a miss, the write is lost.
    storage.broken.add("broken")
    assert engine.execute("broken", up).status is Status.MISS
    storage.broken.clear()

    up.failing = True
    clock.advance(15)
    assert engine.execute("a", up).status is Status.STALE  # its refresh fails
    settle(engine, started=2)
    assert engine.execute("b", up).status is Status.FALLBACK  # expired; opens the circuit
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        engine.execute("c", up)  # a miss with the circuit open
    assert engine.execute("a", up).status is Status.FALLBACK  # stale, circuit open
    clock.advance(6)
    assert breaker.state == "half_open"
    up.failing = False
    assert engine.execute("b", up).status is Status.EXPIRED  # the trial call closes it
    assert breaker.state == "closed"
    assert engine.execute("a", up).status is Status.STALE  # backing off: refresh skipped

    # Two stale keys whose refreshes hang: one running, one queued.
    engine.execute("d", up)
    engine.execute("e", up)
    clock.advance(11)
    up.gate = threading.Event()
    assert engine.execute("d", up).status is Status.STALE
    assert engine.execute("e", up).status is Status.STALE
    wait_until(lambda: engine.stats().refreshes_in_flight == 1)
    storage.healthy = False

    settle_pending = engine.stats()
    assert (settle_pending.refreshes_in_flight, settle_pending.refreshes_queued) == (1, 1)
    for outcome, seconds in FETCHES:
        hook.record_fetch(ENGINE, outcome, seconds)
    for outcome, seconds in REFRESH_DURATIONS:
        hook.record_refresh_duration(ENGINE, outcome, seconds)
    for kind, operation, seconds in STORAGE_CALLS:
        hook.record_storage(ENGINE, kind, operation, seconds)
    for seconds in LEASE_WAITS:
        hook.record_lease_wait(ENGINE, seconds)
    for state in TRANSITIONS:
        hook.record_circuit(ENGINE, state)

    gate = up.gate

    def release() -> None:
        gate.set()
        engine.close()

    return engine, release
