"""RedisStorage specifics on real servers: expiry, records, batches, leases, health."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgpack
import pytest
import redis
from redis.cluster import key_slot
from structlog.testing import capture_logs

from swr.storage import (
    AsyncRedisStorage,
    Entry,
    RedisStorage,
    StorageError,
    StorageUnavailableError,
)
from swr.storage._record import RecordCodec
from swr.storage.redis import lease_key
from swr.storage.serializers import JSONSerializer, _msgpack_ext_hook, default_serializer
from tests.helpers import wait_until

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def entry(value: object, now: float, fresh: float = 10, lifetime: float = 60) -> Entry:
    return Entry(value, now, now + fresh, now + (fresh + lifetime) / 2, now + lifetime)


@pytest.fixture
def store(redis_server, clock):
    s = RedisStorage.from_url(redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}:", clock=clock)
    yield s
    s.close()


def test_redis_expiry_is_the_whole_remaining_lifetime(store, clock):
    store.set("k", entry("v", clock(), fresh=10, lifetime=60))
    assert 59_000 < store.client.pttl(store.prefix + "k") <= 60_000
    clock.advance(59.5)  # the same entry written later has 0.5 s left
    store.set("k", entry("v", clock() - 59.5, fresh=10, lifetime=60))
    assert 0 < store.client.pttl(store.prefix + "k") <= 500


def test_entries_that_never_expire_have_no_ttl_and_far_future_ones_are_kept(store, clock):
    now = clock()
    forever = Entry("v", now, now + 10, now + 20, math.inf)
    store.set("inf", forever)
    assert store.client.pttl(store.prefix + "inf") == -1  # no TTL
    assert store.get("inf") == forever
    always_fresh = Entry("w", now, math.inf, math.inf, math.inf)
    store.set_many({"fresh": always_fresh})
    assert store.get_many(["fresh"]) == [always_fresh]
    far = Entry("x", now, now + 10, now + 20, 1e20)  # PX would overflow Redis's clock
    store.set("far", far)
    assert store.client.pttl(store.prefix + "far") == -1  # kept, never dropped early
    assert store.get("far") == far
    store.set("inf", entry("y", now))  # a finite entry over it gets a TTL again
    assert store.client.pttl(store.prefix + "inf") > 0


@pytest.mark.parametrize(
    "times",
    [
        (0.0, 1.0, 2.0, math.nan),
        (math.nan, 1.0, 2.0, 3.0),
        (0.0, 3.0, 2.0, 4.0),
        (0.0, 1.0, 2.0, 1.5),
        (-math.inf, 1.0, 2.0, 3.0),
        (math.inf, math.inf, math.inf, math.inf),
    ],
)
def test_nan_and_out_of_order_times_are_refused_before_any_write(store, times):
    with pytest.raises(ValueError, match="ordered"):
        store.set("k", Entry("v", *times))
    with pytest.raises(ValueError, match="ordered"):
        store.set_many({"k": Entry("v", *times)})
    assert store.client.exists(store.prefix + "k") == 0


def test_a_key_that_is_not_utf8_is_a_value_error_on_every_verb(store, clock):
    bad = "k\udc80"  # a lone surrogate
    calls = [
        lambda: store.get(bad),
        lambda: store.get_many(["ok", bad]),
        lambda: store.set(bad, entry("v", clock())),
        lambda: store.set_many({bad: entry("v", clock())}),
        lambda: store.delete(bad),
        lambda: store.acquire_lease(bad, 5),
        lambda: store.release_lease(bad, "t"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="UTF-8") as caught:
            call()
        assert not isinstance(caught.value, UnicodeError)
    assert store.available
    with pytest.raises(ValueError, match="UTF-8"):
        RedisStorage(store.client, prefix="p\udc80")


def test_a_cache_key_named_like_a_lease_never_touches_the_lease(clock, redis_server):
    store = RedisStorage.from_url(redis_server.url, clock=clock)  # the default empty prefix
    user = f"user{uuid.uuid4().hex[:6]}"
    token = store.acquire_lease(user, 30)
    assert token is not None
    for name in (f"lease:{{{user}}}", f"lease:{user}", "\xfflease:{" + user + "}"):
        assert store.get(name) is None  # an ordinary absent entry, not a corrupt one
        store.set(name, entry("v", clock()))
        assert store.get(name).value == "v"
        store.delete(name)
    assert store.stats()["corrupt_entries"] == 0
    assert store.acquire_lease(user, 30) is None  # the lease is still held
    store.release_lease(user, token)
    store.close()


def test_writing_a_dead_entry_removes_the_key(store, clock):
    store.set("k", entry("old", clock()))
    dead = Entry("new", clock() - 10, clock() - 9, clock() - 8, clock() - 1)
    store.set("k", dead)
    assert store.client.exists(store.prefix + "k") == 0
    assert store.get("k") is None
    store.set_many({"a": dead, "b": entry("b", clock())})
    assert store.client.exists(store.prefix + "a") == 0
    assert store.get("b").value == "b"


def test_keys_are_prefixed_and_values_are_msgpack(store, clock):
    value = {"name": "Ada", "pair": (1, 2)}
    store.set("user:1", entry(value, clock()))
    assert store.client.keys(store.prefix + "*") == [(store.prefix + "user:1").encode()]
    assert store.client.exists("user:1") == 0
    raw = store.client.get(store.prefix + "user:1")
    assert raw[:2] == b"SW"
    # After the 38-byte header and the "uncompressed" marker: plain msgpack, no pickle.
    assert raw[38] == 0
    assert msgpack.unpackb(raw[39:], ext_hook=_msgpack_ext_hook, strict_map_key=False) == value


def test_with_serializer_is_a_view_of_the_same_server(store, clock):
    as_json = store.with_serializer(JSONSerializer())
    as_json.set("j", entry({"a": [1, 2]}, clock()))
    raw = store.client.get(store.prefix + "j")
    assert raw.endswith(b'{"a":[1,2]}')
    assert as_json.get("j").value == {"a": [1, 2]}
    as_json.close()
    with pytest.raises(StorageUnavailableError):
        store.get("j")  # one backend: closing the view closed it


def test_corrupt_records_are_deleted_counted_and_logged(store, clock):
    store.client.set(store.prefix + "bad", b"not a record")
    store.client.set(store.prefix + "bad2", b"SW\x07" + b"\x00" * 40)
    store.set("good", entry("fine", clock()))
    with capture_logs() as logs:
        assert store.get("bad") is None
        assert [e.value if e else None for e in store.get_many(["bad2", "good"])] == [None, "fine"]
    assert store.client.exists(store.prefix + "bad", store.prefix + "bad2") == 0
    assert store.stats()["corrupt_entries"] == 2
    assert [log["event"] for log in logs] == ["corrupt_entry", "corrupt_entry"]
    assert "version 7" in logs[1]["error"]


def test_entries_past_expiry_by_the_storage_clock_read_as_none_in_batches(store, clock):
    store.set_many({"short": entry(1, clock(), 1, 5), "long": entry(2, clock(), 1, 500)})
    clock.advance(10)
    assert [e.value if e else None for e in store.get_many(["short", "long"])] == [None, 2]


# -- read cache ---------------------------------------------------------------------------


def test_reads_share_one_decoded_entry_until_the_stored_bytes_change(store, clock):
    store.set("k", entry({"n": 1}, clock()))
    first = store.get("k")
    assert store.get("k") is first
    assert store.get_many(["k"])[0] is first
    # Another writer (another host, say) replaces the record: seen at once.
    other = RedisStorage(store.client, prefix=store.prefix, clock=clock)
    other.set("k", entry({"n": 2}, clock()))
    second = store.get("k")
    assert second.value == {"n": 2}
    assert store.get_many(["k"])[0] is second
    clock.advance(60)  # dead: the kept entry is judged by the clock like any other
    assert store.get("k") is None
    assert store.get_many(["k"]) == [None]


def test_batches_decode_only_records_not_kept_and_map_corrupt_ones_back(store, clock):
    store.set_many({"a": entry("a", clock()), "c": entry("c", clock())})
    kept = store.get("a")
    store.client.set(store.prefix + "b", b"not a record")
    with capture_logs() as logs:
        got = store.get_many(["a", "b", "absent", "c"])
    assert got[0] is kept
    assert [e.value if e else None for e in got] == ["a", None, None, "c"]
    assert [log["key"] for log in logs if log["event"] == "corrupt_entry"] == [store.prefix + "b"]
    assert store.client.exists(store.prefix + "b") == 0
    assert store.get_many(["c"])[0] is got[3]


def test_read_cache_zero_decodes_every_read_and_the_cache_is_bounded(redis_server, clock):
    prefix = f"rc{uuid.uuid4().hex[:6]}:"
    with RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock, read_cache=0) as off:
        off.set("k", entry([1], clock()))
        assert off.get("k") is not off.get("k")
        assert off.get_many(["k"])[0] is not off.get_many(["k"])[0]
        assert len(off._cache) == 0
    with RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock, read_cache=3) as few:
        few.set_many({f"k{i}": entry(i, clock()) for i in range(10)})
        assert [e.value for e in few.get_many([f"k{i}" for i in range(10)])] == list(range(10))
        assert len(few._cache) == 3
        few.get("k0")
        assert len(few._cache) == 3


def test_a_full_read_cache_admits_a_key_on_its_second_decode(redis_server, clock):
    prefix = f"ad{uuid.uuid4().hex[:6]}:"
    with RedisStorage.from_url(redis_server.url, prefix=prefix, clock=clock, read_cache=4) as few:
        few.set_many({f"k{i}": entry(i, clock()) for i in range(20)})
        first = [few.get(f"k{i}") for i in range(4)]  # room: kept at once
        assert [few.get(f"k{i}") for i in range(4)] == first
        assert all(few.get(f"k{i}") is e for i, e in enumerate(first))
        # Full: a key decoded once stays out (no eviction), its second decode gets in.
        once = few.get("k10")
        assert once.value == 10
        assert few.get("k0") is first[0]
        again = few.get("k10")
        assert again is not once
        assert few.get("k10") is again
        assert len(few._cache) == 4
        # Batches follow the same rule.
        batch = few.get_many(["k11", "k12"])
        kept = few.get_many(["k11", "k12"])[0]
        assert kept is not batch[0]
        assert few.get_many(["k11"])[0] is kept
        assert len(few._cache) == 4
        # A key read in turn with more others than the window never displaces them.
        for i in range(13, 20):
            few.get(f"k{i}")
        assert few.get("k11") is kept


def test_a_batch_read_answers_each_key_as_get_does(redis_server, clock):
    prefix = f"bm{uuid.uuid4().hex[:6]}:"
    url = redis_server.url
    with (
        RedisStorage.from_url(url, prefix=prefix, clock=clock, read_cache=2) as store,
        RedisStorage.from_url(url, prefix=prefix, clock=clock, read_cache=0) as single,
    ):
        now = clock()
        written = {
            "plain": entry({"id": 1, "roles": ["a", "b"]}, now),
            "large": entry([f"item-{i}" for i in range(500)], now),  # compressed
            "forever": Entry("f", now, math.inf, math.inf, math.inf),
            "far": Entry("x", now, now + 10, now + 20, 1e20),
            "dying": entry("d", now, fresh=1, lifetime=2),
            "changed": entry("old", now),
        }
        store.set_many(written)
        assert store.client.get(prefix + "large")[38] == 1  # the zstd marker
        assert store.incr("counter", 5) == 5
        keys = [*written, "counter", "corrupt", "checked", "absent"]
        assert [e.value if e else None for e in store.get_many(keys)] == [
            {"id": 1, "roles": ["a", "b"]},
            [f"item-{i}" for i in range(500)],
            "f",
            "x",
            "d",
            "old",
            5,
            None,
            None,
            None,
        ]
        assert len(store._cache) == 2
        single.set("changed", entry("new", now))  # new bytes under a cached key
        store.client.set(prefix + "corrupt", b"SW\x01\x80" + bytes(40))  # an unknown flag
        # A key check (never written by Redis storages): the record of another key.
        foreign = RecordCodec(default_serializer()).encode(entry("c", now), key_check=b"k")
        store.client.set(prefix + "checked", foreign)
        clock.advance(3)  # "dying" is dead now
        with capture_logs() as logs:
            batches = [store.get_many(keys) for _ in range(2)]  # then partly from the cache
        for got in batches:
            assert got == [single.get(key) for key in keys]
            assert [e.value if e else None for e in got] == [
                {"id": 1, "roles": ["a", "b"]},
                [f"item-{i}" for i in range(500)],
                "f",
                "x",
                None,
                "new",
                5,
                None,
                None,
                None,
            ]
            assert got[2] == Entry("f", now, math.inf, math.inf, math.inf)
            assert got[3] == written["far"]
        assert [log["key"] for log in logs if log["event"] == "corrupt_entry"] == [
            prefix + "corrupt",
            prefix + "checked",
        ]
        assert store.stats()["corrupt_entries"] == 2
        assert store.client.exists(prefix + "checked") == 0
        assert store.client.exists(prefix + "corrupt") == 0
        # Without a read cache, the batch read answers as get too, and keeps nothing.
        store.client.set(prefix + "corrupt", b"SW\x01\x80" + bytes(40))
        batch = single.get_many(keys)
        assert batch[keys.index("corrupt")] is None
        assert single.stats()["corrupt_entries"] == 1
        assert batch == [single.get(key) for key in keys]
        assert batch[2] == Entry("f", now, math.inf, math.inf, math.inf)
        assert len(single._cache) == 0


async def test_the_async_storage_and_twins_keep_their_own_read_cache(store, clock):
    store.set("k", entry("v", clock()))
    twin = store.as_async()
    try:
        assert twin._cache.limit == store._cache.limit
        first = await twin.get("k")
        assert await twin.get("k") is first
        assert (await twin.get_many(["k"]))[0] is first
    finally:
        await twin.aclose()
    view = store.with_serializer(JSONSerializer())
    assert view._cache is not store._cache  # entries decoded by another serializer


class CountingConnection(redis.Connection):
    """A real connection that counts the request batches it sends (round trips)."""

    sent = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def test_batches_take_one_round_trip(redis_server, clock):
    pool = redis.ConnectionPool(
        host="127.0.0.1", port=redis_server.port, connection_class=CountingConnection
    )
    client = redis.Redis(connection_pool=pool)
    store = RedisStorage(client, prefix=f"rt{uuid.uuid4().hex[:6]}:", clock=clock)
    client.ping()
    entries = {f"k{i}": entry(i, clock()) for i in range(50)}
    CountingConnection.sent = 0
    store.set_many(entries)
    assert CountingConnection.sent == 1
    CountingConnection.sent = 0
    got = store.get_many([*entries, "absent"])
    assert CountingConnection.sent == 1
    assert [e.value if e else None for e in got] == [*range(50), None]
    store.close()
    client.ping()  # a client passed in is not closed by the storage
    client.close()


def test_lease_is_set_nx_px_and_survives_a_script_cache_flush(store):
    token = store.acquire_lease("k", 2.5)
    key = lease_key(store.prefix + "k")
    assert store.client.get(key) == token.encode()
    assert 2000 < store.client.pttl(key) <= 2500
    store.release_lease("k", "someone-else")
    assert store.client.exists(key) == 1
    store.client.script_flush()  # EVALSHA now fails with NOSCRIPT: EVAL takes over
    store.release_lease("k", token)
    assert store.client.exists(key) == 0
    with pytest.raises(ValueError, match="ttl"):
        store.acquire_lease("k", 0)


@pytest.mark.parametrize("key", ["user:1", "app:{user:1}:profile", "x{", "x{a", "café:ключ"])
def test_lease_key_hashes_to_the_entry_slot(key):
    assert key_slot(lease_key(key)) == key_slot(key.encode())
    assert lease_key(key).startswith(b"\xfflease:")


@pytest.mark.parametrize("key", ["a}b", "a{}b", "{}{a}"])
def test_a_key_with_a_stray_brace_and_no_tag_gets_a_plain_lease_key(key):
    # No hash tag can reproduce its slot; one key per lease command keeps it correct.
    assert lease_key(key) == b"\xfflease:" + key.encode()


def test_cluster_batches_span_nodes_and_leases_live_with_their_entries(redis_cluster, clock):
    store = RedisStorage.from_url(redis_cluster.url, cluster=True, prefix="c:", clock=clock)
    keys = [f"key-{i}" for i in range(40)]
    nodes = {store.client.get_node_from_key(store.prefix + key).name for key in keys}
    assert len(nodes) == 3  # the batch really crosses the three masters
    store.set_many({key: entry(key, clock()) for key in keys})
    got = store.get_many([*keys, "absent"])
    assert [e.value if e else None for e in got] == [*keys, None]
    token = store.acquire_lease("key-7", 5)
    lease_node = store.client.get_node_from_key(lease_key("c:key-7")).name
    assert lease_node == store.client.get_node_from_key("c:key-7").name
    assert store.acquire_lease("key-7", 5) is None
    store.release_lease("key-7", token)
    assert store.acquire_lease("key-7", 5) is not None
    store.close()


def test_default_timeouts_are_short_and_timeouts_are_not_retried(redis_server):
    store = RedisStorage.from_url(redis_server.url)
    settings = store.client.connection_pool.connection_kwargs
    assert settings["socket_timeout"] == 0.5
    assert settings["socket_connect_timeout"] == 0.5
    retry = settings["retry"]
    assert retry.get_retries() == 1
    assert redis.exceptions.TimeoutError not in retry._supported_errors
    store.close()


def test_tls_and_credentials_pass_through_to_redis_py():
    store = RedisStorage.from_url(
        "rediss://alice:secret@127.0.0.1:1/2", ssl_cert_reqs="none", prefix="p:"
    )
    pool = store.client.connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["username"] == "alice"
    assert pool.connection_kwargs["password"] == "secret"
    assert pool.connection_kwargs["db"] == 2
    assert "secret" not in repr(store)  # no credentials in logs or reprs
    twin = store.as_async()
    assert issubclass(twin.client.connection_pool.connection_class, redis.asyncio.SSLConnection)
    asyncio.run(twin.aclose())
    store.close()


def test_acl_user_and_password(redis_server):
    user, password = f"u{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
    # Leases live under keys starting with the byte 0xFF (see lease_key): allow them too.
    client = redis.Redis(port=redis_server.port)
    client.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[b"acl:*", b"\xfflease:*"],
        commands=["+@all"],
    )
    client.close()
    try:
        url = f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/0"
        store = RedisStorage.from_url(url, prefix="acl:")
        now = time.time()
        store.set("k", entry("v", now))
        assert store.get("k").value == "v"
        token = store.acquire_lease("k", 5)
        assert token is not None
        store.release_lease("k", token)
        store.close()
        wrong = RedisStorage.from_url(f"redis://{user}:nope@127.0.0.1:{redis_server.port}/0")
        with pytest.raises(StorageUnavailableError):
            wrong.get("k")
        wrong.close()
    finally:
        redis_server.cli("ACL", "DELUSER", user)


def test_a_command_redis_refuses_is_a_storage_error_without_going_down(store, clock):
    store.client.hset(store.prefix + "hash", "f", "v")  # wrong type for GET
    with pytest.raises(StorageError) as caught:
        store.get("hash")
    assert not isinstance(caught.value, StorageUnavailableError)
    assert store.available


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"socket_timeout": 0}, ValueError),
        ({"connect_timeout": float("inf")}, ValueError),
        ({"socket_timeout": "1"}, TypeError),
        ({"prefix": 3}, TypeError),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, ValueError),
        ({"read_cache": -1}, ValueError),
        ({"read_cache": 1.5}, TypeError),
    ],
)
def test_bad_settings_fail_in_the_constructor(kwargs, error):
    with pytest.raises(error):
        RedisStorage.from_url("redis://127.0.0.1:1/0", **kwargs)


def test_clients_of_the_wrong_kind_are_refused():
    with pytest.raises(TypeError, match="redis.Redis"):
        RedisStorage(object())
    with pytest.raises(TypeError, match="AsyncRedisStorage"):
        RedisStorage(redis.asyncio.Redis())
    with pytest.raises(TypeError, match="RedisStorage"):
        AsyncRedisStorage(redis.Redis())


def test_importing_storage_without_redis_works_and_using_redis_names_the_extra():
    script = """
import sys

class BlockRedis:
    def find_spec(self, name, path=None, target=None):
        if name == "redis" or name.startswith("redis."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, BlockRedis())
import swr.storage
from swr.storage import MemoryStorage, RedisStorage
MemoryStorage().close()
try:
    RedisStorage.from_url("redis://127.0.0.1:1/0")
except ImportError as exc:
    print("IMPORT-ERROR:", exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "IMPORT-ERROR: RedisStorage needs the redis package" in done.stdout
    assert 'pip install "swr[redis]"' in done.stdout


# -- health: dead, hung and returning servers -------------------------------------------


@pytest.mark.slow
def test_a_dead_redis_costs_one_failure_then_fails_fast_until_it_returns(own_redis, clock):
    store = RedisStorage.from_url(own_redis.url, clock=clock, backoff_initial=0.05, backoff_max=0.2)
    store.set("k", entry("v", clock()))
    own_redis.kill()
    with capture_logs() as logs:
        with pytest.raises(StorageUnavailableError):
            store.get("k")
        started = time.monotonic()
        for _ in range(200):
            with pytest.raises(StorageUnavailableError, match="unavailable"):
                store.get("k")
        assert time.monotonic() - started < 0.2  # no network: refused at once
    assert [log["event"] for log in logs] == ["redis_unavailable"]
    stats = store.stats()
    assert stats["unavailable_errors"] == 1
    assert stats["refused"] == 200
    assert stats["available"] == 0
    own_redis.start()
    wait_until(lambda: store.available, timeout=5)
    store.set("k", entry("back", clock()))
    assert store.get("k").value == "back"
    assert store.stats()["recoveries"] == 1
    store.close()


@pytest.mark.slow
def test_a_hung_redis_costs_one_socket_timeout(own_redis, clock):
    store = RedisStorage.from_url(
        own_redis.url, clock=clock, socket_timeout=0.2, backoff_initial=0.05, backoff_max=0.1
    )
    store.set("k", entry("v", clock()))
    own_redis.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            store.get("k")
        first = time.monotonic() - started
        for _ in range(100):
            with pytest.raises(StorageUnavailableError):
                store.set("k", entry("w", clock()))
        total = time.monotonic() - started
        assert 0.15 <= first < 0.6
        assert total < first + 0.2
    finally:
        own_redis.resume()
    wait_until(lambda: store.available, timeout=5)
    assert store.get("k").value == "v"
    store.close()


@pytest.mark.slow
def test_the_async_twin_fails_fast_and_its_probe_brings_it_back(own_redis, clock):
    async def scenario() -> None:
        store = AsyncRedisStorage.from_url(
            own_redis.url, clock=clock, backoff_initial=0.05, backoff_max=0.2
        )
        await store.set("k", entry("v", clock()))
        own_redis.kill()
        with pytest.raises(StorageUnavailableError):
            await store.get("k")
        started = time.monotonic()
        for _ in range(100):
            with pytest.raises(StorageUnavailableError):
                await store.get("k")
        assert time.monotonic() - started < 0.2
        own_redis.start()
        deadline = time.monotonic() + 5
        while not store.available:
            assert time.monotonic() < deadline, "the probe never brought the storage back"
            await asyncio.sleep(0.01)
        await store.set("k", entry("back", clock()))
        assert (await store.get("k")).value == "back"
        await store.aclose()
        await store.aclose()  # idempotent
        with pytest.raises(StorageUnavailableError, match="closed"):
            await store.get("k")

    asyncio.run(scenario())


def test_the_twin_of_a_storage_built_on_a_client_reaches_the_same_server(redis_server, clock):
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=0.3)
    store = RedisStorage(client, prefix=f"tw{uuid.uuid4().hex[:6]}:", clock=clock)
    store.set("k", entry("v", clock()))
    twin = store.as_async()
    assert twin.client.connection_pool.connection_kwargs["socket_timeout"] == 0.3

    async def read() -> object:
        got = await twin.get("k")
        await twin.aclose()
        return got.value

    assert asyncio.run(read()) == "v"
    store.close()
    client.close()


def test_the_twin_of_a_storage_built_on_a_cluster_client(redis_cluster, clock):
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    store = RedisStorage(client, prefix="twc:", clock=clock)
    store.set_many({f"k{i}": entry(i, clock()) for i in range(10)})
    twin = store.as_async()

    async def read() -> list[object]:
        got = await twin.get_many([f"k{i}" for i in range(10)])
        await twin.aclose()
        return [e.value for e in got]

    assert asyncio.run(read()) == list(range(10))
    store.close()
    client.close()


# -- credentials and driver messages ---------------------------------------------------

SECRET = "Sup3r@Secr3t:pw/Zq9"  # '@', ':' and '/': every character a URL parser trips on


def fragments(secret: str, size: int = 4) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


@pytest.mark.slow
def test_no_fragment_of_the_password_reaches_anything_swr_emits(own_redis, clock, caplog):
    """A scripted session with a known password: reprs, logs, errors and stats scanned."""
    from urllib.parse import quote

    from swr.storage import FallbackStorage, MemoryStorage, TieredStorage

    user = f"u{uuid.uuid4().hex[:6]}"
    own_redis.cli("ACL", "SETUSER", user, "on", f">{SECRET}", "~*", "+@all")
    # '@' and ':' raw (redis-py splits the userinfo on the last '@'), '/' percent-encoded
    url = f"redis://{user}:{quote(SECRET, safe='@:')}@127.0.0.1:{own_redis.port}/0"
    emitted: list[str] = []
    caplog.set_level("DEBUG")

    def seen(exc: BaseException) -> None:
        emitted.extend([str(exc), repr(exc)])

    with capture_logs() as logs:
        store = RedisStorage.from_url(url, prefix="s:", clock=clock, backoff_initial=0.05)
        assert store.client.connection_pool.connection_kwargs["password"] == SECRET
        safe = FallbackStorage(store, MemoryStorage(clock=clock), clock=clock)
        tiered = TieredStorage(MemoryStorage(clock=clock), store)
        safe.set("k", entry("v", clock()))
        assert tiered.get("k").value == "v"
        token = store.acquire_lease("k", 5)
        store.release_lease("k", token)
        wrong = RedisStorage.from_url(url.replace("Zq9", "Zq8"), clock=clock)
        with pytest.raises(StorageUnavailableError) as refused:
            wrong.get("k")
        seen(refused.value)
        twin = store.as_async()

        async def twin_session() -> None:
            await twin.set("a", entry("x", clock()))
            assert (await twin.get("a")).value == "x"
            emitted.append(repr(twin))
            await twin.aclose()

        asyncio.run(twin_session())
        own_redis.kill()
        with pytest.raises(StorageUnavailableError) as down:
            store.get("k")
        seen(down.value)
        with pytest.raises(StorageUnavailableError) as refused_fast:
            store.get("k")
        seen(refused_fast.value)
        assert safe.get("k").value == "v"  # served by the fallback
        emitted.extend(repr(s) for s in (store, wrong, safe, tiered))
        emitted.extend(str(s.stats()) for s in (store, wrong, safe, tiered))
        emitted.extend(str(s) for s in (store, safe))
        wrong.close()
        safe.close()
    ours = [record for record in caplog.records if record.name.split(".")[0] == "swr"]
    emitted.extend(repr(event) for event in logs)
    emitted.extend(record.getMessage() for record in ours)
    emitted.extend(repr(record.__dict__) for record in ours)
    assert any(event["event"] == "redis_unavailable" for event in logs)
    text = "\n".join(emitted)
    assert "127.0.0.1" in text  # where the server is, yes
    leaked = {piece for piece in fragments(SECRET) | {user} if piece in text}
    leaked |= {piece for piece in fragments(quote(SECRET, safe="")) if piece in text}
    assert not leaked, f"credential fragments emitted: {sorted(leaked)}"


def test_errors_carry_the_drivers_message_and_keep_it_as_cause(store):
    store.client.hset(store.prefix + "hash", "f", "v")  # wrong type for GET
    with pytest.raises(StorageError) as caught:
        store.get("hash")
    assert "WRONGTYPE" in str(caught.value)  # the server's own reason
    assert "ResponseError" in str(caught.value)
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
    dead = RedisStorage.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StorageUnavailableError) as refused:
        dead.get("k")
    assert "Connection refused" in str(refused.value)
    assert isinstance(refused.value.__cause__, redis.exceptions.ConnectionError)
    dead.close()


# -- set_and_release: one round trip for a MISS's write and its lease -------------------


def test_set_and_release_stores_and_releases_in_one_round_trip(redis_server, clock):
    pool = redis.ConnectionPool(
        host="127.0.0.1", port=redis_server.port, connection_class=CountingConnection
    )
    client = redis.Redis(connection_pool=pool)
    store = RedisStorage(client, prefix=f"sr{uuid.uuid4().hex[:6]}:", clock=clock)
    warm = store.acquire_lease("warm", 5)
    store.set_and_release("warm", entry("w", clock()), warm)  # loads the script once
    token = store.acquire_lease("k", 5)
    CountingConnection.sent = 0
    store.set_and_release("k", entry("v", clock(), lifetime=60), token)
    assert CountingConnection.sent == 1
    assert store.get("k").value == "v"
    assert 59_000 < client.pttl(store.prefix + "k") <= 60_000
    assert client.exists(lease_key(store.prefix + "k")) == 0
    assert store.acquire_lease("k", 5) is not None  # released: free to take
    store.close()
    client.close()


def test_set_and_release_keeps_a_lease_it_does_not_own_and_follows_set(store, clock):
    token = store.acquire_lease("k", 5)
    store.set_and_release("k", entry("v", clock()), "not-the-owner")
    assert store.get("k").value == "v"  # written, as set() would
    assert store.acquire_lease("k", 5) is None  # the owner's lease is kept
    now = clock()
    store.set_and_release("k", Entry("forever", now, now + 1, now + 2, math.inf), token)
    assert store.client.pttl(store.prefix + "k") == -1
    assert store.get("k").value == "forever"
    token = store.acquire_lease("k", 5)
    dead = Entry("dead", now - 10, now - 9, now - 8, now - 1)
    store.set_and_release("k", dead, token)
    assert store.client.exists(store.prefix + "k") == 0
    assert store.acquire_lease("k", 5) is not None
    with pytest.raises(ValueError, match="ordered"):
        store.set_and_release("k", Entry("v", now, now, now, math.nan), "t")


def test_the_async_twin_sets_and_releases_too(store, clock):
    async def scenario() -> None:
        twin = store.as_async()
        token = await twin.acquire_lease("a", 5)
        await twin.set_and_release("a", entry("v", clock()), token)
        assert (await twin.get("a")).value == "v"
        assert await twin.acquire_lease("a", 5) is not None
        await twin.aclose()

    asyncio.run(scenario())


def test_set_and_release_on_a_cluster_in_one_slot_or_two(redis_cluster, clock):
    store = RedisStorage.from_url(redis_cluster.url, cluster=True, prefix="sr:", clock=clock)
    for key in ("user:1", "a}b"):  # the second key's lease lives in another slot
        token = store.acquire_lease(key, 5)
        store.set_and_release(key, entry(key, clock()), token)
        assert store.get(key).value == key
        assert store.acquire_lease(key, 5) is not None
    store.close()


def test_a_cluster_with_no_node_answering_is_a_storage_error_at_start():
    with pytest.raises(StorageUnavailableError, match="cannot be reached") as caught:
        RedisStorage.from_url("redis://127.0.0.1:1/0", cluster=True, connect_timeout=0.1)
    assert isinstance(caught.value.__cause__, redis.exceptions.RedisClusterException)
    assert "Connection refused" in str(caught.value)
