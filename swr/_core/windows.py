"""Which window an entry is in, and what a call was answered with.

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

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

from swr._core.clock import now as _now

if TYPE_CHECKING:
    from swr.storage import Entry

__all__ = ["Result", "Status", "classify", "classify_inline"]

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
        return max(0.0, _now(self._clock) - self.stored_at)

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


def classify(entry: Entry | None, now: float) -> Status:
    """Return the window ``entry`` is in at ``now``: HIT, STALE, EXPIRED or MISS.

    This is the rule. The engines' hit paths inline it (see :func:`classify_inline`).
    """
    if entry is None or now >= entry.expires_at:
        return Status.MISS
    if now < entry.fresh_until:
        return Status.HIT
    if now < entry.stale_until:
        return Status.STALE
    return Status.EXPIRED


def classify_inline(entry: Entry, now: float) -> Status:
    """The comparisons the engines' hit path makes, in its order, as one function.

    ``AsyncStaleEngine.execute`` (and its generated twin) cannot afford a call on a
    hit, so it writes these comparisons inline, in this order: fresh first (the common
    case), stale next, dead last. Keep this function and that code the same;
    ``tests/swr/test_core.py`` checks this one against :func:`classify` at every window
    boundary and ``tests/swr/test_windows.py`` checks the engines against it.
    """
    if now < entry.fresh_until:
        return Status.HIT
    if now < entry.stale_until:
        return Status.STALE
    if now >= entry.expires_at:
        return Status.MISS
    return Status.EXPIRED
