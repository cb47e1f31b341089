from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.swr.drivers import DRIVERS, Driver


@pytest.fixture(params=sorted(DRIVERS))
def make_driver(request: pytest.FixtureRequest) -> Iterator[Callable[..., Driver]]:
    """Build engines of the parametrized kind; every one is closed after the test."""
    made: list[Driver] = []

    def make(**kwargs: Any) -> Driver:
        driver = DRIVERS[request.param](**kwargs)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()
