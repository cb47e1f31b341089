"""The background refresh executor: bounds, queue, drops, timeouts, backoff, close."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from structlog.testing import capture_logs

from swr import AsyncStaleEngine, CacheTTL, RefreshOptions, StaleEngine, Status
from swr.refresh import Submit, ThreadRefresher
from swr.storage import MemoryStorage, StorageUnavailableError
from tests.helpers import wait_until
from tests.swr.upstream import Upstream

TTL = CacheTTL(fresh=10, stale=1000, expired=1000)


class Concurrency:
    """A fetch that blocks on a gate and records how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started = 0
        self.lock = threading.Lock()
        self.gate = threading.Event()

    def __call__(self) -> str:
        with self.lock:
            self.running += 1
            self.started += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.gate.wait(10)
            return "new"
        finally:
            with self.lock:
                self.running -= 1


def test_500_stale_keys_refresh_at_most_4_at_a_time(clock):
    engine = StaleEngine(
        ttl=TTL, clock=clock, refresh=RefreshOptions(max_concurrent=4, queue_size=16)
    )
    for i in range(500):
        engine.set(f"k{i}", "old")
    clock.advance(11)
    fetch = Concurrency()
    threads_before = threading.active_count()
    started = time.monotonic()
    results = [engine.execute(f"k{i}", fetch) for i in range(500)]
    elapsed = time.monotonic() - started
    # Every caller returned while the refreshes were still blocked upstream.
    assert {(r.value, r.status) for r in results} == {("old", Status.STALE)}
    assert elapsed < 5
    wait_until(lambda: fetch.running == 4)
    assert threading.active_count() - threads_before <= 4
    dropped = engine.stats().refreshes_dropped
    assert 500 - 4 - 16 - 4 <= dropped <= 500 - 16
    fetch.gate.set()
    wait_until(lambda: engine.stats().refreshes_in_flight == 0)
    wait_until(lambda: engine.stats().refreshes_queued == 0)
    s = engine.stats()
    assert fetch.peak == 4
    assert s.refreshes_started + s.refreshes_dropped == 500
    assert s.refreshes_succeeded == s.refreshes_started == fetch.started
    refreshed = sum(engine.get(f"k{i}").value == "new" for i in range(500))
    assert refreshed == s.refreshes_started
    engine.close()


async def test_500_stale_keys_async_refresh_at_most_4_at_a_time(clock):
    engine = AsyncStaleEngine(
        ttl=TTL, clock=clock, refresh=RefreshOptions(max_concurrent=4, queue_size=16)
    )
    for i in range(500):
        await engine.set(f"k{i}", "old")
    clock.advance(11)
    running = peak = started = 0
    gate = asyncio.Event()

    async def fetch() -> str:
        nonlocal running, peak, started
        running += 1
        started += 1
        peak = max(peak, running)
        try:
            await gate.wait()
            return "new"
        finally:
            running -= 1

    results = [await engine.execute(f"k{i}", fetch) for i in range(500)]
    assert {(r.value, r.status) for r in results} == {("old", Status.STALE)}
    assert engine.stats().refreshes_dropped == 500 - 4 - 16
    for _ in range(100):
        if running == 4:
            break
        await asyncio.sleep(0)
    assert running == 4
    gate.set()
    while engine.stats().refreshes_in_flight:
        await asyncio.sleep(0.001)
    s = engine.stats()
    assert (peak, started, s.refreshes_started, s.refreshes_succeeded) == (4, 20, 20, 20)
    await engine.aclose()


def test_one_refresh_per_key_while_it_runs(clock):
    engine = StaleEngine(ttl=TTL, clock=clock)
    engine.set("k", "old")
    clock.advance(11)
    up = Upstream()
    gate = up.hold()
    for _ in range(50):
        assert engine.execute("k", up).status is Status.STALE
    assert up.entered.wait(5)
    gate.set()
    wait_until(lambda: engine.stats().refreshes_in_flight == 0)
    assert up.calls == 1
    engine.close()


@pytest.mark.slow
def test_sync_refresh_past_timeout_is_discarded_but_keeps_its_slot(clock):
    engine = StaleEngine(
        ttl=TTL, clock=clock, refresh=RefreshOptions(max_concurrent=1, timeout=0.05)
    )
    engine.set("a", "old-a")
    engine.set("b", "old-b")
    clock.advance(11)
    slow = Upstream("a")
    gate = slow.hold()
    other = Upstream("b")
    with capture_logs() as logs:
        engine.execute("a", slow)
        assert slow.entered.wait(5)
        time.sleep(0.1)  # past refresh_timeout, the fetch still running
        engine.execute("b", other)
        time.sleep(0.05)
        assert other.calls == 0  # the hung fetch still holds the only slot
        gate.set()
        wait_until(lambda: other.calls == 1)
        wait_until(lambda: engine.stats().refreshes_in_flight == 0)
    s = engine.stats()
    assert (s.refreshes_timed_out, s.refreshes_failed, s.refreshes_succeeded) == (1, 1, 1)
    assert engine.get("a").value == "old-a"  # the late result was discarded
    assert engine.get("b").value == "b1"
    assert "refresh_timed_out" in [e["event"] for e in logs]
    engine.close()


async def test_async_refresh_past_timeout_is_cancelled_and_counted(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=0.05))
    await engine.set("k", "old")
    clock.advance(11)
    cancelled = asyncio.Event()

    async def hang() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    assert (await engine.execute("k", hang)).status is Status.STALE
    await asyncio.wait_for(cancelled.wait(), 5)
    while engine.stats().refreshes_in_flight:
        await asyncio.sleep(0.001)
    s = engine.stats()
    assert (s.refreshes_timed_out, s.refreshes_failed) == (1, 1)
    assert (await engine.get("k")).value == "old"
    await engine.aclose()


def test_failed_refresh_backs_off_with_growing_capped_interval(make_driver, clock):
    d = make_driver(
        ttl=TTL, clock=clock, refresh=RefreshOptions(backoff_initial=2.0, backoff_max=5.0)
    )
    d.set("k", "old")
    clock.advance(11)
    up = Upstream()
    up.fail_with()

    def stale_read() -> None:
        assert d.execute("k", up).status is Status.STALE
        d.settle()

    stale_read()  # failure 1: next try after 2 s
    assert up.calls == 1
    clock.advance(1.9)
    stale_read()
    assert up.calls == 1
    assert d.stats().refreshes_skipped == 1
    clock.advance(0.1)
    stale_read()  # failure 2: next after 4 s
    assert up.calls == 2
    clock.advance(3.9)
    stale_read()
    assert up.calls == 2
    clock.advance(0.1)
    stale_read()  # failure 3: 8 s capped to 5 s
    assert up.calls == 3
    clock.advance(4.9)
    stale_read()
    assert up.calls == 3
    clock.advance(0.1)
    up.recover()
    stale_read()  # success: the backoff is forgotten
    assert up.calls == 4
    assert d.execute("k", up).status is Status.HIT


def test_set_forgets_the_backoff_of_a_failing_key(make_driver, clock):
    # A value stored by hand is as good as a refresh that succeeded: the key's next
    # stale read refreshes at once instead of waiting out the failures' backoff.
    d = make_driver(
        ttl=TTL, clock=clock, refresh=RefreshOptions(backoff_initial=100.0, backoff_max=100.0)
    )
    d.set("k", "old")
    clock.advance(11)
    up = Upstream()
    up.fail_with()
    assert d.execute("k", up).status is Status.STALE
    d.settle()
    assert up.calls == 1  # failed: the key now backs off for 100 s
    d.set("k", "by hand")
    clock.advance(11)
    up.recover()
    assert d.execute("k", up).status is Status.STALE
    d.settle()
    assert up.calls == 2
    assert d.stats().refreshes_skipped == 0


def test_close_timed_out_names_the_refreshes_still_running(make_driver, clock):
    d = make_driver(ttl=TTL, clock=clock)
    d.set("k", "old")
    clock.advance(11)
    up = Upstream()
    gate = up.hold()
    d.execute("k", up)
    assert up.entered.wait(5)
    with capture_logs() as logs:
        d.close_engine(timeout=0.05)
    gate.set()
    [event] = [e for e in logs if e["event"] == "close_timed_out"]
    assert event["running"] == 1


def test_close_waits_a_bounded_time_for_a_hung_refresh(clock):
    storage = MemoryStorage(clock=clock)
    engine = StaleEngine(storage, ttl=TTL, clock=clock)
    engine.set("k", "old")
    clock.advance(11)
    up = Upstream()
    gate = up.hold()
    engine.execute("k", up)
    assert up.entered.wait(5)
    started = time.monotonic()
    with capture_logs() as logs:
        engine.close(timeout=0.05)
    assert time.monotonic() - started < 2
    assert "close_timed_out" in [e["event"] for e in logs]
    # After close, stale reads are still served but start no refresh.
    engine.set("j", "old")
    clock.advance(11)
    assert engine.execute("j", up).status is Status.STALE
    assert engine.stats().refreshes_started == 1
    gate.set()
    wait_until(lambda: engine.stats().refreshes_in_flight == 0)
    assert storage.get("k").value == "v1"  # the refresh running at close still landed
    storage.close()


def test_engine_closes_only_the_storage_it_created(clock):
    own = StaleEngine(ttl=TTL, clock=clock)
    own.set("k", 1)
    own.close()
    with pytest.raises(StorageUnavailableError):
        own.storage.get("k")
    given = MemoryStorage(clock=clock)
    engine = StaleEngine(given, ttl=TTL, clock=clock)
    engine.set("k", 1)
    engine.close()
    assert given.get("k").value == 1


def test_thread_refresher_bounds_and_dedupe():
    ran = []
    gate = threading.Event()
    refresher = ThreadRefresher(max_workers=2, queue_size=1)

    def job(name: str) -> None:
        gate.wait(5)
        ran.append(name)

    outcomes = [refresher.submit(k, job, (k,)) for k in ["a", "a", "b", "c", "d", "e"]]
    assert outcomes[1] is Submit.DUPLICATE
    assert outcomes.count(Submit.DROPPED) >= 2
    accepted = [k for k, o in zip("aabcde", outcomes, strict=True) if o is Submit.ACCEPTED]
    gate.set()
    wait_until(lambda: refresher.running == 0 and refresher.queued == 0)
    assert sorted(ran) == sorted(accepted)
    assert refresher.close(1) is True
    assert refresher.submit("z", job, ("z",)) is Submit.CLOSED


def test_a_crashing_job_does_not_kill_its_worker():
    refresher = ThreadRefresher(max_workers=1, queue_size=4)
    done = threading.Event()

    def crash() -> None:
        raise RuntimeError("bug")

    with capture_logs() as logs:
        refresher.submit("a", crash, ())
        refresher.submit("b", done.set, ())
        assert done.wait(5)
    assert "refresh_job_crashed" in [e["event"] for e in logs]
    refresher.close(1)
