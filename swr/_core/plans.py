"""What to do with a stale entry, and after a failed fetch."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swr._core.backoff import Backoff
    from swr.storage import Entry

__all__ = ["Plan", "live", "plan_failure", "plan_stale"]


class Plan(Enum):
    """The engine's next step for a stale entry or a failed fetch."""

    SERVE = "serve"
    """Serve the entry as STALE; its refresh is already queued or running."""
    REFRESH = "refresh"
    """Serve the entry as STALE and queue one background refresh."""
    BACKING_OFF = "backing_off"
    """Serve the entry as STALE; its refreshes failed lately, so none starts yet."""
    FALLBACK = "fallback"
    """Serve the cached entry as FALLBACK (the breaker refuses, or the fetch failed)."""
    RAISE = "raise"
    """Nothing can be served: the caller gets the error."""


def plan_stale(
    circuit_open: bool, refresh_pending: bool, backoff: Backoff, key: str, now: float
) -> Plan:
    """The step for a STALE entry of ``key`` at ``now``.

    Args:
        circuit_open: The breaker refuses every call now.
        refresh_pending: A refresh of the key is queued or running.
        backoff: The engine's backoff, asked only when a refresh could start.
        key: The storage key.
        now: Epoch seconds.
    """
    if circuit_open:
        return Plan.FALLBACK
    if refresh_pending:
        return Plan.SERVE
    if backoff and not backoff.allows(key, now):
        return Plan.BACKING_OFF
    return Plan.REFRESH


def plan_failure(fallback: Entry | None) -> Plan:
    """The step after a failed fetch: FALLBACK when an entry can be served, else RAISE."""
    return Plan.RAISE if fallback is None else Plan.FALLBACK


def live(entry: Entry | None, now: float) -> Entry | None:
    """``entry`` if it is still within its lifetime (a usable fallback), else ``None``."""
    if entry is not None and now >= entry.expires_at:
        return None
    return entry
