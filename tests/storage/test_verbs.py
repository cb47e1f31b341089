"""Bulk verbs and tags shared across processes and hosts (issue 15).

LMDB: tags invalidated by another process; Redis and Redis Cluster: by another client;
TieredStorage: another host's L1 drops what was invalidated, announced over pub/sub.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from structlog.testing import capture_logs

from swr.storage import (
    AsyncRedisStorage,
    AsyncTieredStorage,
    Entry,
    LMDBStorage,
    MemoryStorage,
    RedisStorage,
    TieredStorage,
)
from swr.storage._redis import tag_key
from swr.storage._tiered import invalidation_notice, read_notice

SPAWN = multiprocessing.get_context("spawn")


def entry(value: object, lifetime: float = 600) -> Entry:
    now = time.time()
    return Entry(value, now, now + lifetime / 3, now + lifetime / 2, now + lifetime)


def tag_and_report(path: str, keys: list[str], tag: str, done: Any) -> None:
    """Worker: record ``keys`` under ``tag`` in the store at ``path``."""
    with LMDBStorage(path, sweep_interval=None) as store:
        for key in keys:
            store.set_tagged(key, entry(key), [tag])
    done.put(len(keys))


def invalidate_and_report(path: str, tags: list[str], done: Any) -> None:
    """Worker: invalidate ``tags`` in the store at ``path``; report the count."""
    with LMDBStorage(path, sweep_interval=None) as store:
        done.put(store.invalidate_tags(tags))


def run(target: Callable[..., None], *args: Any) -> Any:
    results = SPAWN.Queue()
    process = SPAWN.Process(target=target, args=(*args, results))
    process.start()
    process.join(60)
    assert process.exitcode == 0, f"{target.__name__} exited with {process.exitcode}"
    return results.get(timeout=5)


# -- LMDB: two processes --------------------------------------------------------------


@pytest.mark.slow
def test_lmdb_tags_written_here_are_invalidated_by_another_process(tmp_path):
    path = str(tmp_path / "cache")
    with LMDBStorage(path, sweep_interval=None) as store:
        store.set_tagged("user:1", entry("ada"), ["user:1", "org:7"])
        store.set_tagged("user:2", entry("bob"), ["org:7"])
        store.set("plain", entry("kept"))
        assert store.get("user:1").value == "ada"  # in this process's read cache too
        assert run(invalidate_and_report, path, ["org:7"]) == 2
        assert store.get("user:1") is None
        assert store.get("user:2") is None
        assert store.get("plain").value == "kept"
        assert store.invalidate_tags(["user:1"]) == 0  # its rows went with the entry's tag


@pytest.mark.slow
def test_lmdb_tags_written_by_another_process_are_invalidated_here(tmp_path):
    path = str(tmp_path / "cache")
    keys = [f"item:{i}" for i in range(300)]
    with LMDBStorage(path, sweep_interval=None) as store:
        assert run(tag_and_report, path, keys, "batch") == 300
        assert store.get("item:7").value == "item:7"
        assert store.invalidate_tags(["batch"]) == 300
        assert store.get_many(keys) == [None] * 300


def test_lmdb_store_without_a_tag_database_gains_one(tmp_path):
    # A store written before tags existed has no swr-tags database: opening it adds one.
    path = tmp_path / "cache"
    with LMDBStorage(path, sweep_interval=None) as store:
        store.set("old", entry("v"))
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"swr-tags", txn=txn, dupsort=True), delete=True)
    env.close()
    with LMDBStorage(path, sweep_interval=None) as store:
        assert store.get("old").value == "v"
        store.set_tagged("new", entry("w"), ["t"])
        assert store.invalidate_tags(["t"]) == 1


def test_lmdb_touch_keeps_the_payload_bytes_and_moves_the_expiry_index(tmp_path):
    with LMDBStorage(tmp_path / "c", sweep_interval=None) as store:
        store.set("k", entry({"a": 1}, lifetime=10))
        backend = store._h.backend
        with backend.env.begin() as txn:
            before = bytes(txn.get(b"k", db=backend.entries))
        now = time.time()
        assert store.touch("k", (now, now + 1000, now + 2000, now + 3000))
        with backend.env.begin() as txn:
            after = bytes(txn.get(b"k", db=backend.entries))
            index = [bytes(k) for k, _ in txn.cursor(db=backend.expiry)]
        assert after[36:] == before[36:]  # key check and payload untouched
        assert after[:4] == before[:4]
        assert len([k for k in index if k.endswith(b"k")]) == 1  # the old index row went
        assert store.sweep() == 0  # the sweep judges by the new expires_at


def test_lmdb_tags_are_checked(tmp_path):
    with LMDBStorage(tmp_path / "c", sweep_interval=None) as store:
        with pytest.raises(ValueError, match="longer than"):
            store.set_tagged("k", entry("v"), ["t" * 600])
        with pytest.raises(TypeError, match="prefix must be a str"):
            list(store.scan(b"x"))  # type: ignore[arg-type]


# -- Redis and Redis Cluster: two clients ------------------------------------------------


@pytest.fixture(params=[False, True], ids=["redis", "redis-cluster"])
def two_clients(request: pytest.FixtureRequest) -> Iterator[tuple[RedisStorage, RedisStorage]]:
    cluster = request.param
    server = request.getfixturevalue("redis_cluster" if cluster else "redis_server")
    prefix = f"v{uuid.uuid4().hex[:8]}:"
    one = RedisStorage.from_url(server.url, prefix=prefix, cluster=cluster)
    two = RedisStorage.from_url(server.url, prefix=prefix, cluster=cluster)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


@pytest.mark.redis
def test_redis_tags_written_by_one_client_are_invalidated_by_another(two_clients):
    one, two = two_clients
    keys = [f"user:{i}" for i in range(50)]
    for key in keys:
        one.set_tagged(key, entry(key), ["org:{7}", "all"])  # braces in a tag are fine
    one.set("plain", entry("kept"))
    assert two.get("user:3").value == "user:3"
    assert two.invalidate_tags(["org:{7}"]) == 50
    assert one.get_many(keys) == [None] * 50
    assert one.get("plain").value == "kept"
    assert one.invalidate_tags(["all"]) == 0  # entries gone; the set is emptied too
    assert not one.client.exists(tag_key(one.prefix, "all"))


@pytest.mark.redis
def test_redis_tag_sets_live_as_long_as_their_longest_entry(two_clients):
    one, _ = two_clients
    one.set_tagged("short", entry("s", lifetime=30), ["t"])
    one.set_tagged("long", entry("l", lifetime=3000), ["t"])
    one.set_tagged("shorter", entry("s", lifetime=10), ["t"])  # never shortens the set
    ttl = one.client.pttl(tag_key(one.prefix, "t"))
    assert 2_990_000 < ttl <= 3_000_000
    forever = Entry("f", time.time(), float("inf"), float("inf"), float("inf"))
    one.set_tagged("forever", forever, ["t"])
    assert one.client.pttl(tag_key(one.prefix, "t")) == -1  # as long as its entries


@pytest.mark.redis
def test_redis_clear_scans_and_keeps_other_prefixes(two_clients):
    one, two = two_clients
    other = RedisStorage.from_url(one._twin_options["url"], prefix="other:", cluster=one._cluster)
    try:
        other.set("x", entry("other"))
        for i in range(1200):
            one.set(f"k{i}", entry(i))
        one.set_tagged("tagged", entry("t"), ["t"])
        two.clear()
        assert list(one.scan()) == []
        assert not one.client.exists(tag_key(one.prefix, "t"))
        assert other.get("x").value == "other"
    finally:
        other.delete("x")
        other.close()


@pytest.mark.redis
def test_redis_touch_rewrites_no_payload(redis_server):
    with RedisStorage.from_url(redis_server.url, prefix=f"t{uuid.uuid4().hex[:6]}:") as store:
        store.set("k", entry("x" * 10_000, lifetime=10))
        skey = store.prefix + "k"
        before = store.client.get(skey)
        now = time.time()
        assert store.touch("k", (now, now + 100, now + 200, now + 300))
        after = store.client.get(skey)
        assert after[36:] == before[36:]
        assert 299_000 < store.client.pttl(skey) <= 300_000


# -- TieredStorage: invalidation reaches other hosts' L1 -------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Poll ``condition``; return the seconds it took (fails past ``timeout``)."""
    start = time.perf_counter()
    while not condition():
        assert time.perf_counter() - start < timeout, "condition not met in time"
        time.sleep(0.001)
    return time.perf_counter() - start


@pytest.fixture
def two_hosts(redis_server) -> Iterator[tuple[TieredStorage, TieredStorage]]:
    prefix = f"h{uuid.uuid4().hex[:8]}:"
    channel = f"inval-{prefix}"
    hosts = [
        TieredStorage(
            MemoryStorage(max_entries=1000),
            RedisStorage.from_url(redis_server.url, prefix=prefix),
            channel=channel,
        )
        for _ in range(2)
    ]
    try:
        for host in hosts:
            host.get("warm-up")  # starts the listener
            wait_until(lambda host=host: host.listening)
        yield hosts[0], hosts[1]
    finally:
        for host in hosts:
            host.close()


@pytest.mark.redis
@pytest.mark.parametrize("how", ["delete", "delete_many", "invalidate_tags", "touch", "clear"])
def test_an_invalidation_on_one_host_empties_the_other_hosts_l1(two_hosts, how):
    a, b = two_hosts
    a.set_tagged("user:1", entry("old"), ["user:1"])
    a.set("user:2", entry("other"))
    assert b.get("user:1").value == "old"  # now in b's L1
    assert b.get("user:2").value == "other"
    assert b.l1.get("user:1") is not None
    now = time.time()
    if how == "delete":
        a.delete("user:1")
    elif how == "delete_many":
        a.delete_many(["user:1"])
    elif how == "invalidate_tags":
        assert a.invalidate_tags(["user:1"]) == 1
    elif how == "touch":
        a.touch("user:1", (now, now + 5, now + 10, now + 20))
    else:
        a.clear()
    took = wait_until(lambda: b.l1.get("user:1") is None, timeout=2.0)
    assert took < 2.0
    if how != "clear":
        assert b.l1.get("user:2") is not None  # only the announced keys leave L1
    assert b.stats()["l1_dropped_by_others"] >= (0 if how == "clear" else 1)


@pytest.mark.redis
def test_a_lost_feed_clears_l1_and_the_listener_resubscribes(two_hosts, redis_server):
    a, b = two_hosts
    a.set("k", entry("v"))
    assert b.get("k").value == "v"
    with capture_logs() as logs:
        redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
        wait_until(lambda: b.l1.get("k") is None)
        wait_until(lambda: b.listening and a.listening)
    assert any(log["event"] == "invalidation_feed_lost" for log in logs)
    assert b.get("k").value == "v"  # read again through L2
    a.delete("k")
    wait_until(lambda: b.l1.get("k") is None)


@pytest.mark.redis
async def test_async_tiered_hosts_share_invalidations(redis_server):
    prefix = f"h{uuid.uuid4().hex[:8]}:"
    channel = f"inval-{prefix}"
    hosts = [
        AsyncTieredStorage(
            MemoryStorage(max_entries=100).as_async(),
            AsyncRedisStorage.from_url(redis_server.url, prefix=prefix),
            channel=channel,
        )
        for _ in range(2)
    ]
    a, b = hosts
    try:
        for host in hosts:
            await host.get("warm-up")
        for _ in range(500):
            if a.listening and b.listening:
                break
            await asyncio.sleep(0.01)
        await a.set_tagged("k", entry("v"), ["t"])
        assert (await b.get("k")).value == "v"
        assert await a.invalidate_tags(["t"]) == 1
        for _ in range(500):
            if await b.l1.get("k") is None:
                break
            await asyncio.sleep(0.002)
        assert await b.l1.get("k") is None
        assert await b.get("k") is None
    finally:
        for host in hosts:
            await host.aclose()


def test_notices_round_trip_and_skip_our_own():
    assert read_notice("me", invalidation_notice("other", ["a", "b"])) == ["a", "b"]
    assert read_notice("me", invalidation_notice("other", None)) is None
    assert read_notice("me", invalidation_notice("me", ["a"])) == []
    with capture_logs() as logs:
        assert read_notice("me", b"not json") == []
    assert logs[0]["event"] == "invalidation_unreadable"


def test_a_channel_needs_a_standalone_redis_l2(tmp_path: Path):
    with LMDBStorage(tmp_path / "c", sweep_interval=None) as l2:
        with pytest.raises(TypeError, match="standalone Redis"):
            TieredStorage(MemoryStorage(), l2, channel="c")
