from __future__ import annotations

import pytest

from tests.metrics.scenario import PerfClock, install_perf_clock


@pytest.fixture
def perf(monkeypatch: pytest.MonkeyPatch) -> PerfClock:
    """The engines' duration clock, moved by hand (see tests/metrics/scenario.py)."""
    return install_perf_clock(monkeypatch)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which engine a test drives: StaleEngine or AsyncStaleEngine."""
    return str(request.param)
