"""Singleflight: one call per key at a time, its outcome shared by every caller asking.

Two twins with the same rules, :class:`Flights` for threads and :class:`AsyncFlights`
for the tasks of one event loop. The rules:

1. **One leader per key.** The first caller of a key whose flight is not running becomes
   its leader; the callers that come while it runs are its waiters. A key whose flight
   ended starts a new one on the next call (nothing is remembered: caching the value is
   the caller's job, done before the flight ends so that a late caller finds it).
2. **The leader always completes the flight**, with a value or an error, in a
   ``finally``: no waiter is ever left hanging because its leader failed, was
   interrupted or was cancelled. Completing removes the flight from the map first, then
   wakes the waiters.
3. **Waiters may time out.** ``wait(timeout)`` raises :class:`FlightTimeoutError` (a
   ``TimeoutError``) when the flight has not completed in ``timeout`` seconds; the
   flight goes on for the others and its leader is not disturbed.
4. **A waiter's cancellation or interrupt never reaches the leader.** An asyncio flight
   runs its call as a task of its own: cancelling a waiting task cancels only that
   wait, and the call completes for the others.
5. **Errors are shared, interrupts are not.** Waiters re-raise the leader's exception
   itself. A ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
   ``SystemExit``, a cancelled task) belongs to the leader: waiters get a
   :class:`FlightInterruptedError` (a ``RuntimeError``) whose ``__cause__`` it is.

Threads::

    flights: Flights[str, User] = Flights()
    user = flights.run("user:1", lambda: db.user(1), timeout=10)

    # or step by step, when the leader handles its own outcome:
    flight, leader = flights.join(key)
    if leader:
        try:
            value = load()
        except BaseException as exc:
            flights.fail(key, flight, exc)
            raise
        flights.finish(key, flight, value)
    else:
        value = flight.wait(timeout)

Tasks::

    flights: AsyncFlights[str, User] = AsyncFlights()
    user = await flights.run("user:1", lambda: db.user(1), timeout=10)

    # or: task = flights.join(key, call); value = await flights.wait(task, timeout)

Both are safe to share between the threads (tasks of one loop) of a process; an
:class:`AsyncFlights` used from several event loops keeps one flight per key per loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = [
    "AsyncFlights",
    "Flight",
    "FlightInterruptedError",
    "FlightTimeoutError",
    "Flights",
]

K = TypeVar("K")
T = TypeVar("T")


class FlightTimeoutError(TimeoutError):
    """A waiter stopped waiting for a flight after its timeout (the flight goes on)."""


class FlightInterruptedError(RuntimeError):
    """The leader of a flight was interrupted or cancelled; ``__cause__`` says how."""


def shared_error(exc: BaseException, key: object) -> BaseException:
    """The exception a waiter raises for its leader's ``exc`` (rule 5)."""
    if isinstance(exc, Exception):
        return exc
    interrupted = FlightInterruptedError(f"the call for {key!r} was interrupted: {exc!r}")
    interrupted.__cause__ = exc
    return interrupted


class Flight(Generic[T]):
    """One running call of :class:`Flights`, shared by its leader and its waiters.

    Attributes:
        waiters: How many callers joined it after its leader.
    """

    __slots__ = ("_done", "_error", "_key", "_value", "waiters")

    def __init__(self, key: object) -> None:
        self._key = key
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self.waiters = 0

    @property
    def done(self) -> bool:
        """Whether the leader has completed the flight."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> T:
        """Block until the leader completes the flight; return its value.

        Args:
            timeout: Most seconds to wait; ``None`` waits as long as the call runs.

        Returns:
            The leader's value.

        Raises:
            FlightTimeoutError: the flight was still running after ``timeout`` seconds.
            FlightInterruptedError: the leader was interrupted (rule 5).
            Exception: the exception the leader's call raised.
        """
        if not self._done.wait(timeout):
            raise FlightTimeoutError(
                f"waited {timeout}s for the call for {self._key!r} in another thread"
            )
        if self._error is not None:
            raise shared_error(self._error, self._key)
        value: T = self._value
        return value


class Flights(Generic[K, T]):
    """The running flights of threads, by key (see the module docstring for the rules)."""

    __slots__ = ("_lock", "_running")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[K, Flight[T]] = {}

    def join(self, key: K) -> tuple[Flight[T], bool]:
        """Join the flight of ``key``, starting it if none runs.

        Returns:
            ``(flight, leader)``. A leader must call :meth:`finish` or :meth:`fail`
            exactly once, in a ``finally`` or an ``except BaseException``; a waiter
            calls ``flight.wait()``.
        """
        with self._lock:
            flight = self._running.get(key)
            if flight is None:
                flight = self._running[key] = Flight(key)
                return flight, True
            flight.waiters += 1
            return flight, False

    def finish(self, key: K, flight: Flight[T], value: T) -> None:
        """End ``flight`` (the leader's) with ``value``, waking its waiters."""
        flight._value = value
        self._end(key, flight)

    def fail(self, key: K, flight: Flight[T], error: BaseException) -> None:
        """End ``flight`` (the leader's) with ``error``, waking its waiters."""
        flight._error = error
        self._end(key, flight)

    def _end(self, key: K, flight: Flight[T]) -> None:
        with self._lock:
            if self._running.get(key) is flight:
                del self._running[key]
        flight._done.set()

    def run(self, key: K, call: Callable[[], T], timeout: float | None = None) -> T:
        """Return ``call()``, run once for all the threads asking for ``key`` meanwhile.

        The leader runs ``call`` in its own thread (its own exception reaches it
        unchanged); waiters wait up to ``timeout`` seconds.

        Raises:
            FlightTimeoutError: a waiter waited ``timeout`` seconds.
            FlightInterruptedError: a waiter's leader was interrupted.
            Exception: whatever ``call`` raised.
        """
        flight, leader = self.join(key)
        if not leader:
            return flight.wait(timeout)
        try:
            value = call()
        except BaseException as exc:  # rule 2: the waiters learn of any end
            self.fail(key, flight, exc)
            raise
        self.finish(key, flight, value)
        return value

    def waiters(self, key: K) -> int:
        """How many callers wait on the running flight of ``key`` (0 if none runs)."""
        flight = self._running.get(key)
        return 0 if flight is None else flight.waiters

    def __len__(self) -> int:
        return len(self._running)


class AsyncFlights(Generic[K, T]):
    """The running flights of asyncio tasks, by key: each flight is a task of its own.

    Args:
        on_done: Called as ``on_done(key, task)`` when a flight's task ends, after it
            left the map (e.g. to log a failure). Its ``task.exception()`` is then
            marked retrieved either way, so a failed flight nobody awaited is not
            reported by asyncio as never retrieved.
    """

    __slots__ = ("_on_done", "_running", "_waiters")

    def __init__(self, on_done: Callable[[K, asyncio.Task[T]], None] | None = None) -> None:
        self._running: dict[K, asyncio.Task[T]] = {}
        self._waiters: dict[K, int] = {}
        self._on_done = on_done

    def join(self, key: K, call: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """Return the task of ``key``'s flight, starting ``call()`` as one if none runs.

        ``call`` is only called by the leader. Call from a running event loop.
        """
        loop = asyncio.get_running_loop()
        task = self._running.get(key)
        if task is not None and task.get_loop() is loop and not task.done():
            self._waiters[key] = self._waiters.get(key, 0) + 1
            return task
        task = loop.create_task(_awaited(call))
        self._running[key] = task
        self._waiters[key] = 0
        task.add_done_callback(lambda done: self._end(key, done))
        return task

    def _end(self, key: K, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
            del self._waiters[key]
        if not task.cancelled():
            task.exception()  # retrieved: the waiters re-raise it
        if self._on_done is not None:
            self._on_done(key, task)

    @staticmethod
    async def wait(task: asyncio.Task[T], timeout: float | None = None, key: object = None) -> T:
        """Wait for a flight's task without ever cancelling it (rule 4).

        Args:
            task: What :meth:`join` returned.
            timeout: Most seconds to wait; ``None`` waits as long as the call runs.
            key: Named in the errors.

        Raises:
            FlightTimeoutError: the flight was still running after ``timeout`` seconds.
            FlightInterruptedError: the flight's task was cancelled (a ``CancelledError``
                out of this method always means the waiting task itself was cancelled).
            Exception: whatever the call raised.
        """
        try:
            if timeout is None:
                return await asyncio.shield(task)
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.CancelledError as exc:
            if not task.cancelled():
                raise  # this waiter was cancelled; the flight goes on
            raise shared_error(exc, key) from None
        except asyncio.TimeoutError:
            if task.done():  # the call itself raised a TimeoutError
                raise
            raise FlightTimeoutError(
                f"waited {timeout}s for the call for {key!r} in another task"
            ) from None

    async def run(
        self, key: K, call: Callable[[], Awaitable[T]], timeout: float | None = None
    ) -> T:
        """Return ``await call()``, run once for all the tasks asking for ``key``.

        Raises:
            FlightTimeoutError: this caller waited ``timeout`` seconds.
            FlightInterruptedError: the flight's task was cancelled.
            Exception: whatever ``call`` raised.
        """
        return await self.wait(self.join(key, call), timeout, key)

    def waiters(self, key: K) -> int:
        """How many callers joined the running flight of ``key`` after its leader."""
        return self._waiters.get(key, 0)

    def __len__(self) -> int:
        return len(self._running)


async def _awaited(call: Callable[[], Awaitable[T]]) -> T:
    return await call()
