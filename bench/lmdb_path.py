"""The engine on LMDBStorage against raw py-lmdb and diskcache, measured in one run.

Run: python bench/lmdb_path.py   (needs the bench extra: pip install -e ".[bench]")

Prints ns per operation for:
- StaleEngine.execute answering HIT from LMDBStorage;
- the limit: raw py-lmdb, one read transaction per get, plus msgpack.unpackb;
- diskcache.Cache.get of the same value;
- the write path: StaleEngine.set on LMDBStorage, raw put + msgpack.packb in one write
  transaction (sync=False, like durability="process"), diskcache.Cache.set; for
  information, StaleEngine.set when every write changes the record's size (the byte
  total is then rewritten too) and the raw put with LMDB's writable map, which
  LMDBStorage uses;
- a MISS without its fetch, as a lease holder runs it: acquire_lease + set +
  release_lease (three write transactions) and acquire_lease + set_and_release (two),
  against a raw put + msgpack.packb (and, for information, the same put with LMDB's
  writable map, as LMDBStorage opens its directory here);
- HITs over a working set far larger than the read cache (100,000 keys, 100x the
  1,024-entry read cache) read in a Zipf (s = 1.0) and in a uniform order, for two
  values: a ~200-byte user record, against raw py-lmdb get + msgpack.unpackb, and a
  ~4 KiB JSON-like document (over the 1 KiB compression threshold, so the engine stores
  it zstd-compressed), against raw get + zstd decompress + unpackb of the same
  document stored compressed the same way (one reused decompressor, no bounds: the
  fastest a careful user gets); each also against diskcache.Cache.get of the same
  values in the same order; for the documents, the floor of any reader that builds
  them (a raw read transaction, then ``marshal.loads``, CPython's fastest builder of
  objects) and the most such a reader, behind the engine's read cache, could beat
  diskcache by;
then the HIT throughput of one and of two worker processes sharing the store (rounds of
one and of two alternate; the best round of each counts).

The hot-key and write cases cycle through the same 1,000 keys of a store prefilled
with them.
"""

from __future__ import annotations

import functools
import itertools
import marshal
import multiprocessing
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache
import lmdb
import msgpack
import zstandard
from _harness import Target, measure, report

from swr import CacheTTL, StaleEngine, Status
from swr.storage import Entry, LMDBStorage, serializers
from swr.storage._record import RecordCodec
from swr.storage.serializers import default_serializer

KEYS = [f"user:{i}" for i in range(1000)]
VALUE = {"id": 42, "name": "Ada", "roles": ["admin", "dev"], "active": True}
LONGER = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "dev"], "active": True}
TTL = CacheTTL(fresh=3600, stale=3600, expired=3600)
THROUGHPUT_SECONDS = 1.0


ZSTD_LEVEL = 3  # ZstdSerializer's default level
WORKING_SET = 100_000  # keys: 100x the default read cache of 1,024 entries
SAMPLES = 100_000  # keys drawn per order
PER_ROUND = 20_000


def fetch() -> dict[str, Any]:
    return VALUE


def document(i: int) -> dict[str, Any]:
    """A ~4 KiB JSON-like document (4,018 bytes of msgpack, ~780 once zstd-compressed).

    Over the default serializer's 1 KiB compression threshold: stored compressed.
    """
    return {
        "id": i,
        "type": "order",
        "customer": {"id": i * 7 % 10_007, "name": f"customer {i}", "tier": "gold"},
        "created": 1_700_000_000 + i,
        "tags": ["express", "gift", f"region-{i % 17}"],
        "items": [
            {
                "sku": f"SKU-{(i * 31 + n) % 100_000:06d}",
                "title": f"item {n} of order {i}",
                "quantity": 1 + (i + n) % 4,
                "price": round(5 + ((i * 13 + n * 7) % 9_500) / 100, 2),
                "options": {"color": ("red", "green", "blue")[n % 3], "size": "M"},
                "note": "handle with care" if n % 4 == 0 else "",
            }
            for n in range(38)
        ],
    }


VALUES: dict[str, Callable[[int], dict[str, Any]]] = {}  # filled below
RAW = {"record": "raw get + unpackb", "doc": "raw get + zstd + unpackb"}
FLOOR = "raw read + marshal.loads, doc"  # the least a reader that builds the document pays
SPECIAL = ("close", "engine", "first", "cold")  # working_set_cases' entries that are no case


def record(i: int) -> dict[str, Any]:
    """A ~200-byte user record (210 bytes of msgpack)."""
    return {
        "id": i,
        "name": f"user {i}",
        "email": f"user{i}@example.com",
        "roles": ["reader", "writer"],
        "active": True,
        "score": i * 0.5,
        "bio": "lorem ipsum " * 8,
        "created": 1_700_000_000 + i,
    }


VALUES.update(record=record, doc=document)


def orders() -> dict[str, list[int]]:
    """Key indexes in a Zipf (s = 1.0) and in a uniform order; ranks map to random keys."""
    rng = random.Random(42)
    ranked = list(range(WORKING_SET))
    rng.shuffle(ranked)  # the most popular keys are spread over the key space
    cum = list(itertools.accumulate(1.0 / rank for rank in range(1, WORKING_SET + 1)))
    zipf = rng.choices(ranked, cum_weights=cum, k=SAMPLES)
    uniform = [rng.randrange(WORKING_SET) for _ in range(SAMPLES)]
    return {"zipf": zipf, "uniform": uniform}


def cycle(keys: list[Any], n: int, start: list[int]) -> list[Any]:
    """The next ``n`` keys of ``keys``, going on where the last call stopped."""
    first = start[0]
    start[0] = (first + n) % len(keys)
    if first + n <= len(keys):
        return keys[first : first + n]
    return (keys[first:] + keys)[:n]


class _ZstdReader:
    """What a careful user of raw py-lmdb does with compressed values: one decompressor.

    The document is stored as ``zstd(msgpack.packb(doc))`` (what the engine's default
    serializer stores for values over its 1 KiB threshold, at the same level); a read is
    ``get`` + ``decompress`` + ``unpackb``. The engine bounds what it inflates (frame
    size checked before decompressing, ``max_output_size``); a user trusting the file
    would skip that, so this baseline is the faster one.
    """

    def __init__(self) -> None:
        self.decompress = zstandard.ZstdDecompressor().decompress
        self.compress = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress


def floor_case(
    env: lmdb.Environment, raw_names: list[bytes], built: list[bytes], indexes: list[int]
) -> Callable[[int], None]:
    """Reads of ``indexes`` in order: a raw read transaction, then marshal.loads."""
    at = [0]

    def floor(n: int) -> None:
        begin, loads = env.begin, marshal.loads
        for i in cycle(indexes, n, at):
            txn = begin()
            txn.get(raw_names[i])
            txn.abort()
            loads(built[i])

    return floor


def cold_share(
    engine: StaleEngine, names: list[str], ordered: dict[str, list[int]], order: str
) -> float:
    """The share of one pass of ``order``'s reads that the read cache does not answer."""
    view = engine.storage  # the engine's view of the store, with its own read cache
    assert isinstance(view, LMDBStorage)
    items, execute = view._cache.items, engine.execute
    indexes = ordered[order]
    missed = 0
    for i in indexes:
        missed += names[i] not in items
        execute(names[i], fetch)
    return missed / len(indexes)


def working_set_cases(path: Path, kind: str) -> dict[str, Any]:
    """HIT cases over 100,000 keys of ``kind`` values: the engine, raw py-lmdb, diskcache."""
    make = VALUES[kind]
    names = [f"{kind}:{i}" for i in range(WORKING_SET)]
    raw_names = [name.encode() for name in names]
    store = LMDBStorage(path / f"swr-{kind}", sweep_interval=None)
    engine = StaleEngine(store, ttl=TTL)
    for name, i in zip(names, range(WORKING_SET), strict=True):
        engine.set(name, make(i))
    zstd = _ZstdReader()
    compressed = kind == "doc"
    env = lmdb.open(str(path / f"raw-{kind}"), map_size=1 << 31, sync=False, max_spare_txns=1)
    with env.begin(write=True) as txn:
        for raw_name, i in zip(raw_names, range(WORKING_SET), strict=True):
            packed = msgpack.packb(make(i))
            txn.put(raw_name, zstd.compress(packed) if compressed else packed)
    # The floor of any reader that builds the document: a raw read, then the document
    # built by marshal.loads, the fastest builder of Python objects CPython has.
    built = [marshal.dumps(make(i)) for i in range(WORKING_SET)] if compressed else []
    cache = diskcache.Cache(str(path / f"diskcache-{kind}"))
    with cache.transact():
        for name, i in zip(names, range(WORKING_SET), strict=True):
            cache.set(name, make(i))
    cases: dict[str, Any] = {}
    ordered = orders()
    for order, indexes in ordered.items():
        keys = [names[i] for i in indexes]
        raw_keys = [raw_names[i] for i in indexes]

        def hit(n: int, keys: list[str] = keys, at: list[int] = [0]) -> None:  # noqa: B006
            execute = engine.execute
            for key in cycle(keys, n, at):
                execute(key, fetch)

        def raw_get(n: int, keys: list[bytes] = raw_keys, at: list[int] = [0]) -> None:  # noqa: B006
            begin, unpackb = env.begin, msgpack.unpackb
            for key in cycle(keys, n, at):
                txn = begin()
                data = txn.get(key)
                txn.abort()
                unpackb(data)

        def raw_get_zstd(n: int, keys: list[bytes] = raw_keys, at: list[int] = [0]) -> None:  # noqa: B006
            begin, unpackb, decompress = env.begin, msgpack.unpackb, zstd.decompress
            for key in cycle(keys, n, at):
                txn = begin()
                data = txn.get(key)
                txn.abort()
                unpackb(decompress(data))  # type: ignore[arg-type]  # every key is there

        def disk_get(n: int, keys: list[str] = keys, at: list[int] = [0]) -> None:  # noqa: B006
            cache_get = cache.get
            for key in cycle(keys, n, at):
                cache_get(key)

        cases[f"execute HIT, {kind}, {order}"] = hit
        cases[f"{RAW[kind]}, {kind}, {order}"] = raw_get_zstd if compressed else raw_get
        cases[f"diskcache.get, {kind}, {order}"] = disk_get
        if compressed:
            cases[f"{FLOOR}, {order}"] = floor_case(env, raw_names, built, indexes)

    def close() -> None:
        engine.close()
        store.close()
        env.close()
        cache.close()

    cases.update(
        close=close,
        engine=engine,
        first=names[1],
        cold=functools.partial(cold_share, engine, names, ordered),
    )
    return cases


def breakdown_cases(path: Path) -> dict[str, Any]:  # noqa: PLR0915 - one case a part
    """Where a HIT that decodes goes: its parts over 100,000 records read in uniform order.

    Each case adds one part to the one before it, so their differences price the parts:
    the raw read transaction; the decode of the stored record against msgpack.unpackb of
    the same payload (both over records read beforehand, in the same order);
    LMDBStorage.get without a read cache (key handling, the fork guard, the expiry test)
    and with one (its lookup and admission, which a uniform order almost never passes);
    and StaleEngine.execute around that get (window test, Result).
    """
    names = [f"record:{i}" for i in range(WORKING_SET)]
    raw_names = [name.encode() for name in names]
    store = LMDBStorage(path / "swr-parts", sweep_interval=None)
    bare = LMDBStorage(path / "swr-parts-bare", sweep_interval=None, read_cache=0)
    engine = StaleEngine(store, ttl=TTL)
    for name, i in zip(names, range(WORKING_SET), strict=True):
        engine.set(name, record(i))
        bare.set(name, store.get(name))  # type: ignore[arg-type]  # just stored
    env = lmdb.open(str(path / "raw-parts"), map_size=1 << 31, sync=False, max_spare_txns=1)
    with env.begin(write=True) as txn:
        for raw_name, i in zip(raw_names, range(WORKING_SET), strict=True):
            txn.put(raw_name, msgpack.packb(record(i)))
    indexes = orders()["uniform"]
    keys = [names[i] for i in indexes]
    raw_keys = [raw_names[i] for i in indexes]
    with env.begin() as txn:
        payloads: list[bytes] = [txn.get(key) for key in raw_keys]  # type: ignore[misc]
    # The records LMDBStorage stores (no key check: the keys are short), decoded by the
    # function its read path calls.
    codec = RecordCodec(default_serializer())
    now = time.time()
    stored = [
        codec.encode(Entry(record(i), now, now + 3600, now + 7200, now + 10800)) for i in indexes
    ]
    decode = codec.plain_decode

    def read(n: int, at: list[int] = [0]) -> None:  # noqa: B006
        begin = env.begin
        for key in cycle(raw_keys, n, at):
            txn = begin()
            txn.get(key)
            txn.abort()

    def raw_get(n: int, at: list[int] = [0]) -> None:  # noqa: B006
        begin, unpackb = env.begin, msgpack.unpackb
        for key in cycle(raw_keys, n, at):
            txn = begin()
            data = txn.get(key)
            txn.abort()
            unpackb(data)

    def unpack(n: int, at: list[int] = [0]) -> None:  # noqa: B006
        unpackb = msgpack.unpackb
        for data in cycle(payloads, n, at):
            unpackb(data)

    def swr_unpack(n: int, at: list[int] = [0]) -> None:  # noqa: B006
        unpackb = serializers._unpackb  # the C drop-in when built, else msgpack.unpackb
        for data in cycle(payloads, n, at):
            unpackb(data, strict_map_key=False)

    def decode_record(n: int, at: list[int] = [0]) -> None:  # noqa: B006
        for data in cycle(stored, n, at):
            decode(data)

    def bare_get(n: int, at: list[int] = [0]) -> None:  # noqa: B006
        get = bare.get
        for key in cycle(keys, n, at):
            get(key)

    def get(n: int, at: list[int] = [0]) -> None:  # noqa: B006
        get = store.get
        for key in cycle(keys, n, at):
            get(key)

    def hit(n: int, at: list[int] = [0]) -> None:  # noqa: B006
        execute = engine.execute
        for key in cycle(keys, n, at):
            execute(key, fetch)

    def close() -> None:
        engine.close()
        store.close()
        bare.close()
        env.close()

    return {
        "raw read transaction": read,
        "raw get + unpackb": raw_get,
        "msgpack.unpackb (payload read before)": unpack,
        "swr unpackb (payload read before)": swr_unpack,
        "record decode (record read before)": decode_record,
        "LMDBStorage.get, read_cache=0": bare_get,
        "LMDBStorage.get": get,
        "StaleEngine.execute HIT": hit,
        "close": close,
    }


def report_breakdown(results: dict[str, float]) -> None:
    """Print the parts of a decoding HIT, from the differences of the breakdown cases."""
    r = results
    decode = r["record decode (record read before)"]
    parts = [
        ("LMDB read transaction (begin, get, abort)", r["raw read transaction"]),
        ("msgpack.unpackb", r["raw get + unpackb"] - r["raw read transaction"]),
        (
            "record decode less msgpack.unpackb (< 0: swr's is faster)",
            decode - r["msgpack.unpackb (payload read before)"],
        ),
        (
            "LMDBStorage.get beyond transaction and decode",
            r["LMDBStorage.get, read_cache=0"] - r["raw read transaction"] - decode,
        ),
        (
            "read cache lookup and admission (missed)",
            r["LMDBStorage.get"] - r["LMDBStorage.get, read_cache=0"],
        ),
        (
            "StaleEngine.execute beyond LMDBStorage.get",
            r["StaleEngine.execute HIT"] - r["LMDBStorage.get"],
        ),
    ]
    print("\nWhere a HIT that decodes goes (records, uniform; differences of the cases above)")
    width = max(len(name) for name, _ in parts)
    for name, ns in parts:
        print(f"{name:<{width}}  {ns:>8.0f} ns")
    print(f"{'sum: StaleEngine.execute HIT':<{width}}  {r['StaleEngine.execute HIT']:>8.0f} ns")
    ratio = r["swr unpackb (payload read before)"] / r["msgpack.unpackb (payload read before)"]
    print(f"info  swr unpackb / msgpack.unpackb, the record's payload: {ratio:.2f}x")


def report_document_floor(results: dict[str, float], hot: float, cold: dict[str, float]) -> None:
    """Print the most any reader that builds the documents could beat diskcache by.

    A reader that hands out a new document per read pays at least a read transaction and
    the building of the document's ~670 objects; marshal.loads is the fastest builder
    CPython has (no checks, no bounds). With the engine's read cache in front, the share
    ``cold[order]`` of reads it does not answer pays that floor, the rest a hot HIT.
    """
    print()
    for order in ("zipf", "uniform"):
        floor = results[f"{FLOOR}, {order}"]
        best = cold[order] * floor + (1 - cold[order]) * hot
        ratio = results[f"diskcache.get, doc, {order}"] / best
        print(
            f"info  doc, {order}: {cold[order]:.0%} of reads miss the read cache; with each "
            f"costing only {FLOOR} ({floor:,.0f} ns), diskcache.get / HIT would be at most "
            f"{ratio:.2f}x (target >= 3.0x)"
        )
    ratio = results["execute HIT, doc, uniform"] / results[f"{FLOOR}, uniform"]
    print(f"info  execute HIT, doc, uniform / {FLOOR}, uniform: {ratio:.2f}x")


def miss_cases(path: Path) -> dict[str, Any]:
    """A lease holder's MISS without its fetch: three write transactions, or two."""
    store = LMDBStorage(path / "swr-miss", sweep_interval=None)
    keys = [f"miss:{i}" for i in range(1000)]
    now = 1e10  # far future: every entry stays alive

    def entry() -> Entry:
        return Entry(VALUE, now, now + 60, now + 120, now + 180)

    def three(n: int) -> None:
        acquire, set_, release = store.acquire_lease, store.set, store.release_lease
        for i in range(n):
            key = keys[i % 1000]
            token = acquire(key, 10.0)
            assert token is not None
            set_(key, entry())
            release(key, token)

    def two(n: int) -> None:
        acquire, set_and_release = store.acquire_lease, store.set_and_release
        for i in range(n):
            key = keys[i % 1000]
            token = acquire(key, 10.0)
            assert token is not None
            set_and_release(key, entry(), token)

    return {"three": three, "two": two, "close": store.close}


def engine_cases(path: Path) -> dict[str, Any]:
    store = LMDBStorage(path / "swr", sweep_interval=None)
    engine = StaleEngine(store, ttl=TTL)
    for key in KEYS:
        engine.set(key, VALUE)
    assert engine.execute(KEYS[0], fetch).status is Status.HIT

    def hit(n: int) -> None:
        execute, keys = engine.execute, KEYS
        for i in range(n):
            execute(keys[i % 1000], fetch)

    def write(n: int) -> None:
        set_, keys = engine.set, KEYS
        for i in range(n):
            set_(keys[i % 1000], VALUE)

    def resize(n: int) -> None:
        # Each key is rewritten with the other value: every record changes size.
        set_, keys, values = engine.set, KEYS, (VALUE, LONGER)
        for i in range(n):
            set_(keys[i % 1000], values[(i // 1000) % 2])

    def close() -> None:
        engine.close()
        store.close()

    return {"hit": hit, "write": write, "resize": resize, "close": close}


def raw_cases(path: Path, *, writemap: bool = False) -> dict[str, Any]:
    # No flush per commit and a spare read transaction, as in LMDBStorage.
    env = lmdb.open(
        str(path / f"raw-{writemap}"),
        map_size=1 << 30,
        sync=False,
        metasync=False,
        max_spare_txns=1,
        writemap=writemap,
    )
    keys = [key.encode() for key in KEYS]
    with env.begin(write=True) as txn:
        for key in keys:
            txn.put(key, msgpack.packb(VALUE))

    def get(n: int) -> None:
        begin, unpackb = env.begin, msgpack.unpackb
        for i in range(n):
            txn = begin()
            data = txn.get(keys[i % 1000])
            txn.abort()
            unpackb(data)

    def put(n: int) -> None:
        begin, packb = env.begin, msgpack.packb
        for i in range(n):
            with begin(write=True) as txn:
                txn.put(keys[i % 1000], packb(VALUE))

    return {"get": get, "put": put, "close": env.close}


def diskcache_cases(path: Path) -> dict[str, Any]:
    cache = diskcache.Cache(str(path / "diskcache"))
    for key in KEYS:
        cache.set(key, VALUE)

    def get(n: int) -> None:
        cache_get = cache.get
        for i in range(n):
            cache_get(KEYS[i % 1000])

    def set_(n: int) -> None:
        cache_set = cache.set
        for i in range(n):
            cache_set(KEYS[i % 1000], VALUE)

    return {"get": get, "set": set_, "close": cache.close}


def hit_worker(path: str, index: int, rounds: list[int], starts: list[Any], results: Any) -> None:
    """One worker process: open the store, then count HITs in the rounds it takes part in.

    Round ``r`` runs the first ``rounds[r]`` workers for THROUGHPUT_SECONDS once
    ``starts[r]`` is set.
    """
    store = LMDBStorage(path, sweep_interval=None)
    engine = StaleEngine(store, ttl=TTL)
    execute, keys = engine.execute, KEYS
    for key in keys:
        execute(key, fetch)  # warm: every key read once
    results.put(("ready", index))
    for number, taking_part in enumerate(rounds):
        starts[number].wait()
        if index >= taking_part:
            continue
        count = 0
        deadline = time.perf_counter() + THROUGHPUT_SECONDS
        while time.perf_counter() < deadline:
            for i in range(1000):
                execute(keys[i], fetch)
            count += 1000
        results.put((number, count))
    engine.close()
    store.close()


def throughput(path: Path, rounds: int = 3) -> dict[str, float]:
    """Best HITs per second of one and of two workers sharing the store, interleaved."""
    plan = [1, 2] * rounds
    ctx = multiprocessing.get_context("spawn")
    starts = [ctx.Event() for _ in plan]
    results = ctx.Queue()
    workers = [
        ctx.Process(target=hit_worker, args=(str(path / "swr"), index, plan, starts, results))
        for index in range(2)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        results.get(timeout=60)  # ready
    best = {1: 0.0, 2: 0.0}
    for number, taking_part in enumerate(plan):
        starts[number].set()
        total = 0
        for _ in range(taking_part):
            got_round, count = results.get(timeout=60)
            assert got_round == number
            total += count
        best[taking_part] = max(best[taking_part], total / THROUGHPUT_SECONDS)
    for worker in workers:
        worker.join(30)
    return {"1 process": best[1], "2 processes": best[2]}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="swr-bench-") as tmp:
        path = Path(tmp)
        ours, raw, disk = engine_cases(path), raw_cases(path), diskcache_cases(path)
        raw_writemap = raw_cases(path, writemap=True)
        reads = measure(
            {
                "StaleEngine.execute HIT (LMDB)": ours["hit"],
                "raw lmdb get + unpackb": raw["get"],
                "diskcache.Cache.get": disk["get"],
            },
            20_000,
        )
        writes = measure(
            {
                "StaleEngine.set (LMDB)": ours["write"],
                "raw lmdb put + packb": raw["put"],
                "diskcache.Cache.set": disk["set"],
                "StaleEngine.set, size changes": ours["resize"],
                "raw put + packb, writemap": raw_writemap["put"],
            },
            1_000,
            rounds=9,
        )
        misses = miss_cases(path)
        miss_results = measure(
            {
                "acquire_lease + set + release_lease": misses["three"],
                "acquire_lease + set_and_release": misses["two"],
                "raw lmdb put + packb": raw["put"],
                "raw put + packb, writemap": raw_writemap["put"],
            },
            1_000,
            rounds=9,
        )
        for cases in (ours, raw, disk, raw_writemap, misses):
            cases["close"]()

        large_results: dict[str, float] = {}
        cold: dict[str, float] = {}
        for kind in VALUES:
            large = working_set_cases(path, kind)
            large_results.update(
                measure(
                    {name: case for name, case in large.items() if name not in SPECIAL},
                    PER_ROUND,
                    rounds=7,
                )
            )
            assert large["engine"].execute(large["first"], fetch).status is Status.HIT
            if kind == "doc":
                cold.update((order, large["cold"](order)) for order in ("zipf", "uniform"))
            large["close"]()

        parts = breakdown_cases(path)
        breakdown = measure(
            {name: case for name, case in parts.items() if name != "close"}, PER_ROUND, rounds=7
        )
        parts["close"]()

        rates = throughput(path)

    met = report(
        "LMDB read path",
        reads,
        [
            Target(
                "HIT / raw get+unpackb",
                "StaleEngine.execute HIT (LMDB)",
                "raw lmdb get + unpackb",
                1.3,
            ),
            Target(
                "diskcache.get / HIT (speed-up)",
                "diskcache.Cache.get",
                "StaleEngine.execute HIT (LMDB)",
                3.0,
                at_least=True,
            ),
        ],
    )
    met &= report(
        "LMDB write path",
        writes,
        [
            Target("set / raw put+packb", "StaleEngine.set (LMDB)", "raw lmdb put + packb", 1.5),
            Target(
                "diskcache.set / set (speed-up)",
                "diskcache.Cache.set",
                "StaleEngine.set (LMDB)",
                5.0,
                at_least=True,
            ),
        ],
    )
    for numerator, denominator in (
        ("StaleEngine.set, size changes", "raw lmdb put + packb"),
        ("StaleEngine.set (LMDB)", "raw put + packb, writemap"),
    ):
        ratio = writes[numerator] / writes[denominator]
        print(f"info  {numerator} / {denominator}: {ratio:.2f}x")
    met &= report(
        "LMDB MISS without the fetch (a lease holder's writes)",
        miss_results,
        [
            Target(
                "MISS, set_and_release / raw put+packb",
                "acquire_lease + set_and_release",
                "raw lmdb put + packb",
                2.0,
            ),
        ],
    )
    ratio = (
        miss_results["acquire_lease + set + release_lease"] / miss_results["raw lmdb put + packb"]
    )
    print(f"info  MISS, set + release_lease / raw put+packb: {ratio:.2f}x")
    # LMDBStorage writes through LMDB's writemap where that is safe (here: a temporary
    # directory on a filesystem that allocates in place): the raw put with the same flag.
    ratio = (
        miss_results["acquire_lease + set_and_release"] / miss_results["raw put + packb, writemap"]
    )
    print(f"info  MISS, set_and_release / raw put+packb, writemap: {ratio:.2f}x")
    met &= report(
        f"HIT over {WORKING_SET:,} keys (100x the read cache): ~200-byte records and "
        "~4 KiB documents (zstd)",
        large_results,
        [
            target
            for kind in VALUES
            for order in ("zipf", "uniform")
            for target in (
                Target(
                    f"HIT / {RAW[kind]}, {kind}, {order}",
                    f"execute HIT, {kind}, {order}",
                    f"{RAW[kind]}, {kind}, {order}",
                    1.3,
                ),
                Target(
                    f"diskcache.get / HIT (speed-up), {kind}, {order}",
                    f"diskcache.get, {kind}, {order}",
                    f"execute HIT, {kind}, {order}",
                    3.0,
                    at_least=True,
                ),
            )
        ],
    )
    report_document_floor(large_results, reads["StaleEngine.execute HIT (LMDB)"], cold)
    report(
        f"The parts of a HIT that decodes: {WORKING_SET:,} records, uniform order",
        breakdown,
        [],
    )
    report_breakdown(breakdown)
    met &= report(
        "HIT throughput, processes sharing one store",
        rates,
        [Target("2 processes / 1 process", "2 processes", "1 process", 1.5, at_least=True)],
        unit="HITs/s",
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
