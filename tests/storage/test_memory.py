"""MemoryStorage specifics: LRU bound, objects shared, fast lookups, bad settings."""

from __future__ import annotations

import threading

import pytest

from swr.storage import Entry, MemoryStorage


def entry(value: object, expires_at: float = 1e12) -> Entry:
    return Entry(value=value, stored_at=0, fresh_until=1, stale_until=2, expires_at=expires_at)


def test_least_recently_used_is_evicted_first():
    store = MemoryStorage(max_entries=3)
    for key in "abc":
        store.set(key, entry(key))
    store.get("a")  # a is now the most recently used
    store.set("d", entry("d"))
    assert store.get("b") is None
    assert [k for k in "acd" if store.get(k) is not None] == ["a", "c", "d"]
    assert len(store) == 3
    assert store.stats() == {"entries": 3, "evictions": 1}


def test_values_are_shared_not_copied():
    store = MemoryStorage()
    value = {"list": [1]}
    store.set("k", entry(value))
    assert store.get("k").value is value


def test_lookup_functions_skip_expiry_and_touch_marks_recent(clock):
    store = MemoryStorage(max_entries=2, clock=clock)
    lookup, touch = store.lookup_functions()
    store.set("a", entry("a", expires_at=clock() + 1))
    store.set("b", entry("b"))
    clock.advance(2)
    assert lookup("a").value == "a"  # the caller judges windows itself
    touch("a")
    store.set("c", entry("c"))
    assert lookup("b") is None  # b was least recently used
    assert store.get("a") is None  # expired for get
    touch("missing")  # a key gone meanwhile: marked for nothing
    assert lookup("missing") is None
    assert len(store) == 1


def test_entries_never_read_leave_oldest_first_and_a_read_buys_a_second_chance():
    store = MemoryStorage(max_entries=4)
    for key in "abcd":
        store.set(key, entry(key))
    store.get("b")
    store.get("c")
    store.set("e", entry("e"))  # a and then d are the unread ones; a is older
    assert store.get("a") is None
    store.set("f", entry("f"))
    assert store.get("d") is None
    # b and c went round once (losing their marks); e, never read, is now the oldest
    store.set("g", entry("g"))
    assert [k for k in "bcefg" if store.get(k) is not None] == ["b", "c", "f", "g"]


def test_a_key_deleted_and_stored_again_is_as_new_as_its_last_write():
    store = MemoryStorage(max_entries=3)
    lookup, _ = store.lookup_functions()  # reads that mark nothing
    for key in "abc":
        store.set(key, entry(key))
    assert store.delete("a")
    store.set("a", entry("a2"))  # its old place in the order is a ghost now
    store.set("d", entry("d"))
    assert lookup("a").value == "a2"
    assert lookup("b") is None
    store.set("e", entry("e"))
    assert lookup("c") is None
    store.set("f", entry("f"))
    assert lookup("a") is None  # evicted once its own turn came, not before


def test_ghosts_of_deleted_keys_never_outgrow_the_live_keys():
    store = MemoryStorage(max_entries=1000)
    store.set("kept", entry("kept"))
    lookup, touch = store.lookup_functions()
    for i in range(10_000):
        store.set(f"k{i}", entry(i))
        touch(f"gone{i}")
        assert store.delete(f"k{i}")
    assert len(store._order) <= 2 * len(store) + 64
    assert len(store._marked) <= 2 * len(store) + 64
    assert lookup("kept").value == "kept"
    for i in range(1000):  # filling it evicts only the oldest live key
        store.set(f"n{i}", entry(i))
    assert lookup("kept") is None
    assert len(store) == 1000
    assert store.stats()["evictions"] == 1


def test_clear_and_contains():
    store = MemoryStorage()
    store.set("k", entry(1))
    assert "k" in store
    store.clear()
    assert "k" not in store


def test_bound_holds_under_concurrent_writers():
    store = MemoryStorage(max_entries=100)

    def write(n: int) -> None:
        for i in range(2000):
            store.set(f"{n}:{i}", entry(i))
            store.get(f"{n}:{i - 1}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 100


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-5, ValueError), ("10", TypeError)])
def test_bad_max_entries(value, error):
    with pytest.raises(error, match="max_entries"):
        MemoryStorage(max_entries=value)


def test_a_batch_storing_dead_and_live_entries_keeps_every_live_key_in_the_order():
    store = MemoryStorage(max_entries=10)
    lookup, _ = store.lookup_functions()
    for i in range(64):  # ghosts: the next removal rebuilds the queue
        store.set(f"g{i}", entry(i))
        store.delete(f"g{i}")
    store.set("old", entry("old"))
    batch = {f"new{i}": entry(i) for i in range(5)}
    store.set_many({"old": entry("old", expires_at=2), **batch})  # old dies first
    for i in range(10):  # past the bound: every new key is evicted in turn, none lost
        store.set(f"later{i}", entry(i))
    assert all(lookup(f"new{i}") is None for i in range(5))
    assert len(store) == 10
    assert len(store._order) - sum(store._ghosts.values()) == len(store)
