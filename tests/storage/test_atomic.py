"""Atomic operations (AtomicOps): one contract on every storage, sync and asyncio.

Time moves with the FakeClock each storage is given. The process tests race real
processes (spawned) on one LMDB directory and one Redis server and check exact totals.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swr.storage import Entry
from swr.storage.adapters import as_async
from swr.storage.base import AsyncAtomicOps, AtomicOps, CounterEntry
from swr.testing import FakeClock
from tests.storage import atomic_workers
from tests.storage.backends import ASYNC_BACKENDS, BACKEND_MARKS, BACKENDS, NEEDS_REDIS

SPAWN = multiprocessing.get_context("spawn")

# The storages offering AtomicOps, by their name in tests/storage/backends.py.
SYNC_ATOMIC = [
    "memory",
    "pool",
    "lmdb",
    "lmdb-system",
    "redis",
    "redis-cluster",
    "fallback",
    "tiered",
]
ASYNC_ATOMIC: list[str] = ["redis-async", "redis-cluster-async", "fallback-async", "tiered-async"]


class Blocking:
    """Calls an asyncio storage's coroutines from a test through one private loop."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.storage, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.loop.run_until_complete(method(*args, **kwargs))

        return call


def _params() -> list[Any]:
    params = []
    for name in SYNC_ATOMIC:
        marks = BACKEND_MARKS.get(name, [])
        params.append(pytest.param((name, "sync"), id=name, marks=marks))
        params.append(pytest.param((name, "as_async"), id=f"{name}-as-async", marks=marks))
    params += [
        pytest.param((name, "async"), id=name, marks=BACKEND_MARKS.get(name, []))
        for name in ASYNC_ATOMIC
    ]
    return params


@pytest.fixture(params=_params())
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    name, mode = request.param
    if mode == "async":
        with ASYNC_BACKENDS[name](request, tmp_path, clock) as native:
            assert isinstance(native, AsyncAtomicOps)
            facade = Blocking(native)
            yield facade
            facade.aclose()
            facade.loop.close()
        return
    with BACKENDS[name](request, tmp_path, clock) as sync:
        assert isinstance(sync, AtomicOps)
        if mode == "sync":
            yield sync
            return
        facade = Blocking(as_async(sync))
        yield facade
        facade.aclose()  # a Redis view has its own client, closed on its loop
        facade.loop.close()


def _forever(at: float) -> bool:
    # inf in memory and Redis; LMDB records hold finite times, so its "never" is the
    # largest finite float.
    return at in (math.inf, sys.float_info.max)


# -- incr / decr ------------------------------------------------------------------------


def test_incr_creates_the_key_at_zero_and_returns_each_new_value(store, clock):
    assert store.incr("n") == 1
    assert store.incr("n", 41) == 42
    assert store.decr("n", 2) == 40
    assert store.decr("n") == 39
    assert store.incr("m", -5) == -5
    entry = store.get("n")
    assert entry.value == 39
    assert entry.stored_at == clock()
    assert _forever(entry.expires_at)
    assert entry.fresh_until == entry.stale_until == entry.expires_at


def _native_counters(request: pytest.FixtureRequest) -> bool:
    # Redis (and the wrappers over it) store a counter as a native integer, whose only
    # time is the key's own TTL: it reads back fresh until Redis removes it.
    name, _ = request.node.callspec.params["store"]
    return name in NEEDS_REDIS


def test_incr_with_ttl_sets_the_life_only_when_it_creates_the_key(store, clock, request):
    start = clock()
    assert store.incr("n", ttl=10) == 1
    clock.advance(5)
    assert store.incr("n", ttl=100) == 2  # an existing key keeps its windows
    entry = store.get("n")
    if _native_counters(request):  # Redis's PX decides (see test_redis_counter_*)
        assert entry == CounterEntry(2, clock(), math.inf, math.inf, math.inf)
        return
    assert entry.expires_at == entry.fresh_until == entry.stale_until == start + 10
    clock.advance(5)
    assert store.get("n") is None
    assert store.incr("n", ttl=10) == 1  # dead counts as absent: starts again at 0
    assert store.get("n").expires_at == clock() + 10


def test_incr_over_a_dead_record_starts_again_at_zero(store, clock):
    now = clock()
    store.set("n", Entry(7, now, now + 1, now + 1, now + 10))
    clock.advance(10)
    assert store.incr("n", 2, ttl=30) == 2
    assert store.get("n").value == 2


def test_incr_keeps_the_windows_of_an_entry_written_by_set(store, clock):
    now = clock()
    store.set("n", Entry(7, now, now + 1, now + 2, now + 30))
    assert store.incr("n", 3) == 10
    assert store.get("n") == Entry(10, now, now + 1, now + 2, now + 30)


@pytest.mark.parametrize("value", ["7", 7.0, b"7", True, None, [1]])
def test_incr_of_a_value_that_is_not_an_int_raises_type_error_and_changes_nothing(
    store, clock, value
):
    now = clock()
    store.set("x", Entry(value, now, now + 60, now + 60, now + 60))
    with pytest.raises(TypeError, match="not an int"):
        store.incr("x")
    with pytest.raises(TypeError):
        store.decr("x")
    assert store.get("x").value == value


def test_incr_crosses_every_integer_width_both_ways(store):
    # Each step changes how the integer is encoded (Redis rewrites it in a script).
    value = 0
    for delta in (127, 1, 127, 1, 65_280, 1, (1 << 31) - 65_794, 1, 1 << 40, 1 << 53, 1):
        value += delta
        assert store.incr("n", delta) == value
        assert store.get("n").value == value
    for delta in (value, 32, 1, 95, 1, 32_640, 1, (1 << 31) - 32_897, 1, 1 << 53):
        value -= delta
        assert store.decr("n", delta) == value
        assert store.get("n").value == value


def test_incr_works_past_64_bits(store):
    big = 1 << 62
    assert store.incr("big", big) == big
    assert store.incr("big", big) == 2 * big
    assert store.get("big").value == 2 * big


@pytest.mark.parametrize("delta", [1.5, "1", True, None])
def test_a_delta_that_is_not_an_int_is_refused(store, delta):
    with pytest.raises(TypeError, match="delta"):
        store.incr("n", delta)
    assert store.get("n") is None


@pytest.mark.parametrize(
    ("ttl", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (math.inf, ValueError),
        (math.nan, ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
)
def test_a_bad_ttl_is_refused_by_every_operation(store, ttl, error):
    with pytest.raises(error, match="ttl"):
        store.incr("n", ttl=ttl)
    with pytest.raises(error, match="ttl"):
        store.add("n", 1, ttl=ttl)
    with pytest.raises(error, match="ttl"):
        store.append("n", "x", ttl=ttl)
    assert store.get("n") is None


# -- add ----------------------------------------------------------------------------------


def test_add_stores_only_when_absent_and_returns_exactly_a_bool(store, clock):
    assert store.add("k", "first") is True
    assert store.add("k", "second") is False
    assert store.get("k").value == "first"
    assert _forever(store.get("k").expires_at)


def test_add_over_a_dead_entry_stores(store, clock):
    assert store.add("k", "first", ttl=5) is True
    assert store.get("k").expires_at == clock() + 5
    clock.advance(5)
    assert store.add("k", "second", ttl=5) is True
    assert store.get("k").value == "second"


def test_add_keeps_any_object_the_storage_can_hold(store):
    value = {"a": [1, 2], "b": None}
    assert store.add("obj", value) is True
    assert store.get("obj").value == value


# -- get_versioned / replace_if -----------------------------------------------------------


def test_replace_if_stores_only_over_the_version_read(store, clock):
    assert store.get_versioned("k") is None
    store.add("k", "v1", ttl=30)
    entry, version = store.get_versioned("k")
    assert entry.value == "v1"
    assert store.replace_if("k", version, "v2") is True
    assert store.replace_if("k", version, "v3") is False  # the version moved on
    entry = store.get("k")
    assert entry.value == "v2"
    assert entry.expires_at == clock() + 30  # the windows are kept


def test_a_write_between_read_and_replace_makes_it_fail(store, clock):
    store.add("k", 1)
    _, version = store.get_versioned("k")
    clock.advance(1)
    store.incr("k")
    assert store.replace_if("k", version, 100) is False
    assert store.get("k").value == 2


def test_replace_if_with_ttl_gives_a_new_life(store, clock):
    store.add("k", "v1")
    _, version = store.get_versioned("k")
    assert store.replace_if("k", version, "v2", ttl=8) is True
    assert store.get("k").expires_at == clock() + 8


def test_replace_if_never_revives_a_dead_or_deleted_entry(store, clock):
    store.add("k", "v1", ttl=5)
    _, version = store.get_versioned("k")
    clock.advance(5)
    assert store.get_versioned("k") is None
    assert store.replace_if("k", version, "v2") is False
    assert store.get("k") is None
    store.add("j", "v1")
    _, version = store.get_versioned("j")
    store.delete("j")
    assert store.replace_if("j", version, "v2") is False
    assert store.get("j") is None


# -- append -------------------------------------------------------------------------------


def test_append_builds_bytes_and_str_and_returns_the_length(store, clock):
    assert store.append("b", b"ab", ttl=20) == 2
    assert store.append("b", b"cde") == 5
    assert store.get("b").value == b"abcde"
    assert store.get("b").expires_at == clock() + 20
    assert store.append("s", "h\u00e9") == 2
    assert store.append("s", "llo") == 5
    assert store.get("s").value == "h\u00e9llo"


def test_append_of_another_type_raises_type_error(store, clock):
    store.append("b", b"ab")
    with pytest.raises(TypeError, match="cannot append str"):
        store.append("b", "cd")
    store.incr("n")
    with pytest.raises(TypeError):
        store.append("n", b"x")
    with pytest.raises(TypeError, match="bytes or str"):
        store.append("b", 5)
    assert store.get("b").value == b"ab"


def test_append_to_a_dead_entry_starts_again(store, clock):
    store.append("s", "old", ttl=1)
    clock.advance(1)
    assert store.append("s", "new") == 3
    assert store.get("s").value == "new"


# -- across processes -----------------------------------------------------------------------


def _race(target: Any, argsets: list[tuple[Any, ...]]) -> list[Any]:
    barrier = SPAWN.Barrier(len(argsets))
    results = SPAWN.Queue()
    workers = [SPAWN.Process(target=target, args=(*a, barrier, results)) for a in argsets]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    return got


def _where(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if kind == "lmdb":
        return str(tmp_path / "shared"), ""
    return request.getfixturevalue("redis_server").url, f"t{uuid.uuid4().hex[:12]}:"


KINDS = ["lmdb", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.mark.parametrize("kind", KINDS)
def test_four_processes_incrementing_one_key_lose_no_increment(kind, request, tmp_path):
    where, prefix = _where(kind, request, tmp_path)
    got = _race(atomic_workers.incr_many, [(kind, where, prefix, 1000)] * 4)
    assert max(got) == 4000
    with atomic_workers._open(kind, where, prefix) as store:
        assert store.get("counter").value == 4000


@pytest.mark.parametrize("kind", KINDS)
def test_six_processes_adding_one_key_have_exactly_one_winner(kind, request, tmp_path):
    where, prefix = _where(kind, request, tmp_path)
    got = dict(_race(atomic_workers.add_once, [(kind, where, prefix, f"p{i}") for i in range(6)]))
    winners = [name for name, won in got.items() if won is True]
    assert len(winners) == 1
    assert all(won is False for name, won in got.items() if name != winners[0])
    with atomic_workers._open(kind, where, prefix) as store:
        assert store.get("only-one").value == winners[0]


# -- Redis: counters are native integers --------------------------------------------------


@pytest.fixture
def redis_pair(redis_server, clock):
    import redis

    from swr.storage import RedisStorage

    prefix = f"t{uuid.uuid4().hex[:12]}:"
    raw = redis.Redis.from_url(redis_server.url)
    with RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock) as store:
        yield store, raw, prefix
    raw.close()


@pytest.mark.redis
@pytest.mark.parametrize("delta", [5, -40, 0, (1 << 63) - 1, -(1 << 63)])
def test_redis_counter_is_a_native_integer_and_its_ttl_is_the_keys(redis_pair, delta):
    store, raw, prefix = redis_pair
    assert store.incr("plain", delta) == delta
    assert raw.get(prefix + "plain") == str(delta).encode()  # what INCRBY writes
    assert raw.pttl(prefix + "plain") == -1
    assert store.incr("timed", delta, ttl=30) == delta
    assert raw.get(prefix + "timed") == str(delta).encode()
    assert 29_000 < raw.pttl(prefix + "timed") <= 30_000
    raw.pexpire(prefix + "timed", 20_000)
    store.incr("timed", 0, ttl=100)  # a live counter keeps its TTL
    assert 19_000 < raw.pttl(prefix + "timed") <= 20_000


@pytest.mark.redis
def test_redis_counter_is_read_by_every_verb(redis_pair, clock):
    store, raw, prefix = redis_pair
    assert store.incr("n", 41, ttl=30) == 41
    counter = CounterEntry(41, clock(), math.inf, math.inf, math.inf)  # fresh until Redis drops it
    assert store.get("n") == counter
    assert store.get_many(["n", "absent"]) == [counter, None]
    assert store.exists("n")
    assert store.add("n", "other") is False
    with pytest.raises(TypeError):
        store.append("n", b"x")
    found = store.get_versioned("n")
    assert found is not None
    assert found[0] == counter
    assert store.replace_if("n", found[1], "text") is True  # keeps the key's TTL
    assert store.get("n").value == "text"
    assert 29_000 < raw.pttl(prefix + "n") <= 30_000
    with pytest.raises(TypeError, match="not an int"):
        store.incr("n")
    # touch sets a counter's TTL (it has no other time)
    store.incr("m", 1, ttl=30)
    now = clock()
    assert store.touch("m", (now, now + 5, now + 5, now + 5))
    assert 4_000 < raw.pttl(prefix + "m") <= 5_000
    assert store.touch("m", (now, math.inf, math.inf, math.inf))
    assert raw.pttl(prefix + "m") == -1
    assert store.get("m").value == 1


@pytest.mark.redis
def test_redis_counter_survives_a_restart_of_the_client_and_its_twin(redis_server, clock):
    from swr.storage import RedisStorage

    prefix = f"t{uuid.uuid4().hex[:12]}:"
    with RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock) as first:
        first.incr("n", 7)
    with RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock) as again:
        assert again.get("n").value == 7  # it lives in Redis, not in the process
        assert again.incr("n") == 8
        twin = Blocking(again.as_async())
        assert twin.incr("n", 2) == 10
        assert twin.get("n").value == 10
        twin.aclose()
        twin.loop.close()


@pytest.mark.redis
def test_redis_counter_expires_at_its_ttl_on_the_server(redis_pair):
    from tests.helpers import wait_until

    store, raw, prefix = redis_pair
    assert store.incr("short", ttl=0.05) == 1
    assert 0 < raw.pttl(prefix + "short") <= 50
    wait_until(lambda: store.get("short") is None, timeout=5)  # Redis removed it
    assert not store.exists("short")
    assert store.incr("short") == 1  # starts again at 0


@pytest.mark.redis
def test_redis_counter_past_int64_becomes_a_record_keeping_the_ttl(redis_pair):
    store, raw, prefix = redis_pair
    top = (1 << 63) - 1
    assert store.incr("n", top, ttl=30) == top
    assert store.incr("n", 1) == top + 1  # INCRBY refuses: the record holds it
    assert raw.get(prefix + "n").startswith(b"SW")
    assert 29_000 < raw.pttl(prefix + "n") <= 30_000
    assert store.get("n").value == top + 1
    assert store.decr("n", 2) == top - 1
    assert store.incr("huge", 1 << 63) == 1 << 63  # a delta beyond int64 too


@pytest.mark.redis
def test_redis_incr_existing_never_creates(redis_pair, clock):
    store, raw, prefix = redis_pair
    assert store.incr_existing("n") is None
    assert raw.exists(prefix + "n") == 0
    store.incr("n", 5)
    assert store.incr_existing("n", 2) == 7
    now = clock()
    store.set("rec", Entry(3, now, now + 30, now + 30, now + 30))  # Django writes these
    assert store.incr_existing("rec", 1) == 4
    assert raw.get(prefix + "rec") == b"4"  # now a native counter, its TTL kept
    assert 29_000 < raw.pttl(prefix + "rec") <= 30_000
    store.set("windows", Entry(3, now, now + 1, now + 2, now + 30))
    assert store.incr_existing("windows") == 4
    assert store.get("windows") == Entry(4, now, now + 1, now + 2, now + 30)
    store.set("text", Entry("x", now, now + 30, now + 30, now + 30))
    with pytest.raises(TypeError):
        store.incr_existing("text")


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"0", 0),
        (b"7", 7),
        (b"-7", -7),
        (b"9223372036854775807", (1 << 63) - 1),
        (b"-9223372036854775808", -(1 << 63)),
        (b"9223372036854775808", None),
        (b"-9223372036854775809", None),
        (b"007", None),
        (b"-0", None),
        (b"+1", None),
        (b" 1", None),
        (b"1 ", None),
        (b"1_0", None),
        (b"-", None),
        (b"", None),
        (None, None),
        (b"12a", None),
        ("\u0661".encode(), None),  # ARABIC-INDIC DIGIT ONE: a digit to int(), not ASCII
        (b"1" * 21, None),
        (b"SW\x01\x00", None),
    ],
)
def test_native_int_accepts_only_redis_canonical_int64(data, value):
    from swr.storage._redis import native_int

    assert native_int(data) == value


def test_no_record_reads_as_a_native_counter():
    from swr.storage._record import RecordCodec
    from swr.storage._redis import native_int
    from swr.storage.serializers import default_serializer

    codec = RecordCodec(default_serializer())
    for value in (0, 7, -7, "7", b"7", None):
        record = codec.encode(Entry(value, 1.0, 2.0, 3.0, 4.0))
        assert record[:2] == b"SW"
        assert native_int(record) is None


# -- the wrappers -----------------------------------------------------------------------------


@pytest.mark.redis
def test_tiered_counts_on_l2_and_drops_the_l1_copy(redis_server, clock):
    from swr.storage import MemoryStorage, RedisStorage, TieredStorage

    prefix = f"t{uuid.uuid4().hex[:12]}:"
    l1 = MemoryStorage(clock=clock)
    l2 = RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock)
    with TieredStorage(l1, l2) as tiered:
        assert tiered.incr("n") == 1
        assert tiered.get("n").value == 1
        l2.incr("n", 10)  # another host
        assert tiered.incr("n") == 12  # L2 decides
        assert tiered.get("n").value == 12
        assert tiered.get_many(["n"])[0].value == 12


@pytest.mark.redis
def test_tiered_never_copies_a_native_counter_into_l1(redis_server, clock):
    # A native counter's only time is its Redis TTL: a copy in L1 would outlive it, so
    # reads of a counter always go to L2, and a counter Redis expired reads as absent.
    from swr.storage import MemoryStorage, RedisStorage, TieredStorage

    prefix = f"t{uuid.uuid4().hex[:12]}:"
    l1 = MemoryStorage(clock=clock)
    l2 = RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock)
    with TieredStorage(l1, l2) as tiered:
        tiered.incr("n", 5, ttl=60)
        assert tiered.get("n").value == 5
        assert tiered.get_many(["n", "absent"])[0].value == 5
        assert l1.get("n") is None
        l2._client.delete(prefix + "n")  # what Redis does at the counter's TTL
        assert tiered.get("n") is None
        assert tiered.get_many(["n"]) == [None]
        # An ordinary entry is still copied into L1.
        tiered.set("e", Entry(1, clock(), clock() + 10, clock() + 20, clock() + 30))
        l1.delete("e")
        assert tiered.get("e").value == 1
        assert l1.get("e") is not None


@pytest.mark.redis
def test_fallback_refuses_atomic_operations_while_the_primary_is_down(own_redis, clock):
    from swr.storage import FallbackStorage, MemoryStorage, RedisStorage
    from swr.storage.errors import StorageUnavailableError
    from tests.helpers import wait_until

    primary = RedisStorage.from_url(
        own_redis.url, prefix="f:", clock=clock, socket_timeout=0.15, backoff_initial=0.02
    )
    with FallbackStorage(primary, MemoryStorage(clock=clock), clock=clock) as store:
        assert store.incr("n") == 1
        assert store.fallback.get("n") is None  # no stale copy for an outage to serve
        own_redis.pause()
        try:
            with pytest.raises(StorageUnavailableError):
                store.incr("n")  # one timeout: the primary is marked down
            assert not primary.available
            with pytest.raises(StorageUnavailableError, match="primary"):
                store.add("k", 1)  # refused at once, never counted locally
        finally:
            own_redis.resume()
        wait_until(lambda: primary.available, timeout=5)
        assert primary.get("k") is None  # the refused add never reached anything
        # The timed-out incr may still have been applied (sent before the pause took
        # effect): a timeout says "unknown", never "not done".
        assert store.incr("n") in (2, 3)


@pytest.mark.redis
@pytest.mark.parametrize(
    ("raw_value", "counter"),
    [
        (b"0", True),
        (b"-9223372036854775808", True),
        (b"9223372036854775807", True),
        (b"9223372036854775808", False),
        (b"-9223372036854775809", False),
        (b"007", False),
        (b"-0", False),
        (b"12a", False),
    ],
)
def test_touch_treats_as_a_counter_exactly_what_get_does(redis_pair, clock, raw_value, counter):
    from swr.storage._redis import native_int

    store, raw, prefix = redis_pair
    raw.set(prefix + "k", raw_value)
    now = clock()
    assert (native_int(raw_value) is not None) is counter
    assert store.touch("k", (now, now + 5, now + 5, now + 5)) is counter
    assert (raw.pttl(prefix + "k") > 0) is counter
