"""``invalidate_tags`` of one tag on 10,000 entries, on LMDB and on Redis.

Run: python bench/invalidate_path.py   (needs the redis and test extras and
redis-server; it starts its own server on a free loopback port and stops it by pid)

Prints, in one run:

- LMDB: ``invalidate_tags(["bulk"])`` over 10,000 tagged entries (one write
  transaction) against the baseline of the same 10,000 keys removed by ``delete`` one
  at a time, and against ``delete_many`` of the keys (one transaction, no index).
- Redis: the same, with the Redis round trips of each, counted by wrapping the storage's
  ``execute_command`` (each call is one request and its reply): ``invalidate_tags``
  takes one round trip per batch of 1000 keys (a Lua script: ``SPOP`` then ``UNLINK``).
- Invalidation across hosts: two ``TieredStorage(MemoryStorage, RedisStorage,
  channel=...)`` over the same server; one deletes a key the other holds in its L1, and
  the time until the other's L1 no longer has it (median, p99 and max over 300 trials).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from swr.storage import Entry, LMDBStorage, MemoryStorage, RedisStorage, TieredStorage
from tests.redis_support import RedisServer

N = 10_000
TAG = "bulk"


def entry(value: object) -> Entry:
    now = time.time()
    return Entry(value, now, now + 600, now + 1200, now + 3600)


def keys() -> list[str]:
    return [f"item:{i}" for i in range(N)]


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def fill(store: Any, tagged: bool) -> None:
    if tagged:
        for key in keys():
            store.set_tagged(key, entry(key), [TAG])
    else:
        store.set_many({key: entry(key) for key in keys()})


def one_by_one(store: Any) -> int:
    return sum(store.delete(key) for key in keys())


def lmdb_case(directory: Path) -> None:
    print(f"LMDB, {N:,} entries (durability='process'):")
    with LMDBStorage(directory / "lmdb", max_bytes=256 << 20, sweep_interval=None) as store:
        fill(store, tagged=False)
        base, removed = timed(lambda: one_by_one(store))
        assert removed == N
        fill(store, tagged=False)
        many, removed = timed(lambda: store.delete_many(keys()))
        assert removed == N
        fill(store, tagged=True)
        tags, removed = timed(lambda: store.invalidate_tags([TAG]))
        assert removed == N, removed
        assert store.get("item:7") is None
    print(f"  {N:,} x delete (baseline)  {base * 1e3:9.1f} ms")
    print(f"  delete_many               {many * 1e3:9.1f} ms  {base / many:6.1f}x faster")
    print(f"  invalidate_tags           {tags * 1e3:9.1f} ms  {base / tags:6.1f}x faster")


class Counting:
    """Counts the requests a storage sends (each one request, one reply: a round trip)."""

    def __init__(self, store: RedisStorage) -> None:
        self.calls = 0
        inner = store._command

        def command(*args: Any, **options: Any) -> Any:
            self.calls += 1
            return inner(*args, **options)

        store._command = command

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


def redis_case(url: str) -> None:
    print(f"Redis, {N:,} entries (one local redis-server):")
    with RedisStorage.from_url(url, prefix=f"b{uuid.uuid4().hex[:6]}:") as store:
        counter = Counting(store)
        fill(store, tagged=False)
        counter.take()
        base, removed = timed(lambda: one_by_one(store))
        base_trips = counter.take()
        assert removed == N
        fill(store, tagged=False)
        counter.take()
        many, removed = timed(lambda: store.delete_many(keys()))
        many_trips = counter.take()
        assert removed == N
        store.invalidate_tags(["warm-up"])  # loads the script (NOSCRIPT, then EVAL) once
        fill(store, tagged=True)
        counter.take()
        tags, removed = timed(lambda: store.invalidate_tags([TAG]))
        tag_trips = counter.take()
        assert removed == N, removed
        assert store.get("item:7") is None
    batches = -(-N // 1000)
    print(f"  {N:,} x delete (baseline)  {base * 1e3:9.1f} ms  {base_trips:6} round trips")
    print(
        f"  delete_many               {many * 1e3:9.1f} ms  {many_trips:6} round trips"
        f"  {base / many:6.1f}x faster"
    )
    print(
        f"  invalidate_tags           {tags * 1e3:9.1f} ms  {tag_trips:6} round trips"
        f"  {base / tags:6.1f}x faster  ({tag_trips / batches:.2f} round trips per batch"
        f" of 1000 keys)"
    )


def across_hosts(url: str, trials: int = 300) -> None:
    prefix = f"h{uuid.uuid4().hex[:6]}:"
    hosts = [
        TieredStorage(
            MemoryStorage(max_entries=1000),
            RedisStorage.from_url(url, prefix=prefix),
            channel=f"inval-{prefix}",
        )
        for _ in range(2)
    ]
    a, b = hosts
    try:
        for host in hosts:
            host.get("warm-up")
        while not (a.listening and b.listening):
            time.sleep(0.01)
        delays = []
        for i in range(trials):
            key = f"k{i}"
            a.set(key, entry(i))
            assert b.get(key) is not None  # in b's L1 now
            start = time.perf_counter()
            a.delete(key)
            while b.l1.get(key) is not None:
                pass
            delays.append(time.perf_counter() - start)
    finally:
        for host in hosts:
            host.close()
    delays.sort()
    print(f"Invalidation across hosts (TieredStorage L1 over Redis pub/sub), {trials} trials:")
    print(
        "  delete on host A until host B's L1 misses: "
        f"median {statistics.median(delays) * 1e3:.2f} ms, "
        f"p99 {delays[int(len(delays) * 0.99) - 1] * 1e3:.2f} ms, "
        f"max {delays[-1] * 1e3:.2f} ms"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lmdb_case(Path(tmp))
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            redis_case(server.url)
            across_hosts(server.url)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
