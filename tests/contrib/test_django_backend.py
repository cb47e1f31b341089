"""LMDBCache and RedisCache: atomicity across processes, configuration errors, storage."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("django")

from django.core.exceptions import ImproperlyConfigured

from swr.contrib.django import LMDBCache, RedisCache

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["lmdb", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "lmdb":
        return "lmdb", str(tmp_path / "cache")
    server = request.getfixturevalue("redis_server")
    cache = RedisCache(server.url, {})
    cache.clear()
    return "redis", server.url


def make_cache(backend: str, where: str, **params):
    if backend == "lmdb":
        return LMDBCache(where, {"OPTIONS": {"sweep_interval": None}, **params})
    return RedisCache(where, params)


def race(backend: str, where: str, increments: list[int]) -> list:
    """One racing process per item of ``increments`` (its ``incr`` count); their reports."""
    start_at = str(time.time() + 1.0)  # every process imported and waiting by then
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.contrib.django_workers",
                backend,
                where,
                start_at,
                str(n),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in increments
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        results.append(json.loads(out))
    return results


@pytest.mark.slow
def test_processes_racing_add_incr_and_get_or_set(location):
    """6 processes: one ``add`` wins; 4 x 150 ``incr`` make 600; one computation."""
    backend, where = location
    cache = make_cache(backend, where)
    cache.set("counter", 0, timeout=None)
    cache.set("computations", 0, timeout=None)
    reports = race(backend, where, [150, 150, 150, 150, 0, 0])
    winners = [report["pid"] for report in reports if report["added"] is True]
    assert len(winners) == 1
    assert all(report["added"] is False for report in reports if report["pid"] not in winners)
    assert cache.get("winner") == winners[0]
    assert cache.get("counter") == 600
    assert [report["report"] for report in reports] == ["computed"] * 6
    assert cache.get("computations") == 1


def test_incr_keeps_the_timeout_and_refuses_what_is_not_a_number(location):
    backend, where = location
    cache = make_cache(backend, where)
    cache.set("n", 5, timeout=100)
    before = cache.storage.get(cache.make_key("n"))
    assert cache.incr("n", 2) == 7
    after = cache.storage.get(cache.make_key("n"))
    if backend == "redis":  # now a native integer: Redis's TTL kept, one round trip
        skey = cache.storage.prefix + cache.make_key("n")
        assert cache.storage.client.get(skey) == b"7"
        assert 99_000 < cache.storage.client.pttl(skey) <= 100_000
    else:
        assert (after.stored_at, after.expires_at) == (before.stored_at, before.expires_at)
    assert cache.decr("n", 10) == -3
    assert cache.get("n") == -3
    assert cache.get_many(["n"]) == {"n": -3}
    assert cache.has_key("n")
    assert cache.touch("n", 50)
    assert cache.get("n") == -3
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.incr("s")
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")


def test_integers_are_stored_as_integers_and_the_rest_pickled(location):
    backend, where = location
    cache = make_cache(backend, where)
    cache.set("i", 41)
    cache.set("big", 1 << 70)
    cache.set("b", True)
    assert cache.storage.get(cache.make_key("i")).value == 41
    assert pickle.loads(cache.storage.get(cache.make_key("b")).value) is True
    assert cache.incr("big") == (1 << 70) + 1
    assert cache.get("b") is True
    cache.set("f", 1.5)
    assert cache.incr("f") == 2.5  # pickled: Python's own arithmetic
    cache.set("top", (1 << 63) - 1)
    assert cache.incr("top") == 1 << 63  # past int64: pickled again
    assert cache.get("top") == 1 << 63


def test_a_failed_get_or_set_lets_the_next_caller_compute(location):
    backend, where = location
    cache = make_cache(backend, where)

    def fail():
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError, match="upstream down"):
        cache.get_or_set("k", fail)
    assert cache.get_or_set("k", lambda: "fresh") == "fresh"  # the lease was released


def test_clear_removes_every_prefix_and_version(location):
    backend, where = location
    one = make_cache(backend, where)
    other = make_cache(backend, where, KEY_PREFIX="other", VERSION=3)
    one.set("a", 1)
    other.set("a", 2)
    one.clear()
    assert one.get("a") is None
    assert other.get("a") is None


def test_bad_configuration_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="LOCATION must be a directory"):
        LMDBCache("", {})
    with pytest.raises(ImproperlyConfigured, match="bad OPTIONS"):
        LMDBCache(str(tmp_path), {"OPTIONS": {"no_such_option": 1}})
    with pytest.raises(ImproperlyConfigured, match="lease_timeout"):
        LMDBCache(str(tmp_path), {"OPTIONS": {"lease_timeout": 0}})
    with pytest.raises(ImproperlyConfigured, match="pickle_protocol"):
        LMDBCache(str(tmp_path), {"OPTIONS": {"pickle_protocol": "5"}})
    with pytest.raises(ImproperlyConfigured, match="one Redis URL"):
        RedisCache("redis://127.0.0.1:1/0,redis://127.0.0.1:2/0", {})


def test_cull_options_are_accepted_and_ignored(tmp_path):
    options = {"MAX_ENTRIES": 2, "CULL_FREQUENCY": 2, "sweep_interval": None}
    cache = LMDBCache(str(tmp_path), {"OPTIONS": options})
    cache.set_many({f"k{i}": i for i in range(5)})
    assert len(cache.get_many([f"k{i}" for i in range(5)])) == 5
    cache.storage.close()


async def test_async_methods_reach_the_same_store(location):
    backend, where = location
    cache = make_cache(backend, where)
    await cache.aset("a", {"x": 1})
    assert await cache.aget("a") == {"x": 1}
    assert await cache.aadd("a", 2) is False
    cache.set("n", 1)
    assert await cache.aincr("n") == 2


async def test_aget_or_set_computes_once_for_concurrent_callers(location):
    import asyncio

    backend, where = location
    cache = make_cache(backend, where)
    calls = []

    def compute():
        calls.append(1)
        return "value"

    results = await asyncio.gather(*(cache.aget_or_set("k", compute) for _ in range(4)))
    assert results == ["value"] * 4
    assert len(calls) == 1
    assert await cache.aget_or_set("plain", "default") == "default"
    assert cache.get("plain") == "default"


def test_get_or_set_waits_for_the_lease_holder_value(location):
    import threading

    backend, where = location
    cache = make_cache(backend, where)
    lease = cache.make_key("k") + "\x00get_or_set"
    token = cache.storage.acquire_lease(lease, 30)  # another process is computing "k"

    def holder():
        cache.set("k", "theirs")
        cache.storage.release_lease(lease, token)

    timer = threading.Timer(0.2, holder)
    timer.start()
    try:
        assert cache.get_or_set("k", lambda: "mine") == "theirs"
    finally:
        timer.join()
