"""The circuit breaker's states and its transitions, as values: ``transition(state, event, now)``.

::

             failure_threshold consecutive failures
    CLOSED ------------------------------------------> OPEN
      ^                                                  |  reset_timeout passes (TICK)
      |  success_threshold trial successes               v
      +-------------------------------------------- HALF_OPEN
                         any trial failure: back to OPEN for another reset_timeout

Every change of ``state`` starts a new ``generation``; the outcome of a call started in
an earlier generation is not an event of this one (``swr.breaker.CircuitBreaker``
drops it before calling :func:`transition`). Nothing here locks, logs or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from swr._core.validate import check_int, check_seconds

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerEvent",
    "BreakerRules",
    "BreakerState",
    "transition",
]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerRules:
    """The thresholds of a breaker; see :class:`swr.CircuitBreaker` for their meaning.

    Raises:
        ConfigError: a threshold < 1 or a negative / non-finite ``reset_timeout``
            (a ``ValueError``); the message names the field.
        TypeError: a setting of the wrong type.
    """

    failure_threshold: int = 5
    success_threshold: int = 2
    reset_timeout: float = 30.0
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "success_threshold", "half_open_max_calls"):
            check_int(f"CircuitBreaker.{name}", getattr(self, name), 1)
        timeout = check_seconds("CircuitBreaker.reset_timeout", self.reset_timeout, positive=False)
        object.__setattr__(self, "reset_timeout", timeout)


class BreakerEvent(Enum):
    """What happened to a breaker."""

    SUCCESS = "success"
    """A call of the current generation succeeded."""
    FAILURE = "failure"
    """A call of the current generation failed."""
    TRIAL = "trial"
    """A trial call wants to start (half-open): takes a slot if one is free."""
    RELEASE = "release"
    """A trial call ended without an outcome: its slot is free again."""
    TICK = "tick"
    """Time passed: an open circuit whose ``reset_timeout`` is over turns half-open."""
    RESET = "reset"
    """An operator closes the circuit and forgets its failures."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One breaker's state. ``trials`` counts the trial calls running (half-open)."""

    rules: BreakerRules
    state: str = CLOSED
    generation: int = 0
    failures: int = 0
    successes: int = 0
    trials: int = 0
    open_until: float = 0.0

    def allows_trial(self) -> bool:
        """Whether a trial call may start now (half-open with a free slot)."""
        return self.state == HALF_OPEN and self.trials < self.rules.half_open_max_calls


def _enter(s: BreakerState, state: str, now: float, failures: int) -> BreakerState:
    return replace(
        s,
        state=state,
        generation=s.generation + 1,
        failures=0 if state == CLOSED else failures,
        successes=0,
        trials=0,
        open_until=now + s.rules.reset_timeout if state == OPEN else s.open_until,
    )


def transition(s: BreakerState, event: BreakerEvent, now: float) -> BreakerState:
    """The state after ``event`` at ``now`` (``s`` itself when nothing changes)."""
    state = s.state
    if event is BreakerEvent.TICK:
        if state == OPEN and now >= s.open_until:
            return _enter(s, HALF_OPEN, now, s.failures)
    elif event is BreakerEvent.SUCCESS:
        if state == CLOSED and s.failures:
            return replace(s, failures=0)
        if state == HALF_OPEN:
            if s.successes + 1 >= s.rules.success_threshold:
                return _enter(s, CLOSED, now, 0)
            return replace(s, successes=s.successes + 1, trials=max(0, s.trials - 1))
    elif event is BreakerEvent.FAILURE:
        failures = s.failures + 1
        if state == CLOSED:
            if failures >= s.rules.failure_threshold:
                return _enter(s, OPEN, now, failures)
            return replace(s, failures=failures)
        if state == HALF_OPEN:
            return _enter(s, OPEN, now, failures)
    elif event is BreakerEvent.TRIAL:
        if s.allows_trial():
            return replace(s, trials=s.trials + 1)
    elif event is BreakerEvent.RELEASE:
        if s.trials > 0:
            return replace(s, trials=s.trials - 1)
    elif event is BreakerEvent.RESET:
        if state != CLOSED:
            return _enter(s, CLOSED, now, 0)
        if s.failures:
            return replace(s, failures=0)
    return s
