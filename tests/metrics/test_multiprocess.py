"""Multiprocess mode: several processes write, one MultiProcessCollector reads."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from swr.storage import LMDBStorage
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn-style workers fork"),
]


def start(mode: str, n: int, directory: Path, lmdb: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    extra = [str(lmdb)] if lmdb else []
    return subprocess.Popen(
        [sys.executable, "-m", "tests.metrics.mp_worker", mode, str(n), *extra],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def scrape(directory: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What a /metrics view of a gunicorn app serves: one collector over all the files.

    A worker may be creating its file as it is read (empty for an instant), which
    prometheus_client's reader does not survive; a scrape a moment later does.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    for _ in range(100):
        try:
            text = generate_latest(registry).decode()
            break
        except struct.error:
            continue
    else:
        raise AssertionError("the multiprocess files stayed unreadable")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests(samples, status: str) -> float:
    return samples.get(
        ("swr_requests_total", frozenset({("engine", "web"), ("status", status)})), 0
    )


def gauge(samples, name: str) -> float | None:
    return samples.get((name, frozenset({("engine", "web")})))


def ask(worker: subprocess.Popen[str], command: str) -> str:
    """Send one command to a worker (see mp_worker) and read its answer."""
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(command + "\n")
    worker.stdin.flush()
    return worker.stdout.readline().strip()


def stop(worker: subprocess.Popen[str]) -> None:
    worker.communicate("\n", timeout=30)  # closes the pipes too
    assert worker.returncode == 0


def test_three_workers_add_up_and_dead_ones_leave_the_live_gauges(tmp_path):
    workers = [start("serve", n, tmp_path) for n in (5, 10, 20)]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        samples = scrape(tmp_path)
        assert requests(samples, "miss") == 3
        assert requests(samples, "hit") == 4 + 9 + 19
        assert gauge(samples, "swr_refreshes_running") == 0  # livesum over 3 workers
        # three memory storages of one entry each: process-local sizes add up
        assert gauge(samples, "swr_storage_entries") == 3
        assert gauge(samples, "swr_storage_healthy") == 1  # livemin
    finally:
        for worker in workers:
            stop(worker)
    for worker in workers:
        mark_process_dead(worker.pid, str(tmp_path))
    samples = scrape(tmp_path)
    assert requests(samples, "hit") == 32  # counters outlive their processes
    assert gauge(samples, "swr_storage_entries") is None  # live gauges do not


def test_a_shared_lmdb_is_counted_once_whichever_workers_live(tmp_path):
    files, cache = tmp_path / "metrics", tmp_path / "cache"
    files.mkdir()
    workers = [start("thread", n, files, lmdb=cache) for n in (2, 3, 4)]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        with LMDBStorage(cache) as storage:  # what any one process sees: the whole store
            seen = storage.stats()
        assert seen["entries"] == 1
        expected = (1.0, float(seen["bytes"]))

        def sizes() -> tuple[float | None, float | None]:
            samples = scrape(files)
            return gauge(samples, "swr_storage_entries"), gauge(samples, "swr_storage_bytes")

        wait_until(lambda: sizes() == expected, timeout=20)
        answers = lambda: requests(scrape(files), "hit") + requests(scrape(files), "miss")  # noqa: E731
        wait_until(lambda: answers() == 2 + 3 + 4, timeout=20)  # the counts still add up
        roles = [ask(worker, "role") for worker in workers]
        assert sorted(roles) == ["other", "other", "reporter"]  # one reports, two write 0
        # The reporter gone (and marked dead, as gunicorn's child_exit hook does): one
        # of the others takes over within a flush, and the size is still counted once.
        reporter = workers[roles.index("reporter")]
        stop(reporter)
        mark_process_dead(reporter.pid, str(files))
        wait_until(lambda: sizes() == expected, timeout=20)
        alive = [worker for worker in workers if worker is not reporter]
        wait_until(lambda: sorted(ask(w, "role") for w in alive) == ["other", "reporter"])
        # The new reporter's adapter closed while its process lives: it writes 0 and
        # lets go; the last worker takes over.
        reporter = next(w for w in alive if ask(w, "role") == "reporter")
        assert ask(reporter, "close") == "closed"
        wait_until(lambda: sizes() == expected, timeout=20)
        last = next(w for w in alive if w is not reporter)
        assert ask(last, "role") == "reporter"
        # Its engine gone: the size it wrote goes back to 0 and nobody reports it.
        assert ask(last, "forget") == "forgotten"
        assert ask(last, "role") == "other"
        assert sizes() == (0.0, 0.0)
    finally:
        for worker in workers:
            if worker.returncode is None:
                stop(worker)


def test_the_flush_thread_writes_without_being_asked(tmp_path):
    worker = start("thread", 7, tmp_path)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
        wait_until(lambda: requests(scrape(tmp_path), "hit") == 6, timeout=20)
        assert requests(scrape(tmp_path), "miss") == 1
    finally:
        stop(worker)


def test_a_forked_child_counts_only_its_own_answers(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tests.metrics.mp_worker", "fork", "4"],
        cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    samples = scrape(tmp_path)
    assert requests(samples, "miss") == 1  # the parent's, not copied by the child
    assert requests(samples, "hit") == 4


def test_which_storages_count_as_shared(tmp_path):
    from swr import StaleEngine
    from swr.metrics._local import storage_shared

    with StaleEngine(name="m") as memory, LMDBStorage(tmp_path / "db") as lmdb:
        with StaleEngine(lmdb, name="l") as on_lmdb:
            assert not storage_shared(memory.stats)  # one per process: sizes add up
            assert storage_shared(on_lmdb.stats)  # one for all processes: counted once
    assert not storage_shared(lambda: None)  # not an engine's: each process its own
