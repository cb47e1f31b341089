"""Concurrent callers of one key share one fetch, in threads and in asyncio tasks."""

from __future__ import annotations

import asyncio
import threading

import pytest
from structlog.testing import capture_logs

import swr.storage._flight
from swr import (
    AsyncStaleEngine,
    CacheTTL,
    FetchAbortedError,
    FetchTimeoutError,
    RefreshOptions,
    StaleEngine,
    Status,
)
from tests.helpers import CountingEvent, count_flight_waiters, wait_until
from tests.swr.upstream import Upstream, UpstreamError

TTL = CacheTTL(fresh=10, stale=20, expired=30)


@pytest.fixture
def flights(monkeypatch: pytest.MonkeyPatch) -> list[CountingEvent]:
    """Make every in-process flight use a CountingEvent; return them as created."""
    return count_flight_waiters(monkeypatch, swr.storage._flight)


def run_threads(n: int, target) -> list[object]:
    results: list[object] = [None] * n
    barrier = threading.Barrier(n)

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return results, threads


def test_32_threads_on_a_missing_key_fetch_once(clock, flights):
    engine = StaleEngine(ttl=TTL, clock=clock)
    up = Upstream()
    gate = up.hold()
    results, threads = run_threads(32, lambda: engine.execute("k", up))
    assert up.entered.wait(5)
    wait_until(lambda: flights and flights[0].waiting == 31)
    gate.set()
    for t in threads:
        t.join(5)
    assert up.calls == 1
    assert {(r.value, r.status) for r in results} == {("v1", Status.MISS)}
    assert engine.stats().misses == 32
    engine.close()


def test_failing_leader_wakes_every_waiter_with_the_error(clock, flights):
    engine = StaleEngine(ttl=TTL, clock=clock)
    up = Upstream()
    error = up.fail_with()
    gate = up.hold()
    results, threads = run_threads(32, lambda: engine.execute("k", up))
    assert up.entered.wait(5)
    wait_until(lambda: flights and flights[0].waiting == 31)
    gate.set()
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert up.calls == 1
    assert all(r is error for r in results)
    assert engine.get("k") is None  # nothing stored
    assert engine.stats().fetch_errors == 1
    engine.close()


def test_expired_waiters_share_one_fetch_and_fall_back_together(clock, flights):
    engine = StaleEngine(ttl=TTL, clock=clock)
    up = Upstream()
    engine.execute("k", up)
    clock.advance(40)
    up.fail_with()
    gate = up.hold()
    results, threads = run_threads(8, lambda: engine.execute("k", up))
    assert up.entered.wait(5)
    wait_until(lambda: flights and flights[-1].waiting == 7)
    gate.set()
    for t in threads:
        t.join(5)
    assert up.calls == 2
    assert {(r.value, r.status) for r in results} == {("v1", Status.FALLBACK)}
    engine.close()


async def test_200_tasks_on_a_missing_key_fetch_once(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock)
    calls = 0
    release = asyncio.Event()

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "value"

    tasks = [asyncio.create_task(engine.execute("k", fetch)) for _ in range(200)]
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert {(r.value, r.status) for r in results} == {("value", Status.MISS)}
    await engine.aclose()


async def test_200_tasks_all_receive_the_leaders_error(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock)
    calls = 0
    release = asyncio.Event()
    error = UpstreamError("down")

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise error

    tasks = [asyncio.create_task(engine.execute("k", fetch)) for _ in range(200)]
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)
    assert calls == 1
    assert all(r is error for r in results)
    assert await engine.get("k") is None
    assert engine.stats().fetch_errors == 1
    await engine.aclose()


async def test_cancelled_caller_does_not_cancel_the_shared_fetch(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock)
    release = asyncio.Event()

    async def fetch() -> str:
        await release.wait()
        return "value"

    first = asyncio.create_task(engine.execute("k", fetch))
    second = asyncio.create_task(engine.execute("k", fetch))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert (await second).value == "value"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await engine.get("k")).value == "value"
    await engine.aclose()


async def test_async_fetch_own_timeout_error_is_not_the_engines(clock):
    # A TimeoutError the fetch raises itself (a socket timeout) reaches the caller as
    # it is; only the engine's own deadline becomes FetchTimeoutError.
    engine = AsyncStaleEngine(ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=30))

    async def socket_timeout() -> str:
        await asyncio.sleep(0)
        raise TimeoutError("read timed out")

    with pytest.raises(TimeoutError, match="read timed out") as raised:
        await engine.execute("k", socket_timeout)
    assert not isinstance(raised.value, FetchTimeoutError)
    # A value that arrives within the deadline is served and stored.
    assert (await engine.execute("k", lambda: asyncio.sleep(0, "v"))).value == "v"
    assert (await engine.get("k")).value == "v"
    await engine.aclose()


async def test_async_fetch_that_swallows_the_deadline_is_still_timed_out(clock):
    # A fetch that catches the deadline's cancellation and returns anyway is late: its
    # value is discarded, and nothing is stored.
    engine = AsyncStaleEngine(ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=0.05))

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        return "late"

    with pytest.raises(FetchTimeoutError):
        await engine.execute("k", stubborn)
    assert await engine.get("k") is None
    await engine.aclose()


async def test_async_caller_cancelled_during_fetch_is_not_a_timeout(clock):
    # Cancelling the waiting caller is not the engine's deadline: the shared fetch goes
    # on and stores its value.
    engine = AsyncStaleEngine(ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=30))
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "late"

    caller = asyncio.ensure_future(engine.execute("k", slow))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    for _ in range(100):
        if (await engine.get("k")) is not None:
            break
        await asyncio.sleep(0.001)
    assert (await engine.get("k")).value == "late"
    await engine.aclose()


async def test_async_fetch_past_refresh_timeout_is_cancelled(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=0.05))
    cancelled = asyncio.Event()

    async def hang() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    with pytest.raises(FetchTimeoutError):
        await engine.execute("k", hang)
    assert cancelled.is_set()
    # With an entry in the expired window, a timeout serves it as FALLBACK.
    await engine.set("k", "old")
    clock.advance(40)
    r = await engine.execute("k", hang)
    assert (r.value, r.status) == ("old", Status.FALLBACK)
    assert engine.stats().fetch_errors == 2
    await engine.aclose()


async def test_timeout_error_raised_by_fetch_itself_is_not_our_timeout(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=5))
    error = TimeoutError("socket timed out")

    async def fetch() -> str:
        raise error

    with pytest.raises(TimeoutError) as caught:
        await engine.execute("k", fetch)
    assert caught.value is error
    await engine.aclose()


async def test_async_engine_refuses_a_sync_fetch_clearly(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock)
    with pytest.raises(TypeError, match="not an awaitable"):
        await engine.execute("k", lambda: "plain")
    await engine.aclose()


# -- the engine's errors on the shared primitive (swr.storage._flight + FetchErrors) ----


def test_an_interrupted_leader_thread_reaches_waiters_as_fetch_aborted(clock, flights):
    engine = StaleEngine(ttl=TTL, clock=clock)
    up = Upstream()
    up.fail_with(KeyboardInterrupt())
    gate = up.hold()
    results, threads = run_threads(4, lambda: engine.execute("k", up))
    assert up.entered.wait(5)
    wait_until(lambda: flights and flights[0].waiting == 3)
    gate.set()
    for t in threads:
        t.join(5)
    assert up.calls == 1
    leader = [r for r in results if isinstance(r, KeyboardInterrupt)]
    aborted = [r for r in results if isinstance(r, FetchAbortedError)]
    assert len(leader) == 1 and len(aborted) == 3  # the interrupt stays the leader's
    assert all("'k'" in str(e) and isinstance(e.__cause__, KeyboardInterrupt) for e in aborted)
    engine.close()


def test_a_waiter_giving_up_logs_fetch_timed_out(clock, flights):
    engine = StaleEngine(ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=0.01), name="e1")
    up = Upstream()
    gate = up.hold()
    leader = threading.Thread(target=engine.execute, args=("k", up))
    leader.start()
    try:
        assert up.entered.wait(5)
        with capture_logs() as logs:
            with pytest.raises(FetchTimeoutError, match="for the fetch of 'k' in another thread"):
                engine.execute("k", up)
        assert {"event": "fetch_timed_out", "engine": "e1", "key": "k", "log_level": "warning"} in [
            {k: v for k, v in log.items() if k != "timestamp"} for log in logs
        ]
    finally:
        gate.set()
        leader.join(5)
    engine.close()


async def test_a_cancelled_shared_fetch_reaches_its_callers_as_fetch_aborted(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock)

    async def fetch() -> str:
        raise asyncio.CancelledError  # the shared task ends cancelled

    results = await asyncio.gather(
        *(engine.execute("k", fetch) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, FetchAbortedError) and "'k'" in str(r) for r in results)
    assert engine.stats().fetch_errors == 1  # reported once, not per caller
    await engine.aclose()
