"""PoolCache loaders: per-key singleflight and DataLoader-style batching, sync and async."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from swr.storage import MemoryPool, PoolCache, PoolConfigError, StorageUnavailableError
from tests.helpers import wait_until


@pytest.fixture
def cache() -> Iterator[PoolCache]:
    pool = MemoryPool(capacity=1000, gc_interval=None)
    yield pool.register("c", ttl=60)
    pool.close()


def run_threads(n: int, target: Callable[[int], object]) -> tuple[list, list[BaseException]]:
    """Run ``target(i)`` in ``n`` threads started together; return results and errors."""
    results: list = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def body(i: int) -> None:
        start.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return results, errors


# -- get_or_load ------------------------------------------------------------------------


def test_concurrent_callers_of_a_key_share_one_loader_call(cache):
    calls = []
    release = threading.Event()

    def loader() -> dict:
        calls.append(1)
        # Hold the load until every other caller waits on it.
        wait_until(lambda: cache._flights.waiters("k") == 15)
        release.set()
        return {"user": 1}

    results, errors = run_threads(16, lambda i: cache.get_or_load("k", loader))
    assert errors == []
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert cache.get_or_load("k", loader) is results[0]  # cached
    assert len(calls) == 1
    stats = cache.stats()
    assert (stats.misses, stats.hits) == (16, 1)


def test_a_loader_error_reaches_every_waiter_and_nothing_is_cached(cache):
    boom = ValueError("db down")

    def failing() -> object:
        wait_until(lambda: cache._flights.waiters("k") == 7)
        raise boom

    _, errors = run_threads(8, lambda i: cache.get_or_load("k", failing))
    assert len(errors) == 8
    assert all(e is boom for e in errors)
    assert "k" not in cache
    assert cache.get_or_load("k", lambda: "second") == "second"


def test_an_interrupt_stays_in_the_leaders_thread(cache):
    class Interrupt(BaseException):
        pass

    def interrupted() -> object:
        wait_until(lambda: cache._flights.waiters("k") == 3)
        raise Interrupt

    _, errors = run_threads(4, lambda i: cache.get_or_load("k", interrupted))
    assert len(errors) == 4
    assert sum(type(e) is Interrupt for e in errors) == 1
    runtime = [e for e in errors if isinstance(e, RuntimeError)]
    assert len(runtime) == 3
    assert all("interrupted" in str(e) and isinstance(e.__cause__, Interrupt) for e in runtime)


def test_none_is_cached_like_any_value(cache):
    calls = []

    def loader() -> None:
        calls.append(1)

    assert cache.get_or_load("k", loader) is None
    assert cache.get_or_load("k", loader) is None
    assert len(calls) == 1
    assert "k" in cache


def test_other_keys_are_not_blocked_by_a_slow_load(cache):
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "slow"

    worker = threading.Thread(target=lambda: cache.get_or_load("a", slow))
    worker.start()
    started.wait(10)
    assert cache.get_or_load("b", lambda: "fast") == "fast"
    release.set()
    worker.join(10)
    assert cache.get("a") == "slow"


def test_an_expired_value_is_loaded_again(clock):
    with MemoryPool(capacity=10, gc_interval=None, clock=clock) as pool:
        cache = pool.register("c", ttl=5)
        assert cache.get_or_load("k", lambda: 1) == 1
        clock.advance(5)
        assert cache.get_or_load("k", lambda: 2) == 2
        assert cache.get("k") == 2


def test_a_cache_closed_during_a_load_still_returns_the_value(cache):
    def loader() -> str:
        cache.close()
        return "v"

    assert cache.get_or_load("k", loader) == "v"
    with pytest.raises(StorageUnavailableError):
        cache.get("k")


# -- aget_or_load -----------------------------------------------------------------------


async def test_concurrent_tasks_share_one_async_load(cache):
    calls = []

    async def aloader() -> str:
        calls.append(1)
        await asyncio.sleep(0)
        return "v"

    results = await asyncio.gather(*(cache.aget_or_load("k", aloader) for _ in range(50)))
    assert results == ["v"] * 50
    assert len(calls) == 1
    assert await cache.aget_or_load("k", aloader) == "v"
    assert len(calls) == 1


async def test_an_async_load_error_reaches_every_task_and_is_not_cached(cache):
    boom = KeyError("gone")

    async def failing() -> str:
        await asyncio.sleep(0)
        raise boom

    results = await asyncio.gather(
        *(cache.aget_or_load("k", failing) for _ in range(10)), return_exceptions=True
    )
    assert all(r is boom for r in results)
    assert "k" not in cache


async def test_a_cancelled_waiter_does_not_cancel_the_shared_load(cache):
    release = asyncio.Event()

    async def aloader() -> str:
        await release.wait()
        return "v"

    first = asyncio.ensure_future(cache.aget_or_load("k", aloader))
    second = asyncio.ensure_future(cache.aget_or_load("k", aloader))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await second == "v"
    assert first.cancelled()
    assert cache.get("k") == "v"


async def test_aget_or_load_wants_an_awaitable(cache):
    with pytest.raises(TypeError, match="not an awaitable"):
        await cache.aget_or_load("k", lambda: "plain")


# -- batch_loader -----------------------------------------------------------------------


class Recorder:
    """A load_many that records each batch and answers ``key * 10`` (or raises)."""

    def __init__(self, skip: Callable[[int], bool] = lambda key: False) -> None:
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()
        self.skip = skip
        self.error: BaseException | None = None

    def __call__(self, keys: list[int]) -> dict[int, int]:
        with self.lock:
            self.batches.append(list(keys))
        if self.error is not None:
            raise self.error
        return {key: key * 10 for key in keys if not self.skip(key)}


def test_a_hundred_callers_make_one_load_many_call(cache):
    load_many = Recorder()
    load = cache.batch_loader(load_many, max_wait=30, max_batch=100)
    results, errors = run_threads(100, load)
    assert errors == []
    assert results == [i * 10 for i in range(100)]
    assert len(load_many.batches) == 1
    assert sorted(load_many.batches[0]) == list(range(100))
    # Cached: asking again calls nothing.
    assert run_threads(100, load)[0] == results
    assert len(load_many.batches) == 1
    assert len(cache) == 100


def test_full_batches_go_at_once_in_max_batch_sized_calls(cache):
    load_many = Recorder()
    load = cache.batch_loader(load_many, max_wait=30, max_batch=25)
    results, errors = run_threads(100, load)
    assert errors == []
    assert results == [i * 10 for i in range(100)]
    assert [len(batch) for batch in load_many.batches] == [25, 25, 25, 25]
    assert sorted(k for batch in load_many.batches for k in batch) == list(range(100))


def test_callers_of_one_key_share_its_load(cache):
    load_many = Recorder()
    load = cache.batch_loader(load_many, max_wait=30, max_batch=10)
    results, errors = run_threads(100, lambda i: load(i % 10))
    assert errors == []
    assert results == [(i % 10) * 10 for i in range(100)]
    assert len(load_many.batches) == 1
    assert sorted(load_many.batches[0]) == list(range(10))


@pytest.mark.slow
def test_a_batch_that_does_not_fill_goes_after_max_wait(cache):
    load_many = Recorder()
    load = cache.batch_loader(load_many, max_wait=0.02, max_batch=100)
    started = time.monotonic()
    assert load(7) == 70
    assert time.monotonic() - started >= 0.02
    assert load_many.batches == [[7]]


def test_keys_left_out_of_the_result_raise_key_error_for_those_callers_only(cache):
    load_many = Recorder(skip=lambda key: key % 2 == 1)
    load = cache.batch_loader(load_many, max_wait=30, max_batch=20)
    results, errors = run_threads(20, load)
    assert len(load_many.batches) == 1
    assert [results[i] for i in range(0, 20, 2)] == [i * 10 for i in range(0, 20, 2)]
    assert len(errors) == 10
    assert all(isinstance(e, KeyError) for e in errors)
    assert sorted(str(e) for e in errors) == sorted(
        repr(f"load_many returned no value for key {i}") for i in range(1, 20, 2)
    )
    assert 1 not in cache and 2 in cache
    # A missing key is a miss, not a cached absence: it is asked for again.
    load_many.skip = lambda key: False
    assert cache.batch_loader(load_many, max_wait=0)(1) == 10
    assert load_many.batches[-1] == [1]


def test_a_load_many_error_reaches_every_caller_of_the_batch(cache):
    load_many = Recorder()
    load_many.error = ConnectionError("db down")
    load = cache.batch_loader(load_many, max_wait=30, max_batch=30)
    _, errors = run_threads(30, load)
    assert len(errors) == 30
    assert all(e is load_many.error for e in errors)
    assert len(cache) == 0
    load_many.error = None
    assert cache.batch_loader(load_many, max_wait=0)(3) == 30


def test_load_many_must_return_a_mapping(cache):
    load = cache.batch_loader(lambda keys: [1, 2], max_wait=0, max_batch=1)
    with pytest.raises(TypeError, match="mapping of key to value, got list"):
        load(1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_wait": -0.1}, PoolConfigError, "max_wait"),
        ({"max_wait": float("inf")}, PoolConfigError, "max_wait"),
        ({"max_wait": "0"}, TypeError, "max_wait"),
        ({"max_batch": 0}, PoolConfigError, "max_batch must be >= 1, got 0"),
        ({"max_batch": 2.5}, TypeError, "max_batch"),
    ],
)
def test_bad_batch_settings(cache, kwargs, error, match):
    with pytest.raises(error, match=match):
        cache.batch_loader(Recorder(), **kwargs)
    with pytest.raises(error, match=match):
        cache.abatch_loader(Recorder(), **kwargs)


def test_load_many_must_be_callable(cache):
    with pytest.raises(TypeError, match="load_many must be callable"):
        cache.batch_loader("not a function")


def test_a_closed_cache_refuses_batched_loads(cache):
    load = cache.batch_loader(Recorder())
    cache.close()
    with pytest.raises(StorageUnavailableError):
        load(1)


# -- abatch_loader ----------------------------------------------------------------------


class AsyncRecorder(Recorder):
    async def __call__(self, keys: list[int]) -> dict[int, int]:
        await asyncio.sleep(0)
        return Recorder.__call__(self, keys)


async def test_a_hundred_tasks_are_batched_by_size_then_by_time(cache):
    load_many = AsyncRecorder()
    load = cache.abatch_loader(load_many, max_wait=0.01, max_batch=30)
    results = await asyncio.gather(*(load(i) for i in range(100)))
    assert results == [i * 10 for i in range(100)]
    # Three full batches go at once; the last ten wait for max_wait.
    assert [len(batch) for batch in load_many.batches] == [30, 30, 30, 10]
    assert sorted(k for batch in load_many.batches for k in batch) == list(range(100))
    assert await load(5) == 50
    assert len(load_many.batches) == 4


async def test_async_keys_asked_in_one_turn_of_the_loop_share_one_batch(cache):
    load_many = AsyncRecorder()
    load = cache.abatch_loader(load_many, max_wait=0, max_batch=1000)
    results = await asyncio.gather(*(load(i % 7) for i in range(70)))
    assert results == [(i % 7) * 10 for i in range(70)]
    assert len(load_many.batches) == 1
    assert sorted(load_many.batches[0]) == list(range(7))


async def test_async_missing_keys_and_errors(cache):
    load_many = AsyncRecorder(skip=lambda key: key == 3)
    load = cache.abatch_loader(load_many, max_wait=0, max_batch=100)
    results = await asyncio.gather(*(load(i) for i in range(5)), return_exceptions=True)
    assert results[:3] == [0, 10, 20] and results[4] == 40
    assert isinstance(results[3], KeyError)
    load_many.error = RuntimeError("down")
    results = await asyncio.gather(*(load(i) for i in range(10, 15)), return_exceptions=True)
    assert all(r is load_many.error for r in results)
    assert 10 not in cache


async def test_a_cancelled_caller_leaves_the_batch_running(cache):
    release = asyncio.Event()
    batches = []

    async def load_many(keys: list[int]) -> dict[int, int]:
        batches.append(keys)
        await release.wait()
        return {key: -key for key in keys}

    load = cache.abatch_loader(load_many, max_wait=0, max_batch=100)
    first = asyncio.ensure_future(load(1))
    second = asyncio.ensure_future(load(2))
    await asyncio.sleep(0.001)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await second == -2
    assert first.cancelled()
    assert cache.get(1) == -1  # the cancelled caller's key was still loaded and cached
    assert batches == [[1, 2]]


async def test_async_load_many_must_be_a_coroutine_function(cache):
    load = cache.abatch_loader(lambda keys: {key: key for key in keys}, max_wait=0)
    with pytest.raises(TypeError, match="not an awaitable"):
        await load(1)
