from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    capabilities,
)

# backend id -> the optional capabilities the contract suite ran it with.
RAN_WITH: dict[str, set[str]] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which optional capabilities each backend of the contract suite declared."""
    if not RAN_WITH:
        return
    terminalreporter.section("storage contract: capabilities per backend")
    for name in sorted(RAN_WITH):
        terminalreporter.write_line(f"{name}: {', '.join(sorted(RAN_WITH[name])) or '-'}")


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


@contextmanager
def _facade(async_store: Any, backend_id: str) -> Iterator[SyncFacade]:
    facade = SyncFacade(async_store)
    RAN_WITH[backend_id] = facade.capabilities
    try:
        yield facade
    finally:
        facade.close()  # on the loop that used it; idempotent
        facade.shutdown()


@pytest.fixture(params=_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    """Every backend, synchronously and through its asyncio view, behind one interface."""
    name, mode = request.param
    backend_id = {"sync": name, "as_async": f"{name}-as-async"}.get(mode, name)
    if mode == "native_async":
        with (
            ASYNC_BACKENDS[name](request, tmp_path, clock) as async_store,
            _facade(async_store, backend_id) as facade,
        ):
            yield facade
        return
    with BACKENDS[name](request, tmp_path, clock) as store:
        if mode == "sync":
            RAN_WITH[backend_id] = capabilities(store)
            yield store
            return
        with _facade(as_async(store), backend_id) as facade:
            yield facade
