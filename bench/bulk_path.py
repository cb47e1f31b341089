"""Bulk loads: execute_many of 100 keys against 100 execute calls and dogpile.cache.

Run: python bench/bulk_path.py   (needs the bench extra: pip install -e ".[bench]")

Prints microseconds per batch of 100 keys, measured in the same run, for:
- all HIT: ``StaleEngine.execute_many`` (and ``AsyncStaleEngine``'s), 100 ``execute``
  calls, dogpile.cache's ``get_or_create_multi`` on its memory backend;
- all MISS: the same, each batch on 100 new keys; the upstream is a dict built from the
  keys, measured alone too and subtracted ("fetch excluded").

Targets: execute_many faster than both baselines, HIT and MISS.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import sys
from collections.abc import Callable

from _harness import Target, measure, report
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


def main() -> int:
    hits = {k: v / 1000 for k, v in measure(hit_cases(), 200).items()}
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
