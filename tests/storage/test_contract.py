"""The storage contract: every backend, sync and async, passes these tests."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from uuid import UUID

import pytest

from swr.storage import Entry, StorageError
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
