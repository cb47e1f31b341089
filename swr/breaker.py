"""CircuitBreaker: stop calling an upstream that keeps failing, and let it recover.

How it works::

             failure_threshold consecutive failures
    CLOSED ------------------------------------------> OPEN
      ^                                                  |  reset_timeout passes
      |  success_threshold trial successes               v
      +-------------------------------------------- HALF_OPEN
                         any trial failure: back to OPEN for another reset_timeout

- CLOSED: every call goes through; a success resets the failure count.
- OPEN: no call goes through (``CircuitOpenError`` says when one may, ``retry_at``).
- HALF_OPEN: at most ``half_open_max_calls`` trial calls run at once; the rest are
  refused as if open.

The transitions themselves are pure (``swr._core.breaker.transition``); this class
holds the current state, hands out permits and logs. What always holds: every
transition happens under one lock, so no two callers both
take the last trial slot and each transition is logged and counted once. Each state
has a generation number; a permit remembers the generation it was issued in, and the
outcome of a call started in an earlier generation (a slow call that began while
closed and ends after the circuit opened) changes nothing. OPEN turns into HALF_OPEN
lazily: the first caller or reader after ``reset_timeout`` makes the transition.

One breaker may be shared by several engines calling the same upstream, and used by
threads and asyncio tasks alike (the lock is never held across an ``await``).
Listeners (:meth:`CircuitBreaker.add_listener`) hear of each transition once, after the
lock is released; each engine with a metrics hook
registers one, so a shared breaker's transitions reach every engine's metrics.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from swr._core import BreakerEvent, BreakerRules, BreakerState, check_callable, now, transition
from swr._core.breaker import CLOSED, HALF_OPEN, OPEN
from swr._log import logger
from swr.errors import CircuitOpenError
from swr.metrics._hooks import weak_callable

__all__ = ["CircuitBreaker", "CircuitOpenError", "Listener", "Permit"]

Listener = Callable[[str], object]
"""Called with the new state (``"closed"``, ``"open"``, ``"half_open"``) after a transition."""

P = ParamSpec("P")
T = TypeVar("T")


class Permit:
    """Leave to make one call; hand it back with exactly one outcome."""

    __slots__ = ("generation", "trial")

    def __init__(self, generation: int, trial: bool) -> None:
        self.generation = generation
        self.trial = trial


class CircuitBreaker:
    """Stops calls to a failing upstream for a while, then lets trial calls test it.

    Example::

        breaker = CircuitBreaker(failure_threshold=5, reset_timeout=30)
        engine = StaleEngine(ttl=CacheTTL(fresh=60, stale=600), breaker=breaker)

        @breaker
        def call_upstream() -> dict: ...

    Args:
        failure_threshold: Consecutive failures that open the circuit.
        success_threshold: Successful trial calls in half-open that close it.
        reset_timeout: Seconds the circuit stays open before trial calls are allowed.
        half_open_max_calls: Trial calls allowed at once in half-open.
        clock: Zero-argument callable returning epoch seconds; default ``time.time``
            looked up at each call (freezegun works).
        name: Name used in log events.
        ignore: Exception types that pass through without counting as failures
            (e.g. a "not found" that proves the upstream is healthy).

    Raises:
        ValueError: a threshold < 1 or a negative / non-finite ``reset_timeout``;
            the message names the field.
        TypeError: a setting of the wrong type.

    Thread-safe and usable from asyncio tasks; may be shared by several engines.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        success_threshold: int = 2,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] | None = None,
        *,
        name: str = "circuit",
        ignore: tuple[type[BaseException], ...] = (),
    ) -> None:
        rules = BreakerRules(
            failure_threshold, success_threshold, reset_timeout, half_open_max_calls
        )
        check_callable("CircuitBreaker.clock", clock, "a zero-argument callable")
        self.failure_threshold = rules.failure_threshold
        self.success_threshold = rules.success_threshold
        self.half_open_max_calls = rules.half_open_max_calls
        self.reset_timeout = rules.reset_timeout
        self.name = name
        self.ignore = tuple(ignore)
        self._clock = clock
        self._lock = threading.Lock()
        self._s = BreakerState(rules)
        self._closed_permit = Permit(0, trial=False)
        self._transitions = {OPEN: 0, HALF_OPEN: 0, CLOSED: 0}
        self._rejected = 0
        # Listeners (a bound method held weakly), and the transitions they have yet to hear.
        self._listeners: list[Callable[[], Listener | None]] = []
        self._unheard: list[str] = []

    def _now(self) -> float:
        return now(self._clock)

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` as of now."""
        with self._lock:
            state = self._step_locked(BreakerEvent.TICK).state
        if self._unheard:
            self._tell_listeners()
        return state

    def is_open(self) -> bool:
        """Whether calls are refused outright now (open, and not yet due for trials).

        Lock-free: a racing transition may be missed by a moment; :meth:`acquire` is
        the authority.
        """
        s = self._s
        return s.state == OPEN and self._now() < s.open_until

    @property
    def retry_at(self) -> float:
        """Epoch seconds from which a trial call may run (now, unless open)."""
        with self._lock:
            s = self._s
            return s.open_until if s.state == OPEN else self._now()

    def _step_locked(self, event: BreakerEvent) -> BreakerState:
        """Apply ``event`` (the rules are in ``swr._core.breaker``); log a change of state."""
        old = self._s
        s = self._s = transition(old, event, self._now())
        if s.state != old.state:
            self._transitions[s.state] += 1
            if self._listeners:
                self._unheard.append(s.state)
            if s.state == CLOSED:
                self._closed_permit = Permit(s.generation, trial=False)
                logger.info("circuit_closed", circuit=self.name)
            elif s.state == OPEN:
                logger.warning(
                    "circuit_opened",
                    circuit=self.name,
                    failures=s.failures,
                    retry_in=self.reset_timeout,
                )
            else:
                logger.info("circuit_half_open", circuit=self.name)
        return s

    # -- permits -----------------------------------------------------------------------

    def acquire(self) -> Permit | None:
        """Ask leave to make one call; ``None`` means refused (open or no trial slot).

        Every permit must be handed back once with :meth:`record_success`,
        :meth:`record_failure` or :meth:`release`.
        """
        if self._s.state == CLOSED:
            # Lock-free fast path: a permit of a generation that ends meanwhile is
            # simply ignored when handed back.
            return self._closed_permit
        permit: Permit | None = None
        with self._lock:
            s = self._step_locked(BreakerEvent.TICK)
            if s.state == CLOSED:
                permit = self._closed_permit
            elif s.allows_trial():
                s = self._step_locked(BreakerEvent.TRIAL)
                permit = Permit(s.generation, trial=True)
            else:
                self._rejected += 1
        if self._unheard:
            self._tell_listeners()
        return permit

    def refusal(self) -> CircuitOpenError:
        """The error describing why a call is refused now."""
        retry_at = self.retry_at
        return CircuitOpenError(
            f"circuit {self.name!r} is {self.state}; a trial call is allowed from "
            f"{retry_at:.3f} (in {max(0.0, retry_at - self._now()):.3f}s)",
            retry_at=retry_at,
            retry_in=max(0.0, retry_at - self._now()),
        )

    def _outcome(self, permit: Permit, event: BreakerEvent) -> None:
        with self._lock:
            # A call started in an earlier generation says nothing about this one.
            if permit.generation == self._s.generation:
                self._step_locked(event)
        if self._unheard:
            self._tell_listeners()

    def record_success(self, permit: Permit) -> None:
        """The call made under ``permit`` succeeded."""
        self._outcome(permit, BreakerEvent.SUCCESS)

    def record_failure(self, permit: Permit) -> None:
        """The call made under ``permit`` failed (raised or timed out)."""
        self._outcome(permit, BreakerEvent.FAILURE)

    def release(self, permit: Permit) -> None:
        """Hand back a permit whose call never ran (or was interrupted): no outcome."""
        if permit.trial:
            self._outcome(permit, BreakerEvent.RELEASE)

    def record(self, permit: Permit, error: BaseException | None) -> None:
        """Hand back ``permit`` with the outcome ``error`` (``None`` for success).

        Errors in ``ignore`` count as successes (the upstream answered), interruptions
        (``KeyboardInterrupt``, cancellation) as no outcome.
        """
        if error is None or isinstance(error, self.ignore):
            self.record_success(permit)
        elif isinstance(error, Exception):
            self.record_failure(permit)
        else:
            self.release(permit)

    def stats(self) -> dict[str, Any]:
        """State, transition counts, refusals and the current consecutive failures."""
        with self._lock:
            s = self._step_locked(BreakerEvent.TICK)
            stats = {
                "state": s.state,
                "opened": self._transitions[OPEN],
                "half_opened": self._transitions[HALF_OPEN],
                "closed": self._transitions[CLOSED],
                "rejected": self._rejected,
                "consecutive_failures": s.failures,
            }
        if self._unheard:
            self._tell_listeners()
        return stats

    def reset(self) -> None:
        """Close the circuit now, forgetting failures (for operators and tests)."""
        with self._lock:
            self._step_locked(BreakerEvent.RESET)
        if self._unheard:
            self._tell_listeners()

    # -- listeners -----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state)`` after each transition, outside the breaker's lock.

        A bound method is held weakly (registering an engine never keeps it alive);
        any other callable strongly until :meth:`remove_listener`. Each transition is
        told once, by whichever caller caused or noticed it (several at once may tell
        theirs concurrently). A listener must be fast and thread-safe; an exception it
        raises is logged, never propagated.
        """
        if not callable(listener):
            raise TypeError(
                f"listener must be a callable taking the new state, got {type(listener).__name__}"
            )
        ref = weak_callable(listener)
        with self._lock:
            self._listeners = [*self._listeners, ref]

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; a listener not registered is ignored."""
        with self._lock:
            self._listeners = [r for r in self._listeners if r() not in (listener, None)]

    def _tell_listeners(self) -> None:
        with self._lock:
            unheard, self._unheard = self._unheard, []
            listeners = self._listeners
        for state in unheard:
            for ref in listeners:
                listener = ref()
                if listener is None:
                    continue
                try:
                    listener(state)
                except Exception as exc:  # noqa: BLE001 - a listener never breaks a call
                    logger.warning(
                        "circuit_listener_failed", circuit=self.name, state=state, error=repr(exc)
                    )

    # -- wrapping calls ----------------------------------------------------------------

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` through the breaker.

        Raises:
            CircuitOpenError: the circuit refuses calls now.
            Exception: whatever ``fn`` raised (and it counts as a failure).
        """
        permit = self.acquire()
        if permit is None:
            raise self.refusal()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.record(permit, exc)
            raise
        self.record_success(permit)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker; see :meth:`call`."""
        permit = self.acquire()
        if permit is None:
            raise self.refusal()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.record(permit, exc)
            raise
        self.record_success(permit)
        return result

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorate a function or coroutine function so every call goes through the breaker."""
        if inspect.iscoroutinefunction(func):
            async_func = cast("Callable[P, Awaitable[Any]]", func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(async_func, *args, **kwargs)

            return cast("Callable[P, T]", async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(func, *args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self.state!r})"
