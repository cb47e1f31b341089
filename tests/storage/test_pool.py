"""MemoryPool and PoolCache: validation, eviction rules, expiry, stats, lifecycle.

Loaders (singleflight and batching) are in test_pool_loaders.py, the model-based state
machine in test_pool_stateful.py; the storage contract runs on a registered cache
through backends.py.
"""

from __future__ import annotations

import gc
import math
import threading
import weakref
from datetime import timedelta

import pytest

from swr.storage import (
    CacheLimitsError,
    CacheNameError,
    CacheStats,
    Entry,
    MemoryPool,
    PoolCapacityError,
    PoolConfigError,
    StorageUnavailableError,
)
from swr.testing import FakeClock
from tests.helpers import wait_until


def make_pool(capacity: int, clock: FakeClock | None = None) -> MemoryPool:
    return MemoryPool(capacity=capacity, gc_interval=None, clock=clock)


def entry(value: object, expires_at: float) -> Entry:
    return Entry(value, expires_at - 30, expires_at - 20, expires_at - 10, expires_at)


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"capacity": 0}, PoolConfigError, r"capacity must be >= 1 entry, got 0"),
        ({"capacity": -3}, PoolConfigError, r"got -3"),
        ({"capacity": "10"}, TypeError, r"capacity must be an int"),
        ({"capacity": True}, TypeError, r"capacity must be an int"),
        ({"capacity": 10, "gc_interval": 0}, PoolConfigError, r"gc_interval .* > 0, got 0"),
        ({"capacity": 10, "gc_interval": math.inf}, PoolConfigError, r"gc_interval"),
        ({"capacity": 10, "gc_interval": "1"}, TypeError, r"gc_interval"),
        ({"capacity": 10, "clock": 5}, TypeError, r"clock"),
    ],
)
def test_bad_pool_settings_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        MemoryPool(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": ""}, CacheNameError, r"must not be empty"),
        ({"name": 5}, TypeError, r"cache name must be a str"),
        ({"min": -1}, CacheLimitsError, r"'c': min must be >= 0, got min=-1"),
        ({"min": 5, "max": 3}, CacheLimitsError, r"'c': min must be <= max, got min=5, max=3"),
        ({"min": 1.5}, TypeError, r"min must be an int"),
        ({"max": "3"}, TypeError, r"max must be an int"),
        ({"ttl": 0}, CacheLimitsError, r"ttl must be a finite number of seconds > 0, got 0"),
        ({"ttl": -1}, CacheLimitsError, r"got -1"),
        ({"ttl": math.nan}, CacheLimitsError, r"ttl"),
        ({"ttl": timedelta(0)}, CacheLimitsError, r"ttl"),
        ({"ttl": "60"}, TypeError, r"ttl must be seconds"),
        ({"priority": 1.5}, TypeError, r"priority must be an int"),
        ({"min": 101}, PoolCapacityError, r"0 \(other caches\) \+ 101 \(min\) = 101 > 100"),
        ({"max": 101}, PoolCapacityError, r"max=101 > 100 - 0 = 100"),
    ],
)
def test_bad_cache_settings_name_the_rule_and_numbers(kwargs, error, match):
    pool = make_pool(100)
    kwargs = {"name": "c", **kwargs}
    with pytest.raises(error, match=match):
        pool.register(**kwargs)
    assert pool.stats().caches == {}


def test_config_errors_are_value_errors():
    for error in (CacheNameError, CacheLimitsError, PoolCapacityError):
        assert issubclass(error, PoolConfigError)
    assert issubclass(PoolConfigError, ValueError)


def test_names_are_unique_until_the_cache_is_closed():
    pool = make_pool(10)
    users = pool.register("users")
    with pytest.raises(CacheNameError, match="'users' is already registered"):
        pool.register("users")
    users.close()
    assert pool.register("users").name == "users"


def test_mins_must_fit_the_capacity_together():
    pool = make_pool(100)
    pool.register("a", min=60, max=60)
    with pytest.raises(PoolCapacityError, match=r"'b': .*60 \(other caches\) \+ 50 \(min\) = 110"):
        pool.register("b", min=50, max=50)
    pool.register("b", min=40, max=40)


def test_max_must_leave_the_other_caches_their_mins():
    pool = make_pool(100)
    pool.register("a", min=30, max=30)
    with pytest.raises(PoolCapacityError, match=r"'b': max must be .*max=80 > 100 - 30 = 70"):
        pool.register("b", max=80)
    assert pool.register("b", max=70).max == 70


def test_a_new_min_may_not_break_an_earlier_caches_max():
    # The rule holds for every cache, not only the new one: otherwise "a" could be
    # promised 100 entries that "b"'s min makes impossible.
    pool = make_pool(100)
    pool.register("a", max=100)
    with pytest.raises(
        PoolCapacityError, match=r"'b': min=10 would leave cache 'a'.*100 > 100 - 10"
    ):
        pool.register("b", min=10, max=10)
    pool.register("b", max=10)  # no min: fine


def test_ttl_accepts_a_timedelta(clock):
    pool = make_pool(10, clock)
    cache = pool.register("c", ttl=timedelta(minutes=1))
    assert cache.ttl == 60.0
    cache.set("k", 1)
    clock.advance(59.9)
    assert cache.get("k") == 1
    clock.advance(0.1)
    assert cache.get("k") is None


# -- basics -----------------------------------------------------------------------------


def test_set_get_len_name_and_objects_are_shared():
    pool = make_pool(10)
    users = pool.register("users", max=5)
    value = {"id": 1}
    users.set(1, value)
    assert users.get(1) is value
    assert users.get(2) is None
    assert len(users) == 1
    assert users.name == "users"
    assert 1 in users and 2 not in users and [] not in users


def test_keys_may_be_any_hashable():
    pool = make_pool(10)
    cache = pool.register("c")
    keys = [1, "1", (1, "a"), frozenset({2}), None, 1.5]
    for i, key in enumerate(keys):
        cache.set(key, i)
    assert [cache.get(key) for key in keys] == list(range(len(keys)))
    with pytest.raises(TypeError):
        cache.set(["unhashable"], 1)
    assert len(cache) == len(keys)


def test_stats_count_hits_misses_and_hit_rate():
    pool = make_pool(10)
    cache = pool.register("c")
    assert cache.stats().hit_rate == 0.0
    cache.set("a", 1)
    cache.get("a")
    cache.get("a")
    cache.get("a")
    cache.get("b")
    stats = cache.stats()
    assert (stats.size, stats.hits, stats.misses, stats.evictions) == (1, 3, 1, 0)
    assert stats.hit_rate == 0.75
    assert dict(stats) == {
        "size": 1,
        "hits": 3,
        "misses": 1,
        "evictions": 0,
        "expirations": 0,
        "hit_rate": 0.75,
    }
    assert stats["hits"] == 3
    with pytest.raises(KeyError):
        stats["nope"]


def test_pool_stats_show_used_capacity_and_each_cache():
    pool = make_pool(10)
    a = pool.register("a")
    b = pool.register("b")
    a.set_many({1: 1, 2: 2})
    b.set(1, 1)
    stats = pool.stats()
    assert (stats.used, stats.capacity) == (3, 10)
    assert set(stats.caches) == {"a", "b"}
    assert isinstance(stats.caches["a"], CacheStats)
    assert stats.caches["a"].size == 2


def test_a_read_key_gets_a_second_chance_and_keys_are_in_queue_order():
    pool = make_pool(10)
    cache = pool.register("c", max=3)
    for key in "abc":
        cache.set(key, key)
    cache.get("a")
    assert cache.keys() == ["a", "b", "c"]  # a hit only marks its key
    cache.set("b", "B")  # an overwrite goes to the back
    assert cache.keys() == ["a", "c", "b"]
    cache.set("d", "d")  # "a" was read: it goes to the back unmarked, "c" goes
    assert cache.keys() == ["b", "a", "d"]
    cache.set("e", "e")  # the second chance is spent: nobody read "b" again
    assert cache.keys() == ["a", "d", "e"]
    cache.set("f", "f")  # nor "a" since its second chance
    assert cache.keys() == ["d", "e", "f"]
    assert cache.get("d") == "d"
    assert pool.stats().caches["c"].evictions == 3


def test_second_chances_never_stall_a_writer_when_every_key_was_read():
    pool = make_pool(10)
    cache = pool.register("c", max=3)
    for key in "abc":
        cache.set(key, key)
    for key in "abc":
        cache.get(key)
    cache.set("d", "d")  # a full round of second chances, then the oldest goes
    assert cache.keys() == ["b", "c", "d"]
    assert cache.get("a") is None


def test_overwrite_keeps_the_size_and_the_pool_count():
    pool = make_pool(3)
    cache = pool.register("c")
    for _ in range(5):
        cache.set("k", object())
    assert len(cache) == 1
    assert pool.stats().used == 1


def test_delete_clear_and_batches():
    pool = make_pool(10)
    cache = pool.register("c")
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert cache.get_many(["a", "x", "c"]) == [1, None, 3]
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert pool.stats().used == 2
    cache.clear()
    assert len(cache) == 0
    assert pool.stats().used == 0


def test_a_cache_with_max_zero_keeps_nothing():
    pool = make_pool(5)
    none = pool.register("none", max=0)
    none.set("k", 1)
    assert none.get("k") is None
    assert pool.stats().used == 0


# -- eviction rules ---------------------------------------------------------------------


def test_a_cache_at_its_max_evicts_its_own_lru_even_with_room_in_the_pool():
    pool = make_pool(100)
    small = pool.register("small", max=2, priority=10)
    other = pool.register("other", priority=0)
    other.set("o", 1)
    small.set("a", 1)
    small.set("b", 2)
    small.set("c", 3)
    assert small.keys() == ["b", "c"]
    assert other.keys() == ["o"]
    assert small.stats().evictions == 1


def test_a_cache_at_its_max_drops_its_expired_entry_before_its_lru(clock):
    pool = make_pool(100, clock)
    cache = pool.register("c", max=3, ttl=10)
    cache.set("old", 1)
    clock.advance(5)
    cache.set("a", 1)
    cache.set("b", 1)
    cache.get("old")  # not expired yet: now the most recently used
    clock.advance(6)  # "old" expired, "a" and "b" still live
    cache.set("c", 1)
    assert cache.keys() == ["a", "b", "c"]
    stats = cache.stats()
    assert (stats.expirations, stats.evictions) == (1, 0)


def test_a_full_pool_drops_an_expired_entry_before_evicting_by_priority(clock):
    pool = make_pool(5, clock)
    precious = pool.register("precious", min=2, max=2, ttl=10, priority=100)
    mid = pool.register("mid", priority=50)
    cheap = pool.register("cheap", priority=0)
    precious.set("p1", 1)
    clock.advance(1)
    precious.set("p2", 2)
    mid.set("m", 1)
    cheap.set_many({"c1": 1, "c2": 2})
    clock.advance(9.5)  # p1 expired, p2 not yet
    cheap.set("c3", 3)
    # The expired entry with the earliest deadline goes, even from a cache at its min.
    assert precious.keys() == ["p2"]
    assert cheap.keys() == ["c1", "c2", "c3"]
    assert precious.stats().expirations == 1
    assert cheap.stats().evictions == 0


def test_the_earliest_expired_entry_of_any_cache_goes_first(clock):
    pool = make_pool(3, clock)
    a = pool.register("a", ttl=5)
    b = pool.register("b", ttl=2)
    a.set("a1", 1)  # expires at +5
    b.set("b1", 1)  # expires at +2
    clock.advance(1)
    b.set("b2", 1)  # expires at +3
    clock.advance(5)  # all three expired; b1's deadline is the earliest
    a.set("a2", 1)
    assert a.keys() == ["a1", "a2"]
    assert b.keys() == ["b2"]


def test_expired_entries_due_at_the_same_time_go_from_the_first_registered_cache(clock):
    pool = make_pool(3, clock)
    first = pool.register("first", ttl=5, priority=9)
    second = pool.register("second", ttl=5, priority=0)
    second.set("s", 1)
    first.set("f", 1)  # same deadline as "s"
    writer = pool.register("writer")
    writer.set("w1", 1)
    clock.advance(5)
    writer.set("w2", 1)
    assert (first.keys(), second.keys()) == ([], ["s"])


def test_the_lowest_priority_cache_above_its_min_loses_its_lru_entry():
    pool = make_pool(6)
    high = pool.register("high", priority=10)
    mid = pool.register("mid", min=1, priority=5)
    low = pool.register("low", min=2, priority=1)
    low.set_many({"l1": 1, "l2": 2, "l3": 3})
    mid.set_many({"m1": 1, "m2": 2})
    high.set("h1", 1)
    low.get("l1")  # l2 is now low's least recently used
    high.set("h2", 2)
    assert low.keys() == ["l3", "l1"]
    # low is at its min now: mid (above its min) gives next.
    high.set("h3", 3)
    assert mid.keys() == ["m2"]
    assert low.keys() == ["l3", "l1"]
    # Everyone else at their min: the writer evicts its own LRU entry.
    high.set("h4", 4)
    assert high.keys() == ["h2", "h3", "h4"]
    assert (low.stats().evictions, mid.stats().evictions, high.stats().evictions) == (1, 1, 1)


def test_a_lower_priority_write_takes_from_itself_not_from_higher_priorities():
    pool = make_pool(4)
    high = pool.register("high", priority=10)
    low = pool.register("low", priority=1)
    high.set_many({"h1": 1, "h2": 2})
    low.set_many({"l1": 1, "l2": 2})
    low.set("l3", 3)
    assert high.keys() == ["h1", "h2"]
    assert low.keys() == ["l2", "l3"]


def test_priority_ties_go_to_the_cache_most_over_its_min_then_the_first_registered():
    pool = make_pool(9)
    a = pool.register("a", min=1, priority=1)
    b = pool.register("b", min=0, priority=1)
    writer = pool.register("w", priority=9)
    a.set_many({"a1": 1, "a2": 2, "a3": 3, "a4": 4})  # 3 over its min
    b.set_many({"b1": 1, "b2": 2, "b3": 3, "b4": 4})  # 4 over its min
    writer.set("w1", 1)
    writer.set("w2", 2)  # b is the most over its min
    assert b.keys() == ["b2", "b3", "b4"]
    writer.set("w3", 3)  # a and b both 3 over: a was registered first
    assert a.keys() == ["a2", "a3", "a4"]
    assert b.keys() == ["b2", "b3", "b4"]


def test_no_cache_is_pushed_below_its_min_by_another():
    pool = make_pool(10)
    guarded = pool.register("guarded", min=4, priority=0)
    greedy = pool.register("greedy", priority=100)
    guarded.set_many({i: i for i in range(6)})
    for i in range(50):
        greedy.set(i, i)
        assert len(guarded) >= 4
    assert len(guarded) == 4
    assert len(greedy) == 6
    # The guarded cache still gets room for its own writes (from the greedy one).
    guarded.set("new", 1)
    assert len(guarded) == 5


def test_a_cache_without_max_gets_what_the_other_mins_leave():
    pool = make_pool(10)
    free = pool.register("free")
    free.set_many({i: i for i in range(10)})
    assert len(free) == 10
    # A new min takes effect at once: the free cache is trimmed (LRU first).
    reserved = pool.register("reserved", min=3)
    assert free.keys() == list(range(3, 10))
    assert free.stats().evictions == 3
    for i in range(3):
        reserved.set(i, i)
    assert len(free) == 7
    assert pool.stats().used == 10
    # Closing the reserved cache gives its min back.
    reserved.close()
    free.set_many({i: i for i in range(20, 23)})
    assert len(free) == 10


# -- expiry -----------------------------------------------------------------------------


def test_ttl_expiry_reads_as_a_miss_and_frees_the_slot(clock):
    pool = make_pool(10, clock)
    cache = pool.register("c", ttl=30)
    cache.set("k", "v")
    clock.advance(29.999)
    assert cache.get("k") == "v"
    clock.advance(0.001)
    assert cache.get("k") is None
    assert "k" not in cache
    stats = cache.stats()
    assert (stats.size, stats.hits, stats.misses, stats.expirations) == (0, 1, 1, 1)
    assert pool.stats().used == 0


def test_an_entry_value_also_ends_at_its_own_expires_at(clock):
    pool = make_pool(10, clock)
    cache = pool.register("engine", ttl=100)
    now = clock()
    cache.set("short", entry("s", now + 5))
    cache.set("long", entry("l", now + 500))
    clock.advance(5)
    assert cache.get("short") is None
    assert cache.get("long").value == "l"
    clock.advance(95)  # the cache's ttl ends "long" before its own expires_at
    assert cache.get("long") is None


def test_entries_expiring_out_of_write_order_are_collected_exactly(clock):
    pool = make_pool(100, clock)
    cache = pool.register("c")
    now = clock()
    lifetimes = [50, 10, 40, 20, 30, 5, 60]
    for i, life in enumerate(lifetimes):
        cache.set(i, entry(i, now + life))
    clock.advance(25)
    assert pool.collect() == 3  # lifetimes 10, 20 and 5
    assert sorted(cache.keys()) == [0, 2, 4, 6]
    clock.advance(20)  # 30 and 40 are due now
    assert pool.collect() == 2
    assert sorted(cache.keys()) == [0, 6]


def test_the_earliest_expired_entry_goes_first_even_out_of_write_order(clock):
    pool = make_pool(3, clock)
    cache = pool.register("c")
    other = pool.register("other")
    now = clock()
    cache.set("late", entry(1, now + 20))
    cache.set("early", entry(2, now + 10))  # written later, expires first
    other.set("o", 3)
    clock.advance(30)  # both expired
    other.set("o2", 4)
    assert cache.keys() == ["late"]


def test_a_clock_moved_back_still_expires_entries_correctly(clock):
    pool = make_pool(10, clock)
    cache = pool.register("c", ttl=10)
    cache.set("a", 1)  # deadline t0 + 10
    clock.set(clock() - 100)
    cache.set("b", 2)  # deadline t0 - 90: before "a"'s
    clock.advance(95)
    assert pool.collect() == 1
    assert cache.keys() == ["a"]


def test_collect_takes_a_limit_and_works_across_steps(clock):
    pool = make_pool(2000, clock)
    a = pool.register("a", ttl=1)
    b = pool.register("b", ttl=1)
    a.set_many({i: i for i in range(700)})
    b.set_many({i: i for i in range(400)})
    b.set("keep", 1)
    clock.advance(0.5)
    b.set("fresh", 1)
    clock.advance(0.6)
    assert pool.collect(limit=100) == 100
    assert pool.stats().used == 1102 - 100
    assert pool.collect() == 1101 - 100
    assert b.keys() == ["fresh"]
    assert pool.collect() == 0


class Value:
    """A weak-referenceable value."""


def test_expiry_order_never_holds_evicted_or_overwritten_values(clock):
    pool = make_pool(50, clock)
    cache = pool.register("c", ttl=3600)
    first = Value()
    cache.set("k", first)
    ref = weakref.ref(first)
    del first
    for i in range(5_000):
        cache.set("k" if i % 2 else i, Value())
        cache.get(i - 7)  # reads reorder LRU: evictions come from the middle too
        clock.advance(0.001)
    gc.collect()
    assert ref() is None
    # In write order, every record is in the deques (none in the heap), and dead
    # records never outnumber the live ones by more than the rebuild's slack.
    assert cache._late == []
    assert len(cache._keys) == len(cache._deadlines) <= 2 * len(cache) + 2 * 64
    records = zip(cache._keys, cache._deadlines, strict=True)
    live = [k for k, d in records if (item := cache._data.get(k)) is not None and item[1] is d]
    assert sorted(live, key=str) == sorted(cache.keys(), key=str)


def test_setting_one_entry_again_and_again_keeps_one_live_record(clock):
    # The entry's own expires_at (before the ttl's end) is the deadline every time: each
    # write still gets a record of its own, so the old ones are known dead.
    pool = make_pool(50, clock)
    cache = pool.register("c", ttl=3600)
    cache.set("first", entry("due first", clock() + 50))  # keeps k's records off the front
    same = entry("v", clock() + 100)
    for _ in range(5_000):
        cache.set("k", same)
        clock.advance(0.001)
    assert len(cache._keys) + len(cache._late) <= 2 * 64 + 2
    clock.advance(100)
    assert pool.collect() == 2
    assert len(cache) == 0


def test_evicting_the_oldest_entry_leaves_no_dead_record(clock):
    pool = make_pool(100, clock)
    cache = pool.register("c", ttl=60)
    for i in range(10_000):  # every write past the 100th evicts the oldest entry
        cache.set(i, i)
    assert cache._dead == 0
    assert list(cache._keys) == list(range(9_900, 10_000))


def test_out_of_order_expiry_records_stay_bounded(clock):
    pool = make_pool(50, clock)
    cache = pool.register("engine")
    first = Value()
    cache.set("first", entry(first, clock() + 1000))
    ref = weakref.ref(first)
    del first
    for i in range(5_000):
        # Jittered lifetimes: most deadlines come before the last one written.
        cache.set(i, entry(Value(), clock() + 100 + (i * 7919) % 97))
        clock.advance(0.001)
    gc.collect()
    assert ref() is None
    assert len(cache._late) <= 2 * len(cache) + 2 * 64


def test_the_background_gc_drops_expired_entries(clock):
    pool = MemoryPool(capacity=100, gc_interval=0.005, clock=clock)
    try:
        cache = pool.register("c", ttl=10)
        cache.set_many({i: i for i in range(50)})
        clock.advance(11)
        wait_until(lambda: pool.stats().used == 0)
        assert cache.stats().expirations == 50
    finally:
        pool.close()


def test_close_stops_the_gc_thread_and_an_abandoned_pool_lets_it_end():
    pool = MemoryPool(capacity=10, gc_interval=0.005)
    thread = pool._gc_thread
    assert thread is not None and thread.is_alive()
    pool.close()
    assert not thread.is_alive()

    abandoned = MemoryPool(capacity=10, gc_interval=0.005)
    thread = abandoned._gc_thread
    del abandoned
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()


def test_no_gc_thread_when_disabled():
    before = {t.name for t in threading.enumerate()}
    pool = MemoryPool(capacity=10, gc_interval=None)
    assert pool._gc_thread is None
    assert {t.name for t in threading.enumerate()} == before
    pool.close()


# -- lifecycle ---------------------------------------------------------------------------


def test_a_closed_cache_refuses_calls_and_gives_back_its_slots():
    pool = make_pool(10)
    a = pool.register("a", min=5)
    b = pool.register("b")
    a.set_many({i: i for i in range(5)})
    a.close()
    a.close()  # idempotent
    assert pool.stats().used == 0
    assert "a" not in pool.stats().caches
    for call in (
        lambda: a.get(1),
        lambda: a.set(1, 1),
        lambda: a.delete(1),
        lambda: a.set_many({1: 1}),
        lambda: a.get_or_load(1, lambda: 1),
    ):
        with pytest.raises(StorageUnavailableError, match="'a'"):
            call()
    b.set_many({i: i for i in range(10)})
    assert len(b) == 10


def test_closing_the_pool_closes_every_cache_and_registration():
    with make_pool(10) as pool:
        a = pool.register("a")
        a.set(1, 1)
    with pytest.raises(StorageUnavailableError):
        a.get(1)
    with pytest.raises(StorageUnavailableError, match="closed"):
        pool.register("b")
    pool.close()  # idempotent
    assert pool.collect() == 0


def test_a_cache_is_a_context_manager_and_has_a_readable_repr():
    pool = make_pool(10)
    with pool.register("c", min=1, max=5, ttl=3, priority=2) as cache:
        assert repr(cache) == "PoolCache(name='c', min=1, max=5, ttl=3.0, priority=2, size=0)"
        assert repr(pool) == "MemoryPool(capacity=10, used=0, caches=['c'])"
    assert pool.stats().caches == {}


def test_marks_left_by_hits_racing_removals_are_dropped():
    pool = make_pool(300)
    cache = pool.register("c", max=100)
    for i in range(100):
        cache.set(i, i)
    # A hit that found its item just before a writer removed it marks a key now gone.
    for gone in range(1000, 1200):
        cache._touch(gone)
    cache.get(0)
    cache.set("new", 1)  # the eviction drops the stale marks, then spares 0
    assert cache._marked == set()
    assert 0 in cache and 1 not in cache


def test_a_key_marked_by_a_hit_racing_its_eviction_leaves_no_mark(monkeypatch):
    pool = make_pool(300)
    cache = pool.register("c", max=100)
    for i in range(100):
        cache.set(i, i)
    # A hit on the front key lands after the writer gave its second chances, just
    # before it evicts that key (the reader takes no lock): nothing moves it back now.
    monkeypatch.setattr(type(cache), "_give_second_chances", lambda self: None)
    cache._touch(0)
    cache.set("new", 1)  # a full cache at its own max: the inline eviction
    assert 0 not in cache
    assert 0 not in cache._marked  # no mark outlives its key
