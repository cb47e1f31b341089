"""``PoolCache.get`` in C (``swr.storage._speedups.PoolGet``) against its Python rule.

``PoolCache.get`` is written in Python; when the extension is built, its live hit and
its plain miss run in C and every other case calls the Python method. Two pools driven
through the same operations, one read with ``PoolCache.get`` and one with the Python
method itself (``PoolCache.get.__wrapped__``), must answer, count, mark and evict
alike. In pure mode (``SWR_PURE_PYTHON=1``, how CI runs tests/storage a second time)
``PoolCache.get`` is the Python method.
"""

from __future__ import annotations

import gc
import inspect
import os
import time
import tracemalloc
import weakref
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from swr.storage import MemoryPool, StorageUnavailableError
from swr.storage._record import SPEEDUPS
from swr.storage.pool._cache import PoolCache

PURE = os.environ.get("SWR_PURE_PYTHON", "") not in ("", "0")
IN_C = type(PoolCache.get).__name__ == "PoolGet"
PYTHON_GET = getattr(PoolCache.get, "__wrapped__", PoolCache.get)


class Clock:
    """The pool's clock, moved by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now


def test_get_runs_in_c_exactly_when_the_extension_is_allowed():
    in_c = SPEEDUPS and not PURE
    assert type(PoolCache.get).__name__ == ("PoolGet" if in_c else "function")


def test_the_method_keeps_its_name_signature_and_documentation():
    assert PoolCache.get.__name__ == "get"
    assert PoolCache.get.__qualname__ == "PoolCache.get"
    assert PoolCache.get.__doc__ is not None
    assert PoolCache.get.__doc__.startswith("Return the value under ``key``")
    assert list(inspect.signature(PoolCache.get).parameters) == ["self", "key"]


_SET = st.tuples(st.just("set"), st.integers(0, 6), st.integers())
_GET = st.tuples(st.just("get"), st.integers(0, 6), st.none())
OPS = st.lists(
    st.one_of(
        _SET,
        _SET,
        _GET,
        _GET,
        st.tuples(st.just("delete"), st.integers(0, 6), st.none()),
        st.tuples(st.just("wait"), st.none(), st.sampled_from([0.5, 3.0, 30.0, 400.0])),
    ),
    max_size=60,
)


def _run(get: Any, ops: list[tuple[str, Any, Any]], ttl: float | None) -> list[Any]:
    clock = Clock()
    pool = MemoryPool(capacity=4, gc_interval=None, clock=clock)
    cache = pool.register("c", ttl=ttl)
    seen: list[Any] = []
    for op, key, arg in ops:
        if op == "set":
            cache.set(key, arg)
        elif op == "get":
            seen.append(get(cache, key))
        elif op == "delete":
            seen.append(cache.delete(key))
        else:
            clock.now += arg
    stats = cache.stats()
    seen.append((stats.hits, stats.misses, stats.evictions, stats.expirations, len(cache)))
    seen.append(cache.keys())  # the order the marks of reads left
    pool.close()
    return seen


@settings(max_examples=300, deadline=None)
@given(ops=OPS, ttl=st.sampled_from([None, 1.0, 10.0, 100.0]))
def test_get_answers_counts_and_marks_as_the_python_method(ops, ttl):
    """Hits, misses, expiry (the C code leaves it to the method), eviction order."""
    assert _run(PoolCache.get, ops, ttl) == _run(PYTHON_GET, ops, ttl)


def test_an_expired_item_is_removed_and_counted_as_the_method_does():
    clock = Clock()
    pool = MemoryPool(capacity=8, gc_interval=None, clock=clock)
    cache = pool.register("c", ttl=10.0)
    cache.set("k", "v")
    assert cache.get("k") == "v"
    clock.now += 10.0
    assert cache.get("k") is None
    assert len(cache) == 0
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations) == (1, 1, 1)
    pool.close()


def test_the_pools_clock_is_read_only_when_an_item_may_have_expired():
    clock = Clock()
    pool = MemoryPool(capacity=8, gc_interval=None, clock=clock)
    forever, timed = pool.register("forever"), pool.register("timed", ttl=60.0)
    forever.set("k", 1)
    timed.set("k", 2)
    clock.calls = 0
    assert forever.get("k") == 1
    assert clock.calls == 0  # nothing in the cache has a deadline
    assert timed.get("k") == 2
    assert clock.calls == 1
    pool.close()


def test_a_failing_clock_reaches_the_caller():
    pool = MemoryPool(capacity=8, gc_interval=None)
    cache = pool.register("c", ttl=60.0)
    cache.set("k", 1)

    def broken() -> float:
        raise OSError("no time")

    cache.adopt_clock(broken)  # what an engine given a clock does
    with pytest.raises(OSError, match="no time"):
        cache.get("k")
    pool.close()


def test_the_wall_clock_is_time_time():
    pool = MemoryPool(capacity=8, gc_interval=None)
    cache, short = pool.register("c", ttl=3600.0), pool.register("short", ttl=0.001)
    cache.set("k", 1)
    short.set("k", 2)
    time.sleep(0.002)
    assert cache.get("k") == 1
    assert short.get("k") is None
    assert short.stats().expirations == 1
    pool.close()


def test_a_pool_made_under_freezegun_follows_the_frozen_clock():
    with freeze_time("2026-01-01") as frozen:
        pool = MemoryPool(capacity=8, gc_interval=None)
        cache = pool.register("c", ttl=10.0)
        cache.set("k", 1)
        frozen.tick(9.0)
        assert cache.get("k") == 1
        frozen.tick(1.0)
        assert cache.get("k") is None
        pool.close()


def test_a_closed_cache_refuses_a_miss_and_holds_nothing():
    pool = MemoryPool(capacity=8, gc_interval=None)
    cache = pool.register("c")
    cache.set("k", 1)
    cache.close()
    with pytest.raises(StorageUnavailableError, match="closed"):
        cache.get("k")
    with pytest.raises(StorageUnavailableError, match="closed"):
        cache.get("other")
    pool.close()


def test_unhashable_keys_raise_what_the_lookup_raises():
    pool = MemoryPool(capacity=8, gc_interval=None)
    cache = pool.register("c")
    with pytest.raises(TypeError, match="unhashable"):
        cache.get([1])
    with pytest.raises(TypeError, match="unhashable"):
        PYTHON_GET(cache, [1])
    pool.close()


class Key:
    """A key whose hash and equality run Python code (which may give up the GIL)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return hash(self.n)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.n == self.n


def test_keys_of_any_hashable_type_are_found_and_marked():
    pool = MemoryPool(capacity=8, gc_interval=None)
    cache = pool.register("c")
    cache.set(Key(1), "one")
    assert cache.get(Key(1)) == "one"
    assert cache.get(Key(2)) is None
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 1)
    pool.close()


def test_every_calling_form_answers_alike():
    pool = MemoryPool(capacity=8, gc_interval=None)
    cache = pool.register("c")
    cache.set("k", 1)
    bound = cache.get
    assert bound("k") == 1
    assert PoolCache.get(cache, "k") == 1
    assert PoolCache.get(cache, key="k") == 1  # keywords: the Python method's own call
    assert [cache.get(k) for k in ("k", "x")] == [1, None]
    assert cache.get_many(["k", "x"]) == [1, None]
    assert cache.stats().hits == 5
    with pytest.raises(TypeError):
        PoolCache.get(cache)  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        PoolCache.get(object(), "k")  # not a PoolCache: the Python method's own error
    pool.close()


@pytest.mark.skipif(not IN_C, reason="the C form only")
def test_the_c_form_leaks_nothing_and_is_collected_with_its_class():
    from swr.storage._speedups import PoolGet

    pool = MemoryPool(capacity=8, gc_interval=None)
    cache = pool.register("c", ttl=3600.0)
    cache.set("k", "v")
    for _ in range(1_000):
        cache.get("k"), cache.get("x")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(20_000):
        cache.get("k"), cache.get("x")
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 10_000
    pool.close()

    def get(self: Any, key: Any) -> Any:
        return None

    class Local:
        __slots__ = ("_closed", "_data", "_hint", "_hits", "_marked", "_misses", "_now_read")
        method = PoolGet(get, time.time)

    watch = PoolGet(get, time.time)
    Local.watched = watch  # type: ignore[attr-defined]
    del watch
    gone = weakref.ref(Local)
    del Local
    gc.collect()
    assert gone() is None


@pytest.mark.skipif(not IN_C, reason="the C form only")
def test_the_c_form_refuses_a_class_without_the_slots():
    from swr.storage._speedups import PoolGet

    def get(self: Any, key: Any) -> Any:
        return None

    with pytest.raises((TypeError, RuntimeError)) as refused:

        class Bare:
            method = PoolGet(get, time.time)

    # CPython 3.11 wraps the error of __set_name__ in a RuntimeError; later ones do not.
    assert "Bare._hint is not a writable slot" in str(refused.value.__cause__ or refused.value)

    with pytest.raises(TypeError, match="callable"):
        PoolGet(1, time.time)  # type: ignore[arg-type]


@pytest.mark.parametrize("get", [PoolCache.get, PYTHON_GET], ids=["get", "python"])
def test_a_hit_gives_its_key_a_second_chance(get):
    pool = MemoryPool(capacity=4, gc_interval=None)
    cache = pool.register("c")
    for key in range(4):
        cache.set(key, key)
    assert get(cache, 0) == 0
    cache.set(4, 4)  # full: the front key 0 was read, so 1 goes
    assert cache.keys() == [2, 3, 0, 4]
    pool.close()
