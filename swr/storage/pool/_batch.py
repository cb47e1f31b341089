"""DataLoader-style batch loaders: the misses of many callers in one ``load_many`` call."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from swr.storage.pool import _settings
from swr.storage.pool._loading import MISSING, Loading

__all__ = ["AsyncBatchLoader", "BatchLoader"]

K = TypeVar("K")
V = TypeVar("V")


class _Batch(Generic[K, V]):
    """Keys collected for one ``load_many`` call, with their callers' futures."""

    __slots__ = ("closed", "futures", "keys")

    def __init__(self) -> None:
        self.keys: list[K] = []
        self.futures: list[Future[V]] = []
        self.closed = threading.Event()


def _as_mapping(result: object) -> Mapping[Any, Any]:
    if not isinstance(result, Mapping):
        raise TypeError(
            f"load_many must return a mapping of key to value, got {type(result).__name__}"
        )
    return result


def _as_awaitable(result: object) -> Awaitable[Any]:
    if not inspect.isawaitable(result):
        raise TypeError(
            f"load_many returned {type(result).__name__}, not an awaitable; "
            "use batch_loader for plain functions"
        )
    return result


def _missing_key(key: object) -> KeyError:
    return KeyError(f"load_many returned no value for key {key!r}")


class BatchLoader(Generic[K, V]):
    """Loads missing keys of a cache in batches: a DataLoader for threads.

    Example::

        load_user = users.batch_loader(db.users_by_ids, max_wait=0.005, max_batch=100)
        user = load_user(7)   # from many threads at once: few db.users_by_ids calls

    A call answers from the cache when it can. A missing key joins the open batch; the
    first key of a batch waits up to ``max_wait`` seconds for others, and a batch that
    reaches ``max_batch`` keys goes at once. The batch's ``load_many(keys)`` runs in the
    thread of the caller that closed it. Its results are cached, then handed to every
    caller; a key asked for again while it is being loaded joins that load.

    Args:
        cache: The cache to fill.
        load_many: ``(keys: list) -> Mapping[key, value]``.
        max_wait: Seconds a batch stays open for more keys.
        max_batch: Most distinct keys per batch.

    Raises:
        PoolConfigError: ``max_wait`` < 0 or ``max_batch`` < 1.
        TypeError: ``load_many`` is not callable, or a setting has the wrong type.

    Thread-safe. Every caller gets an answer once its batch's ``load_many`` returns:
    its value, ``KeyError`` if the result left its key out, or the exception
    ``load_many`` raised (every caller of that batch gets it; nothing is cached).
    """

    def __init__(
        self,
        cache: Loading[K, V],
        load_many: Callable[[list[K]], Mapping[K, V]],
        max_wait: float = 0.005,
        max_batch: int = 100,
    ) -> None:
        self.max_wait, self.max_batch = _settings.batching(load_many, max_wait, max_batch)
        self._cache = cache
        self._load_many = load_many
        self._lock = threading.Lock()
        self._pending: dict[K, Future[V]] = {}
        self._open: _Batch[K, V] | None = None

    def __call__(self, key: K) -> V:
        """Return the value of ``key``, from the cache or from a batched ``load_many``.

        Raises:
            KeyError: ``load_many`` returned no value for ``key``.
            Exception: whatever ``load_many`` raised for this key's batch.
            StorageUnavailableError: the cache was closed.
        """
        found = self._cache._find(key)
        if found is not MISSING:
            return found
        run: _Batch[K, V] | None = None
        lead: _Batch[K, V] | None = None
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                # A batch caches its values before forgetting its keys: look again.
                found = self._cache._peek(key)
                if found is not MISSING:
                    return found
                future = self._pending[key] = Future()
                batch = self._open
                if batch is None:
                    batch = lead = self._open = _Batch()
                batch.keys.append(key)
                batch.futures.append(future)
                if len(batch.keys) >= self.max_batch:
                    self._open = None
                    run = batch
        if run is not None:
            run.closed.set()  # its first caller stops waiting
            self._dispatch(run)
        elif lead is not None:
            try:
                lead.closed.wait(self.max_wait)
            finally:
                # Even when interrupted, the batch must go: others wait on it.
                with self._lock:
                    if self._open is lead:
                        self._open = None
                        run = lead
                if run is not None:
                    self._dispatch(run)
        return future.result()

    def _dispatch(self, batch: _Batch[K, V]) -> None:
        keys, futures = batch.keys, batch.futures
        error: BaseException | None = None
        found: dict[K, V] = {}
        try:
            result = _as_mapping(self._load_many(list(keys)))
            for key in keys:
                if key in result:
                    found[key] = result[key]
            self._cache._store_many(found)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            error = exc
        finally:
            with self._lock:
                for key, future in zip(keys, futures, strict=True):
                    if self._pending.get(key) is future:
                        del self._pending[key]
            for key, future in zip(keys, futures, strict=True):
                if error is not None:
                    future.set_exception(error)
                elif key in found:
                    future.set_result(found[key])
                else:
                    future.set_exception(_missing_key(key))
        if error is not None and not isinstance(error, Exception):
            raise error


class _AsyncBatch(Generic[K, V]):
    __slots__ = ("futures", "keys", "timer")

    def __init__(self) -> None:
        self.keys: list[K] = []
        self.futures: list[asyncio.Future[V]] = []
        self.timer: asyncio.TimerHandle | None = None


class _AsyncBatchState(Generic[K, V]):
    """What an async batch loader tracks within one event loop."""

    __slots__ = ("loop", "open", "pending", "tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[K, asyncio.Future[V]] = {}
        self.open: _AsyncBatch[K, V] | None = None
        self.tasks: set[asyncio.Task[None]] = set()


class AsyncBatchLoader(Generic[K, V]):
    """The asyncio twin of :class:`BatchLoader`: ``await load(key)``.

    Example::

        load_user = users.abatch_loader(fetch_users, max_wait=0.005, max_batch=100)
        users_ = await asyncio.gather(*(load_user(i) for i in ids))   # one fetch_users

    Keys missing from the cache are collected for up to ``max_wait`` seconds (0: the
    keys asked for in the same turn of the event loop) or ``max_batch`` keys, then
    ``await load_many(keys)`` runs as a task of its own: a caller cancelled while
    waiting does not cancel it, and its results are still cached.

    Use it from one event loop at a time.

    Args:
        cache: The cache to fill.
        load_many: Coroutine function ``(keys: list) -> Mapping[key, value]``.
        max_wait: Seconds a batch stays open for more keys.
        max_batch: Most distinct keys per batch.

    Raises:
        PoolConfigError: ``max_wait`` < 0 or ``max_batch`` < 1.
        TypeError: ``load_many`` is not callable, or a setting has the wrong type.
    """

    def __init__(
        self,
        cache: Loading[K, V],
        load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        max_wait: float = 0.005,
        max_batch: int = 100,
    ) -> None:
        self.max_wait, self.max_batch = _settings.batching(load_many, max_wait, max_batch)
        self._cache = cache
        self._load_many = load_many
        self._state: _AsyncBatchState[K, V] | None = None

    async def __call__(self, key: K) -> V:
        """Return the value of ``key``, from the cache or from a batched ``load_many``.

        Raises:
            KeyError: ``load_many`` returned no value for ``key``.
            Exception: whatever ``load_many`` raised for this key's batch.
            StorageUnavailableError: the cache was closed.
        """
        found = self._cache._find(key)
        if found is not MISSING:
            return found
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            state = self._state = _AsyncBatchState(loop)
        future = state.pending.get(key)
        if future is None:
            future = state.pending[key] = loop.create_future()
            batch = state.open
            if batch is None:
                batch = state.open = _AsyncBatch()
                batch.timer = loop.call_later(self.max_wait, self._flush, state, batch)
            batch.keys.append(key)
            batch.futures.append(future)
            if len(batch.keys) >= self.max_batch:
                self._flush(state, batch)
        return await asyncio.shield(future)

    def _flush(self, state: _AsyncBatchState[K, V], batch: _AsyncBatch[K, V]) -> None:
        if state.open is not batch:
            return
        state.open = None
        if batch.timer is not None:
            batch.timer.cancel()
        task = state.loop.create_task(self._run(state, batch))
        state.tasks.add(task)  # a reference until it ends, so it is not collected
        task.add_done_callback(state.tasks.discard)

    async def _run(self, state: _AsyncBatchState[K, V], batch: _AsyncBatch[K, V]) -> None:
        keys, futures = batch.keys, batch.futures
        error: BaseException | None = None
        found: dict[K, V] = {}
        try:
            result = _as_mapping(await _as_awaitable(self._load_many(list(keys))))
            for key in keys:
                if key in result:
                    found[key] = result[key]
            self._cache._store_many(found)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            error = exc
        finally:
            for key, future in zip(keys, futures, strict=True):
                if state.pending.get(key) is future:
                    del state.pending[key]
                if future.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                elif error is not None:
                    future.set_exception(error)
                elif key in found:
                    future.set_result(found[key])
                else:
                    future.set_exception(_missing_key(key))
        if error is not None and not isinstance(error, Exception):
            raise error
