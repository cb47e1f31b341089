"""The miss path's inline copies, checked against the general forms they copy.

Every miss builds its entry and its result slot by slot (not by calling the classes),
takes its lease and re-reads under it without ``_lease_or_result`` in the common case.
These tests pin each copy to the code it stands for, on both engines.
"""

from __future__ import annotations

from typing import Any

import pytest

from swr import CacheTTL, Status
from swr._core import CachedEntry
from swr.policy import Result
from swr.storage import Entry, MemoryPool, MemoryStorage
from swr.storage.pool import PoolCache

TTL = CacheTTL(fresh=10, stale=20, expired=30)


def slots(obj: object) -> dict[str, Any]:
    """Every slot of ``obj`` over its class's MRO (an unset one raises AttributeError)."""
    names = [name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ())]
    return {name: getattr(obj, name) for name in names if not name.startswith("__")}


def test_a_miss_answers_with_the_result_the_class_builds(make_driver, clock):
    d = make_driver(ttl=TTL, clock=clock)
    r = d.execute("k", lambda: "v")
    assert type(r) is Result
    assert slots(r) == slots(Result("v", Status.MISS, clock(), clock))
    clock.advance(35)  # expired: the same inline answer, status EXPIRED
    r = d.execute("k", lambda: "v2")
    assert slots(r) == slots(Result("v2", Status.EXPIRED, clock(), clock))


def test_an_entrys_first_hit_answers_with_the_result_the_class_builds(make_driver, clock):
    storage = MemoryStorage()
    d = make_driver(storage=storage, ttl=TTL, clock=clock)
    d.execute("k", lambda: "v")
    clock.advance(1)
    first = d.execute("k", lambda: "other")
    assert type(first) is Result
    assert slots(first) == slots(Result("v", Status.HIT, clock() - 1, clock))
    assert storage.get("k").hit is first  # kept: later hits answer with the same object
    assert d.execute("k", lambda: "other") is first


@pytest.mark.parametrize("ttl", [None, CacheTTL(fresh=1, stale=2, expired=3)])
def test_a_miss_stores_the_entry_new_entry_builds(make_driver, clock, ttl):
    storage = MemoryStorage()
    d = make_driver(storage=storage, ttl=TTL, clock=clock)
    d.execute("k", lambda: "v", ttl=ttl)
    stored = storage.get("k")
    assert type(stored) is CachedEntry
    assert slots(stored) == slots(d.engine._new_entry("k", "v", ttl))


def test_a_jittered_or_callable_ttl_still_goes_through_new_entry(make_driver, clock):
    storage = MemoryStorage()
    d = make_driver(storage=storage, ttl=TTL, clock=clock)
    d.execute("a", lambda: "v", ttl=lambda key, value: CacheTTL(fresh=5, stale=5))
    assert storage.get("a").fresh_until == clock() + 5
    d.execute("b", lambda: "v", ttl=CacheTTL(fresh=100, stale=0, jitter=0.5))
    assert clock() + 50 <= storage.get("b").fresh_until <= clock() + 100


@pytest.fixture(params=["memory", "pool"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        storage = MemoryStorage()
        yield storage
        storage.close()
    else:
        pool = MemoryPool(capacity=100, gc_interval=None)
        yield pool.register("api")
        pool.close()


def stored_while_leasing(monkeypatch: pytest.MonkeyPatch, storage: Any, entry: Entry) -> None:
    """Another process stores ``entry`` between the engine's read and its lease."""
    cls = type(storage)
    acquire = cls.acquire_lease

    def acquire_lease(self: Any, key: str, ttl: float) -> str | None:
        token = acquire(self, key, ttl)
        storage.set(key, entry)
        return token

    monkeypatch.setattr(cls, "acquire_lease", acquire_lease)


def test_an_entry_stored_while_the_lease_was_taken_answers_without_a_fetch(
    make_driver, clock, store, monkeypatch
):
    d = make_driver(storage=store, ttl=TTL, clock=clock)
    now = clock()
    stored_while_leasing(monkeypatch, store, Entry("theirs", now, now + 10, now + 20, now + 30))
    fetched: list[str] = []
    r = d.execute("k", lambda: fetched.append("k") or "mine")
    assert (r.value, r.status, fetched) == ("theirs", Status.MISS, [])
    monkeypatch.undo()
    assert store.acquire_lease("k", 30) is not None  # the engine's lease was released


def test_a_dead_entry_stored_while_the_lease_was_taken_is_fetched_over(
    make_driver, clock, store, monkeypatch
):
    d = make_driver(storage=store, ttl=TTL, clock=clock)
    old = clock() - 100
    stored_while_leasing(monkeypatch, store, Entry("dead", old, old, old, old + 1))
    r = d.execute("k", lambda: "mine")
    assert (r.value, r.status) == ("mine", Status.MISS)
    monkeypatch.undo()
    assert store.get("k").value == "mine"
    assert store.acquire_lease("k", 30) is not None


def test_pool_stats_count_one_re_read_per_miss(make_driver, clock):
    pool = MemoryPool(capacity=100, gc_interval=None)
    cache: PoolCache[str, Any] = pool.register("api")
    d = make_driver(storage=cache, ttl=TTL, clock=clock)
    d.execute("k", lambda: "v")
    assert (cache.stats().hits, cache.stats().misses) == (0, 2)  # before and under the lease
    pool.close()
