"""CircuitBreaker on its own: every transition, driven by the clock."""

from __future__ import annotations

import asyncio
import threading

import pytest
from structlog.testing import capture_logs

from swr import CircuitBreaker, CircuitOpenError
from tests.helpers import wait_until


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


def ok() -> str:
    return "ok"


def make(clock, **kwargs) -> CircuitBreaker:
    settings = {"failure_threshold": 3, "success_threshold": 2, "reset_timeout": 30.0}
    settings.update(kwargs)
    return CircuitBreaker(clock=clock, **settings)


def fail_times(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            breaker.call(fail)


def test_closed_until_threshold_consecutive_failures(clock):
    b = make(clock)
    fail_times(b, 2)
    assert b.call(ok) == "ok"  # a success resets the count
    fail_times(b, 2)
    assert b.state == "closed"
    with capture_logs() as logs:
        fail_times(b, 1)
    assert b.state == "open"
    assert [e["event"] for e in logs] == ["circuit_opened"]
    assert logs[0]["failures"] == 3


def test_open_refuses_and_says_when_to_retry(clock):
    b = make(clock)
    fail_times(b, 3)
    opened_at = clock()
    clock.advance(10)
    calls = []
    with pytest.raises(CircuitOpenError) as caught:
        b.call(calls.append, 1)
    assert calls == []
    assert caught.value.retry_at == opened_at + 30
    assert caught.value.retry_in == pytest.approx(20)
    assert b.is_open()


def test_half_open_after_reset_timeout_then_closes_on_successes(clock):
    b = make(clock)
    fail_times(b, 3)
    clock.advance(29.9)
    assert b.state == "open"
    clock.advance(0.1)
    with capture_logs() as logs:
        assert b.state == "half_open"
        assert b.call(ok) == "ok"
        assert b.state == "half_open"
        assert b.call(ok) == "ok"
    assert b.state == "closed"
    assert [e["event"] for e in logs] == ["circuit_half_open", "circuit_closed"]
    assert b.stats() == {
        "state": "closed",
        "opened": 1,
        "half_opened": 1,
        "closed": 1,
        "rejected": 0,
        "consecutive_failures": 0,
    }


def test_failure_in_half_open_reopens_for_a_full_reset_timeout(clock):
    b = make(clock)
    fail_times(b, 3)
    clock.advance(30)
    assert b.call(ok) == "ok"
    fail_times(b, 1)  # one trial failure is enough
    assert b.state == "open"
    assert b.retry_at == clock() + 30
    clock.advance(29)
    assert b.state == "open"
    clock.advance(1)
    assert b.state == "half_open"


def test_half_open_limits_trial_calls_and_release_frees_a_slot(clock):
    b = make(clock, half_open_max_calls=2)
    fail_times(b, 3)
    clock.advance(30)
    first, second = b.acquire(), b.acquire()
    assert first is not None and second is not None
    assert b.acquire() is None
    with pytest.raises(CircuitOpenError):
        b.call(ok)
    b.release(first)
    third = b.acquire()
    assert third is not None
    assert b.stats()["rejected"] == 2


def test_outcomes_from_an_earlier_state_change_nothing(clock):
    b = make(clock, failure_threshold=1, success_threshold=1)
    slow = b.acquire()  # a call begins while closed
    fail_times(b, 1)  # another call fails: open
    clock.advance(30)
    trial = b.acquire()  # half-open trial
    b.record_success(slow)  # the old call ends: must not close the circuit
    assert b.state == "half_open"
    b.record_failure(slow)
    assert b.state == "half_open"
    b.record_success(trial)
    assert b.state == "closed"


def test_ignored_exceptions_pass_through_without_counting(clock):
    b = make(clock, failure_threshold=1, ignore=(KeyError,))

    def missing() -> None:
        raise KeyError("no such user")

    for _ in range(5):
        with pytest.raises(KeyError):
            b.call(missing)
    assert b.state == "closed"


def test_interruptions_are_not_failures(clock):
    b = make(clock, failure_threshold=1)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        b.call(interrupted)
    assert b.state == "closed"


def test_decorator_for_sync_and_async_functions(clock):
    b = make(clock, failure_threshold=1)

    @b
    def double(x: int) -> int:
        return 2 * x

    @b
    async def triple(x: int) -> int:
        return 3 * x

    assert double(2) == 4
    assert double.__name__ == "double"
    assert asyncio.run(triple(2)) == 6
    fail_times(b, 1)
    with pytest.raises(CircuitOpenError):
        double(2)
    with pytest.raises(CircuitOpenError):
        asyncio.run(triple(2))


async def test_acall_counts_async_failures(clock):
    b = make(clock, failure_threshold=2)

    async def down() -> None:
        raise Boom

    for _ in range(2):
        with pytest.raises(Boom):
            await b.acall(down)
    assert b.state == "open"


async def test_cancellation_releases_the_trial_slot(clock):
    b = make(clock, failure_threshold=1)
    fail_times(b, 1)
    clock.advance(30)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(b.acall(hang))
    await started.wait()
    assert b.acquire() is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.acquire() is not None
    assert b.state == "half_open"


@pytest.mark.parametrize("slots", [1, 3])
def test_50_threads_race_for_the_half_open_slots(clock, slots):
    b = make(clock, half_open_max_calls=slots)
    fail_times(b, 3)
    clock.advance(30)
    gate = threading.Event()
    inside = []
    refused = []
    barrier = threading.Barrier(50)

    def trial() -> None:
        inside.append(1)
        gate.wait(5)

    def work() -> None:
        barrier.wait()
        try:
            b.call(trial)
        except CircuitOpenError:
            refused.append(1)

    threads = [threading.Thread(target=work) for _ in range(50)]
    for t in threads:
        t.start()
    wait_until(lambda: len(inside) + len(refused) == 50)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(inside) == slots
    assert len(refused) == 50 - slots


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"reset_timeout": -1}, "reset_timeout"),
        ({"reset_timeout": float("inf")}, "reset_timeout"),
    ],
)
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CircuitBreaker(**kwargs)


def test_wrong_types_are_type_errors():
    with pytest.raises(TypeError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=2.5)
    with pytest.raises(TypeError, match="reset_timeout"):
        CircuitBreaker(reset_timeout="30")
