"""LMDB stores with damaged files: found at open or while serving, always recovered.

Every run in which LMDB could crash the process happens in a child process, and the
test asserts that it exited normally (status 0) and kept serving.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lmdb
import pytest

from swr.storage import Entry, LMDBStorage, StorageUnavailableError
from swr.storage.lmdb import inspect_store
from tests.storage import lmdb_workers

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
PAGE = 4096


def build(path: Path, count: int = 2000) -> None:
    """A store of ``count`` entries of about 200 bytes written one by one: many pages."""
    now = time.time()
    with LMDBStorage(path, sweep_interval=None) as store:
        for i in range(count):
            store.set(f"k{i}", Entry("v" * 200, now, now + 60, now + 120, now + 3600 + i))


def last_page(path: Path) -> int:
    env = lmdb.open(str(path), max_dbs=4, readonly=True, lock=False)
    try:
        return int(env.info()["last_pgno"])
    finally:
        env.close()


def write_over(path: Path, offset: int, data: bytes) -> None:
    with (path / "data.mdb").open("r+b") as f:
        f.seek(offset)
        f.write(data)


def damage(path: Path, kind: str) -> None:
    data = path / "data.mdb"
    if kind == "truncated to 0":
        os.truncate(data, 0)
    elif kind == "truncated to 4 KiB":
        os.truncate(data, PAGE)
    elif kind == "truncated to half":
        os.truncate(data, (last_page(path) + 1) * PAGE // 2)
    elif kind == "garbage over the meta pages":
        write_over(path, 0, os.urandom(2 * PAGE))
    elif kind == "garbage over the last-used pages":
        last = last_page(path)
        write_over(path, (last - 8) * PAGE, os.urandom(9 * PAGE))
    elif kind == "zeros mid-file":
        write_over(path, last_page(path) // 2 * PAGE, bytes(64 * 1024))
    elif kind == "garbage meta record":
        env = lmdb.open(str(path), max_dbs=4)
        with env.begin(write=True) as txn:
            meta = env.open_db(b"swr-meta", txn=txn)
            for key, value in list(txn.cursor(db=meta)):
                garbage = os.urandom(len(value))
                while garbage.isdigit():  # digits would be a real (other) layout version
                    garbage = os.urandom(len(value))
                txn.put(key, garbage, db=meta)
        env.close()
    else:
        raise ValueError(kind)


def serve(path: Path, operation: str) -> tuple[Any, list[tuple[str, str]], dict[str, int], Any]:
    results = SPAWN.Queue()
    process = SPAWN.Process(target=lmdb_workers.serve_damaged, args=(str(path), operation, results))
    process.start()
    process.join(60)
    assert process.exitcode == 0, f"{operation} on the damaged store exited {process.exitcode}"
    return results.get(timeout=5)


def asides(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


KINDS = [
    "truncated to 0",
    "truncated to 4 KiB",
    "truncated to half",
    "garbage over the meta pages",
    "garbage over the last-used pages",
    "zeros mid-file",
    "garbage meta record",
]
# Damage that opens without error: found only while serving.
AT_RUN_TIME = {"truncated to half", "garbage over the last-used pages", "zeros mid-file"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_store_keeps_serving_and_is_moved_aside_once(tmp_path, kind):
    path = tmp_path / "cache"
    build(path)
    damage(path, kind)
    found, events, stats, back = serve(path, "get")
    assert back == "after"
    if kind == "truncated to 0":  # nothing left to keep: an empty file is a new store
        assert (events, asides(path)) == ([], [])
        return
    assert found < 2000 // 3 + 1
    where = "while serving" if kind in AT_RUN_TIME else "at open"
    assert events == [("lmdb_store_recreated", where)]
    assert stats["stores_recreated"] == (1 if kind in AT_RUN_TIME else 0)
    assert len(asides(path)) == 1 and (asides(path)[0] / "data.mdb").is_file()


@pytest.mark.parametrize("kind", ["truncated to half", "zeros mid-file"])
@pytest.mark.parametrize("operation", ["set", "delete", "sweep", "summary"])
def test_damage_found_by_any_operation_recovers_the_store(tmp_path, kind, operation):
    path = tmp_path / "cache"
    build(path)
    damage(path, kind)
    outcome, events, stats, back = serve(path, operation)
    assert back == "after"
    assert events == [("lmdb_store_recreated", "while serving")]
    assert stats["stores_recreated"] == 1
    if operation == "set":
        assert outcome == 100  # every write went to the new store and reads back
    if operation == "summary":
        assert outcome == 0  # the summary of the new store
    assert len(asides(path)) == 1


def test_only_the_last_damaged_store_is_kept(tmp_path):
    path = tmp_path / "cache"
    for _ in range(2):
        build(path)
        damage(path, "truncated to half")
        serve(path, "get")
    kept = asides(path)
    assert len(kept) == 1


@pytest.mark.parametrize("kind", ["truncated to half", "zeros mid-file"])
def test_inspect_reports_damage_instead_of_dying(tmp_path, kind):
    path = tmp_path / "cache"
    build(path)
    damage(path, kind)
    with pytest.raises(StorageUnavailableError, match="damaged LMDB store"):
        inspect_store(path)
    done = subprocess.run(
        [sys.executable, "-m", "swr", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "damaged LMDB store" in done.stderr and "Traceback" not in done.stderr
    assert asides(path) == []  # inspecting moves nothing


def test_another_layout_version_is_still_refused(tmp_path):
    path = tmp_path / "cache"
    build(path, 10)
    env = lmdb.open(str(path), max_dbs=4)
    with env.begin(write=True) as txn:
        txn.put(b"layout", b"2", db=env.open_db(b"swr-meta", txn=txn))
    env.close()
    with pytest.raises(StorageUnavailableError, match="layout 2, this version reads layout 1"):
        LMDBStorage(path, sweep_interval=None)
    assert asides(path) == []


def test_two_processes_serving_through_damage_end_on_one_new_store(tmp_path):
    path = tmp_path / "cache"
    build(path)
    pipes = {role: SPAWN.Pipe() for role in ("finder", "follower")}
    workers = {
        role: SPAWN.Process(
            target=lmdb_workers.serve_through_damage, args=(str(path), role, pipe[1])
        )
        for role, pipe in pipes.items()
    }
    for worker in workers.values():
        worker.start()
    finder, follower = pipes["finder"][0], pipes["follower"][0]
    try:
        assert finder.poll(60) and finder.recv() == "ready"
        assert follower.poll(60) and follower.recv() == "ready"
        damage(path, "zeros mid-file")
        finder.send("go")
        assert finder.poll(60)
        _, misses, recreated = finder.recv()
        assert misses > 0 and recreated == 1
        follower.send("go")
        reports = [pipe.poll(60) and pipe.recv() for pipe in (finder, follower)]
    finally:
        for worker in workers.values():
            worker.join(60)
    assert [worker.exitcode for worker in workers.values()] == [0, 0]
    assert reports == [("done", True, 1), ("done", True, 0)]
    assert len(asides(path)) == 1


def test_a_process_reading_only_cached_keys_follows_a_replaced_store(tmp_path):
    path = tmp_path / "cache"
    now = time.time()
    with LMDBStorage(path, sweep_interval=0.02) as store:
        store.set("k", Entry("old", now, now + 60, now + 120, now + 180))
        assert store.get("k").value == "old"  # decoded once; later reads are cache hits
        os.rename(path, tmp_path / "aside")  # as a process that found it damaged does
        process = SPAWN.Process(
            target=lmdb_workers.write_entries,
            args=(str(path), {"k": ("new", now, now + 60, now + 120, now + 180)}),
        )
        process.start()
        process.join(60)
        assert process.exitcode == 0
        deadline = time.monotonic() + 10
        while store.get("k").value == "old" and time.monotonic() < deadline:
            time.sleep(0.01)  # the sweeper thread notices within its interval
        assert store.get("k").value == "new"
