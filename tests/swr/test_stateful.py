"""Random sequences of clock moves, executes, failures and deletes against a model."""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from swr import CacheTTL, RefreshOptions, Status
from swr.testing import FakeClock
from tests.swr.drivers import DRIVERS
from tests.swr.upstream import Upstream, UpstreamError

FRESH, STALE, EXPIRED = 10.0, 20.0, 30.0
BACKOFF_INITIAL, BACKOFF_MAX = 1.0, 8.0
KEYS = ("a", "b", "c")


class Model:
    """What the engine must answer, computed from the windows table alone."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, float]] = {}  # key -> (value, stored_at)
        self.backoff: dict[str, tuple[int, float]] = {}  # key -> (failures, next_try)
        self.fetches = 0

    def fetch(self, failing: bool) -> str | None:
        self.fetches += 1
        return None if failing else f"v{self.fetches}"

    def failed(self, key: str, now: float) -> None:
        """A failure starts the key's next backoff step, unless it falls within one."""
        failures, next_try = self.backoff.get(key, (0, -math.inf))
        if now >= next_try:
            delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**failures)
            self.backoff[key] = (failures + 1, now + delay)

    def foreground(self, key: str, now: float, failing: bool) -> str | None:
        value = self.fetch(failing)
        if value is None:
            self.failed(key, now)
        else:
            self.backoff.pop(key, None)
            self.entries[key] = (value, now)
        return value

    def execute(self, key: str, now: float, failing: bool) -> tuple[str, object]:
        held = self.entries.get(key)
        age = math.inf if held is None else now - held[1]
        if age >= FRESH + STALE + EXPIRED:
            value = self.foreground(key, now, failing)
            if value is None:
                return "raise", None
            return Status.MISS, value
        assert held is not None
        if age < FRESH:
            return Status.HIT, held[0]
        if age < FRESH + STALE:
            failures, next_try = self.backoff.get(key, (0, -math.inf))
            if now >= next_try:  # a background refresh runs (the test settles it)
                value = self.fetch(failing)
                if value is None:
                    self.failed(key, now)
                else:
                    self.backoff.pop(key, None)
                    self.entries[key] = (value, now)
            return Status.STALE, held[0]
        failures, next_try = self.backoff.get(key, (0, -math.inf))
        if failures and now < next_try:  # backing off: served without a fetch
            return Status.FALLBACK, held[0]
        value = self.foreground(key, now, failing)
        if value is None:
            return Status.FALLBACK, held[0]
        return Status.EXPIRED, value


def machine_for(kind: str) -> type[RuleBasedStateMachine]:
    class EngineMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock()
            self.driver = DRIVERS[kind](
                ttl=CacheTTL(fresh=FRESH, stale=STALE, expired=EXPIRED),
                clock=self.clock,
                refresh=RefreshOptions(backoff_initial=BACKOFF_INITIAL, backoff_max=BACKOFF_MAX),
            )
            self.model = Model()
            self.upstream = Upstream()
            self.failing = False

        @rule(seconds=st.sampled_from([0.5, 1, 5, 9.99, 10, 15, 29.99, 30, 45, 60, 100]))
        def advance(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @rule(failing=st.booleans())
        def upstream_health(self, failing: bool) -> None:
            self.failing = failing
            if failing:
                self.upstream.fail_with(UpstreamError("down"))
            else:
                self.upstream.recover()

        @rule(key=st.sampled_from(KEYS))
        def execute(self, key: str) -> None:
            expected_status, expected_value = self.model.execute(key, self.clock(), self.failing)
            if expected_status == "raise":
                with pytest.raises(UpstreamError):
                    self.driver.execute(key, self.upstream)
            else:
                result = self.driver.execute(key, self.upstream)
                assert (result.status, result.value) == (expected_status, expected_value)
            self.driver.settle()

        @rule(key=st.sampled_from(KEYS))
        def delete(self, key: str) -> None:
            existed = self.driver.delete(key)
            held = self.model.entries.pop(key, None)
            if held is None:
                assert existed is False
            elif self.clock() - held[1] < FRESH + STALE + EXPIRED:
                assert existed is True
            # A dead entry may already have been dropped by a read: either answer.

        @precondition(lambda self: bool(self.model.entries))
        @rule(data=st.data())
        def peek(self, data: st.DataObject) -> None:
            key = data.draw(st.sampled_from(sorted(self.model.entries)))
            value, stored_at = self.model.entries[key]
            result = self.driver.get(key)
            age = self.clock() - stored_at
            if age >= FRESH + STALE + EXPIRED:
                assert result is None
            else:
                assert result.value == value

        @invariant()
        def same_number_of_fetches(self) -> None:
            assert self.upstream.calls == self.model.fetches

        def teardown(self) -> None:
            self.driver.close()

    EngineMachine.__name__ = f"EngineMachine_{kind}"
    return EngineMachine


SyncMachine = machine_for("sync")
AsyncMachine = machine_for("async")

TestSyncEngineAgainstModel = SyncMachine.TestCase
TestSyncEngineAgainstModel.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
TestAsyncEngineAgainstModel = AsyncMachine.TestCase
TestAsyncEngineAgainstModel.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None
)
