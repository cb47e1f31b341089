"""One scripted run of a real engine, shared by the Prometheus and OpenTelemetry tests.

``run_scenario(hook, clock, perf, kind)`` drives a ``StaleEngine`` (``kind="sync"``) or
an ``AsyncStaleEngine`` (``kind="async"``) named ``users`` through hits, stales,
misses, an expired fetch, fallbacks, a refresh failure, storage errors, a wait for
another process's lease, and the circuit breaker opening, half-opening and closing.
Every duration the hook receives comes from the engine itself: ``perf`` replaces the
engine's duration clock, and the upstream and the storage move it by known amounts
(``FETCH_TIME``, ``GET_TIME``...), so each duration is known in advance. The run
leaves two refreshes pending (one running, one queued) for the gauges, and returns
the driver and a callable that releases them and closes the engine.

Hooks are built with ``storage_read_sampling=1``: every read is timed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import swr._engine
from swr import CacheTTL, CircuitBreaker, CircuitOpenError, RefreshOptions, StaleEngine, Status
from swr.metrics import BaseMetrics
from swr.storage import Entry, MemoryStorage, StorageUnavailableError
from swr.testing import FakeClock
from tests.helpers import wait_until
from tests.swr.drivers import DRIVERS, Driver

ENGINE = "users"
TTL = CacheTTL(fresh=10, stale=20, expired=30)

# How long each call takes, on the duration clock the scenario moves by hand.
FETCH_TIME = 0.002  # an upstream call that succeeds
FAIL_TIME = 0.3  # one that fails
GET_TIME = 0.000003  # storage calls
SET_TIME = 0.0007
LEASE_TIME = 0.000012  # (no value on a bucket bound: the measured one may differ by 1e-13)
OTHER_PROCESS_TIME = 0.02  # another process's fetch, while this one waits for its lease

# What the scenario produces, by label value.
STATUSES = {"hit": 3, "stale": 5, "expired": 1, "miss": 7, "fallback": 2}
REFRESHES = {"started": 3, "succeeded": 1, "failed": 1, "skipped": 1}
FETCH_ERRORS = 1
STORAGE_ERRORS = {"read": 2, "write": 1}
# Durations by outcome: foreground fetches (a, b, broken, b expired, d, e succeed; b's
# fetch that opens the circuit fails) and refreshes (a's first succeeds, its second fails).
FETCHES = {"ok": [FETCH_TIME] * 6, "error": [FAIL_TIME]}
REFRESH_DURATIONS = {"ok": [FETCH_TIME], "error": [FAIL_TIME]}
# Storage calls by operation, counted in run_scenario's comments.
STORAGE_CALLS = {
    "get": [GET_TIME] * 30,
    "set_and_release": [SET_TIME] * 7,
    # The attempt during which the other process delivers lasts as long as its fetch.
    "lease_acquire": [LEASE_TIME] * 11 + [LEASE_TIME + OTHER_PROCESS_TIME],
    "lease_release": [LEASE_TIME] * 4,
}
# The wait for the other process's lease: from the first sleep, one more lease attempt
# (during which the other process delivers), the read finding its entry, the release.
LEASE_WAITS = [LEASE_TIME + OTHER_PROCESS_TIME + GET_TIME + LEASE_TIME]
TRANSITIONS = ["open", "half_open", "closed"]
# Gauges at the end: refreshes held (one running, one queued), circuit closed (0),
# storage reported unhealthy, and the entries it holds (a, b, leased, d, e).
GAUGES = {
    "refreshes_running": 1,
    "refreshes_queued": 1,
    "circuit_state": 0,
    "storage_healthy": 0,
    "storage_entries": 5,
    "storage_bytes": 500,
}


class PerfClock:
    """The engine's duration clock in tests: moves only when told. Thread-safe."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def install_perf_clock(monkeypatch: pytest.MonkeyPatch) -> PerfClock:
    """Replace the engines' duration clock with a new PerfClock."""
    fake = PerfClock()
    monkeypatch.setattr(swr._engine, "perf_counter", fake)
    return fake


class OtherProcess:
    """Holds a key's lease, refusing ``refusals`` attempts, then stores ``entry``."""

    def __init__(self, entry: Entry, refusals: int) -> None:
        self.entry = entry
        self.refusals = refusals


class FlakyStorage(MemoryStorage):
    """A memory storage whose calls take known times, fail for chosen keys, and whose
    health can be set; another process can hold a key's lease (``held_elsewhere``).
    """

    # Every read goes through get(), once per call: no dict fast path.
    lookup_functions = None

    def __init__(self, clock: FakeClock, perf: PerfClock) -> None:
        super().__init__(clock=clock)
        self.perf = perf
        self.broken: set[str] = set()
        self.healthy = True
        self.held_elsewhere: dict[str, OtherProcess] = {}

    def _fail_if_broken(self, key: str) -> None:
        if key in self.broken:
            raise StorageUnavailableError(f"{key} is unreachable")

    def get(self, key: str) -> Entry | None:
        self.perf.advance(GET_TIME)
        self._fail_if_broken(key)
        return super().get(key)

    def set(self, key: str, entry: Entry) -> None:
        self.perf.advance(SET_TIME)
        self._fail_if_broken(key)
        super().set(key, entry)

    def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        self.perf.advance(SET_TIME)
        self._fail_if_broken(key)
        super().set_and_release(key, entry, token)

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        self.perf.advance(LEASE_TIME)
        other = self.held_elsewhere.get(key)
        if other is not None:
            if other.refusals:
                other.refusals -= 1
                return None
            del self.held_elsewhere[key]  # the other process delivers and lets go
            self.perf.advance(OTHER_PROCESS_TIME)
            super().set(key, other.entry)
        return super().acquire_lease(key, ttl)

    def release_lease(self, key: str, token: str) -> None:
        self.perf.advance(LEASE_TIME)
        super().release_lease(key, token)

    def stats(self) -> dict[str, int]:
        inner = super().stats()
        return {**inner, "bytes": 100 * inner["entries"], "healthy": int(self.healthy)}


class Upstream:
    """Returns numbered values; fails while ``failing``; blocks while ``gate`` is set.

    Each call moves the duration clock ``perf`` by ``FETCH_TIME`` (``FAIL_TIME`` when
    it fails), once the gate lets it through.
    """

    def __init__(self, perf: PerfClock | None = None) -> None:
        self.perf = perf
        self.calls = 0
        self.failing = False
        self.gate: threading.Event | None = None
        self.blocked = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.gate is not None:
            self.blocked += 1
            assert self.gate.wait(10), "the scenario never released its refreshes"
        if self.perf is not None:
            self.perf.advance(FAIL_TIME if self.failing else FETCH_TIME)
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


def settle(engine: StaleEngine | Driver, started: int) -> None:
    """Wait until ``started`` refreshes have ended (succeeded, failed or skipped)."""

    def done() -> bool:
        s = engine.stats()
        ended = s.refreshes_succeeded + s.refreshes_failed + s.refreshes_skipped
        return ended >= started and s.refreshes_in_flight == 0 and s.refreshes_queued == 0

    wait_until(done)


def run_scenario(
    hook: BaseMetrics, clock: FakeClock, perf: PerfClock, kind: str = "sync"
) -> tuple[Driver, Callable[[], None]]:
    """The scripted run (storage calls counted in the comments: get, set_and_release
    (sar), lease_acquire (acq), lease_release (rel)).
    """
    storage = FlakyStorage(clock, perf)
    breaker = CircuitBreaker(failure_threshold=2, success_threshold=1, reset_timeout=5, clock=clock)
    d: Any = DRIVERS[kind](
        storage=storage,
        ttl=TTL,
        clock=clock,
        name=ENGINE,
        metrics=hook,
        breaker=breaker,
        refresh=RefreshOptions(max_concurrent=1, backoff_initial=1000, backoff_max=1000),
    )
    up = Upstream(perf)
    # A miss: read, lease, read again under it, fetch, store and release. get 2, acq 1, sar 1
    assert d.execute("a", up).status is Status.MISS
    assert d.execute("b", up).status is Status.MISS  # get 4, acq 2, sar 2
    assert d.execute("a", up).status is Status.HIT  # get 5
    assert d.execute("a", up).status is Status.HIT  # get 6
    clock.advance(15)
    assert d.execute("a", up).status is Status.STALE  # get 7; its refresh: get 8, acq 3, sar 3
    settle(d, started=1)
    assert d.execute("a", up).status is Status.HIT  # get 9
    # A storage that fails: both reads count as failed, the write is lost, the lease freed.
    storage.broken.add("broken")
    assert d.execute("broken", up).status is Status.MISS  # get 11, acq 4, sar 4, rel 1
    storage.broken.clear()

    up.failing = True
    clock.advance(15)
    assert d.execute("a", up).status is Status.STALE  # get 12; refresh fails: get 13, acq 5, rel 2
    settle(d, started=2)
    # b expired; its fetch fails and opens the circuit: get 15, acq 6, rel 3
    assert d.execute("b", up).status is Status.FALLBACK
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        d.execute("c", up)  # a miss with the circuit open: get 16, nothing fetched
    assert d.execute("a", up).status is Status.FALLBACK  # stale, circuit open: get 17
    clock.advance(6)
    assert breaker.state == "half_open"
    up.failing = False
    assert d.execute("b", up).status is Status.EXPIRED  # the trial closes it: get 19, acq 7, sar 5
    assert breaker.state == "closed"
    assert d.execute("a", up).status is Status.STALE  # backing off, refresh skipped: get 20

    # Another process holds the lease of "leased": refused once (acq 8, after get 22), a
    # sleep, then it delivers during acq 9; our read finds its entry (get 23), rel 4.
    now = clock()
    theirs = Entry(
        value="theirs",
        stored_at=now,
        fresh_until=now + 10,
        stale_until=now + 30,
        expires_at=now + 60,
    )
    storage.held_elsewhere["leased"] = OtherProcess(theirs, refusals=1)
    leased = d.execute("leased", up)
    assert (leased.status, leased.value) == (Status.MISS, "theirs")

    # Two stale keys whose refreshes hang: one running, one queued.
    d.execute("d", up)  # get 25, acq 10, sar 6
    d.execute("e", up)  # get 27, acq 11, sar 7
    clock.advance(11)
    up.gate = threading.Event()
    assert d.execute("d", up).status is Status.STALE  # get 28; refresh: get 29, acq 12
    wait_until(lambda: up.blocked == 1)  # d's refresh is in the upstream: no more storage calls
    assert d.execute("e", up).status is Status.STALE  # get 30; its refresh waits in the queue
    wait_until(lambda: d.stats().refreshes_in_flight == 1)
    storage.healthy = False

    pending = d.stats()
    assert (pending.refreshes_in_flight, pending.refreshes_queued) == (1, 1)

    gate = up.gate

    def release() -> None:
        gate.set()
        d.close()

    return d, release
