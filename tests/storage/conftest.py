from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swr.storage.adapters import as_async
from swr.testing import FakeClock
from tests.storage.backends import (
    ASYNC_BACKENDS,
    BACKEND_MARKS,
    BACKENDS,
    SyncFacade,
)


def _params() -> list[Any]:
    params = []
    for name in BACKENDS:
        marks = BACKEND_MARKS.get(name, [])
        params.append(pytest.param((name, "sync"), id=name, marks=marks))
        params.append(pytest.param((name, "as_async"), id=f"{name}-as-async", marks=marks))
    for name in ASYNC_BACKENDS:
        marks = BACKEND_MARKS.get(name, [])
        params.append(pytest.param((name, "native_async"), id=name, marks=marks))
    return params


@pytest.fixture(params=_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    """Every backend, synchronously and through its asyncio view, behind one interface."""
    name, mode = request.param
    if mode == "native_async":
        with ASYNC_BACKENDS[name](request, tmp_path, clock) as async_store:
            facade = SyncFacade(async_store)
            try:
                yield facade
            finally:
                facade.close()  # on the loop that used it; idempotent
                facade.shutdown()
        return
    with BACKENDS[name](request, tmp_path, clock) as store:
        if mode == "sync":
            yield store
            return
        facade = SyncFacade(as_async(store))
        try:
            yield facade
        finally:
            facade.close()  # on the loop that used it; idempotent
            facade.shutdown()
