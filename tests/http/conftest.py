"""Fixtures: a real origin, a fake clock, and clients over both transports.

The async client lives on an event loop running in its own thread, so that the async
engine's background revalidations go on between the test's calls, as in a service.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest

from swr import AsyncStaleEngine, CacheTTL, StaleEngine
from swr.http import AsyncSWRTransport, CachePolicy, SWRTransport
from swr.testing import FakeClock
from tests.http.origin import Origin

TTL = CacheTTL(fresh=60, stale=300, expired=3600)


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class SyncDriver:
    kind = "sync"

    def __init__(
        self,
        clock: FakeClock,
        storage: Any = None,
        engine_kwargs: dict[str, Any] | None = None,
        **policy: Any,
    ) -> None:
        self.engine = StaleEngine(storage, ttl=TTL, clock=clock, **(engine_kwargs or {}))
        self.transport = SWRTransport(self.engine, policy=CachePolicy(**policy), clock=clock)
        self.client = httpx.Client(transport=self.transport)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(url, **kwargs)

    def stats(self) -> Any:
        return self.engine.stats()

    def close(self) -> None:
        self.client.close()
        self.engine.close()


class AsyncDriver:
    kind = "async"

    def __init__(
        self,
        clock: FakeClock,
        storage: Any = None,
        engine_kwargs: dict[str, Any] | None = None,
        **policy: Any,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make() -> None:
            self.engine = AsyncStaleEngine(storage, ttl=TTL, clock=clock, **(engine_kwargs or {}))
            self.transport = AsyncSWRTransport(
                self.engine, policy=CachePolicy(**policy), clock=clock
            )
            self.client = httpx.AsyncClient(transport=self.transport)

        self.run(make())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.client.get(url, **kwargs))

    def stats(self) -> Any:
        return self.engine.stats()

    def close(self) -> None:
        async def shut() -> None:
            await self.client.aclose()
            await self.engine.aclose()

        self.run(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


Driver = SyncDriver | AsyncDriver


@pytest.fixture(params=["sync", "async"])
def make_client(
    request: pytest.FixtureRequest, clock: FakeClock
) -> Iterator[Callable[..., Driver]]:
    made: list[Driver] = []

    def make(**kwargs: Any) -> Driver:
        driver: Driver = (SyncDriver if request.param == "sync" else AsyncDriver)(clock, **kwargs)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()


@pytest.fixture
def client(make_client: Callable[..., Driver]) -> Driver:
    return make_client()
