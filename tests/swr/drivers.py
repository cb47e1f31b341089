"""Run one test body against StaleEngine and AsyncStaleEngine alike.

``SyncDriver`` calls a StaleEngine directly. ``AsyncDriver`` owns an event loop in a
background thread and submits every call to it, wrapping plain fetch functions in
coroutines, so a test written once checks both shells.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from swr import AsyncStaleEngine, StaleEngine
from swr.stats import EngineStats
from tests.helpers import wait_until

T = TypeVar("T")


class SyncDriver:
    kind = "sync"

    def __init__(self, **kwargs: Any) -> None:
        self.engine = StaleEngine(**kwargs)

    def execute(self, key: str, fetch: Callable[[], Any], **kwargs: Any) -> Any:
        return self.engine.execute(key, fetch, **kwargs)

    def get(self, key: str) -> Any:
        return self.engine.get(key)

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        self.engine.set(key, value, **kwargs)

    def delete(self, key: str) -> bool:
        return self.engine.delete(key)

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def settle(self) -> None:
        """Wait until no refresh is queued or running."""

        def idle() -> bool:
            s = self.engine.stats()
            return s.refreshes_in_flight == 0 and s.refreshes_queued == 0

        wait_until(idle)

    def close_engine(self, timeout: float | None = None) -> None:
        self.engine.close(timeout)

    def close(self) -> None:
        self.close_engine()


class AsyncDriver:
    kind = "async"

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make() -> AsyncStaleEngine:
            return AsyncStaleEngine(**kwargs)

        self.engine = self.run(make())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    @staticmethod
    def wrap(fetch: Callable[[], Any]) -> Callable[[], Any]:
        # In a worker thread, so a test's blocking upstream never blocks the loop.
        async def afetch() -> Any:
            return await asyncio.to_thread(fetch)

        return afetch

    def execute(self, key: str, fetch: Callable[[], Any], **kwargs: Any) -> Any:
        return self.run(self.engine.execute(key, self.wrap(fetch), **kwargs))

    def get(self, key: str) -> Any:
        return self.run(self.engine.get(key))

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        self.run(self.engine.set(key, value, **kwargs))

    def delete(self, key: str) -> bool:
        return self.run(self.engine.delete(key))

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def settle(self) -> None:
        def idle() -> bool:
            async def check() -> bool:
                s = self.engine.stats()
                return s.refreshes_in_flight == 0 and s.refreshes_queued == 0

            return self.run(check())

        wait_until(idle)

    def close_engine(self, timeout: float | None = None) -> None:
        self.run(self.engine.aclose(timeout))

    def close(self) -> None:
        self.close_engine()
        # Fetches still running in worker threads finish before the loop closes.
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


Driver = SyncDriver | AsyncDriver
DRIVERS = {"sync": SyncDriver, "async": AsyncDriver}
