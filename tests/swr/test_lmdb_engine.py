"""Both engines on LMDBStorage: windows, warm restarts, singleflight across processes."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from swr import StaleEngine, Status
from swr.storage import LMDBStorage
from swr.storage.serializers import JSONSerializer
from swr.testing import FakeClock
from tests.helpers import wait_until
from tests.storage import lmdb_workers
from tests.swr.upstream import Upstream

TTL = lmdb_workers.TTL  # fresh 60 s, stale 600 s, expired 3600 s
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    with LMDBStorage(tmp_path / "cache", clock=clock, sweep_interval=None) as store:
        yield store


def test_every_window_on_lmdb(make_driver, store, clock):
    engine = make_driver(storage=store, ttl=TTL, clock=clock)
    up = Upstream()
    assert engine.execute("k", up).status is Status.MISS
    assert engine.execute("k", up).status is Status.HIT
    clock.advance(61)
    r = engine.execute("k", up)
    assert (r.status, r.value) == (Status.STALE, "v1")
    engine.settle()
    assert engine.execute("k", up).value == "v2"
    clock.advance(61 + 600)
    up.fail_with()
    r = engine.execute("k", up)
    assert (r.status, r.value) == (Status.FALLBACK, "v2")
    up.recover()
    assert engine.execute("k", up).status is Status.FALLBACK  # backing off: no fetch
    clock.advance(1)  # past the first backoff step
    r = engine.execute("k", up)
    assert (r.status, r.value) == (Status.EXPIRED, "v4")
    assert engine.stats().storage["entries"] == 1


def test_an_engine_serializer_goes_to_a_view_of_the_store(make_driver, store, clock):
    engine = make_driver(storage=store, ttl=TTL, clock=clock, serializer=JSONSerializer())
    engine.execute("k", lambda: {"a": [1, 2]})  # JSON refuses tuples (read back as lists)
    r = engine.execute("k", Upstream())
    assert (r.status, r.value) == (Status.HIT, {"a": [1, 2]})


def test_after_a_restart_an_entry_that_went_stale_is_served_at_once_and_refreshed(
    make_driver, tmp_path, clock
):
    path = tmp_path / "cache"
    with LMDBStorage(path, clock=clock, sweep_interval=None) as before:
        engine = StaleEngine(before, ttl=TTL, clock=clock)
        engine.execute("k", lambda: "old")
        engine.close()
    clock.advance(300)  # the app was down for 5 minutes: the entry turned stale
    with LMDBStorage(path, clock=clock, sweep_interval=None) as after:
        engine = make_driver(storage=after, ttl=TTL, clock=clock)
        up = Upstream()
        gate = up.hold()
        r = engine.execute("k", up)  # answered while the refresh is blocked upstream
        assert (r.status, r.value, r.age) == (Status.STALE, "old", 300)
        assert up.entered.wait(5)
        gate.set()
        engine.settle()
        assert engine.execute("k", up).value == "v1"
        assert up.calls == 1


@pytest.mark.slow
def test_a_new_process_serves_what_the_last_one_stored_in_its_window(tmp_path):
    path = str(tmp_path / "cache")
    t0 = 1_700_000_000.0
    writer = SPAWN.Process(target=lmdb_workers.engine_write, args=(path, "k", "from before", t0))
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0
    clock = FakeClock(t0 + 30)
    with LMDBStorage(path, clock=clock, sweep_interval=None) as store:
        engine = StaleEngine(store, ttl=TTL, clock=clock)
        up = Upstream()
        r = engine.execute("k", up)
        assert (r.status, r.value, r.age) == (Status.HIT, "from before", 30)
        clock.advance(60)
        assert engine.execute("k", up).status is Status.STALE
        wait_until(lambda: engine.stats().refreshes_succeeded == 1)
        assert engine.execute("k", up).value == "v1"
        engine.close()


def run_workers(path: str, key: str, counter: Path, count: int) -> list[tuple[str, str, int]]:
    """Start ``count`` engine processes on ``key`` at once; return what each answered."""
    ready, start, results = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue()
    workers = [
        SPAWN.Process(
            target=lmdb_workers.engine_execute,
            args=(path, key, str(counter), 0.3, ready, start, results),
        )
        for _ in range(count)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=60)
    start.set()
    answers = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    return answers


@pytest.mark.slow
def test_processes_missing_the_same_key_call_the_upstream_once(tmp_path):
    path, counter = str(tmp_path / "cache"), tmp_path / "calls"
    counter.touch()
    answers = run_workers(path, "k", counter, 4)
    assert len(counter.read_text().split()) == 1
    assert len({value for _, value, _ in answers}) == 1
    # All waited for the one fetch (a worker descheduled for its whole 0.3 s would
    # find the value stored and answer HIT: still no second call).
    statuses = [status for status, _, _ in answers]
    assert "miss" in statuses and set(statuses) <= {"miss", "hit"}


@pytest.mark.slow
def test_processes_reading_the_same_stale_key_refresh_it_once(tmp_path):
    import time

    path, counter = str(tmp_path / "cache"), tmp_path / "calls"
    counter.touch()
    now = time.time()
    lmdb_workers.write_entries(path, {"k": ("old", now - 90, now - 30, now + 500, now + 3000)})
    answers = run_workers(path, "k", counter, 4)
    assert len(counter.read_text().split()) == 1
    # Each answered at once with the stale value (or, if it read after the refresh,
    # with the new one as a hit); the others' refreshes were skipped.
    assert all(
        (status, value) == ("stale", "old") or status == "hit" for status, value, _ in answers
    )
    stale = sum(status == "stale" for status, _, _ in answers)
    assert stale >= 1
    assert sum(skipped for _, _, skipped in answers) == stale - 1
    with LMDBStorage(path, sweep_interval=None) as store:
        assert store.get("k").value.startswith("fetched by ")


def test_threads_of_one_process_and_a_second_engine_share_one_fetch(tmp_path, clock):
    path = tmp_path / "cache"
    with (
        LMDBStorage(path, clock=clock, sweep_interval=None) as a,
        LMDBStorage(path, clock=clock, sweep_interval=None) as b,
    ):
        first, second = StaleEngine(a, ttl=TTL, clock=clock), StaleEngine(b, ttl=TTL, clock=clock)
        up = Upstream()
        gate = up.hold()
        results: dict[str, object] = {}
        t1 = threading.Thread(target=lambda: results.setdefault("a", first.execute("k", up)))
        t1.start()
        assert up.entered.wait(5)
        t2 = threading.Thread(target=lambda: results.setdefault("b", second.execute("k", up)))
        t2.start()
        gate.set()
        t1.join(5)
        t2.join(5)
        assert up.calls == 1
        first.close()
        second.close()


def test_hits_on_lmdb_share_one_result_like_memory_hits(tmp_path, clock):
    with LMDBStorage(tmp_path / "cache", clock=clock, sweep_interval=None) as store:
        engine = StaleEngine(store, ttl=TTL, clock=clock)
        engine.execute("k", lambda: {"n": 1})
        first, second = engine.execute("k", Upstream()), engine.execute("k", Upstream())
        assert first is second and first.status is Status.HIT and first.value == {"n": 1}
        clock.advance(10)
        assert first.age == 10  # the shared result measures its age when read
        engine.close()
    with LMDBStorage(tmp_path / "other", clock=clock, sweep_interval=None, read_cache=0) as store:
        engine = StaleEngine(store, ttl=TTL, clock=clock)
        engine.execute("k", lambda: {"n": 1})
        first, second = engine.execute("k", Upstream()), engine.execute("k", Upstream())
        assert first is not second and first == second
        assert first.value is not second.value  # decoded afresh each time
        engine.close()
