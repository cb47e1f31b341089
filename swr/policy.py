"""The vocabulary of the engine: statuses, results and TTL windows.

An entry lives through consecutive windows measured from the moment it was stored::

    stored_at      fresh_until       stale_until            expires_at
        |---- fresh ----|---- stale ------|------ expired ------|---- dead
          HIT             STALE             EXPIRED               MISS
                          (served, one      (caller waits for a   (fetched)
                          background        fetch; the old value
                          refresh)          is the fallback)

A fetch that fails or times out while an old value exists serves that value as
FALLBACK (stale-if-error).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any, Generic, TypeAlias, TypeVar

__all__ = ["CacheTTL", "Result", "Status", "TTLSpec"]

T = TypeVar("T")


class Status(str, Enum):
    """How a call of ``execute`` was answered. Values are plain strings."""

    HIT = "hit"
    """Fresh entry served, no fetch."""
    STALE = "stale"
    """Stale entry served at once; a background refresh was started or is running."""
    EXPIRED = "expired"
    """The entry was too old to serve; the caller waited for a fetch and got new data."""
    MISS = "miss"
    """Nothing usable was cached; the caller waited for a fetch."""
    FALLBACK = "fallback"
    """The fetch failed or timed out; the old cached value was served instead."""

    def __str__(self) -> str:
        return self.value


class Result(Generic[T]):
    """What ``execute`` returns: the value, how it was served and how old it is.

    Results of HIT and STALE answers are shared between callers (they are created once
    per stored entry, which keeps the hit path free of allocations), so a result is
    read-only and ``age`` is measured when you read it.

    Attributes:
        value: The cached or freshly fetched value.
        status: A :class:`Status`.
        stored_at: Epoch seconds at which the value was fetched.
    """

    __slots__ = ("_clock", "status", "stored_at", "value")

    def __init__(
        self,
        value: T,
        status: Status,
        stored_at: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.value = value
        self.status = status
        self.stored_at = stored_at
        self._clock = clock

    @property
    def age(self) -> float:
        """Seconds since the value was fetched, measured now by the engine's clock."""
        clock = self._clock
        now = clock() if clock is not None else _time.time()
        return max(0.0, now - self.stored_at)

    def __repr__(self) -> str:
        return f"Result(value={self.value!r}, status={self.status.value}, age={self.age:.3f})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return (self.value, self.status, self.stored_at) == (
            other.value,
            other.status,
            other.stored_at,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable value, like a dataclass(eq=True)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(
            f"CacheTTL.{name} must be seconds (int or float) or a timedelta, "
            f"got {type(value).__name__}"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"CacheTTL.{name} must be a finite number of seconds, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class CacheTTL:
    """The lengths of an entry's windows, in seconds.

    Example::

        CacheTTL(fresh=60, stale=300, expired=3600)          # 1 min, 5 min, 1 h
        CacheTTL(fresh=timedelta(minutes=5), jitter=0.1)

    Args:
        fresh: How long a value is served as a HIT; must be > 0.
        stale: How long after that it is served STALE while refreshing; >= 0.
        expired: How long after that it is kept as a fallback for failed fetches; >= 0.
        jitter: Fraction in [0, 1) by which ``fresh`` is shortened at random for each
            write (``fresh * (1 - jitter * random())``), so entries written together
            do not all go stale together. ``fresh`` is never lengthened.

    Raises:
        ValueError: a window is out of range; the message names the field.
        TypeError: a window is neither a number nor a ``timedelta``.
    """

    fresh: float
    stale: float = 0.0
    expired: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        fresh = _seconds("fresh", self.fresh)
        stale = _seconds("stale", self.stale)
        expired = _seconds("expired", self.expired)
        if fresh <= 0:
            raise ValueError(f"CacheTTL.fresh must be > 0 seconds, got {fresh}")
        if stale < 0:
            raise ValueError(f"CacheTTL.stale must be >= 0 seconds, got {stale}")
        if expired < 0:
            raise ValueError(f"CacheTTL.expired must be >= 0 seconds, got {expired}")
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise TypeError(f"CacheTTL.jitter must be a float, got {type(jitter).__name__}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"CacheTTL.jitter must be in [0, 1), got {jitter}")
        object.__setattr__(self, "fresh", fresh)
        object.__setattr__(self, "stale", stale)
        object.__setattr__(self, "expired", expired)
        object.__setattr__(self, "jitter", float(jitter))

    @property
    def lifetime(self) -> float:
        """Seconds from storing to dead: ``fresh + stale + expired`` (before jitter)."""
        return self.fresh + self.stale + self.expired


TTLSpec: TypeAlias = "CacheTTL | Callable[[str, Any], CacheTTL]"
"""A :class:`CacheTTL`, or a callable ``(key, value) -> CacheTTL`` choosing it per value."""
