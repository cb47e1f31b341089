"""The engines' bulk loads and invalidation on every storage of the contract suite."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from swr import AsyncStaleEngine, CacheTTL, NotModified, StaleEngine, Status
from swr.storage.adapters import as_async
from swr.testing import FakeClock
from tests.helpers import wait_until
from tests.storage.backends import ASYNC_BACKENDS, BACKEND_MARKS, BACKENDS

TTL = CacheTTL(fresh=10, stale=100, expired=1000)
KEYS = [f"user:{i}" for i in range(30)]


class Calls:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def record(self, keys: list[str]) -> dict[str, str]:
        self.batches.append(list(keys))
        return {key: f"v-{key}" for key in keys}


def _sync_params() -> list[Any]:
    return [pytest.param(name, id=name, marks=BACKEND_MARKS.get(name, [])) for name in BACKENDS]


def _async_params() -> list[Any]:
    params = [
        pytest.param((name, False), id=f"{name}-as-async", marks=BACKEND_MARKS.get(name, []))
        for name in BACKENDS
    ]
    params += [
        pytest.param((name, True), id=name, marks=BACKEND_MARKS.get(name, []))
        for name in ASYNC_BACKENDS
    ]
    return params


@pytest.mark.parametrize("backend", _sync_params())
def test_thread_engine_bulk_on_every_backend(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    with BACKENDS[backend](request, tmp_path, clock) as store:
        engine = StaleEngine(store, ttl=TTL, clock=clock, namespace="app")
        calls = Calls()
        results = engine.execute_many(KEYS, calls.record)
        assert calls.batches == [KEYS]
        assert {r.status for r in results.values()} == {Status.MISS}
        again = engine.execute_many(KEYS, calls.record)
        assert len(calls.batches) == 1
        assert again["user:3"].value == "v-user:3"

        engine.execute("t1", lambda: 1, tags=("org:7",))
        engine.execute("t2", lambda: 2, tags=("org:7", "user:2"))
        assert engine.invalidate_tags("org:7") == 2
        assert engine.execute("t1", lambda: "new").status is Status.MISS

        assert engine.invalidate_prefix("user:1") == 11  # user:1 and user:10..19
        assert engine.delete_many(["user:2", "user:3", "nope"]) == 2
        assert engine.execute_many(["user:1", "user:4"], calls.record)["user:1"].status is (
            Status.MISS
        )
        assert calls.batches[-1] == ["user:1"]

        seen: list[Any] = []

        def conditional(previous: Any) -> Any:
            seen.append(previous)
            return NotModified if previous is not None else {"etag": 1}

        engine.execute("cond", conditional)
        clock.advance(20)
        assert engine.refresh("cond", conditional)
        wait_until(
            lambda: engine.stats().refreshes_succeeded + engine.stats().refreshes_failed == 1
        )
        assert engine.stats().refreshes_succeeded == 1
        assert seen[1].value == {"etag": 1}
        renewed = engine.get("cond")
        assert renewed is not None
        assert renewed.status is Status.HIT
        assert renewed.value == {"etag": 1}

        assert engine.clear() is not None
        assert engine.get("user:4") is None
        engine.close()


@pytest.mark.parametrize("backend", _async_params())
def test_asyncio_engine_bulk_on_every_backend(
    backend: tuple[str, bool], request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    name, native = backend
    factory = ASYNC_BACKENDS[name] if native else BACKENDS[name]
    with factory(request, tmp_path, clock) as store:

        async def scenario() -> None:
            calls = Calls()

            async def fetch_many(keys: list[str]) -> dict[str, str]:
                return calls.record(keys)

            async def one() -> str:
                return "one"

            view = store if native else as_async(store)  # one view, closed at the end
            engine = AsyncStaleEngine(view, ttl=TTL, clock=clock, namespace="app")
            results = await engine.execute_many(KEYS, fetch_many)
            assert calls.batches == [KEYS]
            assert {r.status for r in results.values()} == {Status.MISS}
            await engine.execute_many(KEYS, fetch_many)
            assert len(calls.batches) == 1

            await engine.execute("t1", one, tags=("org:7",))
            await engine.execute("t2", one, tags=("org:7", "user:2"))
            assert await engine.invalidate_tags("org:7") == 2
            assert (await engine.execute("t1", one)).status is Status.MISS

            assert await engine.invalidate_prefix("user:1") == 11
            assert await engine.delete_many(["user:2", "user:3", "nope"]) == 2
            before = len(calls.batches)
            loader = engine.loader(fetch_many, max_wait=0.05)
            got = await asyncio.gather(*(engine.execute(f"user:{i}", loader) for i in range(10)))
            assert [r.value for r in got] == [f"v-user:{i}" for i in range(10)]
            fetched = [key for batch in calls.batches[before:] for key in batch]
            assert sorted(fetched) == ["user:1", "user:2", "user:3"]  # each once

            async def conditional(previous: Any) -> Any:
                return NotModified if previous is not None else {"etag": 1}

            first = await engine.execute("cond", conditional)
            clock.advance(20)
            assert (await engine.execute("cond", conditional)).status is Status.STALE
            await engine.aclose()  # waits for the refresh
            renewed = await engine.get("cond")
            assert renewed is not None
            assert renewed.status is Status.HIT
            assert renewed.stored_at > first.stored_at

            engine = AsyncStaleEngine(view, ttl=TTL, clock=clock, namespace="app")
            assert await engine.clear() is not None
            assert await engine.get("user:4") is None
            await engine.aclose()
            await view.aclose()

        asyncio.run(scenario())
