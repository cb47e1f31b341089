"""Atomic counters and leaderboards of swr's storages against the raw operations.

Run: python bench/kv_path.py   (needs the redis and bench extras and redis-server; it
starts its own server on a free loopback port and stops it by pid)

Prints ns per operation, measured in the same run (best of interleaved rounds):

- ``RedisStorage.incr`` against raw redis-py ``INCRBY`` (the same parser, its own
  client): a counter is a native Redis integer, so swr's incr is one ``INCRBY``; with
  a ``ttl`` it is a two-command script (``SET NX PX`` + ``INCRBY``), shown against the
  same script called bare through redis-py;
- ``LMDBStorage.incr`` against a raw LMDB read-modify-write transaction of an int64
  (``txn.get`` + ``txn.put`` in one write transaction, py-lmdb directly);
- leaderboards of 100,000 members: ``add`` of one member (a new score for an existing
  one), ``rank``, ``range(0, 100)`` on ``RedisStorage.leaderboard`` against raw ``ZADD``
  / ``ZRANK`` / ``ZRANGE 0 100 WITHSCORES``, and on ``MemoryStorage.leaderboard`` against
  a ``sortedcontainers.SortedList`` with a score dict used directly; and the same on
  ``LMDBStorage.leaderboard`` (no baseline: for information);
- plumego's published figures (Go, its README) beside them, for reference only.

The bench and its server run on one CPU, as in ``redis_path.py`` (SWR_BENCH_PIN=0 to
let them spread).
"""

from __future__ import annotations

import itertools
import os
import random
import struct
import tempfile
from pathlib import Path
from typing import Any

import lmdb
import redis
from _harness import Target, measure, report
from redis_path import pinned_cpu, redis_server
from sortedcontainers import SortedList

from swr.storage import LMDBStorage, MemoryStorage, RedisStorage
from swr.storage._redis import _INCR_TTL_SCRIPT

MEMBERS = 100_000
RANGE_STOP = 100  # range(0, 100): 101 members, stop inclusive as in Redis
_I64 = struct.Struct("<q")

PLUMEGO = {  # Go, Intel Core i7 (plumego's README): ns per operation
    "Incr": 142,
    "ZAdd": 231,
    "ZRank": 412,
    "ZRange (100)": 8_100,
}


def names() -> list[str]:
    return [f"player:{i:06d}" for i in range(MEMBERS)]


def counter_cases(url: str, path: Path, closers: list[Any]) -> dict[str, Any]:
    store = RedisStorage.from_url(url, prefix="bench:")
    raw = redis.Redis.from_url(url)
    lmdb_store = LMDBStorage(path / "swr", sweep_interval=None)
    # As LMDBStorage's default durability ("process"): no flush per commit.
    env = lmdb.open(str(path / "raw"), map_size=1 << 26, sync=False, metasync=False)
    closers += [store.close, raw.close, lmdb_store.close, env.close]

    def swr_redis(n: int) -> None:
        incr = store.incr
        for _ in range(n):
            incr("counter")

    def raw_redis(n: int) -> None:
        incrby = raw.incrby
        for _ in range(n):
            incrby("raw-counter", 1)

    def swr_redis_ttl(n: int) -> None:
        incr = store.incr
        for _ in range(n):
            incr("ttl-counter", 1, 3600)

    script = raw.register_script(_INCR_TTL_SCRIPT)  # the same script, called bare

    def raw_script(n: int) -> None:
        for _ in range(n):
            script(keys=["bench:script-counter"], args=[1, 3_600_000])

    def swr_lmdb(n: int) -> None:
        incr = lmdb_store.incr
        for _ in range(n):
            incr("counter")

    def raw_lmdb(n: int) -> None:
        begin, pack, unpack = env.begin, _I64.pack, _I64.unpack
        for _ in range(n):
            with begin(write=True) as txn:
                old = txn.get(b"counter")
                txn.put(b"counter", pack((unpack(old)[0] if old is not None else 0) + 1))

    return {
        "RedisStorage.incr": swr_redis,
        "raw INCRBY": raw_redis,
        "RedisStorage.incr(ttl=3600)": swr_redis_ttl,
        "raw EVALSHA of the ttl script": raw_script,
        "LMDBStorage.incr": swr_lmdb,
        "raw LMDB get+put txn": raw_lmdb,
    }


def redis_board_cases(url: str, closers: list[Any]) -> dict[str, Any]:
    store = RedisStorage.from_url(url, prefix="bench:")
    raw = redis.Redis.from_url(url)
    closers += [store.close, raw.close]
    board = store.leaderboard("scores")
    members = names()
    rng = random.Random(7)
    initial = {m: float(rng.randrange(1_000_000)) for m in members}
    board.add(initial)
    pairs = list(initial.items())
    for at in range(0, len(pairs), 1000):
        raw.zadd("raw-scores", dict(pairs[at : at + 1000]))
    picks = [rng.choice(members) for _ in range(4096)]
    scores = [float(rng.randrange(1_000_000)) for _ in range(4096)]

    def swr_add(n: int) -> None:
        add = board.add
        for i in range(n):
            add({picks[i & 4095]: scores[i & 4095]})

    def raw_add(n: int) -> None:
        zadd = raw.zadd
        for i in range(n):
            zadd("raw-scores", {picks[i & 4095]: scores[i & 4095]})

    def swr_rank(n: int) -> None:
        rank = board.rank
        for i in range(n):
            rank(picks[i & 4095], desc=True)

    def raw_rank(n: int) -> None:
        zrevrank = raw.zrevrank
        for i in range(n):
            zrevrank("raw-scores", picks[i & 4095])

    def swr_range(n: int) -> None:
        for _ in range(n):
            board.range(0, RANGE_STOP, desc=True)

    def raw_range(n: int) -> None:
        for _ in range(n):
            raw.zrange("raw-scores", 0, RANGE_STOP, desc=True, withscores=True)

    return {
        "redis board.add (1 member)": swr_add,
        "raw ZADD": raw_add,
        "redis board.rank": swr_rank,
        "raw ZREVRANK": raw_rank,
        "redis board.range(0, 100)": swr_range,
        "raw ZRANGE 0 100 WITHSCORES": raw_range,
    }


def lmdb_board_cases(path: Path, closers: list[Any]) -> dict[str, Any]:
    store = LMDBStorage(path / "boards", sweep_interval=None)
    closers.append(store.close)
    board = store.leaderboard("scores")
    members = names()
    rng = random.Random(7)
    board.add({m: float(rng.randrange(1_000_000)) for m in members})
    picks = [rng.choice(members) for _ in range(4096)]
    fresh = itertools.count(2_000_000)

    def add(n: int) -> None:
        for i in range(n):
            board.add({picks[i & 4095]: float(next(fresh))})

    def rank(n: int) -> None:
        for i in range(n):
            board.rank(picks[i & 4095], desc=True)

    def top(n: int) -> None:
        for _ in range(n):
            board.range(0, RANGE_STOP, desc=True)

    return {
        "lmdb board.add (1 member)": add,
        "lmdb board.rank (walks, see docs)": rank,
        "lmdb board.range(0, 100)": top,
    }


def memory_board_cases() -> dict[str, Any]:
    board = MemoryStorage().leaderboard("scores")
    members = names()
    rng = random.Random(7)
    initial = {m: float(rng.randrange(1_000_000)) for m in members}
    board.add(initial)
    order = SortedList((s, m) for m, s in initial.items())
    table = dict(initial)
    picks = [rng.choice(members) for _ in range(4096)]
    # Every add is a new score (an unchanged score costs nothing in either).
    fresh = itertools.count(2_000_000)

    def swr_add(n: int) -> None:
        add = board.add
        for i in range(n):
            add({picks[i & 4095]: float(next(fresh))})

    def raw_add(n: int) -> None:
        for i in range(n):
            member, score = picks[i & 4095], float(next(fresh))
            old = table.get(member)
            if old is not None:
                order.remove((old, member))
            table[member] = score
            order.add((score, member))

    def swr_rank(n: int) -> None:
        rank = board.rank
        for i in range(n):
            rank(picks[i & 4095], desc=True)

    def raw_rank(n: int) -> None:
        size = len(order)
        for i in range(n):
            member = picks[i & 4095]
            size - 1 - order.index((table[member], member))

    def swr_range(n: int) -> None:
        for _ in range(n):
            board.range(0, RANGE_STOP, desc=True)

    def raw_range(n: int) -> None:
        size = len(order)
        for _ in range(n):
            picked = order[size - 1 - RANGE_STOP : size]
            picked.reverse()
            [(m, s) for s, m in picked]

    return {
        "memory board.add (1 member)": swr_add,
        "SortedList add": raw_add,
        "memory board.rank": swr_rank,
        "SortedList rank": raw_rank,
        "memory board.range(0, 100)": swr_range,
        "SortedList range": raw_range,
    }


def main() -> int:
    n = int(os.environ.get("SWR_BENCH_N", "400"))
    rounds = int(os.environ.get("SWR_BENCH_ROUNDS", "15"))
    closers: list[Any] = []
    cpu = pinned_cpu()
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # the server started below inherits it
        print(f"bench and redis-server pinned to CPU {cpu} (SWR_BENCH_PIN=0 to spread)")
    with redis_server() as url, tempfile.TemporaryDirectory(prefix="swr-bench-kv-") as tmp:
        try:
            results = measure(counter_cases(url, Path(tmp), closers), n, rounds=rounds)
            boards = redis_board_cases(url, closers)
            ranges = {k: v for k, v in boards.items() if "range" in k.lower()}
            results.update(measure({k: v for k, v in boards.items() if k not in ranges}, n, rounds))
            results.update(measure(ranges, max(n // 10, 10), rounds))
            results.update(measure(memory_board_cases(), n, rounds=rounds))
            lmdb_boards = lmdb_board_cases(Path(tmp), closers)
            results.update(measure(lmdb_boards, max(n // 10, 10), rounds=max(rounds // 3, 3)))
        finally:
            for close in closers:
                close()
    targets = [
        Target("incr / raw INCRBY", "RedisStorage.incr", "raw INCRBY", 1.15),
        Target(
            "incr(ttl) / raw EVALSHA",
            "RedisStorage.incr(ttl=3600)",
            "raw EVALSHA of the ttl script",
            1.15,
        ),
        Target("LMDB incr / raw get+put txn", "LMDBStorage.incr", "raw LMDB get+put txn", 1.5),
        Target("redis add / ZADD", "redis board.add (1 member)", "raw ZADD", 1.2),
        Target("redis rank / ZREVRANK", "redis board.rank", "raw ZREVRANK", 1.2),
        Target(
            "redis range / ZRANGE",
            "redis board.range(0, 100)",
            "raw ZRANGE 0 100 WITHSCORES",
            1.2,
        ),
        Target("memory add / SortedList", "memory board.add (1 member)", "SortedList add", 2.0),
        Target("memory rank / SortedList", "memory board.rank", "SortedList rank", 2.0),
        Target("memory range / SortedList", "memory board.range(0, 100)", "SortedList range", 2.0),
    ]
    met = report(f"Counters and leaderboards ({MEMBERS:,} members)", results, targets)
    print("\nplumego (Go, its README, another machine; for reference only):")
    for name, ns in PLUMEGO.items():
        print(f"  {name:<14} {ns:>8,} ns/op")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
