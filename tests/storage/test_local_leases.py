"""Leases of the in-process storages: a free key is taken without the storage's lock.

``LocalLeases.take`` inserts a lease where none is with one ``dict.setdefault`` and
judges a lease it meets (held, or expired) under the owner's lock. These tests pin
that exactly one of many racing threads gets a lease, free or expired, and that a
PoolCache releases the lease even when it refuses the entry.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from swr.storage import Entry, MemoryPool, MemoryStorage, StorageError
from swr.storage._leases import LocalLeases
from swr.testing import FakeClock

THREADS = 16


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    """Switch threads every microsecond: the racers interleave inside ``take``."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def race(acquire: Callable[[], str | None]) -> list[str | None]:
    """``acquire()`` from ``THREADS`` threads released together; their tokens."""
    start = threading.Barrier(THREADS)
    tokens: list[str | None] = []

    def body() -> None:
        start.wait()
        tokens.append(acquire())

    threads = [threading.Thread(target=body) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(tokens) == THREADS
    return tokens


def test_take_of_a_free_key_needs_no_lock() -> None:
    leases = LocalLeases()
    lock = threading.Lock()
    with lock:  # held: a take that waited for it would never return
        token = leases.take("k", 30, 100.0, lock)
    assert token is not None
    assert leases.acquire("k", 30, 100.0) is None  # held by that token


def test_take_of_a_held_key_fails_and_of_an_expired_one_replaces_it() -> None:
    leases = LocalLeases()
    lock = threading.Lock()
    first = leases.take("k", 30, 100.0, lock)
    assert first is not None
    assert leases.take("k", 30, 129.0, lock) is None  # still held at 129
    second = leases.take("k", 30, 130.0, lock)  # expired at 130
    assert second is not None and second != first
    leases.release("k", first)  # the old token releases nothing
    assert leases.take("k", 30, 131.0, lock) is None
    leases.release("k", second)
    assert leases.take("k", 30, 131.0, lock) is not None
    assert not lock.locked()


@pytest.fixture(params=["memory", "pool"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[object, FakeClock]]:
    clock = FakeClock(1_000.0)
    if request.param == "memory":
        memory = MemoryStorage(clock=clock)
        yield memory, clock
        memory.close()
    else:
        pool = MemoryPool(capacity=100, gc_interval=None, clock=clock)
        yield pool.register("api"), clock
        pool.close()


def test_racing_threads_take_a_free_lease_once(store: tuple[object, FakeClock]) -> None:
    storage, _ = store
    for round_ in range(20):
        key = f"k{round_}"
        tokens = race(lambda key=key: storage.acquire_lease(key, 30))  # type: ignore[attr-defined]
        assert len([t for t in tokens if t is not None]) == 1


def test_racing_threads_take_an_expired_lease_once(store: tuple[object, FakeClock]) -> None:
    storage, clock = store
    for round_ in range(20):
        key = f"k{round_}"
        assert storage.acquire_lease(key, 5) is not None  # type: ignore[attr-defined]
        clock.advance(6)  # that holder died: its lease expired
        tokens = race(lambda key=key: storage.acquire_lease(key, 30))  # type: ignore[attr-defined]
        assert len([t for t in tokens if t is not None]) == 1


def test_a_pool_set_and_release_refusing_the_entry_still_frees_the_lease() -> None:
    clock = FakeClock(1_000.0)
    pool = MemoryPool(capacity=100, gc_interval=None, clock=clock)
    cache = pool.register("api")
    token = cache.acquire_lease("k", 30)
    assert token is not None
    disordered = Entry("v", 1_000.0, 2_000.0, 1_500.0, 3_000.0)  # fresh after stale
    with pytest.raises(ValueError, match="ordered"):
        cache.set_and_release("k", disordered, token)
    assert cache.get("k") is None
    assert cache.acquire_lease("k", 30) is not None  # released all the same
    pool.close()


def test_a_pool_set_and_release_of_a_dead_entry_frees_the_lease() -> None:
    clock = FakeClock(1_000.0)
    pool = MemoryPool(capacity=100, gc_interval=None, clock=clock)
    cache = pool.register("api")
    cache.set("k", Entry("old", 1_000.0, 1_010.0, 1_020.0, 1_030.0))
    token = cache.acquire_lease("k", 30)
    assert token is not None
    cache.set_and_release("k", Entry("dead", 900.0, 900.0, 900.0, 950.0), token)
    assert cache.get("k") is None  # a dead entry removes what was there
    assert cache.acquire_lease("k", 30) is not None
    pool.close()


def test_a_pool_set_and_release_stores_before_the_lease_is_free() -> None:
    """Whoever takes the freed lease finds the entry: both change under one lock hold."""
    clock = FakeClock(1_000.0)
    pool = MemoryPool(capacity=100, gc_interval=None, clock=clock)
    cache = pool.register("api")
    seen: list[object] = []
    stop = threading.Event()

    def watcher() -> None:
        while not stop.is_set():
            token = cache.acquire_lease("k", 30)
            if token is not None:
                found = cache.get("k")
                seen.append(None if found is None else found.value)
                cache.release_lease("k", token)
                return

    for round_ in range(50):
        seen.clear()
        stop.clear()
        cache.delete("k")
        token = cache.acquire_lease("k", 30)
        assert token is not None
        thread = threading.Thread(target=watcher)
        thread.start()
        cache.set_and_release("k", Entry(round_, 1_000.0, 1_010.0, 1_020.0, 1_030.0), token)
        thread.join(10)
        stop.set()
        assert seen == [round_]
    pool.close()


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("not an entry", TypeError),
        (Entry("v", float("nan"), 1.0, 2.0, 3.0), ValueError),
        (Entry("v", 5.0, 4.0, 6.0, 7.0), ValueError),
        (Entry("v", float("inf"), float("inf"), float("inf"), float("inf")), ValueError),
    ],
)
def test_memory_set_and_release_refuses_what_set_refuses(bad: object, error: type) -> None:
    memory = MemoryStorage()
    token = memory.acquire_lease("k", 30)
    assert token is not None
    with pytest.raises(error):
        memory.set("k", bad)  # type: ignore[arg-type]
    with pytest.raises(error):
        memory.set_and_release("k", bad, token)  # type: ignore[arg-type]
    assert "k" not in memory
    memory.close()


def test_memory_set_and_release_keeps_the_bound_and_marks_a_rewrite_used() -> None:
    clock = FakeClock(1_000.0)
    memory = MemoryStorage(max_entries=3, clock=clock)

    def stored(key: str, value: object) -> None:
        token = memory.acquire_lease(key, 30)
        assert token is not None
        memory.set_and_release(key, Entry(value, 1_000.0, 1_010.0, 1_020.0, 1_030.0), token)

    for key in ("a", "b", "c"):
        stored(key, key)
    stored("a", "a2")  # a rewrite is a use: "a" gets its second chance
    stored("d", "d")  # over the bound: the oldest unused ("b") goes
    assert len(memory) == 3
    assert "b" not in memory
    assert memory.get("a").value == "a2"  # type: ignore[union-attr]
    assert memory.stats()["evictions"] == 1
    memory.close()
    with pytest.raises(StorageError):
        memory.set_and_release("e", Entry("e", 1_000.0, 1_010.0, 1_020.0, 1_030.0), "t")


# -- the storages' inline copies of LocalLeases.take and release, and of eviction --------


def test_acquire_lease_takes_a_free_key_as_local_leases_take_does(store) -> None:
    storage, clock = store
    token = storage.acquire_lease("k", 30)
    reference = LocalLeases()
    expected = reference.take("k", 30, clock(), threading.Lock())
    assert isinstance(token, str) and isinstance(expected, str)
    assert len(token) == len(expected) and token != expected
    assert storage._leases.held == {"k": (token, clock() + 30)}
    assert reference.held == {"k": (expected, clock() + 30)}
    assert storage.acquire_lease("k", 30) is None  # held: judged by take_met
    clock.advance(31)
    again = storage.acquire_lease("k", 30)  # expired: replaced
    assert again is not None and again not in (token, expected)


def test_set_and_release_releases_as_local_leases_release_does(store) -> None:
    storage, clock = store
    now = clock()
    entry = Entry("v", now, now + 10, now + 20, now + 30)
    token = storage.acquire_lease("k", 30)
    storage.set_and_release("k", entry, "another token")
    assert storage.acquire_lease("k", 30) is None  # a foreign token releases nothing
    storage.set_and_release("k", entry, token)
    assert storage._leases.held == {}
    assert storage.acquire_lease("k", 30) is not None


def memory_state(memory: MemoryStorage) -> tuple[object, ...]:
    return (
        list(memory._data.items()),
        list(memory._order),
        set(memory._marked),
        dict(memory._ghosts),
        memory._evictions,
    )


@pytest.mark.parametrize("setup", ["plain", "front read", "front deleted", "all read"])
def test_memory_inline_eviction_matches_evict_locked(setup: str) -> None:
    """A write into a full MemoryStorage evicts as its general form (_store_locked)."""
    clock = FakeClock(1_000.0)
    entry = Entry("v", 1_000.0, 1_010.0, 1_020.0, 1_030.0)
    twins = [MemoryStorage(max_entries=3, clock=clock) for _ in range(2)]
    for memory in twins:
        for key in ("a", "b", "c"):
            memory.set(key, entry)
        if setup == "front read":
            memory.get("a")
        elif setup == "front deleted":
            memory.delete("a")
            memory.set("d", entry)
        elif setup == "all read":
            for key in ("a", "b", "c"):
                memory.get(key)
    inline, general = twins
    inline.set("new", entry)
    with general._lock:
        general._store_locked({"new": entry}, clock())
    assert memory_state(inline) == memory_state(general)
    assert len(inline) == 3


def pool_state(cache: object) -> tuple[object, ...]:
    c: Any = cache
    return (
        list(c._data.items()),
        set(c._marked),
        list(c._keys),
        list(c._deadlines),
        list(c._late),
        c._dead,
        c._hint,
        c._tail,
        c._evictions,
        c._pool._used,
    )


@pytest.mark.parametrize("ttl", [None, 60.0])
@pytest.mark.parametrize("setup", ["plain", "front read", "entries"])
def test_pool_inline_eviction_matches_make_room_for(ttl: float | None, setup: str) -> None:
    """A write into a full cache evicts as _make_room_for does, then stores."""
    clock = FakeClock(1_000.0)
    caches = []
    for _ in range(2):
        pool = MemoryPool(capacity=3, gc_interval=None, clock=clock)
        cache = pool.register("api", ttl=ttl)
        for i, key in enumerate(("a", "b", "c")):
            value: object = key
            if setup == "entries":  # deadlines out of order: one goes to the heap
                at = 1_000.0 + 10 * (3 - i)
                value = Entry(key, 1_000.0, at, at, at)
            cache.set(key, value)
        if setup == "front read":
            cache.get("a")
        caches.append(cache)
    inline, general = caches
    inline.set("new", "v")
    with general._lock:
        assert general._make_room_for(clock())
    general.set("new", "v")  # room made: stored without an eviction
    assert pool_state(inline) == pool_state(general)
    assert len(inline) == 3
