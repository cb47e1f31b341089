"""Bulk loads: execute_many of 100 keys against 100 execute calls and dogpile.cache.

Run: python bench/bulk_path.py   (needs the bench extra: pip install -e ".[bench]")

Prints microseconds per batch of 100 keys, measured in the same run, for:
- all HIT: ``StaleEngine.execute_many`` (and ``AsyncStaleEngine``'s), 100 ``execute``
  calls, dogpile.cache's ``get_or_create_multi`` on its memory backend;
- all MISS: the same, each batch on 100 new keys; the upstream is a dict built from the
  keys, measured alone too and subtracted ("fetch excluded");
- beside those 100 hot keys, the working set of issue 14 (bench/_working_set.py): all
  HIT batches of 100 keys (duplicates dropped) drawn in a Zipf (s = 1.0) and in a
  uniform order from 100_000 cached ~200-byte records.

Targets: execute_many faster than both baselines, HIT (in every order) and MISS.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import sys
from collections.abc import Callable

from _harness import Target, measure, report
from _working_set import KEYS as WORKING_KEYS
from _working_set import RECORD, orders
from dogpile.cache import make_region

from swr import AsyncStaleEngine, CacheTTL, StaleEngine, Status

N_KEYS = 100
TTL = CacheTTL(fresh=3600, stale=3600)
KEYS = [f"user:{i}" for i in range(N_KEYS)]


def fetch_many(keys: list[str]) -> dict[str, str]:
    return {key: key for key in keys}


async def afetch_many(keys: list[str]) -> dict[str, str]:
    return {key: key for key in keys}


def fetch_one(key: str) -> str:
    return fetch_many([key])[key]


def creator(*keys: str) -> list[str]:
    return list(keys)


def hit_cases() -> dict[str, Callable[[int], object]]:
    engine = StaleEngine(ttl=TTL)
    engine.execute_many(KEYS, fetch_many)
    assert {r.status for r in engine.execute_many(KEYS, fetch_many).values()} == {Status.HIT}
    fetchers = {key: functools.partial(fetch_one, key) for key in KEYS}
    region = make_region().configure("dogpile.cache.memory", expiration_time=3600)
    region.get_or_create_multi(KEYS, creator)

    loop = asyncio.new_event_loop()
    aengine = loop.run_until_complete(_make_async())
    loop.run_until_complete(aengine.execute_many(KEYS, afetch_many))

    def many(n: int) -> None:
        for _ in range(n):
            engine.execute_many(KEYS, fetch_many)

    def singles(n: int) -> None:
        execute = engine.execute
        for _ in range(n):
            for key in KEYS:
                execute(key, fetchers[key])

    def dogpile(n: int) -> None:
        for _ in range(n):
            region.get_or_create_multi(KEYS, creator)

    def amany(n: int) -> None:
        async def run() -> None:
            for _ in range(n):
                await aengine.execute_many(KEYS, afetch_many)

        loop.run_until_complete(run())

    def asingles(n: int) -> None:
        async def noop() -> str:
            return ""

        async def run() -> None:
            execute = aengine.execute
            for _ in range(n):
                for key in KEYS:
                    await execute(key, noop)

        loop.run_until_complete(run())

    return {
        "HIT execute_many": many,
        "HIT 100 x execute": singles,
        "HIT dogpile get_or_create_multi": dogpile,
        "HIT async execute_many": amany,
        "HIT async 100 x execute": asingles,
    }


async def _make_async() -> AsyncStaleEngine:
    return AsyncStaleEngine(ttl=TTL)


def miss_cases() -> dict[str, Callable[[int], object]]:
    counter = itertools.count()
    engine = StaleEngine(ttl=TTL)
    region = make_region().configure("dogpile.cache.memory", expiration_time=3600)

    def fresh_keys() -> list[str]:
        batch = next(counter)
        return [f"b{batch}:{i}" for i in range(N_KEYS)]

    def fetch_alone(n: int) -> None:
        for _ in range(n):
            fetch_many(fresh_keys())

    def many(n: int) -> None:
        for _ in range(n):
            engine.execute_many(fresh_keys(), fetch_many)

    def singles(n: int) -> None:
        execute = engine.execute
        for _ in range(n):
            for key in fresh_keys():
                execute(key, functools.partial(fetch_one, key))

    def dogpile_creator(*keys: str) -> list[str]:
        return list(fetch_many(list(keys)).values())

    def dogpile(n: int) -> None:
        for _ in range(n):
            region.get_or_create_multi(fresh_keys(), dogpile_creator)

    return {
        "MISS fetch_many alone": fetch_alone,
        "MISS execute_many": many,
        "MISS 100 x execute": singles,
        "MISS dogpile get_or_create_multi": dogpile,
    }


def working_set_cases(batches: int) -> dict[str, Callable[[int], object]]:
    """HIT batches of 100 keys drawn from 100_000 cached records, Zipf and uniform."""
    engine = StaleEngine(ttl=TTL)
    region = make_region().configure("dogpile.cache.memory", expiration_time=3600)
    for key in WORKING_KEYS:
        engine.set(key, RECORD)
    region.set_multi(dict.fromkeys(WORKING_KEYS, RECORD))

    def fetch_records(keys: list[str]) -> dict[str, object]:
        return dict.fromkeys(keys, RECORD)

    def fetch_record() -> object:
        return RECORD

    def records(*keys: str) -> list[object]:
        return [RECORD] * len(keys)

    cases: dict[str, Callable[[int], object]] = {}
    for order, sequence in orders(batches * N_KEYS).items():
        drawn = [
            list(dict.fromkeys(sequence[i : i + N_KEYS]))
            for i in range(0, batches * N_KEYS, N_KEYS)
        ]
        result = engine.execute_many(drawn[0], fetch_records)
        assert {r.status for r in result.values()} == {Status.HIT}

        def many(n: int, drawn: list[list[str]] = drawn) -> None:
            for keys in drawn[:n]:
                engine.execute_many(keys, fetch_records)

        def singles(n: int, drawn: list[list[str]] = drawn) -> None:
            execute = engine.execute
            for keys in drawn[:n]:
                for key in keys:
                    execute(key, fetch_record)

        def dogpile(n: int, drawn: list[list[str]] = drawn) -> None:
            for keys in drawn[:n]:
                region.get_or_create_multi(keys, records)

        cases[f"HIT execute_many, 100_000 keys {order}"] = many
        cases[f"HIT 100 x execute, 100_000 keys {order}"] = singles
        cases[f"HIT dogpile get_or_create_multi, 100_000 keys {order}"] = dogpile
    return cases


def working_set_targets() -> list[Target]:
    return [
        Target(
            f"execute_many / {label}, 100_000 keys {order}",
            f"HIT execute_many, 100_000 keys {order}",
            f"HIT {baseline}, 100_000 keys {order}",
            1.0,
        )
        for order in ("zipf", "uniform")
        for label, baseline in (
            ("100 x execute", "100 x execute"),
            ("dogpile multi", "dogpile get_or_create_multi"),
        )
    ]


def main() -> int:
    hits = {k: v / 1000 for k, v in measure({**hit_cases(), **working_set_cases(200)}, 200).items()}
    misses = {k: v / 1000 for k, v in measure(miss_cases(), 50).items()}
    alone = misses.pop("MISS fetch_many alone")
    excluded = {f"{name} (fetch excluded)": value - alone for name, value in misses.items()}
    ok = report(
        "100 keys, all HIT",
        hits,
        [
            Target("execute_many / 100 x execute", "HIT execute_many", "HIT 100 x execute", 1.0),
            Target(
                "execute_many / dogpile multi",
                "HIT execute_many",
                "HIT dogpile get_or_create_multi",
                1.0,
            ),
            Target(
                "async execute_many / async 100 x execute",
                "HIT async execute_many",
                "HIT async 100 x execute",
                1.0,
            ),
            *working_set_targets(),
        ],
        unit="us/100 keys",
    )
    ok &= report(
        f"100 keys, all MISS (fetch alone: {alone:.1f} us, subtracted)",
        excluded,
        [
            Target(
                "execute_many / 100 x execute",
                "MISS execute_many (fetch excluded)",
                "MISS 100 x execute (fetch excluded)",
                1.0,
            ),
            Target(
                "execute_many / dogpile multi",
                "MISS execute_many (fetch excluded)",
                "MISS dogpile get_or_create_multi (fetch excluded)",
                1.0,
            ),
        ],
        unit="us/100 keys",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
