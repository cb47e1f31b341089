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
from swr.storage.base import AsyncAtomicOps, AtomicOps
from swr.testing import FakeClock
from tests.storage import atomic_workers
from tests.storage.backends import ASYNC_BACKENDS, BACKEND_MARKS, BACKENDS

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


def test_incr_with_ttl_sets_the_life_only_when_it_creates_the_key(store, clock):
    start = clock()
    assert store.incr("n", ttl=10) == 1
    clock.advance(5)
    assert store.incr("n", ttl=100) == 2  # an existing key keeps its windows
    entry = store.get("n")
    assert entry.expires_at == entry.fresh_until == entry.stale_until == start + 10
    clock.advance(5)
    assert store.get("n") is None
    assert store.incr("n", ttl=10) == 1  # dead counts as absent: starts again at 0
    assert store.get("n").expires_at == clock() + 10


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


@pytest.mark.redis
@pytest.mark.parametrize("ttl", [None, 30])
def test_the_record_redis_incr_creates_is_the_one_the_codec_writes(redis_server, clock, ttl):
    # The one-trip incr builds the record in Lua: byte for byte what RecordCodec writes.
    import redis

    from swr.storage import RedisStorage
    from swr.storage._atomic import created
    from swr.storage._record import RecordCodec
    from swr.storage.serializers import default_serializer

    prefix = f"t{uuid.uuid4().hex[:12]}:"
    with RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock) as store:
        for delta in (5, -40, 300, -70_000, 1 << 40):
            key = f"n{delta}"
            assert store.incr(key, delta, ttl=ttl) == delta
            raw = redis.Redis.from_url(redis_server.url)
            try:
                stored = raw.get(prefix + key)
                pttl = raw.pttl(prefix + key)
            finally:
                raw.close()
            entry = created(delta, clock(), ttl, sys.float_info.max)
            assert stored == RecordCodec(default_serializer()).encode(entry)
            assert pttl == (-1 if ttl is None else pytest.approx(30_000, abs=1_000))


# -- the wrappers -----------------------------------------------------------------------------


@pytest.mark.redis
def test_tiered_counts_on_l2_and_drops_the_l1_copy(redis_server, clock):
    from swr.storage import MemoryStorage, RedisStorage, TieredStorage

    prefix = f"t{uuid.uuid4().hex[:12]}:"
    l1 = MemoryStorage(clock=clock)
    l2 = RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock)
    with TieredStorage(l1, l2) as tiered:
        assert tiered.incr("n") == 1
        assert tiered.get("n").value == 1  # copied into L1 by the read
        assert l1.get("n") is not None
        l2.incr("n", 10)  # another host
        assert tiered.incr("n") == 12  # L2 decides, not L1's stale copy
        assert l1.get("n") is None
        assert tiered.get("n").value == 12


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
