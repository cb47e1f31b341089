"""Fixtures shared by every test package."""

from __future__ import annotations

import logging

import pytest
import structlog

from swr.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True, scope="session")
def _quiet_structlog() -> None:
    """Tests are the application here: info and up, not debug chatter.

    ``structlog.testing.capture_logs`` still captures every event a test asserts.
    """
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
