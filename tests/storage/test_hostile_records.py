"""Hostile records written straight into a store: every reader reads a miss, never crashes.

A record is crafted byte by byte (a valid header and a hostile payload), written with raw
py-lmdb or a raw redis-py ``SET``, then read by LMDBStorage, RedisStorage and
AsyncRedisStorage in a child process: the child must exit 0, read every hostile key as a
miss, count and log it as corrupt and delete it, and its peak RSS must stay bounded.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest
import zstandard

from swr.storage import Entry, LMDBStorage, RedisStorage
from swr.storage._record import RecordCodec
from swr.storage.serializers import DEFAULT_MAX_DEPTH, DEFAULT_MAX_OBJECTS, default_serializer

MiB = 1 << 20
# The most a reader's peak RSS may grow while reading every hostile record. Before the
# bounds, one 2 KiB record of small ints took 512 MiB (and a 250-deep tuple crashed).
PEAK_GROWTH_MAX = 48 * MiB


class Passthrough:
    """Writes the given bytes as the payload, so a test can craft any record."""

    def dumps(self, value: Any) -> bytes:
        assert isinstance(value, bytes)
        return value

    def loads(self, data: bytes) -> Any:  # pragma: no cover - never read with it
        return data


def record(payload: bytes) -> bytes:
    """A well-formed version-1 record, alive for an hour, around ``payload``."""
    now = time.time()
    return RecordCodec(Passthrough()).encode(
        Entry(payload, now, now + 3600, now + 3600, now + 3600)
    )


def tuples(depth: int, around: bytes = b"\xc0") -> bytes:
    """A tuple nested ``depth`` deep, as a writer without bounds would pack it."""
    data = around
    for _ in range(depth):
        data = bytes(msgpack.packb(msgpack.ExtType(1, b"\x91" + data)))
    return data


def zstd_array(element: bytes, size: int, *, declared: bool = True) -> bytes:
    """A compressed msgpack array of ``element`` repeated to about ``size`` bytes."""
    count = (size - 5) // len(element)
    chunk = element * (MiB // len(element))
    compressor = zstandard.ZstdCompressor()
    stream = compressor.compressobj(size=5 + count * len(element) if declared else -1)
    parts = [stream.compress(b"\xdd" + struct.pack(">I", count))]
    left = count
    while left:
        n = min(left, len(chunk) // len(element))
        parts.append(stream.compress(chunk[: n * len(element)]))
        left -= n
    parts.append(stream.flush())
    return b"\x01" + b"".join(parts)


def raw_array(element: bytes, count: int) -> bytes:
    return b"\x00\xdd" + struct.pack(">I", count) + element * count


MAX_OBJECTS = DEFAULT_MAX_OBJECTS
# name -> the payload (compression marker + serializer bytes) of a hostile record.
HOSTILE: dict[str, Callable[[], bytes]] = {
    "tuple-250-deep": lambda: b"\x00" + tuples(250),
    "tuple-one-past-max-depth": lambda: b"\x00" + tuples(DEFAULT_MAX_DEPTH + 1),
    "lists-2000-deep": lambda: b"\x00" + b"\x91" * 2000 + b"\xc0",
    "zstd-64MiB-of-small-ints": lambda: zstd_array(b"\x00", 64 * MiB),
    "zstd-repeated-strings": lambda: zstd_array(b"\xa2ab", 64 * MiB),
    "zstd-empty-sets": lambda: zstd_array(b"\xd4\x02\x90", 64 * MiB),
    "zstd-hidden-size": lambda: zstd_array(b"\x00", 64 * MiB, declared=False),
    "raw-over-max-objects": lambda: raw_array(b"\x00", MAX_OBJECTS + 10),
    "raw-sets-over-max-objects": lambda: raw_array(b"\xd4\x02\x90", MAX_OBJECTS + 10),
    "array-header-over-max-objects": lambda: raw_array(b"", 2**32 - 1),
    "registered-name-never-imported": lambda: (
        b"\x00"
        + msgpack.packb(msgpack.ExtType(10, msgpack.packb(["collections.OrderedDict", [[1, 2]]])))
    ),
    "tuple-32-deep-around-1MiB": lambda: (
        b"\x00" + tuples(32, around=b"\xdb" + struct.pack(">I", MiB) + b"x" * MiB)
    ),
    "zstd-of-a-250-deep-tuple": lambda: b"\x01" + zstandard.ZstdCompressor().compress(tuples(250)),
}

# Runs in the child: reads a good key, then every hostile one, and prints a JSON report.
READER = r"""
import asyncio, json, resource, sys
from structlog.testing import capture_logs

args = json.loads(sys.argv[1])
keys, backend = args["keys"], args["backend"]

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

async def read_all(get, stats, exists):
    report = {"good": (await get("good")).value}
    base = peak()
    for key in keys:
        before = stats()["corrupt_entries"]
        first = await get(key)
        counted = stats()["corrupt_entries"]
        again = await get(key)  # deleted: read as absent, not counted again
        report[key] = {
            "miss": first is None and again is None,
            "counted": counted - before,
            "counted_again": stats()["corrupt_entries"] - counted,
            "gone": await exists(key) if exists else None,
        }
    report["peak_growth"] = peak() - base
    return report

def sync_store(store):
    async def get(key):
        return store.get(key)
    return get, store.close

async def main():
    exists = None
    if backend == "lmdb":
        from swr.storage import LMDBStorage
        store = LMDBStorage(args["path"], sweep_interval=None)
    else:
        import redis
        from swr.storage import AsyncRedisStorage, RedisStorage
        raw = redis.Redis.from_url(args["url"])
        async def exists(key):
            return not raw.exists(args["prefix"] + key)
        kind = AsyncRedisStorage if backend.startswith("redis-async") else RedisStorage
        store = kind.from_url(args["url"], prefix=args["prefix"])
    if backend == "redis-async":
        get, close = store.get, store.aclose
    elif backend == "redis-async-many":  # the batch read (MGET) of one key
        async def get(key):
            return (await store.get_many([key]))[0]
        close = store.aclose
    elif backend == "redis-many":
        async def get(key):
            return store.get_many([key])[0]
        close = store.close
    else:
        get, close = sync_store(store)
    try:
        return await read_all(get, store.stats, exists)
    finally:
        done = close()
        if done is not None:
            await done

with capture_logs() as logs:
    report = asyncio.run(main())
report["logged"] = sorted(e["key"] for e in logs if e["event"] == "corrupt_entry")
print(json.dumps(report))
"""


def run_reader(args: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", READER, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def payloads() -> dict[str, bytes]:
    return {name: build() for name, build in HOSTILE.items()}


def check(report: dict[str, Any], keys: list[str], prefix: str) -> None:
    assert report["good"] == {"fine": True}
    for key in keys:
        got = report[key]
        assert got["miss"], key
        assert (got["counted"], got["counted_again"]) == (1, 0), key
        if got["gone"] is not None:
            assert got["gone"], key
    assert report["logged"] == sorted(prefix + key for key in keys)
    assert report["peak_growth"] <= PEAK_GROWTH_MAX, report["peak_growth"]


def test_hostile_records_read_as_misses_on_lmdb(tmp_path: Path, payloads: dict[str, bytes]) -> None:
    path = tmp_path / "store"
    with LMDBStorage(path, sweep_interval=None) as store:
        now = time.time()
        store.set("good", Entry({"fine": True}, now, now + 3600, now + 3600, now + 3600))
    # Written as a foreign process would: raw py-lmdb into the entries database.
    env = lmdb.open(str(path), max_dbs=8, subdir=True, map_size=1 << 30)
    try:
        entries = env.open_db(b"swr-entries", create=False)
        with env.begin(write=True) as txn:
            for name, payload in payloads.items():
                txn.put(name.encode(), record(payload), db=entries)
    finally:
        env.close()
    keys = list(payloads)
    check(run_reader({"backend": "lmdb", "path": str(path), "keys": keys}), keys, "")


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["redis", "redis-async", "redis-many", "redis-async-many"])
def test_hostile_records_read_as_misses_on_redis(
    redis_server: Any, payloads: dict[str, bytes], backend: str
) -> None:
    prefix = f"hostile:{backend}:"
    store = RedisStorage.from_url(redis_server.url, prefix=prefix)
    try:
        now = time.time()
        store.set("good", Entry({"fine": True}, now, now + 3600, now + 3600, now + 3600))
        client = store.client
        for name, payload in payloads.items():
            client.set(prefix + name, record(payload))
    finally:
        store.close()
    keys = list(payloads)
    report = run_reader(
        {"backend": backend, "url": redis_server.url, "prefix": prefix, "keys": keys}
    )
    check(report, keys, prefix)


@pytest.fixture(params=["lmdb", pytest.param("redis", marks=pytest.mark.redis)])
def byte_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "lmdb":
        with LMDBStorage(tmp_path / "store", sweep_interval=None) as store:
            yield store
        return
    server = request.getfixturevalue("redis_server")
    with RedisStorage.from_url(server.url, prefix=f"cache-admission:{time.time()}:") as store:
        yield store


def test_the_read_cache_admits_by_decoded_size_not_record_size(byte_store: Any) -> None:
    now = time.time()
    # About 100 KB once serialized, a few KB compressed: a small record, a large value.
    large = [f"user:{i}" for i in range(10_000)]
    small = {"id": 1, "name": "ada"}
    for key, value in (("large", large), ("small", small)):
        byte_store.set(key, Entry(value, now, now + 3600, now + 3600, now + 3600))
    codec = RecordCodec(default_serializer())
    assert len(codec.encode(Entry(large, now, now, now, now))) < 64 * 1024
    assert byte_store.get("large").value == large
    assert byte_store.get("large") is not byte_store.get("large")  # decoded on every read
    assert byte_store.get("small") is byte_store.get("small")  # kept: decoded once
    assert byte_store.get_many(["large"])[0] is not byte_store.get_many(["large"])[0]
    assert byte_store.get_many(["small"])[0] is byte_store.get_many(["small"])[0]
