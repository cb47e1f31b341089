"""The circuit breaker inside both engines: what callers get while it is open."""

from __future__ import annotations

import asyncio
import threading

import pytest
from structlog.testing import capture_logs

from swr import (
    AsyncStaleEngine,
    CacheTTL,
    CircuitBreaker,
    CircuitOpenError,
    RefreshOptions,
    StaleEngine,
    Status,
)
from tests.helpers import wait_until
from tests.swr.upstream import Upstream

# fresh [0, 10), stale [10, 30), expired [30, 60)
TTL = CacheTTL(fresh=10, stale=20, expired=30)


def breaker_for(clock, **kwargs) -> CircuitBreaker:
    settings = {"failure_threshold": 2, "success_threshold": 1, "reset_timeout": 60.0}
    settings.update(kwargs)
    return CircuitBreaker(clock=clock, **settings)


def open_it(breaker: CircuitBreaker) -> None:
    while breaker.state != "open":
        permit = breaker.acquire()
        breaker.record_failure(permit)


def test_open_circuit_serves_what_it_can_and_never_fetches(make_driver, clock):
    breaker = breaker_for(clock)
    d = make_driver(ttl=TTL, clock=clock, breaker=breaker)
    up = Upstream()
    d.execute("expired", up)  # v1
    clock.advance(20)
    d.set("stale", "s")
    clock.advance(15)
    d.set("fresh", "f3")
    # Now "fresh" is 0 s old, "stale" 15 s (stale window), "expired" 35 s (expired window).
    calls = up.calls
    open_it(breaker)

    r = d.execute("fresh", up)
    assert (r.value, r.status) == ("f3", Status.HIT)
    r = d.execute("stale", up)
    assert (r.value, r.status) == ("s", Status.FALLBACK)
    r = d.execute("expired", up)
    assert (r.value, r.status) == ("v1", Status.FALLBACK)
    with pytest.raises(CircuitOpenError) as caught:
        d.execute("missing", up)
    assert caught.value.retry_at == pytest.approx(clock() + 60)
    d.settle()
    assert up.calls == calls  # nothing was fetched, in the foreground or background
    s = d.stats()
    assert s.refreshes_started == 0
    assert s.circuit_rejected == 3
    assert s.fetch_errors == 0
    assert s.circuit["state"] == "open"


def test_background_failures_open_the_circuit(make_driver, clock):
    breaker = breaker_for(clock, failure_threshold=3)
    d = make_driver(ttl=TTL, clock=clock, breaker=breaker)
    for i in range(5):
        d.set(f"k{i}", "old")
    clock.advance(15)
    up = Upstream()
    up.fail_with()
    with capture_logs() as logs:
        for i in range(3):
            assert d.execute(f"k{i}", up).status is Status.STALE
            d.settle()
    assert breaker.state == "open"
    assert "circuit_opened" in [e["event"] for e in logs]
    # Open: further stale reads are fallbacks and start no refresh.
    assert d.execute("k3", up).status is Status.FALLBACK
    d.settle()
    assert up.calls == 3


def test_foreground_failures_and_timeouts_count(make_driver, clock):
    breaker = breaker_for(clock)
    d = make_driver(ttl=TTL, clock=clock, breaker=breaker)
    up = Upstream()
    up.fail_with()
    for _ in range(2):
        with pytest.raises(Exception, match="upstream down"):
            d.execute("k", up)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        d.execute("k", up)
    assert up.calls == 2


def test_half_open_trial_closes_the_circuit_and_serving_resumes(make_driver, clock):
    breaker = breaker_for(clock, success_threshold=1)
    d = make_driver(ttl=TTL, clock=clock, breaker=breaker)
    open_it(breaker)
    clock.advance(60)
    up = Upstream()
    with capture_logs() as logs:
        r = d.execute("k", up)
    assert (r.value, r.status) == ("v1", Status.MISS)
    assert breaker.state == "closed"
    assert [e["event"] for e in logs] == ["circuit_half_open", "circuit_closed"]


def test_failed_trial_reopens(make_driver, clock):
    breaker = breaker_for(clock)
    d = make_driver(ttl=TTL, clock=clock, breaker=breaker)
    open_it(breaker)
    clock.advance(30)
    d.set("k", "old")
    clock.advance(30)  # half-open; "k" is expired (30 s old)
    up = Upstream()
    up.fail_with()
    r = d.execute("k", up)
    assert (r.value, r.status) == ("old", Status.FALLBACK)
    assert breaker.state == "open"
    assert breaker.retry_at == pytest.approx(clock() + 60)


def test_stale_read_in_half_open_takes_the_trial_slot_for_its_refresh(make_driver, clock):
    breaker = breaker_for(clock)
    d = make_driver(ttl=TTL, clock=clock, breaker=breaker)
    open_it(breaker)
    clock.advance(45)
    d.set("a", "old-a")
    d.set("b", "old-b")
    clock.advance(15)  # half-open from now; both entries are stale
    up = Upstream()
    gate = up.hold()
    assert d.execute("a", up).status is Status.STALE  # its refresh is the trial
    assert d.execute("b", up).status is Status.FALLBACK  # no trial slot left
    assert d.execute("a", up).status is Status.STALE  # its refresh is running
    assert up.entered.wait(5)
    gate.set()
    d.settle()
    assert breaker.state == "closed"
    assert up.calls == 1


def test_one_breaker_shared_by_two_engines(clock):
    breaker = breaker_for(clock)
    a = StaleEngine(ttl=TTL, clock=clock, breaker=breaker)
    b = StaleEngine(ttl=TTL, clock=clock, breaker=breaker)
    up = Upstream()
    up.fail_with()
    for engine in (a, b):
        with pytest.raises(Exception, match="upstream down"):
            engine.execute("k", up)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        a.execute("other", up)
    assert a.stats().circuit == b.stats().circuit
    a.close()
    b.close()


def test_50_threads_on_missing_keys_in_half_open_make_one_trial_fetch(clock):
    breaker = breaker_for(clock)
    engine = StaleEngine(ttl=TTL, clock=clock, breaker=breaker)
    open_it(breaker)
    clock.advance(60)
    up = Upstream()
    gate = up.hold()
    outcomes: list[object] = []
    barrier = threading.Barrier(50)

    def work(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(engine.execute(f"k{i}", up))
        except CircuitOpenError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    wait_until(lambda: len(outcomes) == 49)
    assert up.calls == 1
    gate.set()
    for t in threads:
        t.join(5)
    assert sum(isinstance(o, CircuitOpenError) for o in outcomes) == 49
    assert breaker.state == "closed"
    engine.close()


async def test_200_tasks_in_half_open_make_one_trial_fetch(clock):
    breaker = breaker_for(clock, half_open_max_calls=2)
    engine = AsyncStaleEngine(ttl=TTL, clock=clock, breaker=breaker)
    open_it(breaker)
    clock.advance(60)
    calls = 0
    release = asyncio.Event()

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "v"

    tasks = [asyncio.create_task(engine.execute(f"k{i}", fetch)) for i in range(200)]
    for _ in range(10):
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 2
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 198
    assert breaker.state == "closed"
    await engine.aclose()


async def test_async_timeouts_count_as_failures(clock):
    breaker = breaker_for(clock, failure_threshold=1)
    engine = AsyncStaleEngine(
        ttl=TTL, clock=clock, breaker=breaker, refresh=RefreshOptions(timeout=0.05)
    )

    async def hang() -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(Exception, match="took more than"):
        await engine.execute("k", hang)
    assert breaker.state == "open"
    await engine.aclose()


def test_engine_refuses_a_non_breaker():
    with pytest.raises(TypeError, match="breaker"):
        StaleEngine(breaker=object())
