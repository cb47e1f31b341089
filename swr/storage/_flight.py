"""Singleflight: one call per key at a time, its outcome shared by every caller asking.

The one singleflight of swr: the pool's loaders and both engines use it (the storage
layer holds it because it must not import the engine side; the engine imports it).
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
3. **Waiters may time out.** A waiter waits at most ``timeout`` seconds (given per call,
   or once to the constructor) and then raises the *timed-out* error (see rule 6); the
   flight goes on for the others and its leader is not disturbed.
4. **A waiter's cancellation or interrupt never reaches the leader.** An asyncio flight
   runs its call as a task of its own: cancelling a waiting task cancels only that
   wait, and the call completes for the others.
5. **Errors are shared, interrupts are not.** Waiters re-raise the leader's exception
   itself. A ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
   ``SystemExit``, a cancelled task) belongs to the leader: waiters get the
   *interrupted* error (see rule 6) whose ``__cause__`` it is.
6. **The owner names the errors.** The two errors the primitive makes itself come from
   a :class:`FlightErrors`: by default :class:`FlightTimeoutError` (a ``TimeoutError``)
   and :class:`FlightInterruptedError` (a ``RuntimeError``), which the pool raises. The
   engine passes its own subclass of :class:`FlightErrors` that makes
   ``swr.errors.FetchTimeoutError`` / ``FetchAbortedError`` instead (and logs the
   timeout): the storage layer cannot import those, and a ``FetchTimeoutError`` is not
   always a flight's (a fetch outliving its own timeout raises it too), so the classes
   are not subclasses of each other; the primitive takes the factory instead.
7. **Failures are reported once.** ``on_error(key, exc)``, when given, is called once
   per failed flight (not per waiter), before the waiters wake: with the leader's
   exception, or with an ``asyncio.CancelledError`` for a cancelled asyncio flight. The
   engine counts and backs off there.

Batches (the engine's bulk loads) lead many keys at once: :meth:`Flights.lead_many`
starts the flights of the keys none runs and joins the others; the caller settles the
led ones with :meth:`Flights.settle_many` (a ``(value, error)`` per key, or one error
for all; a ``KeyError`` outcome means "not returned" and is not reported to
``on_error``) and waits for the joined ones with :meth:`Flights.wait`. The flights of
one batch end together: threads share one ``Event`` for them.

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
        value = flights.wait(key, flight, timeout)

Tasks::

    flights: AsyncFlights[str, User] = AsyncFlights()
    user = await flights.run("user:1", lambda: db.user(1), timeout=10)

    # or: task = flights.join(key, call); value = await flights.wait(key, task, timeout)

Both are safe to share between the threads (tasks of one loop) of a process; an
:class:`AsyncFlights` used from several event loops keeps one flight per key per loop.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Generic, TypeAlias, TypeVar

from swr.storage._lock import take

__all__ = [
    "AsyncFlights",
    "Flight",
    "FlightErrors",
    "FlightInterruptedError",
    "FlightTimeoutError",
    "Flights",
    "Outcomes",
]

K = TypeVar("K")
T = TypeVar("T")

Outcomes: TypeAlias = Mapping[Any, tuple[Any, BaseException | None]]
"""A batch's outcome per key: ``(value, None)`` or ``(None, error)``."""


class FlightTimeoutError(TimeoutError):
    """A waiter stopped waiting for a flight after its timeout (the flight goes on)."""


class FlightInterruptedError(RuntimeError):
    """The leader of a flight was interrupted or cancelled; ``__cause__`` says how."""


class FlightErrors:
    """The errors a flight makes itself (rule 6); subclass it to raise your own.

    Args:
        noun: How the messages name the shared call ("call"; the engine says "fetch").
    """

    __slots__ = ("noun",)

    def __init__(self, noun: str = "call") -> None:
        self.noun = noun

    def timed_out(self, key: object, timeout: float | None, where: str) -> Exception:
        """The error a waiter raises after ``timeout`` s (``where``: "thread" or "task").

        Called once per waiter that gives up (an override may log it).
        """
        return FlightTimeoutError(
            f"waited {timeout}s for the {self.noun} for {key!r} in another {where}"
        )

    def interrupted(self, key: object, cause: BaseException) -> Exception:
        """The error a waiter raises when its leader was interrupted by ``cause``."""
        return FlightInterruptedError(f"the {self.noun} for {key!r} was interrupted: {cause!r}")

    def shared(self, key: object, exc: BaseException) -> BaseException:
        """The exception a waiter raises for its leader's ``exc`` (rule 5)."""
        if isinstance(exc, Exception):
            return exc
        interrupted = self.interrupted(key, exc)
        interrupted.__cause__ = exc
        return interrupted


_DEFAULT_ERRORS = FlightErrors()
_Event = threading.Event  # a module name: tests count the waiters with their own
# What Flights.run puts in the map while its call runs and nobody waits: the first
# waiter replaces it with a Flight (a flight nobody waits for, the common miss, then
# never makes one).
_LED: Any = object()


def shared_error(exc: BaseException, key: object) -> BaseException:
    """The exception a waiter raises for its leader's ``exc``, with the default errors."""
    return _DEFAULT_ERRORS.shared(key, exc)


class Flight(Generic[T]):
    """One running call of :class:`Flights`, shared by its leader and its waiters.

    Its ``Event`` is made only when a first waiter joins (a flight nobody waits for,
    the common miss, never makes one) or given by a batch.

    Attributes:
        waiters: How many callers joined it after its leader.
    """

    __slots__ = ("_done", "_ended", "_error", "_errors", "_key", "_value", "waiters")

    def __init__(
        self, key: object, errors: FlightErrors, done: threading.Event | None = None
    ) -> None:
        self._key = key
        self._errors = errors
        self._done = done
        self._ended = False
        self._value: Any = None
        self._error: BaseException | None = None
        self.waiters = 0

    @property
    def done(self) -> bool:
        """Whether the leader has completed the flight."""
        return self._ended

    def wait(self, timeout: float | None = None) -> T:
        """Block until the leader completes the flight; return its value (waiters only).

        Args:
            timeout: Most seconds to wait; ``None`` waits as long as the call runs.

        Returns:
            The leader's value.

        Raises:
            FlightTimeoutError: the flight was still running after ``timeout`` seconds
                (or the error of the owner's :class:`FlightErrors`).
            FlightInterruptedError: the leader was interrupted (rule 5; idem).
            Exception: the exception the leader's call raised.
        """
        if not self._ended:
            done = self._done
            if done is None:
                raise RuntimeError("only a waiter of a flight waits for it, not its leader")
            if not done.wait(timeout):
                raise self._errors.timed_out(self._key, timeout, "thread")
        if self._error is not None:
            raise self._errors.shared(self._key, self._error)
        value: T = self._value
        return value


class _Base(Generic[K, T]):
    """What both twins hold: the settings below and the map of running flights.

    The thread twin guards its map with ``_lock``; the asyncio twin (one loop's tasks)
    needs none and counts its waiters in ``_waiters`` (a thread flight counts its own).

    Args:
        timeout: Most seconds a waiter waits when its call gives none (``None``: as
            long as the call runs). An asyncio leader's task is never cancelled by it.
        on_error: Called as ``on_error(key, exc)`` once per failed flight (rule 7).
        errors: The errors the flights make (rule 6).
    """

    __slots__ = ("_errors", "_lock", "_on_error", "_running", "_timeout", "_waiters")

    _running: dict[K, Any]

    def __init__(
        self,
        timeout: float | None = None,
        on_error: Callable[[K, BaseException], None] | None = None,
        errors: FlightErrors = _DEFAULT_ERRORS,
    ) -> None:
        self._timeout = timeout
        self._on_error = on_error
        self._errors = errors
        self._running = {}
        self._lock = threading.Lock()
        self._waiters: dict[K, int] = {}

    def __contains__(self, key: object) -> bool:
        """Whether a flight of ``key`` is running."""
        return key in self._running

    def __len__(self) -> int:
        return len(self._running)


class Flights(_Base[K, T]):
    """The running flights of threads, by key (see the module docstring for the rules).

    Takes the arguments of ``_Base``: ``timeout``, ``on_error``, ``errors``.
    """

    __slots__ = ()

    _running: dict[K, Flight[T]]

    is_async = False

    def join(self, key: K) -> tuple[Flight[T], bool]:
        """Join the flight of ``key``, starting it if none runs.

        Returns:
            ``(flight, leader)``. A leader must call :meth:`finish` or :meth:`fail`
            exactly once, in a ``finally`` or an ``except BaseException``; a waiter
            calls :meth:`wait` (or ``flight.wait()``).
        """
        with self._lock:
            flight = self._running.get(key)
            if flight is None:
                flight = self._running[key] = Flight(key, self._errors)
                return flight, True
            if flight is _LED:
                flight = self._running[key] = Flight(key, self._errors)
            self._joined(flight)
            return flight, False

    @staticmethod
    def _joined(flight: Flight[T]) -> None:
        """Count a waiter of ``flight`` and make its ``Event`` if none (under the lock)."""
        flight.waiters += 1
        if flight._done is None:
            flight._done = _Event()

    def finish(self, key: K, flight: Flight[T], value: T) -> None:
        """End ``flight`` (the leader's) with ``value``, waking its waiters."""
        flight._value = value
        self._end(key, flight)

    def fail(self, key: K, flight: Flight[T], error: BaseException) -> None:
        """End ``flight`` (the leader's) with ``error``: report it, wake the waiters."""
        flight._error = error
        if self._on_error is not None:
            self._on_error(key, error)
        self._end(key, flight)

    def _end(self, key: K, flight: Flight[T]) -> None:
        with self._lock:
            if self._running.get(key) is flight:
                del self._running[key]
            flight._ended = True
            done = flight._done
        if done is not None:
            done.set()

    def wait(self, key: K, flight: Flight[T], timeout: float | None = None) -> T:
        """Wait for a joined flight (``timeout`` or the flights' own); its value.

        Raises:
            FlightTimeoutError: the flight still ran after the timeout (rule 6).
            FlightInterruptedError: the leader was interrupted (rules 5, 6).
            Exception: whatever the leader's call raised.
        """
        return flight.wait(self._timeout if timeout is None else timeout)

    def run(
        self,
        key: K,
        call: Callable[..., T],
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
    ) -> T:
        """Return ``call(*args)``, run once for all the threads asking for ``key`` meanwhile.

        The leader runs ``call`` in its own thread (its own exception reaches it
        unchanged); waiters wait up to ``timeout`` seconds (``None``: the flights' own).
        ``args`` spare a caller the closure (every miss of a thread engine runs this).

        Raises:
            FlightTimeoutError: a waiter waited ``timeout`` seconds (rule 6).
            FlightInterruptedError: a waiter's leader was interrupted (rule 6).
            Exception: whatever ``call`` raised.
        """
        # join() and finish(), inline, and no Flight until a first waiter comes.
        lock = self._lock
        # Without queueing on a lock whose holder lost the GIL (see swr.storage._lock).
        if not lock.acquire(False):
            take(lock)
        try:
            running = self._running
            flight = running.get(key)
            if flight is None:
                running[key] = _LED
            else:
                if flight is _LED:  # the first waiter makes the flight to wait on
                    flight = running[key] = Flight(key, self._errors)
                self._joined(flight)
        finally:
            lock.release()
        if flight is not None:
            return flight.wait(self._timeout if timeout is None else timeout)
        try:
            value = call(*args)
        except BaseException as exc:  # rule 2: the waiters learn of any end
            self._led_failed(key, exc)
            raise
        # The map holds this call's flight until now: _LED, or the Flight made of it.
        if not lock.acquire(False):
            take(lock)
        try:
            flight = running.pop(key, None)
        finally:
            lock.release()
        if flight is not None and flight is not _LED:
            flight._value = value
            flight._ended = True
            done = flight._done
            if done is not None:
                done.set()
        return value

    def _led_failed(self, key: K, error: BaseException) -> None:
        """:meth:`fail` of a flight led by :meth:`run` (a Flight only if someone waits)."""
        with self._lock:
            flight = self._running.get(key)
            if flight is _LED:  # nobody waits: only the report is left
                del self._running[key]
        if isinstance(flight, Flight):
            self.fail(key, flight, error)
        elif self._on_error is not None:
            self._on_error(key, error)

    def lead_many(self, keys: list[K]) -> tuple[dict[K, Flight[T]], dict[K, Flight[T]]]:
        """Lead the flights of the ``keys`` none runs; join the running ones.

        Returns:
            ``(led, joined)``: a flight per key. The caller settles every led one once
            with :meth:`settle_many`; a joined one is waited on with :meth:`wait`.
        """
        led: dict[K, Flight[T]] = {}
        joined: dict[K, Flight[T]] = {}
        done = _Event()  # one for the batch: its flights end together
        errors = self._errors
        with self._lock:
            running = self._running
            for key in keys:
                flight = running.get(key)
                if flight is not None:
                    if flight is _LED:
                        flight = running[key] = Flight(key, errors)
                    self._joined(flight)
                    joined[key] = flight
                else:
                    led[key] = running[key] = Flight(key, errors, done)
        return led, joined

    def settle_many(self, led: Mapping[K, Flight[T]], outcomes: Outcomes | BaseException) -> None:
        """End led flights, each with its ``(value, error)``, or all with one error.

        Errors are reported to ``on_error``, except ``KeyError`` (a key not returned).
        The waiters are woken once, after every value is in place.
        """
        on_error = self._on_error
        for key, flight in led.items():
            value, error = _outcome(outcomes, key)
            if error is None:
                flight._value = value
            else:
                flight._error = error
                if on_error is not None and not isinstance(error, KeyError):
                    on_error(key, error)
        events: dict[int, threading.Event] = {}
        with self._lock:
            running = self._running
            for key, flight in led.items():
                if running.get(key) is flight:
                    del running[key]
                flight._ended = True
                if flight._done is not None:
                    events[id(flight._done)] = flight._done
        for done in events.values():
            done.set()

    def waiters(self, key: K) -> int:
        """How many callers wait on the running flight of ``key`` (0 if none runs)."""
        flight = self._running.get(key)
        return 0 if flight is None or flight is _LED else flight.waiters


class AsyncFlights(_Base[K, T]):
    """The running flights of asyncio tasks, by key: each flight is a task of its own.

    A batch's led flights are plain futures the batch settles (:meth:`settle_many`);
    callers await either alike. Takes the arguments of ``_Base``; ``on_error`` is
    called from the task's done callback, after the flight left the map, and a failed
    flight's exception is marked retrieved either way (one nobody awaited is not
    reported by asyncio as never retrieved).
    """

    __slots__ = ()

    _running: dict[K, asyncio.Future[T]]

    is_async = True

    def join(
        self, key: K, call: Callable[..., Coroutine[Any, Any, T]], args: tuple[Any, ...] = ()
    ) -> asyncio.Future[T]:
        """Return the task of ``key``'s flight, starting ``call(*args)`` as one if none runs.

        ``call`` (returning a coroutine) is only called by the leader. Call from a
        running event loop.
        """
        loop = asyncio.get_running_loop()
        running = self._running.get(key)
        if running is not None and running.get_loop() is loop and not running.done():
            self._waiters[key] = self._waiters.get(key, 0) + 1
            return running
        task = loop.create_task(call(*args))
        self._running[key] = task
        task.add_done_callback(functools.partial(self._end, key))
        return task

    def _end(self, key: K, task: asyncio.Future[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
            if self._waiters:
                self._waiters.pop(key, None)
        if task.cancelled():
            if self._on_error is not None:
                self._on_error(key, asyncio.CancelledError())
        elif (exc := task.exception()) is not None and self._on_error is not None:
            self._on_error(key, exc)  # task.exception() also marked it retrieved

    async def wait(self, key: K, task: asyncio.Future[T], timeout: float | None = None) -> T:
        """Wait for a flight's task without ever cancelling it (rule 4).

        Args:
            key: The flight's key (named in the errors).
            task: What :meth:`join` or :meth:`lead_many` returned.
            timeout: Most seconds to wait (``None``: the flights' own).

        Raises:
            FlightTimeoutError: the flight was still running after the timeout (rule 6).
            FlightInterruptedError: the flight's task was cancelled (rule 6; a
                ``CancelledError`` out of this method always means the waiting task
                itself was cancelled).
            Exception: whatever the call raised.
        """
        if timeout is None:
            timeout = self._timeout
        try:
            if timeout is None:
                return await asyncio.shield(task)
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.CancelledError as exc:
            if not task.cancelled():
                raise  # this waiter was cancelled; the flight goes on
            raise self._errors.shared(key, exc) from None
        except asyncio.TimeoutError:
            if task.done():  # the call itself raised a TimeoutError
                raise
            raise self._errors.timed_out(key, timeout, "task") from None

    async def run(
        self,
        key: K,
        call: Callable[..., Coroutine[Any, Any, T]],
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
    ) -> T:
        """Return ``await call(*args)``, run once for all the tasks asking for ``key``.

        Raises:
            FlightTimeoutError: this caller waited ``timeout`` seconds (rule 6).
            FlightInterruptedError: the flight's task was cancelled (rule 6).
            Exception: whatever ``call`` raised.
        """
        task = self.join(key, call, args)
        if timeout is None and self._timeout is None:
            # wait() without a timeout, inlined: every miss of an async engine runs this.
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError as exc:
                if not task.cancelled():
                    raise
                raise self._errors.shared(key, exc) from None
        return await self.wait(key, task, timeout)

    def lead_many(
        self, keys: list[K]
    ) -> tuple[dict[K, asyncio.Future[T]], dict[K, asyncio.Future[T]]]:
        """Lead the flights of the ``keys`` none runs; join the running ones.

        Returns:
            ``(led, joined)``: a future per key. The caller settles every led one once
            with :meth:`settle_many`; a joined one is awaited with :meth:`wait`.
        """
        loop = asyncio.get_running_loop()
        led: dict[K, asyncio.Future[T]] = {}
        joined: dict[K, asyncio.Future[T]] = {}
        running = self._running
        for key in keys:
            task = running.get(key)
            if task is not None and task.get_loop() is loop and not task.done():
                self._waiters[key] = self._waiters.get(key, 0) + 1
                joined[key] = task
                continue
            future: asyncio.Future[T] = loop.create_future()
            running[key] = future
            future.add_done_callback(functools.partial(self._settled, key))
            led[key] = future
        return led, joined

    def settle_many(
        self, led: Mapping[K, asyncio.Future[T]], outcomes: Outcomes | BaseException
    ) -> None:
        """End led flights, each with its ``(value, error)``, or all with one error.

        Errors are reported to ``on_error``, except ``KeyError`` (a key not returned).
        """
        on_error = self._on_error
        for key, future in led.items():
            if future.done():
                continue
            value, error = _outcome(outcomes, key)
            if error is None:
                future.set_result(value)
                continue
            if on_error is not None and not isinstance(error, KeyError):
                on_error(key, error)
            future.set_exception(error)

    def _settled(self, key: K, future: asyncio.Future[T]) -> None:
        if self._running.get(key) is future:
            del self._running[key]
            if self._waiters:
                self._waiters.pop(key, None)
        if not future.cancelled():
            future.exception()  # retrieved: nobody may be waiting

    def waiters(self, key: K) -> int:
        """How many callers joined the running flight of ``key`` after its leader."""
        return self._waiters.get(key, 0)


def _outcome(outcomes: Outcomes | BaseException, key: object) -> tuple[Any, BaseException | None]:
    """The ``(value, error)`` of ``key`` in a batch's outcomes (or its one error)."""
    if isinstance(outcomes, BaseException):
        return None, outcomes
    return outcomes[key]
