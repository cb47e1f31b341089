"""A scripted upstream: counts calls, returns numbered values, fails on demand."""

from __future__ import annotations

import threading
from typing import Any


class UpstreamError(Exception):
    pass


class Upstream:
    def __init__(self, prefix: str = "v") -> None:
        self.prefix = prefix
        self.calls = 0
        self.failing: BaseException | None = None
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def __call__(self) -> Any:
        with self.lock:
            self.calls += 1
            n = self.calls
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.failing is not None:
            raise self.failing
        return f"{self.prefix}{n}"

    def fail_with(self, exc: BaseException | None = None) -> BaseException:
        self.failing = exc if exc is not None else UpstreamError("upstream down")
        return self.failing

    def recover(self) -> None:
        self.failing = None

    def hold(self) -> threading.Event:
        """Make calls block until the returned event is set."""
        self.gate = threading.Event()
        self.entered.clear()
        return self.gate
