"""Multiprocess mode: several processes write, one MultiProcessCollector reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn-style workers fork"),
]


def start(mode: str, n: int, directory: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.metrics.mp_worker", mode, str(n)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def scrape(directory: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What a /metrics view of a gunicorn app serves: one collector over all the files."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    text = generate_latest(registry).decode()
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
        assert gauge(samples, "swr_storage_entries") == 1  # livemax
        assert gauge(samples, "swr_storage_healthy") == 1  # livemin
    finally:
        for worker in workers:
            stop(worker)
    for worker in workers:
        mark_process_dead(worker.pid, str(tmp_path))
    samples = scrape(tmp_path)
    assert requests(samples, "hit") == 32  # counters outlive their processes
    assert gauge(samples, "swr_storage_entries") is None  # live gauges do not


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
