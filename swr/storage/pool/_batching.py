"""What the two batch loaders do differently: waiting for a batch with threads or tasks.

The loaders themselves (``_async/batch.py``, and ``_sync/batch.py`` generated from it)
check the cache, call ``load_many`` and cache its values. A :class:`Batches` (threads)
or :class:`AsyncBatches` (tasks of one event loop) gathers the keys they miss into
batches and runs ``run(keys) -> {key: value}`` once per batch; both collect the same way
(:class:`_Collector`) and answer the same way (:func:`_settle`):

- a key already waiting joins its pending future: one key, one load;
- a new key joins the open batch, or opens one; a batch that reaches ``max_batch`` keys
  goes at once;
- a batch that does not fill goes ``max_wait`` seconds after it opened. With threads,
  its first caller waits that long and then runs it in its own thread (or whoever
  filled it runs it at once); with tasks, a timer of the event loop closes it, and it
  runs as a task of its own, so a caller cancelled while waiting does not cancel it;
- every caller of a batch gets an answer once ``run`` ends: its value, ``KeyError``
  when the result left its key out, or the exception ``run`` raised.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from swr.storage.pool._loading import MISSING, Missing

__all__ = [
    "AsyncBatches",
    "AsyncLoadMany",
    "Batches",
    "LoadMany",
    "async_loaded",
    "loaded",
]

K = TypeVar("K")
V = TypeVar("V")

# What a loader is given: ``load_many(keys)`` returning ``{key: value}`` (awaitable).
LoadMany = Callable[[list[K]], Mapping[K, V]]
AsyncLoadMany = Callable[[list[K]], Awaitable[Mapping[K, V]]]


def loaded(called: object) -> object:
    """What a thread ``load_many`` call returned (it is already there)."""
    return called


async def async_loaded(called: object) -> object:
    """What an asyncio ``load_many`` call returned, once awaited.

    Raises:
        TypeError: ``load_many`` is a plain function, not a coroutine function.
    """
    if not inspect.isawaitable(called):
        raise TypeError(
            f"load_many returned {type(called).__name__}, not an awaitable; "
            "use batch_loader for plain functions"
        )
    result: Any = await called
    return result


# A caller's answer: a thread's or a task's future (the same methods).
F = TypeVar("F", bound="Future[Any] | asyncio.Future[Any]")


class _Batch(Generic[K, F]):
    """Keys collected for one ``run`` call, with their callers' futures."""

    __slots__ = ("closed", "futures", "keys", "timer")

    def __init__(self) -> None:
        self.keys: list[K] = []
        self.futures: list[F] = []
        self.closed = threading.Event()  # threads: its first caller stops waiting
        self.timer: asyncio.TimerHandle | None = None  # tasks: closes it after max_wait


class _Collector(Generic[K, F]):
    """The pending futures by key and the open batch (callers hold any lock needed)."""

    __slots__ = ("max_batch", "open", "pending")

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.pending: dict[K, F] = {}
        self.open: _Batch[K, F] | None = None

    def add(self, key: K, future: F) -> tuple[_Batch[K, F], bool, bool]:
        """Put a new key in the open batch: ``(batch, opened it, filled and closed it)``."""
        self.pending[key] = future
        batch = self.open
        opened = batch is None
        if batch is None:
            batch = self.open = _Batch()
        batch.keys.append(key)
        batch.futures.append(future)
        full = len(batch.keys) >= self.max_batch
        if full:
            self.open = None
        return batch, opened, full

    def close(self, batch: _Batch[K, F]) -> bool:
        """Close ``batch`` if it is still open; whether this call closed it."""
        if self.open is batch:
            self.open = None
            return True
        return False

    def forget(self, batch: _Batch[K, F]) -> None:
        """Drop the pending futures of a batch that ran (not newer ones of its keys)."""
        pending = self.pending
        for key, future in zip(batch.keys, batch.futures, strict=True):
            if pending.get(key) is future:
                del pending[key]


def _settle(batch: _Batch[K, F], found: dict[K, V], error: BaseException | None) -> None:
    """Answer every caller of a batch that ran."""
    for key, future in zip(batch.keys, batch.futures, strict=True):
        if future.done():  # an asyncio caller cancelled its wait
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        elif error is not None:
            future.set_exception(error)
        elif key in found:
            future.set_result(found[key])
        else:
            future.set_exception(KeyError(f"load_many returned no value for key {key!r}"))


class Batches(Generic[K, V]):
    """Batches of missing keys for threads; ``run`` goes in a caller's thread.

    Thread-safe.
    """

    __slots__ = ("_collector", "_lock", "_run", "max_wait")

    def __init__(
        self, max_wait: float, max_batch: int, run: Callable[[list[K]], dict[K, V]]
    ) -> None:
        self.max_wait = max_wait
        self._run = run
        self._lock = threading.Lock()
        self._collector: _Collector[K, Future[V]] = _Collector(max_batch)

    def join(self, key: K, peek: Callable[[K], V | Missing]) -> V:
        """Return the value of ``key`` from its batch's ``run`` (or ``peek``, if cached)."""
        collector = self._collector
        ready: _Batch[K, Future[V]] | None = None
        lead: _Batch[K, Future[V]] | None = None
        with self._lock:
            future = collector.pending.get(key)
            if future is None:
                # A batch caches its values before forgetting its keys: look again.
                found = peek(key)
                if found is not MISSING:
                    return found
                future = Future()
                batch, opened, full = collector.add(key, future)
                if full:
                    ready = batch
                elif opened:
                    lead = batch
        if ready is not None:
            ready.closed.set()  # its first caller stops waiting
            self._dispatch(ready)
        elif lead is not None:
            try:
                lead.closed.wait(self.max_wait)
            finally:
                # Even when interrupted, the batch must go: others wait on it.
                with self._lock:
                    closed = collector.close(lead)
                if closed:
                    self._dispatch(lead)
        return future.result()

    def _dispatch(self, batch: _Batch[K, Future[V]]) -> None:
        found: dict[K, V] = {}
        error: BaseException | None = None
        try:
            found = self._run(batch.keys)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            error = exc
        finally:
            with self._lock:
                self._collector.forget(batch)
            _settle(batch, found, error)
        if error is not None and not isinstance(error, Exception):
            raise error


class _LoopState(Generic[K, V]):
    """What :class:`AsyncBatches` tracks within one event loop."""

    __slots__ = ("collector", "loop", "tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop, max_batch: int) -> None:
        self.loop = loop
        self.collector: _Collector[K, asyncio.Future[V]] = _Collector(max_batch)
        self.tasks: set[asyncio.Task[None]] = set()


class AsyncBatches(Generic[K, V]):
    """Batches of missing keys for the tasks of one event loop; ``run`` is a task.

    Use it from one event loop at a time (a new loop starts from nothing).
    """

    __slots__ = ("_max_batch", "_run", "_state", "max_wait")

    def __init__(
        self, max_wait: float, max_batch: int, run: Callable[[list[K]], Awaitable[dict[K, V]]]
    ) -> None:
        self.max_wait = max_wait
        self._max_batch = max_batch
        self._run = run
        self._state: _LoopState[K, V] | None = None

    async def join(self, key: K, peek: Callable[[K], V | Missing]) -> V:
        """Return the value of ``key`` from its batch's ``run`` (or ``peek``, if cached)."""
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            state = self._state = _LoopState(loop, self._max_batch)
        future = state.collector.pending.get(key)
        if future is None:
            found = peek(key)
            if found is not MISSING:
                return found
            future = loop.create_future()
            batch, opened, full = state.collector.add(key, future)
            if full:
                self._start(state, batch)
            elif opened:
                batch.timer = loop.call_later(self.max_wait, self._flush, state, batch)
        return await asyncio.shield(future)

    def _flush(self, state: _LoopState[K, V], batch: _Batch[K, asyncio.Future[V]]) -> None:
        if state.collector.close(batch):
            self._start(state, batch)

    def _start(self, state: _LoopState[K, V], batch: _Batch[K, asyncio.Future[V]]) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        task = state.loop.create_task(self._dispatch(state, batch))
        state.tasks.add(task)  # a reference until it ends, so it is not collected
        task.add_done_callback(state.tasks.discard)

    async def _dispatch(self, state: _LoopState[K, V], batch: _Batch[K, asyncio.Future[V]]) -> None:
        found: dict[K, V] = {}
        error: BaseException | None = None
        try:
            found = await self._run(batch.keys)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            error = exc
        finally:
            state.collector.forget(batch)
            _settle(batch, found, error)
        if error is not None and not isinstance(error, Exception):
            raise error
