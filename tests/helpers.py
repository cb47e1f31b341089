"""Small helpers shared by the test packages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import ModuleType

import pytest


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for background work (not for time to pass): poll ``predicate``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("background work did not finish in time")
        time.sleep(0.001)


class CountingEvent(threading.Event):
    """An Event that counts the threads waiting on it (to know all waiters arrived)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self._count_lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> bool:
        with self._count_lock:
            self.waiting += 1
        return super().wait(timeout)


def count_flight_waiters(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType
) -> list[CountingEvent]:
    """Make ``module._Event`` (the singleflight's) a CountingEvent; return them as made.

    A flight makes its Event when its first waiter joins (a batch, one for its flights).
    """
    made: list[CountingEvent] = []

    def counting_event() -> CountingEvent:
        made.append(CountingEvent())
        return made[-1]

    monkeypatch.setattr(module, "_Event", counting_event)
    return made
