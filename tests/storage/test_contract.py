"""The storage contract: every backend, sync and async, passes these tests."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from uuid import UUID

import pytest

from swr.storage import Entry, StorageError
from swr.storage.base import EntryTimes
from swr.testing import FakeClock
from tests.storage.backends import SyncFacade, capabilities


def entry(value: object, clock: FakeClock, fresh: float = 10, lifetime: float = 60) -> Entry:
    now = clock()
    return Entry(
        value=value,
        stored_at=now,
        fresh_until=now + fresh,
        stale_until=now + fresh + (lifetime - fresh) / 2,
        expires_at=now + lifetime,
    )


def test_missing_key_is_none(storage):
    assert storage.get("absent") is None


def test_round_trip_keeps_value_and_every_boundary(storage, clock):
    e = Entry(
        value={"name": "Ada", "tags": ["a", "b"], "n": 3, "pi": 3.25, "none": None},
        stored_at=clock() + 0.123456,
        fresh_until=clock() + 10.5,
        stale_until=clock() + 20.25,
        expires_at=clock() + 3600.125,
    )
    storage.set("k", e)
    got = storage.get("k")
    assert got == e


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        "",
        "héllo ✓",
        b"\x00\xff",
        [],
        {},
        [1, [2, [3]]],
        {"nested": {"list": [1, "two", None]}},
        (1, 2),
        {1, 2},
        datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=timezone.utc),
        date(2030, 1, 2),
        UUID("12345678-1234-5678-1234-567812345678"),
        Decimal("1.10"),
    ],
    ids=repr,
)
def test_values_round_trip(storage, clock, value):
    storage.set("k", entry(value, clock))
    got = storage.get("k").value
    assert got == value
    assert type(got) is type(value)


def test_overwrite_replaces(storage, clock):
    storage.set("k", entry("one", clock))
    storage.set("k", entry("two", clock))
    assert storage.get("k").value == "two"


def test_delete_is_idempotent(storage, clock):
    storage.set("k", entry("v", clock))
    assert storage.delete("k") is True
    assert storage.get("k") is None
    assert storage.delete("k") is False
    assert storage.delete("never") is False


def test_entry_past_expires_at_reads_as_none(storage, clock):
    storage.set("k", entry("v", clock, fresh=10, lifetime=60))
    clock.advance(59.9)
    assert storage.get("k").value == "v"
    clock.advance(0.1)
    assert storage.get("k") is None


def test_keys_are_independent_and_unicode_safe(storage, clock):
    keys = ["a", "A", "a:b", "ключ", "键", "with space", "x" * 200]
    for i, key in enumerate(keys):
        storage.set(key, entry(i, clock))
    assert [storage.get(key).value for key in keys] == list(range(len(keys)))


def test_long_keys_work_and_stay_distinct(storage, clock):
    long_a = "a" * 600 + "1"
    long_b = "a" * 600 + "2"
    storage.set(long_a, entry("A", clock))
    storage.set(long_b, entry("B", clock))
    assert storage.get(long_a).value == "A"
    assert storage.get(long_b).value == "B"
    assert storage.delete(long_a) is True
    assert storage.get(long_a) is None


def test_batches_keep_order_and_report_misses(storage, clock):
    storage.set_many({f"k{i}": entry(i, clock) for i in range(50)})
    keys = ["k3", "missing", "k0", "k49", "k3"]
    got = storage.get_many(keys)
    assert [e.value if e is not None else None for e in got] == [3, None, 0, 49, 3]
    assert storage.get_many([]) == []
    storage.set_many({})


def test_large_values(storage, clock):
    big = {"blob": b"x" * (1 << 20), "text": "y" * 100_000, "items": list(range(50_000))}
    storage.set("big", entry(big, clock))
    assert storage.get("big").value == big


def test_concurrent_writers_and_readers(storage, clock):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                storage.set(f"w{n}:{i}", entry((n, i), clock))
                storage.set("shared", entry((n, i), clock))
                storage.get(f"w{n}:{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    for n in range(8):
        for i in range(50):
            assert storage.get(f"w{n}:{i}").value == (n, i)
    n, i = storage.get("shared").value
    assert 0 <= n < 8 and i == 49


def test_leases_are_exclusive_owned_and_expire(storage, clock):
    token = storage.acquire_lease("k", 30)
    assert isinstance(token, str)
    assert storage.acquire_lease("k", 30) is None
    assert storage.acquire_lease("other", 30) is not None
    storage.release_lease("k", "not-the-owner")
    assert storage.acquire_lease("k", 30) is None
    storage.release_lease("k", token)
    again = storage.acquire_lease("k", 0.05)
    assert again is not None
    # Expiry is judged by the storage clock or by the server's own: move both.
    clock.advance(1)
    time.sleep(0.1)
    assert storage.acquire_lease("k", 30) is not None


def declares(storage, capability: str) -> bool:
    found = storage.capabilities if isinstance(storage, SyncFacade) else capabilities(storage)
    return capability in found


def test_set_and_release_stores_and_frees_the_lease(storage, clock):
    if not declares(storage, "set_and_release"):
        pytest.skip("this backend does not declare set_and_release")
    token = storage.acquire_lease("k", 30)
    storage.set_and_release("k", entry("v", clock), token)
    assert storage.get("k").value == "v"
    assert storage.acquire_lease("k", 30) is not None  # released with the write
    other = storage.acquire_lease("j", 30)
    storage.set_and_release("j", entry("w", clock), "not-the-owner")
    assert storage.get("j").value == "w"
    assert storage.acquire_lease("j", 30) is None  # a foreign token releases nothing
    storage.release_lease("j", other)


def test_use_after_close_raises_a_storage_error(storage, clock):
    storage.set("k", entry("v", clock))
    storage.close()
    storage.close()  # idempotent
    with pytest.raises(StorageError):
        storage.get("k")
    with pytest.raises(StorageError):
        storage.set("k", entry("v", clock))


def test_an_entry_that_never_expires_is_kept(storage, clock):
    forever = Entry(
        value="v",
        stored_at=clock(),
        fresh_until=clock() + 10,
        stale_until=clock() + 20,
        expires_at=float("inf"),
    )
    storage.set("k", forever)
    clock.advance(10**9)
    got = storage.get("k")
    assert got is not None
    assert (got.value, got.expires_at) == ("v", float("inf"))
    far = Entry(
        value="w", stored_at=clock(), fresh_until=clock(), stale_until=clock(), expires_at=1e20
    )
    storage.set("far", far)
    assert storage.get("far").value == "w"


@pytest.mark.parametrize(
    "times",
    [
        (0.0, float("nan"), 20.0, 30.0),
        (0.0, 10.0, 20.0, float("nan")),
        (float("nan"), 10.0, 20.0, 30.0),
        (0.0, 20.0, 10.0, 30.0),
        (0.0, 10.0, 40.0, 30.0),
    ],
    ids=["nan-fresh", "nan-expires", "nan-stored", "stale-before-fresh", "expires-before-stale"],
)
def test_nan_and_out_of_order_times_are_refused(storage, clock, times):
    stored, fresh, stale, expires = (t + clock() for t in times)
    bad = Entry(
        value="v", stored_at=stored, fresh_until=fresh, stale_until=stale, expires_at=expires
    )
    with pytest.raises(ValueError):
        storage.set("k", bad)
    assert storage.get("k") is None


def test_the_empty_key_and_non_str_keys_are_refused(storage, clock, request):
    if request.node.callspec.id.startswith("pool"):
        # A PoolCache is also a typed cache of any hashable key (ints, tuples); under an
        # engine its keys are the engine's, already non-empty strs.
        pytest.skip("a PoolCache takes any hashable key")
    with pytest.raises(ValueError, match="empty"):
        storage.set("", entry("v", clock))
    with pytest.raises(TypeError):
        storage.set(b"k", entry("v", clock))  # type: ignore[arg-type]


def test_a_dead_entry_written_reads_as_none_and_deletes_as_absent(storage, clock):
    dead = entry("v", clock, fresh=1, lifetime=2)
    clock.advance(5)
    storage.set("k", dead)
    assert storage.delete("k") is False  # nothing was kept, even unread
    storage.set("k", dead)
    assert storage.get("k") is None


# -- bulk verbs and the tag index (issue 15) ----------------------------------------------


def needs(storage, capability: str) -> None:
    if not declares(storage, capability):
        pytest.skip(f"this backend does not declare {capability}")


def test_delete_many_removes_and_counts_what_was_held(storage, clock):
    needs(storage, "bulk_verbs")
    storage.set_many({"a": entry(1, clock), "b": entry(2, clock), "keep": entry(3, clock)})
    assert storage.delete_many(["a", "b", "absent", "a"]) == 2
    assert storage.get_many(["a", "b", "keep"])[:2] == [None, None]
    assert storage.get("keep").value == 3
    assert storage.delete_many([]) == 0
    assert storage.delete_many(["a"]) == 0


def test_exists_says_live_without_reading_the_value(storage, clock):
    needs(storage, "bulk_verbs")
    storage.set("k", entry({"big": "x" * 1000}, clock, lifetime=60))
    assert storage.exists("k") is True
    assert storage.exists("absent") is False
    clock.advance(61)  # past expires_at by the storage's clock
    assert storage.exists("k") is False


def test_touch_renews_the_windows_and_keeps_the_value(storage, clock):
    needs(storage, "bulk_verbs")
    storage.set("k", entry([1, "two"], clock, lifetime=60))
    now = clock()
    renewed = EntryTimes(now + 1, now + 100, now + 200, now + 300)
    assert storage.touch("k", renewed) is True
    got = storage.get("k")
    assert got.value == [1, "two"]
    assert (got.stored_at, got.fresh_until, got.stale_until, got.expires_at) == renewed
    clock.advance(120)  # past the old expires_at, within the new one
    assert storage.get("k").value == [1, "two"]
    assert storage.touch("absent", renewed) is False
    assert storage.get("absent") is None  # touch never creates


def test_touch_of_a_dead_entry_is_false_and_bad_times_are_refused(storage, clock):
    needs(storage, "bulk_verbs")
    storage.set("dead", entry("v", clock, fresh=1, lifetime=5))
    clock.advance(10)
    now = clock()
    assert storage.touch("dead", EntryTimes(now, now + 10, now + 20, now + 30)) is False
    assert storage.get("dead") is None
    storage.set("k", entry("v", clock))
    with pytest.raises(ValueError, match="ordered"):
        storage.touch("k", EntryTimes(now, now + 30, now + 20, now + 10))
    with pytest.raises(TypeError, match="EntryTimes"):
        storage.touch("k", now + 10)


def test_scan_lists_entry_keys_with_a_literal_prefix(storage, clock):
    needs(storage, "bulk_verbs")
    keys = ["user:1", "user:2", "user*x", "user[1]", "org:1", "us", "ünï:1"]
    storage.set_many({key: entry(key, clock) for key in keys})
    if declares(storage, "leases"):
        assert storage.acquire_lease("user:3", 30) is not None  # a lease is not an entry
    assert sorted(set(storage.scan("user:"))) == ["user:1", "user:2"]
    assert sorted(set(storage.scan("user*"))) == ["user*x"]  # no pattern characters
    assert sorted(set(storage.scan("user["))) == ["user[1]"]
    assert sorted(set(storage.scan("ünï"))) == ["ünï:1"]
    assert sorted(set(storage.scan())) == sorted(keys)
    assert list(storage.scan("nothing")) == []


def test_scan_walks_more_keys_than_one_batch(storage, clock):
    needs(storage, "bulk_verbs")
    storage.set_many({f"n:{i:04}": entry(i, clock) for i in range(1100)})
    assert len(set(storage.scan("n:"))) == 1100


def test_clear_removes_every_entry_and_the_storage_stays_usable(storage, clock):
    needs(storage, "bulk_verbs")
    storage.set_many({f"k{i}": entry(i, clock) for i in range(20)})
    storage.clear()
    assert storage.get_many([f"k{i}" for i in range(20)]) == [None] * 20
    assert list(storage.scan()) == []
    storage.set("k0", entry("again", clock))
    assert storage.get("k0").value == "again"


def test_invalidate_tags_removes_every_entry_of_a_tag_and_only_those(storage, clock):
    needs(storage, "tag_index")
    storage.set_tagged("a", entry("a", clock), ["user:1", "org:7"])
    storage.set_tagged("b", entry("b", clock), ("user:1",))
    storage.set_tagged("c", entry("c", clock), ["org:7"])
    storage.set("d", entry("d", clock))
    assert storage.get("a").value == "a"
    assert storage.invalidate_tags(["user:1"]) == 2
    assert storage.get("a") is None
    assert storage.get("b") is None
    assert storage.get("c").value == "c"
    assert storage.get("d").value == "d"
    assert storage.invalidate_tags(["user:1"]) == 0  # the tag's index went with it
    assert storage.invalidate_tags(["org:7", "absent"]) == 1
    assert storage.get("c") is None
    assert storage.invalidate_tags([]) == 0


def test_invalidate_tags_of_many_entries(storage, clock):
    needs(storage, "tag_index")
    for i in range(1001):  # more than one batch (1000 keys) of the Redis invalidation
        storage.set_tagged(f"e{i}", entry(i, clock), ["bulk"])
    assert storage.invalidate_tags(["bulk"]) == 1001
    assert storage.get_many([f"e{i}" for i in range(0, 1001, 50)]) == [None] * 21


def test_tags_must_be_a_sequence_of_names(storage, clock):
    needs(storage, "tag_index")
    with pytest.raises(TypeError, match="sequence of str"):
        storage.set_tagged("k", entry("v", clock), "user:1")
    with pytest.raises(TypeError, match="non-empty str"):
        storage.set_tagged("k", entry("v", clock), ["ok", ""])
    with pytest.raises(TypeError, match="sequence of str"):
        storage.invalidate_tags("user:1")
