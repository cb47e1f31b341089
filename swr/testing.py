"""Helpers for testing code that uses swr: a clock you move by hand, a metrics recorder."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from swr.policy import Status

__all__ = ["FakeClock", "RecordingMetrics"]


class FakeClock:
    """A clock for ``StaleEngine(clock=...)`` that moves only when told. Thread-safe.

    Example::

        clock = FakeClock()
        engine = StaleEngine(ttl=CacheTTL(fresh=60), clock=clock)
        clock.advance(61)   # the entry is no longer fresh

    Args:
        start: The initial time in epoch seconds.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Return the current fake time in epoch seconds."""
        return self._now

    def advance(self, seconds: float | timedelta) -> float:
        """Move forward by ``seconds`` (or a timedelta); return the new time."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if step < 0:
            raise ValueError(f"a clock only moves forward; got {step} seconds")
        with self._lock:
            self._now += step
            return self._now

    def set(self, now: float) -> None:
        """Jump to the epoch time ``now`` (forward or back)."""
        with self._lock:
            self._now = float(now)


class RecordingMetrics:
    """A :class:`~swr.metrics.MetricsHook` that counts what it receives.

    ``statuses``, ``refreshes`` and ``errors`` are ``collections.Counter`` objects
    keyed by ``(engine, value)``.
    """

    def __init__(self) -> None:
        self.statuses: Counter[tuple[str, str]] = Counter()
        self.refreshes: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record_status(self, engine: str, status: Status) -> None:
        """Count one answered request."""
        with self._lock:
            self.statuses[engine, status.value] += 1

    def record_refresh(self, engine: str, outcome: str) -> None:
        """Count one refresh outcome."""
        with self._lock:
            self.refreshes[engine, outcome] += 1

    def record_error(self, engine: str, kind: str) -> None:
        """Count one error."""
        with self._lock:
            self.errors[engine, kind] += 1
