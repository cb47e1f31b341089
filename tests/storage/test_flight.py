"""The singleflight primitive: one call per key, shared outcome, the five rules."""

from __future__ import annotations

import asyncio
import threading

import pytest

from swr.storage._flight import (
    AsyncFlights,
    FlightErrors,
    FlightInterruptedError,
    Flights,
    FlightTimeoutError,
)
from tests.helpers import wait_until


def start_waiters(flights: Flights, key: str, n: int, timeout: float | None = None) -> tuple:
    """Start ``n`` threads joining ``key``'s running flight; return (outcomes, threads)."""
    outcomes: list = []

    def body() -> None:
        try:
            outcomes.append(flights.run(key, lambda: pytest.fail("a waiter ran"), timeout))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=body) for _ in range(n)]
    for thread in threads:
        thread.start()
    wait_until(lambda: flights.waiters(key) == n)
    return outcomes, threads


def join_all(started: tuple) -> list:
    outcomes, threads = started
    for thread in threads:
        thread.join(10)
    return outcomes


def test_waiters_share_the_leaders_value_and_the_flight_ends():
    flights: Flights[str, object] = Flights()
    flight, leader = flights.join("k")
    assert leader
    outcomes = start_waiters(flights, "k", 5)
    value = object()
    flights.finish("k", flight, value)
    assert join_all(outcomes) == [value] * 5
    assert len(flights) == 0
    assert flights.run("k", lambda: "again") == "again"  # a new flight, a new call


def test_waiters_re_raise_the_leaders_exception_itself():
    flights: Flights[str, object] = Flights()
    flight, _ = flights.join("k")
    outcomes = start_waiters(flights, "k", 3)
    boom = ValueError("down")
    flights.fail("k", flight, boom)
    assert all(o is boom for o in join_all(outcomes))


def test_an_interrupt_of_the_leader_reaches_waiters_as_a_runtime_error():
    flights: Flights[str, object] = Flights()
    flight, _ = flights.join("k")
    outcomes = start_waiters(flights, "k", 2)
    flights.fail("k", flight, KeyboardInterrupt())
    errors = join_all(outcomes)
    assert all(
        isinstance(e, FlightInterruptedError) and isinstance(e, RuntimeError) for e in errors
    )
    assert all(isinstance(e.__cause__, KeyboardInterrupt) and "'k'" in str(e) for e in errors)


def test_run_completes_the_flight_when_the_call_is_interrupted():
    flights: Flights[str, object] = Flights()
    release = threading.Event()

    def interrupted() -> object:
        release.wait(10)
        raise KeyboardInterrupt

    leader_error: list = []

    def lead() -> None:
        try:
            flights.run("k", interrupted)
        except BaseException as exc:
            leader_error.append(exc)

    thread = threading.Thread(target=lead)
    thread.start()
    wait_until(lambda: len(flights) == 1)
    outcomes = start_waiters(flights, "k", 2)
    release.set()
    thread.join(10)
    assert isinstance(leader_error[0], KeyboardInterrupt)  # unchanged for the leader
    assert all(isinstance(e, FlightInterruptedError) for e in join_all(outcomes))
    assert len(flights) == 0


def test_a_waiter_times_out_and_the_flight_goes_on():
    flights: Flights[str, int] = Flights()
    flight, _ = flights.join("k")
    late, _ = flights.join("k")
    with pytest.raises(FlightTimeoutError, match="waited 0s for the call for 'k'"):
        late.wait(0)
    assert isinstance(FlightTimeoutError(), TimeoutError)
    assert not flight.done
    flights.finish("k", flight, 7)
    assert late.wait(0) == 7
    assert flight.done


def test_a_superseded_flight_does_not_remove_its_successor():
    flights: Flights[str, int] = Flights()
    first, _ = flights.join("k")
    flights.finish("k", first, 1)
    second, leader = flights.join("k")
    assert leader
    flights.finish("k", first, 1)  # a late second completion of the old flight
    assert flights.join("k")[0] is second


def test_keys_fly_apart():
    flights: Flights[str, int] = Flights()
    a, lead_a = flights.join("a")
    b, lead_b = flights.join("b")
    assert lead_a and lead_b and a is not b


# -- asyncio ------------------------------------------------------------------------------


async def test_tasks_share_one_call():
    flights: AsyncFlights[str, str] = AsyncFlights()
    calls = []

    async def call() -> str:
        calls.append(1)
        await asyncio.sleep(0)
        return "v"

    assert await asyncio.gather(*(flights.run("k", call) for _ in range(20))) == ["v"] * 20
    assert len(calls) == 1
    assert len(flights) == 0


async def test_a_cancelled_waiter_does_not_cancel_the_call():
    flights: AsyncFlights[str, str] = AsyncFlights()
    release = asyncio.Event()

    async def call() -> str:
        await release.wait()
        return "v"

    first = asyncio.ensure_future(flights.run("k", call))
    second = asyncio.ensure_future(flights.run("k", call))
    await asyncio.sleep(0)
    assert flights.waiters("k") == 1
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await second == "v"
    assert first.cancelled()


async def test_an_async_waiter_times_out_and_the_call_goes_on():
    flights: AsyncFlights[str, str] = AsyncFlights()
    release = asyncio.Event()

    async def call() -> str:
        await release.wait()
        return "v"

    task = flights.join("k", call)
    with pytest.raises(FlightTimeoutError, match="in another task"):
        await flights.run("k", call, timeout=0)
    assert not task.done()
    release.set()
    assert await flights.wait("k", task) == "v"


async def test_a_call_raising_timeout_error_is_not_taken_for_a_wait_timeout():
    flights: AsyncFlights[str, str] = AsyncFlights()

    async def call() -> str:
        raise TimeoutError("upstream")

    with pytest.raises(TimeoutError, match="upstream") as caught:
        await flights.run("k", call, timeout=5)
    assert not isinstance(caught.value, FlightTimeoutError)


async def test_a_cancelled_call_reaches_waiters_as_interrupted_and_on_error_sees_it():
    ended: list = []
    flights: AsyncFlights[str, str] = AsyncFlights(on_error=lambda key, exc: ended.append(key))

    async def call() -> str:
        await asyncio.Event().wait()
        return "never"

    task = flights.join("k", call)
    waiter = asyncio.ensure_future(flights.wait("k", task))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(FlightInterruptedError, match="'k'"):
        await waiter
    assert ended == ["k"]
    assert len(flights) == 0


async def test_an_async_error_reaches_every_task():
    flights: AsyncFlights[str, str] = AsyncFlights()
    boom = LookupError("gone")

    async def call() -> str:
        await asyncio.sleep(0)
        raise boom

    results = await asyncio.gather(
        *(flights.run("k", call) for _ in range(5)), return_exceptions=True
    )
    assert all(r is boom for r in results)


def test_each_event_loop_gets_its_own_flight():
    flights: AsyncFlights[str, int] = AsyncFlights()
    loops = []

    async def call() -> int:
        loops.append(asyncio.get_running_loop())
        return len(loops)

    assert asyncio.run(flights.run("k", call)) == 1
    assert asyncio.run(flights.run("k", call)) == 2
    assert loops[0] is not loops[1]


# -- what the engine needs: batches, error reports, its own errors -------------------------


class NamedErrors(FlightErrors):
    """An owner's errors (as the engine's), to check the primitive raises them."""

    def __init__(self) -> None:
        super().__init__("fetch")
        self.timeouts: list = []

    def timed_out(self, key: object, timeout: float | None, where: str) -> Exception:
        self.timeouts.append((key, where))
        return LookupError(f"gave up on {key!r} after {timeout}s ({where})")

    def interrupted(self, key: object, cause: BaseException) -> Exception:
        return ArithmeticError(f"{key!r} interrupted by {cause!r}")


def test_a_batch_leads_free_keys_joins_running_ones_and_settles_each():
    reported: list = []
    flights: Flights[str, str] = Flights(on_error=lambda key, exc: reported.append((key, exc)))
    running, _ = flights.join("b")
    led, joined = flights.lead_many(["a", "b", "c", "d"])
    assert set(led) == {"a", "c", "d"} and set(joined) == {"b"}
    assert joined["b"] is running and flights.waiters("b") == 1
    assert len(flights) == 4 and "a" in flights
    outcomes = start_waiters(flights, "a", 2)
    boom = ValueError("c failed")
    flights.settle_many(led, {"a": ("A", None), "c": (None, boom), "d": (None, KeyError("d"))})
    assert join_all(outcomes) == ["A", "A"]
    assert all(flight.done for flight in led.values())
    with pytest.raises(ValueError, match="c failed"):
        led["c"].wait(0)
    with pytest.raises(KeyError):
        led["d"].wait(0)
    assert reported == [("c", boom)]  # a KeyError (not returned) is not a failure
    assert len(flights) == 1  # only "b", led by someone else, still runs
    flights.finish("b", running, "B")
    assert flights.wait("b", joined["b"]) == "B"


def test_a_batch_settled_with_one_error_ends_every_led_flight():
    reported: list = []
    flights: Flights[str, str] = Flights(on_error=lambda key, exc: reported.append(key))
    led, joined = flights.lead_many(["a", "b"])
    assert not joined
    flights.settle_many(led, KeyboardInterrupt())
    assert reported == ["a", "b"] and len(flights) == 0
    assert all(flight.done for flight in led.values())
    with pytest.raises(FlightInterruptedError):
        led["a"].wait(0)


def test_the_owner_names_the_errors_and_run_reports_a_failure_once():
    errors = NamedErrors()
    reported: list = []
    flights: Flights[str, int] = Flights(
        timeout=0, on_error=lambda key, exc: reported.append(key), errors=errors
    )
    flight, _ = flights.join("k")
    late, _ = flights.join("k")
    with pytest.raises(LookupError, match="gave up on 'k' after 0s"):
        flights.wait("k", late)  # the flights' own timeout
    assert errors.timeouts == [("k", "thread")]
    flights.fail("k", flight, SystemExit())
    with pytest.raises(ArithmeticError, match="interrupted by SystemExit") as caught:
        late.wait(0)
    assert isinstance(caught.value.__cause__, SystemExit)
    with pytest.raises(ZeroDivisionError):
        flights.run("k", lambda: 1 // 0)
    assert reported == ["k", "k"]


def test_a_flight_makes_its_event_only_for_a_waiter():
    flights: Flights[str, int] = Flights()
    flight, _ = flights.join("k")
    assert flight._done is None
    with pytest.raises(RuntimeError, match="only a waiter"):
        flight.wait(0)
    flights.finish("k", flight, 1)
    assert flight.done and flight.wait(0) == 1


async def test_an_async_batch_leads_joins_and_settles():
    reported: list = []
    flights: AsyncFlights[str, str] = AsyncFlights(
        on_error=lambda key, exc: reported.append((key, exc))
    )
    release = asyncio.Event()

    async def call() -> str:
        await release.wait()
        return "B"

    running = flights.join("b", call)
    led, joined = flights.lead_many(["a", "b", "c", "d"])
    assert set(led) == {"a", "c", "d"} and joined == {"b": running}
    assert flights.waiters("b") == 1 and "a" in flights
    waiter = asyncio.ensure_future(flights.run("a", call))
    await asyncio.sleep(0)
    boom = ValueError("c failed")
    flights.settle_many(led, {"a": ("A", None), "c": (None, boom), "d": (None, KeyError("d"))})
    assert await waiter == "A"
    with pytest.raises(ValueError, match="c failed"):
        await flights.wait("c", led["c"])
    assert reported == [("c", boom)]
    release.set()
    assert await flights.wait("b", joined["b"]) == "B"
    await asyncio.sleep(0)
    assert len(flights) == 0


async def test_an_async_batch_settled_with_one_error_and_a_cancelled_one():
    flights: AsyncFlights[str, str] = AsyncFlights()
    led, _ = flights.lead_many(["a", "b"])
    led["b"].cancel()
    flights.settle_many(led, RuntimeError("all down"))
    with pytest.raises(RuntimeError, match="all down"):
        await flights.wait("a", led["a"])
    with pytest.raises(FlightInterruptedError, match="'b'"):
        await flights.wait("b", led["b"])
    await asyncio.sleep(0)
    assert len(flights) == 0


async def test_async_owner_errors_and_the_flights_own_timeout():
    errors = NamedErrors()
    reported: list = []
    flights: AsyncFlights[str, str] = AsyncFlights(
        timeout=0, on_error=lambda key, exc: reported.append(key), errors=errors
    )
    never = asyncio.Event()

    async def call() -> str:
        await never.wait()
        return "never"

    task = flights.join("k", call)
    with pytest.raises(LookupError, match="gave up on 'k'"):
        await flights.run("k", call)
    assert errors.timeouts == [("k", "task")] and not task.done()
    task.cancel()
    await asyncio.sleep(0)  # the cancellation lands; the flight ends
    with pytest.raises(ArithmeticError, match="'k' interrupted"):
        await flights.wait("k", task)
    await asyncio.sleep(0)  # the done callback
    assert reported == ["k"] and len(flights) == 0  # the cancelled flight, reported once


@pytest.mark.parametrize("first", ["run", "join", "lead_many"])
def test_run_makes_its_flight_for_the_first_waiter_of_any_kind(first: str):
    """A flight led by run is a mark in the map until someone joins it."""
    flights: Flights[str, object] = Flights()
    release = threading.Event()
    results: list[object] = []

    def lead() -> None:
        results.append(flights.run("k", lambda v: release.wait(5) and v, None, ("v",)))

    leader = threading.Thread(target=lead)
    leader.start()
    wait_until(lambda: "k" in flights)
    assert flights.waiters("k") == 0
    if first == "run":
        join_all_later = start_waiters(flights, "k", 1)
    elif first == "join":
        flight, leads = flights.join("k")
        assert not leads
    else:
        led, joined = flights.lead_many(["k", "other"])
        assert list(led) == ["other"]
        flight = joined["k"]
    assert flights.waiters("k") == 1
    release.set()
    leader.join(10)
    assert results == ["v"]
    if first == "run":
        assert join_all(join_all_later) == ["v"]
    else:
        assert flights.wait("k", flight) == "v"
    if first == "lead_many":
        flights.settle_many(led, {"other": (1, None)})
    assert len(flights) == 0


def test_a_failed_run_reports_once_and_wakes_the_waiters_it_has():
    errors: list[object] = []
    flights: Flights[str, object] = Flights(on_error=lambda key, exc: errors.append((key, exc)))
    boom = ValueError("down")
    with pytest.raises(ValueError, match="down"):
        flights.run("k", lambda: (_ for _ in ()).throw(boom))  # nobody waits
    assert errors == [("k", boom)] and len(flights) == 0
    release = threading.Event()

    def fail() -> object:
        release.wait(5)
        raise boom

    raised: list[BaseException] = []

    def lead() -> None:
        try:
            flights.run("k", fail)
        except ValueError as exc:
            raised.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    wait_until(lambda: "k" in flights)
    outcomes = start_waiters(flights, "k", 3)
    release.set()
    leader.join(10)
    assert join_all(outcomes) == [boom] * 3
    assert raised == [boom]
    assert errors == [("k", boom), ("k", boom)] and len(flights) == 0
