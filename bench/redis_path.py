"""The Redis read path of swr against raw redis-py and the Redis caches Python uses today.

Run: python bench/redis_path.py   (needs the redis and bench extras and redis-server;
it starts its own server on a free loopback port and stops it by pid)

Prints ns per operation, measured in the same run, with redis-py's hiredis parser and
with its pure-Python parser (chosen per client with ``parser_class``):

- StaleEngine.execute HIT on RedisStorage, and the limit: raw ``GET`` +
  ``msgpack.unpackb`` with the same client; dogpile.cache's redis ``get_or_create`` hit
- AsyncStaleEngine.execute HIT on AsyncRedisStorage, its limit (raw asyncio ``GET`` +
  ``unpackb``, same client) and cashews' redis ``@cache`` hit (cashews is asyncio-only)
- RedisStorage.get_many of 100 keys against raw ``MGET`` + ``unpackb`` of each value (the
  limit: a cache must decode what it returns), and raw ``MGET`` alone for reference.
  The storage keeps decoded entries and reuses one only for the very bytes it came from,
  so unchanged records are not decoded again; for information, the same batch with
  ``read_cache=0``, decoding every record
- StaleEngine.execute HIT through TieredStorage answered by L1 (memory)
- working sets: 100,000 keys (``SWR_BENCH_KEYS``, about 100x the 1,024-entry read cache)
  of a ~200-byte user record and 100,000 of a ~4 KiB JSON-like document (compressed by
  the default serializer: it crosses the 1 KiB zstd threshold), each read as one hot
  key, in Zipf order (s = 1.0, ranks shuffled over the keys) and in uniform order, by
  StaleEngine.execute and AsyncStaleEngine.execute against raw ``GET`` + the decode a
  careful user writes (``msgpack.unpackb``; for the document, bounded
  ``zstandard`` decompression then ``unpackb``, the raw copy being compressed at the
  same level); and ``get_many`` of 100 keys drawn uniformly against ``MGET`` + decode
  (for the records also, for information, against ``MGET`` of copies stored with an
  expiry, which Redis looks up on every read as it does for the keys of RedisStorage).
  The swr and raw cases of one order read the same key sequence, every round a new
  stretch of it, so a uniform read almost never finds its key in the read cache.

The bench and its server run on one CPU (set SWR_BENCH_PIN=0 to let them spread): on a
shared VM a loopback round trip between two CPUs pays the wake-up of an idle one, which
swings between about 35 and 90 us from one round to the next and drowns the few
microseconds the cases differ by. On one CPU every case pays the same switch.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import zstandard
from _harness import Target, measure, report

from swr import AsyncStaleEngine, CacheTTL, StaleEngine, Status
from swr.storage import AsyncRedisStorage, Entry, MemoryStorage, RedisStorage, TieredStorage

KEY = "user:42"
VALUE = {"id": 42, "name": "Ada", "roles": ["admin", "dev"], "active": True}
TTL = CacheTTL(fresh=3600, stale=3600)
BATCH = 100
WARMUP = 2  # measure()'s warm-up rounds
KINDS = ("record", "doc")
ORDERS = ("hot", "zipf", "uniform")
DOC_LIMIT = 1 << 20  # the careful user's bound on a decompressed document


def user_record(i: int) -> dict[str, Any]:
    """A ~200-byte user record (msgpack), different for each ``i``."""
    return {
        "id": i,
        "name": f"user-{i:06d}",
        "email": f"user{i}@example.com",
        "roles": ["reader", "dev"] if i % 3 else ["admin"],
        "active": i % 7 != 0,
        "created_at": f"2024-03-{i % 28 + 1:02d}T12:{i % 60:02d}:00Z",
        "plan": "pro",
        "score": i * 0.37,
        "locale": "en-GB",
        "city": ("Paris", "Lyon", "Berlin", "Austin")[i % 4],
        "team_id": i // 50,
        "flags": i & 0xFF,
        "manager": f"user-{(i * 7) % 100_000:06d}",
    }


_WORDS: tuple[str, ...] = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
_WORDS += ("golf", "hotel", "india", "juliet", "kilo", "lima")


def document(i: int) -> dict[str, Any]:
    """A ~4 KiB JSON-like document (msgpack; ~1.5 KiB once zstd-compressed)."""
    rng = random.Random(i)
    return {
        "id": i,
        "type": "order",
        "status": rng.choice(("open", "paid", "shipped")),
        "customer": user_record(i),
        "items": [
            {
                "sku": f"SKU-{rng.randrange(10**6):06d}",
                "name": " ".join(rng.choice(_WORDS) for _ in range(3)),
                "price": round(rng.uniform(1, 500), 2),
                "qty": rng.randrange(1, 9),
                "tags": [rng.choice(_WORDS) for _ in range(2)],
            }
            for _ in range(45)
        ],
        "notes": " ".join(rng.choice(_WORDS) for _ in range(40)),
    }


VALUES: dict[str, Callable[[int], dict[str, Any]]] = {"record": user_record, "doc": document}


@functools.cache
def key_indexes(order: str, keys: int, draws: int, seed: int = 14) -> tuple[int, ...]:
    """``draws`` key numbers in ``order``: one hot key, Zipf (s = 1.0) or uniform."""
    rng = random.Random(seed)
    if order == "hot":
        return (0,) * draws
    if order == "uniform":
        return tuple(rng.randrange(keys) for _ in range(draws))
    # Zipf: rank r drawn with weight 1/r, ranks mapped to keys by a fixed shuffle.
    cumulative = list(itertools.accumulate(1.0 / rank for rank in range(1, keys + 1)))
    total = cumulative[-1]
    shuffled = list(range(keys))
    rng.shuffle(shuffled)
    pick = bisect.bisect_left
    return tuple(
        shuffled[min(pick(cumulative, rng.random() * total), keys - 1)] for _ in range(draws)
    )


class Walk:
    """A key sequence read a stretch per round, so every round reads new draws."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.at = 0

    def next(self, n: int) -> list[str]:
        if self.at + n > len(self.keys):
            self.at = 0
        stretch = self.keys[self.at : self.at + n]
        self.at += n
        return stretch


def raw_decoder(kind: str) -> Callable[[bytes], Any]:
    """What a careful user calls on the bytes of a raw ``GET``."""
    unpackb: Callable[[bytes], Any] = msgpack.unpackb
    if kind == "record":
        return unpackb
    decompress = zstandard.ZstdDecompressor().decompress

    def decode(data: bytes) -> Any:
        return unpackb(decompress(data, max_output_size=DOC_LIMIT))

    return decode


def raw_encoder(kind: str) -> Callable[[Any], bytes]:
    """The raw copy: msgpack, and zstd (level 3, as swr's default) for the document."""
    packb: Callable[[Any], bytes] = msgpack.packb
    if kind == "record":
        return packb
    compress = zstandard.ZstdCompressor(level=3).compress
    return lambda value: compress(packb(value))


def working_set_keys(kind: str, order: str, prefix: str, keys: int, draws: int) -> list[str]:
    return [f"{prefix}{kind}:{i}" for i in key_indexes(order, keys, draws)]


def fill_working_sets(
    swr_set: Callable[[dict[str, Entry]], Any],
    raw_set: Callable[[dict[str, bytes]], Any],
    keys: int,
) -> None:
    """Write every working set: swr entries with ``swr_set``, raw copies with ``raw_set``."""
    now = time.time()
    for kind, make in VALUES.items():
        encode = raw_encoder(kind)
        for start in range(0, keys, 1000):
            values = {i: make(i) for i in range(start, min(start + 1000, keys))}
            swr_set(
                {
                    f"ws:{kind}:{i}": Entry(value, now, now + 3600, now + 7200, now + 7200)
                    for i, value in values.items()
                }
            )
            raw_set({f"raw:ws:{kind}:{i}": encode(value) for i, value in values.items()})


def fill_expiring_copies(client: Any, keys: int) -> None:
    """Write the raw records again, each with an expiry (``SET PX``) as a cache stores them.

    Redis finds a key with an expiry in a second table on every read: a raw ``MGET`` of
    keys stored without one skips work that ``RedisStorage`` (whose keys expire) cannot.
    """
    encode, make = raw_encoder("record"), VALUES["record"]
    for start in range(0, keys, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 1000, keys)):
            pipe.set(f"rawttl:ws:record:{i}", encode(make(i)), px=7_200_000)
        pipe.execute()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def pinned_cpu() -> int | None:
    """The CPU the bench and its server share, or None when they may spread."""
    if os.environ.get("SWR_BENCH_PIN", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        return None
    return min(os.sched_getaffinity(0))


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    directory = tempfile.mkdtemp(prefix="swr-bench-redis-")
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", directory, "--loglevel", "warning"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def parsers() -> dict[str, tuple[Any, Any]]:
    """``label -> (sync parser class, asyncio parser class)``."""
    from redis._parsers import _AsyncRESP2Parser, _RESP2Parser

    found: dict[str, tuple[Any, Any]] = {}
    try:
        import hiredis  # noqa: F401
        from redis._parsers import _AsyncHiredisParser, _HiredisParser

        found["hiredis"] = (_HiredisParser, _AsyncHiredisParser)
    except ImportError:
        print("hiredis is not installed: only the pure-Python parser is measured")
    found["python"] = (_RESP2Parser, _AsyncRESP2Parser)
    return found


def sync_cases(  # noqa: PLR0915 - one case per closure
    url: str, label: str, parser: Any, closers: list[Callable[[], None]], count: int, draws: int
) -> dict[str, Any]:
    from dogpile.cache import make_region
    from redis import ConnectionPool

    store = RedisStorage.from_url(url, prefix="bench:", parser_class=parser)
    engine = StaleEngine(store, ttl=TTL)
    closers.append(engine.close)
    closers.append(store.close)
    decoding = RedisStorage.from_url(url, prefix="bench:", parser_class=parser, read_cache=0)
    closers.append(decoding.close)
    engine.execute(KEY, lambda: VALUE)
    assert engine.execute(KEY, lambda: VALUE).status is Status.HIT
    client = store.client
    client.set("raw:" + KEY, msgpack.packb(VALUE))
    unpackb = msgpack.unpackb
    raw_get = client.get

    keys = [f"item:{i}" for i in range(BATCH)]
    now = time.time()
    store.set_many({key: Entry(VALUE, now, now + 3600, now + 7200, now + 7200) for key in keys})
    raw_keys = ["raw:" + key for key in keys]
    client.mset({key: msgpack.packb(VALUE) for key in raw_keys})

    tiered = TieredStorage(MemoryStorage(max_entries=10_000), store)
    tiered_engine = StaleEngine(tiered, ttl=TTL)
    closers.append(tiered_engine.close)
    tiered_engine.execute("tiered:" + KEY, lambda: VALUE)
    assert tiered_engine.execute("tiered:" + KEY, lambda: VALUE).status is Status.HIT

    pool = ConnectionPool.from_url(url, parser_class=parser)
    region = make_region().configure(
        "dogpile.cache.redis",
        expiration_time=3600,
        arguments={"connection_pool": pool, "distributed_lock": False},
    )
    region.get_or_create(KEY, lambda: VALUE)
    closers.append(pool.disconnect)

    def execute_hit(n: int) -> None:
        execute = engine.execute
        for _ in range(n):
            execute(KEY, fetch)

    def raw(n: int) -> None:
        for _ in range(n):
            unpackb(raw_get("raw:" + KEY))

    def dogpile_hit(n: int) -> None:
        get_or_create = region.get_or_create
        for _ in range(n):
            get_or_create(KEY, fetch)

    def get_many(n: int) -> None:
        for _ in range(n):
            store.get_many(keys)

    def get_many_decoding(n: int) -> None:
        for _ in range(n):
            decoding.get_many(keys)

    def raw_mget(n: int) -> None:
        mget = client.mget
        for _ in range(n):
            [unpackb(value) for value in mget(raw_keys)]

    def raw_mget_only(n: int) -> None:
        mget = client.mget
        for _ in range(n):
            mget(raw_keys)

    def tiered_hit(n: int) -> None:
        execute = tiered_engine.execute
        for _ in range(n):
            execute("tiered:" + KEY, fetch)

    # Each working-set case reads through a storage of its own (its own read cache):
    # a case does not pay for evicting what another case left in a shared cache.
    def own_engine() -> tuple[RedisStorage, StaleEngine]:
        own = RedisStorage.from_url(url, prefix="bench:", parser_class=parser)
        own_engine = StaleEngine(own, ttl=TTL)
        closers.append(own_engine.close)
        closers.append(own.close)
        return own, own_engine

    def ws_hit(walk: Walk) -> Callable[[int], None]:
        execute = own_engine()[1].execute
        assert execute(walk.keys[0], fetch).status is Status.HIT

        def run(n: int) -> None:
            for key in walk.next(n):
                execute(key, fetch)

        return run

    def ws_raw(walk: Walk, decode: Callable[[bytes], Any]) -> Callable[[int], None]:
        def run(n: int) -> None:
            for key in walk.next(n):
                decode(raw_get(key))

        return run

    def ws_get_many(walk: Walk) -> Callable[[int], None]:
        get_many = own_engine()[0].get_many

        def run(n: int) -> None:
            for _ in range(n):
                get_many(walk.next(BATCH))

        return run

    def ws_mget(walk: Walk, decode: Callable[[bytes], Any]) -> Callable[[int], None]:
        def run(n: int) -> None:
            mget = client.mget
            for _ in range(n):
                [decode(value) for value in mget(walk.next(BATCH))]

        return run

    working: dict[str, Any] = {}
    for kind in KINDS:
        decode = raw_decoder(kind)
        for order in ORDERS:
            swr_keys = working_set_keys(kind, order, "ws:", count, draws)
            raw_ws = ["raw:" + key for key in swr_keys]
            working[f"[{label}] HIT {kind} {order}"] = ws_hit(Walk(swr_keys))
            working[f"[{label}] raw GET+decode {kind} {order}"] = ws_raw(Walk(raw_ws), decode)
        swr_keys = working_set_keys(kind, "uniform", "ws:", count, draws * BATCH // 20)
        raw_ws = ["raw:" + key for key in swr_keys]
        working[f"[{label}] get_many({BATCH}) {kind} uniform"] = ws_get_many(Walk(swr_keys))
        working[f"[{label}] raw MGET({BATCH})+decode {kind} uniform"] = ws_mget(
            Walk(raw_ws), decode
        )
        if kind == "record":
            expiring = ["rawttl:" + key for key in swr_keys]
            working[f"[{label}] raw MGET({BATCH})+decode record uniform, keys expiring"] = ws_mget(
                Walk(expiring), decode
            )

    return working | {
        f"[{label}] StaleEngine.execute HIT (RedisStorage)": execute_hit,
        f"[{label}] raw GET + unpackb (same client)": raw,
        f"[{label}] dogpile.cache redis get_or_create hit": dogpile_hit,
        f"[{label}] RedisStorage.get_many({BATCH})": get_many,
        f"[{label}] RedisStorage.get_many({BATCH}), read_cache=0": get_many_decoding,
        f"[{label}] raw MGET({BATCH}) + unpackb each": raw_mget,
        f"[{label}] raw MGET({BATCH}), values left undecoded": raw_mget_only,
        f"[{label}] StaleEngine.execute HIT (TieredStorage, L1 hit)": tiered_hit,
    }


def fetch() -> dict[str, Any]:
    return VALUE


async def afetch() -> dict[str, Any]:
    return VALUE


def async_cases(
    url: str,
    label: str,
    parser: Any,
    loop: asyncio.AbstractEventLoop,
    closers: list[Any],
    count: int,
    draws: int,
) -> dict[str, Any]:
    from cashews import Cache

    async def setup() -> tuple[AsyncStaleEngine, AsyncRedisStorage, Any, Any]:
        store = AsyncRedisStorage.from_url(url, prefix="abench:", parser_class=parser)
        engine = AsyncStaleEngine(store, ttl=TTL)
        await engine.execute(KEY, afetch)
        assert (await engine.execute(KEY, afetch)).status is Status.HIT
        await store.client.set("araw:" + KEY, msgpack.packb(VALUE))
        cache = Cache()
        cache.setup(url, parser_class=parser)

        @cache(ttl="1h")
        async def cashews_user(user_id: int) -> dict[str, Any]:
            return VALUE

        await cashews_user(42)
        return engine, store, cache, cashews_user

    engine, store, cache, cashews_user = loop.run_until_complete(setup())
    client = store.client
    unpackb = msgpack.unpackb

    async def close() -> None:
        await engine.aclose()
        await store.aclose()
        await cache.close()

    closers.append(close)

    async def execute_loop(n: int) -> None:
        execute = engine.execute
        for _ in range(n):
            await execute(KEY, afetch)

    async def raw_loop(n: int) -> None:
        get = client.get
        for _ in range(n):
            unpackb(await get("araw:" + KEY))

    async def cashews_loop(n: int) -> None:
        for _ in range(n):
            await cashews_user(42)

    def ws_hit(walk: Walk) -> Callable[[int], None]:
        # A storage of its own for each case, as for the sync cases.
        own = AsyncRedisStorage.from_url(url, prefix="bench:", parser_class=parser)
        own_engine = AsyncStaleEngine(own, ttl=TTL)
        closers.append(own_engine.aclose)
        closers.append(own.aclose)
        execute = own_engine.execute
        hit = loop.run_until_complete(execute(walk.keys[0], afetch))
        assert hit.status is Status.HIT

        async def run(n: int) -> None:
            for key in walk.next(n):
                await execute(key, afetch)

        return lambda n: loop.run_until_complete(run(n))

    def ws_raw(walk: Walk, decode: Callable[[bytes], Any]) -> Callable[[int], None]:
        async def run(n: int) -> None:
            get = client.get
            for key in walk.next(n):
                decode(await get(key))

        return lambda n: loop.run_until_complete(run(n))

    working: dict[str, Any] = {}
    for kind in KINDS:
        decode = raw_decoder(kind)
        for order in ORDERS:
            swr_keys = working_set_keys(kind, order, "ws:", count, draws)
            raw_ws = ["raw:" + key for key in swr_keys]
            working[f"[{label}] async HIT {kind} {order}"] = ws_hit(Walk(swr_keys))
            working[f"[{label}] raw asyncio GET+decode {kind} {order}"] = ws_raw(
                Walk(raw_ws), decode
            )

    return working | {
        f"[{label}] AsyncStaleEngine.execute HIT (AsyncRedisStorage)": lambda n: (
            loop.run_until_complete(execute_loop(n))
        ),
        f"[{label}] raw asyncio GET + unpackb (same client)": lambda n: loop.run_until_complete(
            raw_loop(n)
        ),
        f"[{label}] cashews redis @cache hit": lambda n: loop.run_until_complete(cashews_loop(n)),
    }


def main() -> int:
    n = int(os.environ.get("SWR_BENCH_N", "400"))
    rounds = int(os.environ.get("SWR_BENCH_ROUNDS", "41"))
    closers: list[Any] = []
    cpu = pinned_cpu()
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # the server started below inherits it
        print(f"bench and redis-server pinned to CPU {cpu} (SWR_BENCH_PIN=0 to spread)")
    keys = int(os.environ.get("SWR_BENCH_KEYS", "100000"))
    draws = n * (rounds + WARMUP)
    loop = asyncio.new_event_loop()
    with redis_server() as url:
        filler = RedisStorage.from_url(url, prefix="bench:")
        fill_working_sets(filler.set_many, filler.client.mset, keys)
        fill_expiring_copies(filler.client, keys)
        filler.close()
        print(f"working sets: {keys} keys of each value, read cache 1024 entries")
        cases: dict[str, Any] = {}
        for label, (sync_parser, async_parser) in parsers().items():
            cases.update(sync_cases(url, label, sync_parser, closers, keys, draws))
            cases.update(async_cases(url, label, async_parser, loop, closers, keys, draws))
        # Batches cost ~100x a single read: time them over fewer iterations.
        batch_names = {name for name in cases if f"({BATCH})" in name}
        single = {name: run for name, run in cases.items() if name not in batch_names}
        batch = {name: run for name, run in cases.items() if name in batch_names}
        results = measure(single, n, rounds=rounds)
        results.update(measure(batch, max(n // 20, 10), rounds=rounds))
        targets: list[Target] = []
        for label in parsers():
            p = f"[{label}] "
            for kind in KINDS:
                for order in ORDERS:
                    targets.append(
                        Target(
                            f"{p}HIT {kind} {order} / raw GET+decode",
                            f"{p}HIT {kind} {order}",
                            f"{p}raw GET+decode {kind} {order}",
                            1.15,
                        )
                    )
                    targets.append(
                        Target(
                            f"{p}async HIT {kind} {order} / raw asyncio GET+decode",
                            f"{p}async HIT {kind} {order}",
                            f"{p}raw asyncio GET+decode {kind} {order}",
                            1.15,
                        )
                    )
                targets.append(
                    Target(
                        f"{p}get_many({BATCH}) {kind} uniform / raw MGET+decode",
                        f"{p}get_many({BATCH}) {kind} uniform",
                        f"{p}raw MGET({BATCH})+decode {kind} uniform",
                        1.2,
                    )
                )
            targets += [
                Target(
                    f"{p}HIT / raw GET+unpackb",
                    p + "StaleEngine.execute HIT (RedisStorage)",
                    p + "raw GET + unpackb (same client)",
                    1.15,
                ),
                Target(
                    f"{p}async HIT / raw asyncio GET+unpackb",
                    p + "AsyncStaleEngine.execute HIT (AsyncRedisStorage)",
                    p + "raw asyncio GET + unpackb (same client)",
                    1.15,
                ),
                Target(
                    f"{p}HIT / dogpile.cache hit",
                    p + "StaleEngine.execute HIT (RedisStorage)",
                    p + "dogpile.cache redis get_or_create hit",
                    1.0,
                ),
                Target(
                    f"{p}async HIT / cashews hit",
                    p + "AsyncStaleEngine.execute HIT (AsyncRedisStorage)",
                    p + "cashews redis @cache hit",
                    1.0,
                ),
                Target(
                    f"{p}get_many({BATCH}) / raw MGET+unpackb",
                    p + f"RedisStorage.get_many({BATCH})",
                    p + f"raw MGET({BATCH}) + unpackb each",
                    1.2,
                ),
            ]
        ordered = {name: results[name] for name in cases}
        met = report("redis read path", ordered, targets)
        for label in parsers():
            p = f"[{label}] "
            ratio = (
                results[p + f"RedisStorage.get_many({BATCH}), read_cache=0"]
                / results[p + f"raw MGET({BATCH}) + unpackb each"]
            )
            print(f"info  {p}get_many({BATCH}), read_cache=0 / raw MGET+unpackb: {ratio:.2f}x")
            ratio = (
                results[p + f"get_many({BATCH}) record uniform"]
                / results[p + f"raw MGET({BATCH})+decode record uniform, keys expiring"]
            )
            print(
                f"info  {p}get_many({BATCH}) record uniform / raw MGET+decode of keys stored "
                f"with an expiry, as a cache stores them: {ratio:.2f}x"
            )
        for close in reversed(closers):
            outcome = close()
            if asyncio.iscoroutine(outcome):
                loop.run_until_complete(outcome)
    loop.close()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
