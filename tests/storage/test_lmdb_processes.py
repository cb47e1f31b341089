"""LMDBStorage across real processes: restart, first open, crashes, eviction, fork.

Worker bodies are in ``lmdb_workers`` (spawned processes import them by name).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from swr.storage import Entry, LMDBStorage
from swr.storage.lmdb import inspect_store
from swr.testing import FakeClock
from tests.storage import lmdb_workers

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")


def run(target: Any, *args: Any, timeout: float = 60) -> None:
    process = SPAWN.Process(target=target, args=args)
    process.start()
    process.join(timeout)
    assert process.exitcode == 0, f"{target.__name__} exited with {process.exitcode}"


def recount(store: LMDBStorage) -> tuple[int, int]:
    backend = store._h.backend
    with backend.env.begin() as txn:
        sizes = [len(k) + len(v) for k, v in txn.cursor(db=backend.entries)]
    return len(sizes), sum(sizes)


def test_a_new_process_reads_the_entries_of_the_last_one_with_their_windows(tmp_path):
    path = str(tmp_path / "cache")
    t = 1_700_000_000.0
    written = {
        "user:1": ({"name": "Ada", "tags": ("a", "b")}, t, t + 60.25, t + 600.5, t + 86400.125),
        "user:2": ("gone", t - 100, t - 90, t - 80, t - 1),
    }
    run(lmdb_workers.write_entries, path, written)
    clock = FakeClock(t + 100)  # stale now; user:2 has died
    with LMDBStorage(path, clock=clock, sweep_interval=None) as store:
        assert store.get("user:1") == Entry(*written["user:1"])
        assert store.get("user:2") is None
        assert inspect_store(path, now=clock()).stale == 1


def test_processes_opening_a_new_directory_at_once_share_one_store(tmp_path):
    path = str(tmp_path / "new" / "cache")
    names = [f"worker{i}" for i in range(4)]
    barrier = SPAWN.Barrier(len(names))
    results = SPAWN.Queue()
    workers = [
        SPAWN.Process(
            target=lmdb_workers.open_write_read, args=(path, name, names, barrier, results)
        )
        for name in names
    ]
    for worker in workers:
        worker.start()
    seen = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    expected = {name: f"from {name}" for name in names}
    assert seen == dict.fromkeys(names, expected)


@pytest.mark.parametrize("durability", ["process", "system"])
def test_a_process_killed_while_writing_loses_no_write_whose_set_returned(tmp_path, durability):
    path = str(tmp_path / "cache")
    receiver, sender = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(target=lmdb_workers.stream_writes, args=(path, durability, sender))
    child.start()
    sender.close()
    reported: list[int] = []
    while len(reported) < 300:
        assert receiver.poll(30), "the writer stopped reporting"
        reported.append(receiver.recv())
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    with contextlib.suppress(EOFError):  # the pipe ends where the writer died
        while receiver.poll(0.1):
            reported.append(receiver.recv())
    with LMDBStorage(path, durability=durability, sweep_interval=None) as store:
        for i in reported:
            got = store.get(f"k{i}")
            assert got is not None, f"k{i} was reported written but is missing"
            assert got.value == f"value {i} " * 10
        stats = store.stats()
        assert stats["entries"] >= len(reported)
        assert (stats["entries"], stats["bytes"]) == recount(store)


def test_the_bound_holds_with_two_processes_writing(tmp_path):
    path = str(tmp_path / "cache")
    max_bytes = 60_000
    results = SPAWN.Queue()
    writers = [
        SPAWN.Process(target=lmdb_workers.fill, args=(path, prefix, 300, max_bytes, results))
        for prefix in ("a", "b")
    ]
    for writer in writers:
        writer.start()
    evictions = [results.get(timeout=60) for _ in writers]
    for writer in writers:
        writer.join(30)
        assert writer.exitcode == 0
    assert all(count > 0 for count in evictions)
    with LMDBStorage(path, max_bytes=max_bytes, sweep_interval=None) as store:
        stats = store.stats()
        assert 0 < stats["bytes"] <= max_bytes
        assert (stats["entries"], stats["bytes"]) == recount(store)
        # The longest-lived records of each writer were never evicted.
        assert all(store.get(f"{p}{i}") is not None for p in "ab" for i in range(290, 300))


def test_a_process_growing_its_smaller_map_never_cuts_the_file_under_another(tmp_path):
    # LMDB truncates the file to the size a process maps when that process maps it
    # writable; growing to less than another process maps would cut off its pages.
    path = str(tmp_path / "cache")
    data = os.path.join(path, "data.mdb")
    now = time.time()
    with LMDBStorage(
        path, map_size=1 << 20, max_bytes=1 << 30, sweep_interval=None, read_cache=0
    ) as store:
        ours, theirs = SPAWN.Pipe()
        worker = SPAWN.Process(target=lmdb_workers.map_large_then_write, args=(path, theirs))
        worker.start()
        theirs.close()  # ours.recv() then fails at once if the worker dies
        try:
            mapped_there = ours.recv()
            assert mapped_there >= 8 << 20
            # This process maps 1 MiB: writing 1.5 MiB makes it grow its own map.
            blobs = {f"near{i}": os.urandom(128 * 1024) for i in range(12)}
            for key, blob in blobs.items():
                store.set(key, Entry(blob, now, now + 60, now + 120, now + 3600))
            assert store.stats()["map_resizes"] >= 1
            assert os.path.getsize(data) >= mapped_there
            assert os.stat(data).st_blocks * 512 >= os.path.getsize(data)
            ours.send("go")
            assert ours.recv() == "ok"
            worker.join(60)
        finally:
            if worker.is_alive():  # a failed assertion above: it still waits for "go"
                worker.kill()
                worker.join(10)
        assert worker.exitcode == 0
        assert all(store.get(key).value == blob for key, blob in blobs.items())
        assert store.get("far19") is not None


def test_a_record_damaged_by_another_process_reads_as_a_counted_miss(tmp_path, clock):
    path = str(tmp_path / "cache")
    with LMDBStorage(path, clock=clock, sweep_interval=None) as store:
        now = clock()
        store.set("k", Entry("v", now, now + 1, now + 2, now + 3))
        assert store.get("k").value == "v"  # now in the read cache too
        run(lmdb_workers.write_garbage, path, b"k", b"\x00garbage from elsewhere")
        with capture_logs() as logs:
            assert store.get("k") is None
        assert [log["event"] for log in logs] == ["corrupt_entry"]
        assert store.stats()["corrupt_entries"] == 1
        assert store.stats()["entries"] == 0


def test_a_lease_left_by_a_dead_process_expires_on_its_own(tmp_path):
    path = str(tmp_path / "cache")
    results = SPAWN.Queue()
    run(lmdb_workers.hold_lease, path, "k", 30, results)  # taken, never released
    assert results.get(timeout=10) is not None
    clock = FakeClock(time.time())
    with LMDBStorage(path, clock=clock, sweep_interval=None) as store:
        assert store.acquire_lease("k", 10) is None  # the dead holder's lease still counts
        clock.advance(31)
        assert store.acquire_lease("k", 10) is not None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads, Python 3.12+
def test_a_forked_child_reopens_the_store_even_with_reads_running_at_fork(tmp_path, clock):
    store = LMDBStorage(tmp_path / "cache", clock=clock, sweep_interval=None)
    now = clock()
    store.set("parent", Entry("from parent", now, now + 60, now + 120, now + 180))
    stop = threading.Event()
    reads = [0]

    def read() -> None:
        while not stop.is_set():
            assert store.get("parent") is not None
            reads[0] += 1

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        while reads[0] < 100:
            time.sleep(0.001)
        pid = os.fork()
        if pid == 0:  # the child: one thread, an inherited environment
            code = 1
            try:
                if store.get("parent").value == "from parent":
                    store.set("child", Entry("from child", now, now + 60, now + 120, now + 180))
                    store.close()
                    code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail("the forked child hung")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        stop.set()
        for reader in readers:
            reader.join(10)
    assert store.get("child").value == "from child"
    assert store.get("parent").value == "from parent"
    store.close()
