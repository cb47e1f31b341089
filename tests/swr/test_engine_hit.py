"""``StaleEngine.execute``'s fresh hit in C (``swr._speedups.EngineHit``) against Python.

``execute`` is written in Python and stays the rule. With the extension built, a call
``engine.execute(key, fetch)`` on an engine without hooks is read in C, which answers a
fresh entry itself and hands everything else back to Python (``execute`` before the
read, ``_after_read`` after it). Two engines driven through the same calls, one through
``StaleEngine.execute`` and one through the Python method itself
(``StaleEngine.execute.__wrapped__``), must answer, count and fetch alike. In pure mode
(``SWR_PURE_PYTHON=1``; CI runs tests/swr again with it) ``execute`` is the Python method.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import threading
import tracemalloc
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swr import AsyncStaleEngine, CacheTTL, StaleEngine, Status
from swr.metrics import BaseMetrics
from swr.policy import Result
from swr.storage import Entry, MemoryPool, MemoryStorage
from swr.storage._record import SPEEDUPS
from swr.testing import FakeClock
from tests.helpers import wait_until

PURE = os.environ.get("SWR_PURE_PYTHON", "") not in ("", "0")
IN_C = type(StaleEngine.execute).__name__ == "EngineHit"
PYTHON_EXECUTE = getattr(StaleEngine.execute, "__wrapped__", StaleEngine.execute)
TTL = CacheTTL(fresh=10, stale=20, expired=30)


def test_execute_runs_in_c_exactly_when_the_extension_is_allowed():
    in_c = SPEEDUPS and not PURE
    assert type(StaleEngine.execute).__name__ == ("EngineHit" if in_c else "function")
    assert inspect.iscoroutinefunction(AsyncStaleEngine.execute)


def test_execute_keeps_its_name_signature_and_documentation():
    assert StaleEngine.execute.__name__ == "execute"
    assert StaleEngine.execute.__qualname__ == "StaleEngine.execute"
    assert StaleEngine.execute.__doc__ is not None
    assert StaleEngine.execute.__doc__.startswith("Return the value of ``key``")
    parameters = list(inspect.signature(StaleEngine.execute).parameters)
    assert parameters[:3] == ["self", "key", "fetch"]
    assert "force_refresh" in parameters


class Upstream:
    """A fetch per key that counts its calls and can fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    def fetch(self, key: str) -> Any:
        def fetch() -> str:
            self.calls += 1
            if self.failing:
                raise ConnectionError("upstream down")
            return f"{key}#{self.calls}"

        return fetch


def _storage(kind: str, pool: list[MemoryPool]) -> Any:
    if kind == "memory":
        return MemoryStorage(max_entries=4)
    made = MemoryPool(capacity=4, gc_interval=None)
    pool.append(made)
    return made.register("api")


CALL_TTL = CacheTTL(fresh=2, stale=4, expired=8)


def call_ttl(key: str, value: Any) -> CacheTTL:
    """A ttl callable: windows chosen per value."""
    return CacheTTL(fresh=3, stale=5)


CALLS = st.lists(
    st.one_of(
        st.tuples(st.just("execute"), st.sampled_from("abcde")),
        st.tuples(st.sampled_from(["execute_ttl", "execute_fn"]), st.sampled_from("abcde")),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 5.0, 10.0, 15.0, 40.0])),
        st.tuples(st.just("fail"), st.booleans()),
        st.tuples(st.just("delete"), st.sampled_from("abcde")),
    ),
    max_size=40,
)


def idle(engine: StaleEngine) -> bool:
    stats = engine.stats()
    return stats.refreshes_in_flight == 0 and stats.refreshes_queued == 0


def _call(execute: Any, op: str, engine: Any, key: str, fetch: Any) -> Any:
    """The call ``op`` names: no ttl, a ttl by keyword (a cached function's), a callable
    ttl by position. With the asyncio engine, the coroutine to await."""
    if op == "execute_ttl":
        return execute(engine, key, fetch, ttl=CALL_TTL)
    if op == "execute_fn":
        return execute(engine, key, fetch, call_ttl)
    return execute(engine, key, fetch)


def _run(execute: Any, calls: list[tuple[str, Any]], kind: str) -> list[Any]:
    clock = FakeClock()
    pools: list[MemoryPool] = []
    engine = StaleEngine(_storage(kind, pools), ttl=TTL, clock=clock)
    upstream = Upstream()
    seen: list[Any] = []
    for op, arg in calls:
        if op.startswith("execute"):
            try:
                r = _call(execute, op, engine, arg, upstream.fetch(arg))
                seen.append((r.value, r.status, r.stored_at, r.age))
            except ConnectionError as exc:
                seen.append(repr(exc))
            wait_until(lambda: idle(engine))  # a stale answer's refresh, run to its end
        elif op == "wait":
            clock.advance(arg)
        elif op == "fail":
            upstream.failing = arg
        else:
            engine.delete(arg)
    stats = engine.stats()
    seen.append((stats.hits, stats.stale, stats.expired, stats.misses, stats.fallbacks))
    seen.append(upstream.calls)
    engine.close()
    for pool in pools:
        pool.close()
    return seen


@settings(max_examples=150, deadline=None)
@given(calls=CALLS, kind=st.sampled_from(["memory", "pool"]))
def test_execute_answers_counts_and_fetches_as_the_python_method(calls, kind):
    """Every window (fresh, stale, expired, dead), failures, evictions, deletes."""
    assert _run(StaleEngine.execute, calls, kind) == _run(PYTHON_EXECUTE, calls, kind)


def test_a_hit_answers_with_the_entrys_one_result():
    clock = FakeClock()
    engine = StaleEngine(MemoryStorage(), ttl=TTL, clock=clock)
    engine.execute("k", lambda: "v")
    clock.advance(1)
    first = engine.execute("k", lambda: "other")
    assert (first.value, first.status, first.age) == ("v", Status.HIT, 1.0)
    assert engine.execute("k", lambda: "other") is first
    assert PYTHON_EXECUTE(engine, "k", lambda: "other") is first
    engine.close()


class PlainEntries(MemoryStorage):
    """A storage answering with plain Entry objects (not the engine's CachedEntry)."""

    def get(self, key: str) -> Entry | None:
        entry = super().get(key)
        if entry is None:
            return None
        return Entry(
            entry.value, entry.stored_at, entry.fresh_until, entry.stale_until, entry.expires_at
        )

    def lookup_functions(self) -> tuple[Any, None]:
        return self.get, None  # the engine reads through get


def test_a_storage_answering_plain_entries_gets_new_results():
    clock = FakeClock()
    engine = StaleEngine(PlainEntries(), ttl=TTL, clock=clock)
    engine.execute("k", lambda: "v")
    one, two = engine.execute("k", lambda: "x"), engine.execute("k", lambda: "x")
    assert (one.value, one.status) == (two.value, two.status) == ("v", Status.HIT)
    assert one is not two
    clock.advance(11)
    assert engine.execute("k", lambda: "x").status is Status.STALE
    engine.close()


class Failing(MemoryStorage):
    """A storage whose reads fail with ``error`` while it is set."""

    error: BaseException | None = None

    def get(self, key: str) -> Entry | None:
        if self.error is not None:
            raise self.error
        return super().get(key)

    def lookup_functions(self) -> tuple[Any, None]:
        return self.get, None  # the engine reads through get


def _failing_reads(execute: Any) -> list[Any]:
    storage = Failing()
    engine = StaleEngine(storage, ttl=TTL, clock=FakeClock())
    engine.execute("k", lambda: "v")
    seen: list[Any] = []
    for error in (OSError("disk gone"), KeyError("k")):
        storage.error = error
        r = execute(engine, "k", lambda: "fetched")
        seen.append((r.value, r.status, engine.stats().storage_read_errors))
    storage.error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        execute(engine, "k", lambda: "never")
    engine.close()
    return seen


def test_a_failing_read_is_reported_and_reads_as_a_miss():
    """As execute: reported (each failing read of the miss, under its lease too), fetched."""
    seen = _failing_reads(StaleEngine.execute)
    assert seen == _failing_reads(PYTHON_EXECUTE)
    assert [(value, status) for value, status, _ in seen] == [("fetched", Status.MISS)] * 2
    assert seen[0][2] > 0


@pytest.mark.parametrize("execute", [StaleEngine.execute, PYTHON_EXECUTE], ids=["c", "python"])
def test_a_touch_that_misses_the_evicted_key_keeps_the_read(execute):
    pool = MemoryPool(capacity=4, gc_interval=None)
    cache = pool.register("api")
    engine = StaleEngine(cache, ttl=TTL, clock=FakeClock())
    engine.execute("k", lambda: "v")

    def gone(key: str) -> None:
        raise KeyError(key)

    engine._touch = gone
    r = execute(engine, "k", lambda: "other")
    assert (r.value, r.status) == ("v", Status.HIT)
    engine.close()
    pool.close()


def test_a_clock_answering_ints_compares_as_numbers():
    now = [1_700_000_000]
    engine = StaleEngine(MemoryStorage(), ttl=TTL, clock=lambda: now[0])
    engine.execute("k", lambda: "v")
    now[0] += 5
    assert engine.execute("k", lambda: "x").status is Status.HIT
    now[0] += 5
    assert engine.execute("k", lambda: "x").status is Status.STALE
    engine.close()


def test_a_failing_clock_reaches_the_caller():
    fail = [False]

    def clock() -> float:
        if fail[0]:
            raise OSError("no time")
        return 1_700_000_000.0

    engine = StaleEngine(MemoryStorage(), ttl=TTL, clock=clock)
    engine.execute("k", lambda: "v")
    fail[0] = True
    with pytest.raises(OSError, match="no time"):
        engine.execute("k", lambda: "x")
    engine.close()


def test_other_calling_forms_answer_alike():
    clock = FakeClock()
    engine = StaleEngine(MemoryStorage(), ttl=TTL, clock=clock)
    engine.execute("k", lambda: "v")
    assert engine.execute("k", fetch=lambda: "x").status is Status.HIT  # keywords
    assert StaleEngine.execute(engine, "k", lambda: "x").status is Status.HIT
    assert engine.execute("k", lambda: "x", force_refresh=True).value == "x"
    bound = engine.execute
    assert bound("k", lambda: "y").value == "x"
    with pytest.raises(ValueError):
        engine.execute("", lambda: "x")
    with pytest.raises(TypeError):
        engine.execute(1, lambda: "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.execute("k")  # type: ignore[call-arg]
    assert engine.stats().hits == 3  # the forced refresh fetched
    engine.close()


@pytest.mark.skipif(not IN_C, reason="the C form only")
def test_the_c_form_leaks_nothing_and_is_collected_with_its_class():
    from swr._core import CachedEntry
    from swr._engine import EngineBase, Observed
    from swr._speedups import EngineHit

    engine = StaleEngine(MemoryStorage(), ttl=CacheTTL(fresh=3600))
    engine.execute("k", lambda: "v")
    for _ in range(1_000):
        engine.execute("k", str), engine.execute("x", str)
        engine.delete("x")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(10_000):
        engine.execute("k", str), engine.execute("x", str)
        engine.delete("x")
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 20_000
    engine.close()

    def execute(self: Any, key: Any, fetch: Any) -> Any:
        return None

    class Local:
        __slots__ = tuple(name for name in EngineBase.__slots__ if not name.startswith("__"))
        method = EngineHit(
            execute, float, CachedEntry, Result, Status.HIT, Status.STALE, Observed, CacheTTL
        )

    gone = weakref.ref(Local)
    del Local
    gc.collect()
    assert gone() is None

    with pytest.raises((TypeError, RuntimeError)) as refused:

        class Bare:
            method = EngineHit(
                execute, float, CachedEntry, Result, Status.HIT, Status.STALE, Observed, CacheTTL
            )

    # CPython 3.11 wraps the error of __set_name__ in a RuntimeError; later ones do not.
    assert "Bare._hit_obs is not a writable slot" in str(refused.value.__cause__ or refused.value)
    with pytest.raises(TypeError, match="writable slot"):
        EngineHit(execute, float, int, Result, Status.HIT, Status.STALE, Observed, CacheTTL)


class Counting(BaseMetrics):
    """A hook counting answers one call each, and timing one storage read in four."""

    storage_read_sampling = 4

    def __init__(self) -> None:
        self.statuses: list[Status] = []
        self.reads = 0

    def record_status(self, engine: str, status: Status) -> None:
        self.statuses.append(status)

    def record_storage(self, engine: str, storage: str, operation: str, seconds: float) -> None:
        self.reads += 1


def _hooked(execute: Any) -> tuple[list[Status], int, int]:
    hook = Counting()
    engine = StaleEngine(MemoryStorage(), ttl=TTL, clock=FakeClock(), metrics=hook)
    for _ in range(10):
        execute(engine, "k", lambda: "v")
    hits = engine.stats().hits
    engine.close()
    return hook.statuses, hook.reads, hits


def test_a_hook_hears_of_every_hit_and_times_one_read_in_its_sampling():
    statuses, reads, hits = _hooked(StaleEngine.execute)
    assert (statuses, reads, hits) == _hooked(PYTHON_EXECUTE)
    assert statuses == [Status.MISS] + [Status.HIT] * 9
    assert hits == 9
    assert reads > 2  # the miss's reads, and the hit reads after hits 4 and 8


def _stale_serves(execute: Any) -> list[Any]:
    clock = FakeClock()
    engine = StaleEngine(MemoryStorage(), ttl=TTL, clock=clock)
    engine.execute("k", lambda: "v")
    clock.advance(11)
    release = threading.Event()

    def blocked() -> str:
        release.wait(5)
        return "new"

    answers = [execute(engine, "k", blocked) for _ in range(5)]  # the first queues it
    seen = [(r.value, r.status) for r in answers]
    seen.append(answers[1] is answers[4])  # one shared STALE result
    seen.append(engine.stats().stale)
    release.set()
    wait_until(lambda: idle(engine))
    seen.append(engine.execute("k", blocked).value)
    engine.close()
    return seen


def test_a_stale_entry_whose_refresh_runs_is_served_as_execute_serves_it():
    seen = _stale_serves(StaleEngine.execute)
    assert seen == _stale_serves(PYTHON_EXECUTE)
    assert seen[:5] == [("v", Status.STALE)] * 5
    assert seen[5:] == [True, 5, "new"]


ASYNC_IN_C = hasattr(AsyncStaleEngine.execute, "__wrapped__")
PYTHON_AEXECUTE = getattr(AsyncStaleEngine.execute, "__wrapped__", AsyncStaleEngine.execute)


def test_the_async_engine_reads_first_in_c_exactly_when_the_sync_one_does():
    assert ASYNC_IN_C == IN_C
    assert AsyncStaleEngine.execute.__qualname__ == "AsyncStaleEngine.execute"
    parameters = list(inspect.signature(AsyncStaleEngine.execute).parameters)
    assert parameters[:3] == ["self", "key", "fetch"]


def _arun(execute: Any, calls: list[tuple[str, Any]], kind: str) -> list[Any]:
    async def run() -> list[Any]:
        clock = FakeClock()
        pools: list[MemoryPool] = []
        engine = AsyncStaleEngine(_storage(kind, pools), ttl=TTL, clock=clock)
        upstream = Upstream()
        seen: list[Any] = []
        for op, arg in calls:
            if op.startswith("execute"):
                sync_fetch = upstream.fetch(arg)

                async def fetch(sync_fetch: Any = sync_fetch) -> Any:
                    return sync_fetch()

                try:
                    r = await _call(execute, op, engine, arg, fetch)
                    seen.append((r.value, r.status, r.stored_at, r.age))
                except ConnectionError as exc:
                    seen.append(repr(exc))
                for _ in range(200):  # a stale answer's refresh (a task), run to its end
                    if idle(engine):
                        break
                    await asyncio.sleep(0)
            elif op == "wait":
                clock.advance(arg)
            elif op == "fail":
                upstream.failing = arg
            else:
                await engine.delete(arg)
        stats = engine.stats()
        seen.append((stats.hits, stats.stale, stats.expired, stats.misses, stats.fallbacks))
        seen.append(upstream.calls)
        await engine.aclose()
        for pool in pools:
            pool.close()
        return seen

    return asyncio.run(run())


@settings(max_examples=60, deadline=None)
@given(calls=CALLS, kind=st.sampled_from(["memory", "pool"]))
def test_the_async_execute_answers_counts_and_fetches_as_its_python_method(calls, kind):
    assert _arun(AsyncStaleEngine.execute, calls, kind) == _arun(PYTHON_AEXECUTE, calls, kind)


def test_the_async_execute_passes_other_arguments_to_its_method():
    async def run() -> None:
        clock = FakeClock()
        engine = AsyncStaleEngine(MemoryStorage(), ttl=TTL, clock=clock)

        async def fetch() -> str:
            return "v"

        assert (await engine.execute("k", fetch)).status is Status.MISS
        assert (await engine.execute("k", fetch)).status is Status.HIT
        assert (await engine.execute("k", fetch, force_refresh=True)).status is Status.MISS
        assert (await engine.execute("k", fetch=fetch)).status is Status.HIT
        with pytest.raises(ValueError):
            await engine.execute("", fetch)
        assert engine.stats().hits == 2
        await engine.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("execute", [StaleEngine.execute, PYTHON_EXECUTE], ids=["c", "python"])
def test_a_ttl_that_is_neither_windows_nor_callable_is_refused_even_on_a_hit(execute):
    engine = StaleEngine(MemoryStorage(), ttl=TTL, clock=FakeClock())
    engine.execute("k", lambda: "v")
    with pytest.raises(TypeError, match="ttl must be a CacheTTL"):
        execute(engine, "k", lambda: "x", ttl=60)
    with pytest.raises(TypeError, match="ttl must be a CacheTTL"):
        execute(engine, "k", lambda: "x", 60)
    assert engine.stats().hits == 0
    engine.close()


def test_a_cached_functions_hits_are_counted_and_shared():
    engine = StaleEngine(MemoryStorage(), ttl=TTL, clock=FakeClock())
    calls: list[int] = []

    @engine.cached(ttl=CALL_TTL)
    def user(uid: int) -> dict[str, int]:
        calls.append(uid)
        return {"id": uid}

    assert user(1) == user(1) == {"id": 1}
    assert user.result(1) is user.result(1)  # the entry's one HIT result
    assert (calls, engine.stats().hits, engine.stats().misses) == ([1], 3, 1)
    engine.close()
