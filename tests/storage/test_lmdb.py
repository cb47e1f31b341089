"""LMDBStorage specifics in one process: settings, keys, corruption, size, sweep, views."""

from __future__ import annotations

import asyncio
import errno
import math
import os
import sys
import threading
from dataclasses import astuple
from pathlib import Path
from typing import Any

import lmdb
import pytest
from structlog.testing import capture_logs

import swr.storage.lmdb._files
import swr.storage.lmdb._process
from swr.storage import Entry, LMDBStorage, StorageError, StorageFullError, StorageUnavailableError
from swr.storage.lmdb import inspect_store
from swr.storage.serializers import JSONSerializer, MsgpackSerializer
from swr.testing import FakeClock


def entry(value: object, clock: FakeClock, lifetime: float = 60.0, start: float = 0.0) -> Entry:
    now = clock() + start
    return Entry(value, now, now + lifetime / 4, now + lifetime / 2, now + lifetime)


@pytest.fixture
def make(tmp_path: Path, clock: FakeClock):
    made: list[LMDBStorage] = []

    def make(name: str = "store", **kwargs: Any) -> LMDBStorage:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("sweep_interval", None)
        store = LMDBStorage(tmp_path / name, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def allocated(store: LMDBStorage) -> bool:
    """Whether the data file has disk blocks up to its end (no hole a write could fault on)."""
    stat = os.stat(Path(store.path) / "data.mdb")
    return stat.st_blocks * 512 >= stat.st_size >= store.stats()["map_size"]


def raw_put(store: LMDBStorage, key: bytes, value: bytes) -> None:
    """Write bytes straight into the entries database, as a damaged disk or a foreign writer."""
    backend = store._h.backend
    with backend.env.begin(write=True) as txn:
        txn.put(key, value, db=backend.entries)


def raw_get(store: LMDBStorage, key: bytes) -> bytes | None:
    backend = store._h.backend
    with backend.env.begin() as txn:
        return txn.get(key, db=backend.entries)


def recount_items(store: LMDBStorage) -> list[tuple[bytes, bytes]]:
    backend = store._h.backend
    with backend.env.begin() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=backend.entries)]


def recount(store: LMDBStorage) -> tuple[int, int]:
    """(entries, bytes) counted record by record."""
    backend = store._h.backend
    with backend.env.begin() as txn:
        sizes = [len(k) + len(v) for k, v in txn.cursor(db=backend.entries)]
    return len(sizes), sum(sizes)


def test_records_the_inline_read_refuses_are_corrupt_too(make, clock):
    """get() decodes the common record inline; every variant off that path is judged."""
    store = make()
    long_key = "k" * (store._key_limit + 10)  # stored under a digest, with a key check
    store.set("plain", entry({"a": [1, 2]}, clock))
    store.set(long_key, entry("long", clock))
    record = raw_get(store, b"plain")
    assert record is not None
    (long_kb,) = [kb for kb, _ in recount_items(store) if kb.startswith(b"kkk")]
    long_record = raw_get(store, long_kb)
    assert long_record is not None
    times = record[4:36]
    swapped = times[8:16] + times[:8] + times[16:]  # fresh_until before stored_at
    garbage = {
        b"unordered": record[:4] + swapped + record[36:],
        b"trailing": record + b"\xc0",  # a second msgpack object after the value
        b"checked": record[:36] + b"\x01\x00" + record[38:],  # a key check no key needs
        b"flagged": record[:3] + b"\x01" + record[4:],
    }
    for key, value in garbage.items():
        raw_put(store, key, value)
    # The long key's record without its key check: the inline layout, wrong for it.
    raw_put(store, long_kb, long_record[:36] + b"\x00\x00" + long_record[38 + len(long_key) :])
    with capture_logs() as logs:
        for key in [*(k.decode() for k in garbage), long_key]:
            assert store.get(key) is None
    assert len(logs) == len(garbage) + 1
    assert store.stats()["corrupt_entries"] == len(garbage) + 1
    assert store.get("plain").value == {"a": [1, 2]}


def test_stamps_sort_as_the_numbers_do():
    from swr.storage.lmdb._format import _stamp

    values = [
        -math.inf,
        -1e300,
        -1.5,
        -5e-324,
        -0.0,
        0.0,
        5e-324,
        1.0,
        1.7e9,
        1e300,
        math.inf,
    ]
    stamps = [_stamp(value) for value in values]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)  # -0.0 and 0.0 too: the bits differ
    assert all(len(stamp) == 8 for stamp in stamps)


def test_lease_tokens_are_unique_across_processes_forked_or_not(make, tmp_path):
    store = make()
    tokens = {store.acquire_lease(f"k{i}", 30) for i in range(100)}
    assert None not in tokens
    assert len(tokens) == 100
    if not hasattr(os, "fork"):
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            token = store.acquire_lease("child", 30) or ""
            os.write(write, token.encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    parent = store.acquire_lease("parent", 30)
    assert child
    assert child not in tokens
    assert child[:16] != parent[:16]  # the child drew its own random part


# -- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"durability": "disk"}, ValueError, ["durability", "'process', 'system'", "'disk'"]),
        ({"max_bytes": 0}, ValueError, ["max_bytes", ">= 1"]),
        ({"max_bytes": "1GB"}, TypeError, ["max_bytes", "int"]),
        ({"max_bytes": True}, TypeError, ["max_bytes"]),
        ({"map_size": 1000}, ValueError, ["map_size"]),
        ({"max_readers": 0}, ValueError, ["max_readers"]),
        ({"read_cache": -1}, ValueError, ["read_cache"]),
        ({"sweep_interval": 0}, ValueError, ["sweep_interval"]),
        ({"sweep_interval": float("inf")}, ValueError, ["sweep_interval"]),
        ({"sweep_interval": "1s"}, TypeError, ["sweep_interval"]),
        ({"clock": 5}, TypeError, ["clock"]),
        ({"serializer": object()}, TypeError, ["serializer"]),
    ],
)
def test_bad_settings_fail_in_the_constructor_naming_the_field(tmp_path, kwargs, error, words):
    with pytest.raises(error) as info:
        LMDBStorage(tmp_path / "s", **kwargs)
    for word in words:
        assert word in str(info.value)


def test_a_path_that_is_a_file_or_empty_is_refused(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("not a directory")
    with pytest.raises(StorageUnavailableError, match="file"):
        LMDBStorage(afile, sweep_interval=None)
    with pytest.raises(ValueError, match="path"):
        LMDBStorage("", sweep_interval=None)


def test_directory_and_parents_are_created(tmp_path, clock):
    path = tmp_path / "a" / "b" / "cache"
    with LMDBStorage(path, clock=clock, sweep_interval=None) as store:
        store.set("k", entry("v", clock))
    assert (path / "data.mdb").is_file()
    assert store.path == str(path.resolve())


def test_durability_chooses_flush_per_commit(make):
    process = make("p")
    system = make("s", durability="system")
    assert process._h.backend.env.flags()["sync"] is False
    assert system._h.backend.env.flags()["sync"] is True
    assert (process.durability, system.durability) == ("process", "system")
    # Both write pages straight into the map, whose file is allocated to its end.
    for store in (process, system):
        assert store._h.backend.env.flags()["writemap"] is True
        assert allocated(store)


# -- keys and entries --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "error", "words"),
    [
        ("", ValueError, "empty"),
        (5, TypeError, "str"),
        (b"bytes", TypeError, "str"),
        (["a"], TypeError, "str"),
        (None, TypeError, "str"),
        ("\ud800", ValueError, "UTF-8"),
    ],
)
def test_bad_keys_raise_naming_the_problem(make, clock, key, error, words):
    store = make()
    with pytest.raises(error, match=words):
        store.get(key)
    with pytest.raises(error, match=words):
        store.set(key, entry("v", clock))
    with pytest.raises(error, match=words):
        store.delete(key)
    with pytest.raises(error, match=words):
        store.acquire_lease(key, 1)
    with pytest.raises(error, match=words):
        store.get_many(["ok", key])


@pytest.mark.parametrize(
    "times",
    [
        (float("inf"), float("inf"), float("inf"), float("inf")),
        (0.0, 1.0, float("nan"), 3.0),
        (0.0, 5.0, 2.0, 3.0),
    ],
)
def test_entries_with_times_that_cannot_be_read_back_are_refused(make, times):
    store = make()
    with pytest.raises(ValueError, match="ordered"):
        store.set("k", Entry("v", *times))
    assert store.get("k") is None


def test_only_entries_are_stored(make):
    with pytest.raises(TypeError, match="Entry"):
        make().set("k", ("v", 0, 1, 2, 3))  # type: ignore[arg-type]


def test_long_keys_are_stored_under_a_digest_and_a_collision_reads_as_a_miss(make, clock):
    store = make()
    long_a, long_b = "k" * 700 + "a", "k" * 700 + "b"
    store.set(long_a, entry("A", clock))
    stored_key, check = store._key(long_a)
    assert len(stored_key) <= 503 and b"#" in stored_key and check == long_a.encode()
    assert raw_get(store, stored_key) is not None
    # Make B's digest hold A's record, as a digest collision would.
    b_key, _ = store._key(long_b)
    raw_put(store, b_key, raw_get(store, stored_key))
    with capture_logs() as logs:
        assert store.get(long_b) is None
    assert store.get(long_a).value == "A"
    assert [log["event"] for log in logs] == ["corrupt_entry"]
    assert "another key" in logs[0]["error"]
    assert raw_get(store, b_key) is None


@pytest.mark.parametrize("size", [65_535, 65_536, 70_000, 1 << 20])
def test_keys_of_any_length_are_stored(make, clock, size):
    store = make()
    key = "é" * (size // 2) + "k" * (size % 2)  # two UTF-8 bytes a character
    other = key[:-1] + "z"
    store.set(key, entry("long", clock))
    store.set_many({other: entry("other", clock)})
    assert store.get(key).value == "long"
    assert [e.value for e in store.get_many([key, other])] == ["long", "other"]
    assert store.acquire_lease(key, 5) is not None
    assert store.acquire_lease(key, 5) is None
    assert store.delete(key) is True
    assert store.get(key) is None
    assert store.get(other).value == "other"


def test_a_digest_collision_of_keys_longer_than_a_record_check_reads_as_a_miss(make, clock):
    store = make()
    long_a, long_b = "k" * 70_000 + "a", "k" * 70_000 + "b"
    store.set(long_a, entry("A", clock))
    a_key, a_check = store._key(long_a)
    b_key, b_check = store._key(long_b)
    assert len(a_check) == 73 and a_check != b_check  # length and SHA-512, not the key
    raw_put(store, b_key, raw_get(store, a_key))  # B's digest holds A's record
    with capture_logs() as logs:
        assert store.get(long_b) is None
    assert store.get(long_a).value == "A"
    assert "another key" in logs[0]["error"]


# -- corruption --------------------------------------------------------------------------


def test_garbage_records_read_as_misses_and_are_deleted_logged_and_counted(make, clock):
    store = make()
    store.set("good", entry("fine", clock))
    keys = ["random", "foreign", "badpayload", "badversion", "truncated"]
    for key in keys:
        store.set(key, entry("a value of some length", clock))
    record = raw_get(store, b"random")
    size = len(record)
    # What a damaged disk or another program could leave (same sizes, so the byte
    # total stays exact; a record's bytes are subtracted when it is deleted).
    garbage = {
        b"random": os.urandom(size),
        b"foreign": (b"someone else's data " * 10)[:size],
        b"badpayload": record[:38] + b"\xc1" * (size - 38),  # header intact
        b"badversion": record[:2] + b"\x09" + record[3:],
        b"truncated": record[:20],
    }
    for key, value in garbage.items():
        raw_put(store, key, value)
    with capture_logs() as logs:
        for key in keys:
            assert store.get(key) is None
    events = [(log["event"], log["key"], log["backend"]) for log in logs]
    assert events == [("corrupt_entry", key, "lmdb") for key in keys]
    assert store.stats()["corrupt_entries"] == len(keys)
    assert all(raw_get(store, key) is None for key in garbage)
    assert store.get("good").value == "fine"
    entries, size_now = recount(store)
    assert entries == 1
    # Exact but for the truncated record, whose lost bytes are still counted.
    assert store.stats()["bytes"] == size_now + size - 20


def test_a_corrupt_record_rewritten_meanwhile_is_kept(make, clock):
    store = make()
    raw_put(store, b"k", b"garbage")
    backend = store._h.backend
    store.set("k", entry("new", clock))  # someone rewrote it after we read the garbage
    assert backend.write(backend.drop_if_same, b"k", b"garbage") is False
    assert store.get("k").value == "new"


def test_a_damaged_store_is_moved_aside_and_recreated(tmp_path, clock):
    path = tmp_path / "cache"
    with LMDBStorage(path, clock=clock, sweep_interval=None) as store:
        store.set("k", entry("v", clock))
    with (path / "data.mdb").open("r+b") as f:
        f.write(os.urandom(16384))  # both meta pages and more
    with capture_logs() as logs:
        store = LMDBStorage(path, clock=clock, sweep_interval=None)
    try:
        events = [log for log in logs if log["event"] == "lmdb_store_recreated"]
        assert len(events) == 1 and events[0]["log_level"] == "error"
        aside = Path(events[0]["moved_to"])
        assert aside.parent == tmp_path and aside.name.startswith("cache.corrupt-")
        assert (aside / "data.mdb").is_file()
        assert store.get("k") is None
        store.set("k", entry("again", clock))
        assert store.get("k").value == "again"
    finally:
        store.close()


def test_a_store_replaced_under_a_process_is_followed_and_its_old_backend_retired(make, clock):
    store = make()
    store.set("k", entry("old", clock))
    old = store._h.backend
    with capture_logs() as logs:
        swr.storage.lmdb._process._recover(old, None)  # as on finding another file there
    assert [log["event"] for log in logs] == ["lmdb_store_followed"]
    with pytest.raises(StorageUnavailableError, match="replaced"):
        with old.reading():
            pass  # a sweep still running on it ends instead of waiting forever
    with pytest.raises(StorageUnavailableError, match="replaced"):
        old.write(old.delete, b"k")
    assert store.get("k").value == "old"  # the same files: reopened, nothing lost
    assert store._h.backend is not old


def test_a_directory_holding_another_lmdb_database_is_refused_untouched(tmp_path):
    path = tmp_path / "theirs"
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(b"their", b"data")
    env.close()
    size = (path / "data.mdb").stat().st_size
    with pytest.raises(StorageUnavailableError, match="not an swr store"):
        LMDBStorage(path, sweep_interval=None)
    assert (path / "data.mdb").stat().st_size == size
    env = lmdb.open(str(path))
    with env.begin() as txn:
        assert list(txn.cursor()) == [(b"their", b"data")]
    env.close()


# -- reads -------------------------------------------------------------------------------


def test_reads_share_decoded_values_until_the_stored_bytes_change(make, clock):
    store = make()
    other = make()  # the same directory through another storage, like another process
    store.set("k", entry({"n": 1}, clock))
    first = store.get("k")
    assert store.get("k") is first
    other.set("k", entry({"n": 2}, clock))
    assert store.get("k").value == {"n": 2}
    other.delete("k")
    assert store.get("k") is None


def test_read_cache_zero_decodes_a_fresh_copy_each_time(make, clock):
    store = make(read_cache=0)
    store.set("k", entry({"n": 1}, clock))
    a, b = store.get("k"), store.get("k")
    assert a == b and a is not b and a.value is not b.value


def test_read_cache_is_bounded(make, clock):
    store = make(read_cache=3)
    for i in range(10):
        store.set(f"k{i}", entry(i, clock))
        store.get(f"k{i}")
    assert len(store._cache) == 3
    assert [store.get(f"k{i}").value for i in range(10)] == list(range(10))


def test_a_full_read_cache_keeps_keys_read_twice_and_drops_its_oldest_eighth(make, clock):
    store = make(read_cache=16)
    for i in range(17):
        store.set(f"k{i}", entry(i, clock))
        store.get(f"k{i}")
    # Full from the size a trim leaves (16 - 16 // 8 = 14 keys): a key read once more
    # is not kept (over a large working set most are not read again), a key read
    # again is, and going over the limit pushes out the oldest and an eighth more.
    assert list(store._cache.items) == [f"k{i}" for i in range(14)]
    for i in (14, 15, 16):
        assert store.get(f"k{i}").value == i
    assert list(store._cache.items) == [f"k{i}" for i in range(3, 17)]
    store.get("k0")  # the room the trim made does not take a key read once
    assert len(store._cache) == 14
    assert store.get("k0").value == 0
    assert len(store._cache) == 15


def test_batches_read_and_write_in_one_transaction(make, clock):
    store = make()
    store.set_many({"a": entry(1, clock), "b": entry(2, clock), "c" * 600: entry(3, clock)})
    raw_put(store, b"bad", b"garbage")
    got = store.get_many(["a", "missing", "c" * 600, "bad", "b"])
    assert [e.value if e else None for e in got] == [1, None, 3, None, 2]
    assert store.stats()["corrupt_entries"] == 1


def test_dead_entries_read_as_none_but_are_kept_until_swept(make, clock):
    store = make()
    store.set("k", entry("v", clock, lifetime=10))
    clock.advance(10)
    assert store.get("k") is None
    assert "k" not in store
    assert store.stats()["entries"] == 1
    assert store.delete("k") is True  # it was there, dead


# -- size: map growth, eviction ----------------------------------------------------------


def test_the_map_grows_when_full_while_other_threads_read(make, clock):
    store = make(map_size=1 << 20, max_bytes=1 << 30, read_cache=0)
    store.set("reader-key", entry("r", clock))
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                assert store.get("reader-key").value == "r"
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        blobs = {f"blob{i}": os.urandom(64 * 1024) for i in range(48)}  # 3 MiB, incompressible
        for key, blob in blobs.items():
            store.set(key, entry(blob, clock))
    finally:
        stop.set()
        for t in readers:
            t.join(10)
    assert errors == []
    stats = store.stats()
    assert stats["map_resizes"] >= 2
    assert stats["map_size"] >= 3 << 20
    assert allocated(store)
    assert all(store.get(key).value == blob for key, blob in blobs.items())


def test_a_full_disk_fails_the_write_that_needs_more_map_not_the_process(make, clock, monkeypatch):
    # With a writable map, writing into an unallocated page of a full disk would be a
    # SIGBUS: the map only grows once the file's blocks are allocated.
    store = make(map_size=1 << 20, max_bytes=1 << 30, read_cache=0)
    store.set("kept", entry("v", clock))
    data = Path(store.path) / "data.mdb"
    size = data.stat().st_size
    allocate = os.posix_fallocate

    def disk_full(fd: int, offset: int, length: int) -> None:
        if offset + length > size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        allocate(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", disk_full)
    blob = os.urandom(2 << 20)
    with pytest.raises(StorageFullError, match="no space left"):
        store.set("big", entry(blob, clock))
    assert data.stat().st_size == size  # the map gave back its unallocated tail
    assert store.stats()["map_size"] == size
    assert allocated(store)
    assert store.get("kept").value == "v"
    assert store.get("big") is None
    store.set("small", entry("s", clock))  # what fits still works
    monkeypatch.undo()
    store.set("big", entry(blob, clock))
    assert store.get("big").value == blob
    assert allocated(store)


def test_copy_on_write_filesystems_get_writes_through_the_file(make, clock, monkeypatch):
    # Allocating a file up front reserves nothing on btrfs or ZFS: a full disk could then
    # fault a write into the map, so LMDB writes pages through the file there.
    monkeypatch.setattr(
        swr.storage.lmdb._files, "_filesystem_type", lambda path: 0x9123683E
    )  # btrfs
    allocations: list[int] = []
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, offset, size: allocations.append(size))
    store = make(map_size=1 << 20, max_bytes=1 << 30, read_cache=0)
    assert store._h.backend.env.flags()["writemap"] is False
    blobs = {f"blob{i}": os.urandom(64 * 1024) for i in range(40)}  # grows the map
    for key, blob in blobs.items():
        store.set(key, entry(blob, clock))
    assert store.stats()["map_resizes"] >= 1
    assert all(store.get(key).value == blob for key, blob in blobs.items())
    assert allocations == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="statfs magic numbers")
def test_the_filesystem_type_is_read_with_statfs(tmp_path):
    assert isinstance(swr.storage.lmdb._files._filesystem_type(str(tmp_path)), int)
    assert swr.storage.lmdb._files._filesystem_type(str(tmp_path / "missing")) is None


def test_eviction_takes_dead_entries_first_then_those_closest_to_their_end(make, clock):
    store = make(max_bytes=40_000, read_cache=0)
    payload = "x" * 900  # about 1 KB a record
    for i in range(5):
        store.set(f"dead{i}", entry(payload, clock, lifetime=1))
    clock.advance(10)  # dead now (an entry written dead is not kept at all)
    for i in range(30):
        store.set(f"live{i}", entry(payload, clock, lifetime=1000 + i))  # ~35 KB in all
    assert store.stats()["evictions"] == 0
    for i in range(10):
        store.set(f"late{i}", entry(payload, clock, lifetime=5000 + i))
    stats = store.stats()
    assert stats["bytes"] <= 40_000
    assert (stats["entries"], stats["bytes"]) == recount(store)
    written = [f"dead{i}" for i in range(5)] + [f"live{i}" for i in range(30)]
    gone = {k for k in written if raw_get(store, k.encode()) is None}
    assert {f"dead{i}" for i in range(5)} <= gone
    # Live entries go in order of expiry: the survivors are the longest-lived.
    evicted_live = sorted(int(k[4:]) for k in gone if k.startswith("live"))
    assert evicted_live == list(range(len(evicted_live))) and evicted_live
    assert all(store.get(f"late{i}") is not None for i in range(10))
    assert stats["evictions"] == len(gone)


def test_eviction_frees_a_batch_not_one_entry_per_write(make, clock, monkeypatch):
    store = make(max_bytes=20_000, read_cache=0)
    backend = store._h.backend
    evictions: list[int] = []
    evict = backend._evict

    def counting(*args: Any) -> Any:
        result = evict(*args)
        evictions.append(result[1])
        return result

    monkeypatch.setattr(backend, "_evict", counting)
    for i in range(60):
        store.set(f"k{i}", entry("x" * 900, clock, lifetime=100 + i))
    assert store.stats()["bytes"] <= 20_000
    # Each eviction frees down to 90% of the bound: several entries at a time, and
    # far fewer evicting writes than writes over the bound.
    assert evictions and min(evictions) >= 2
    assert len(evictions) < 60 - 20


def test_a_damaged_byte_total_costs_one_eviction_round_not_every_write(make, clock):
    store = make(max_bytes=100_000)
    for i in range(10):
        store.set(f"k{i}", entry(i, clock))
    backend = store._h.backend
    with backend.env.begin(write=True) as txn:  # garbage where the total is kept
        txn.put(b"\xff\xffbytes", (1 << 62).to_bytes(8, "little"), db=backend.expiry)
    store.set("new", entry("n", clock))
    assert store.get("new").value == "n"  # everything else went: the total looked full
    entries, size = recount(store)
    assert (entries, store.stats()["bytes"]) == (1, size)  # and is exact again
    store.set("next", entry("x", clock))
    assert store.get("new").value == "n" and store.stats()["evictions"] == 10


def test_the_entry_just_written_is_never_evicted(make, clock):
    store = make(max_bytes=10_000, read_cache=0)
    for i in range(9):
        store.set(f"k{i}", entry("x" * 900, clock, lifetime=1000))
    store.set("short", entry("y" * 900, clock, lifetime=1))  # closest to its end
    assert store.get("short").value == "y" * 900
    assert store.stats()["bytes"] <= 10_000


def test_a_batch_larger_than_max_bytes_keeps_its_longest_lived(make, clock):
    store = make(max_bytes=10_000, read_cache=0)
    store.set_many({f"k{i}": entry("x" * 900, clock, lifetime=100 + i) for i in range(20)})
    stats = store.stats()
    assert stats["bytes"] <= 10_000 and stats["evictions"] > 0
    kept = [i for i in range(20) if store.get(f"k{i}") is not None]
    assert kept == list(range(20 - len(kept), 20))


def test_a_record_larger_than_max_bytes_is_refused(make, clock):
    store = make(max_bytes=4096)
    with pytest.raises(StorageFullError, match="max_bytes=4096"):
        store.set("big", entry(os.urandom(8192), clock))
    assert store.get("big") is None


def test_overwrites_and_deletes_keep_the_byte_total_exact(make, clock):
    store = make()
    for i in range(50):
        store.set(f"k{i % 7}", entry("v" * i, clock, lifetime=100 + i))
    store.delete("k3")
    store.delete("never")
    assert (store.stats()["entries"], store.stats()["bytes"]) == recount(store)
    # Same size, other expiry: the byte total stays, the index key moves.
    store.set("k6", entry("w" * 48, clock, lifetime=1000))
    assert (store.stats()["entries"], store.stats()["bytes"]) == recount(store)
    backend = store._h.backend
    with backend.env.begin() as txn:
        index = [k for k, _ in txn.cursor(db=backend.expiry) if not k.startswith(b"\xff\xff")]
    assert sorted(k[8:] for k in index) == sorted(f"k{i}".encode() for i in (0, 1, 2, 4, 5, 6))


# -- sweep -------------------------------------------------------------------------------


def test_sweep_removes_dead_entries_in_small_transactions(make, clock, monkeypatch):
    store = make()
    store.set_many({f"short{i}": entry("v", clock, lifetime=10) for i in range(600)})
    store.set_many({f"long{i}": entry("v", clock, lifetime=1000) for i in range(5)})
    backend = store._h.backend
    writes: list[str] = []
    write = backend.write

    def counting(fn: Any, *args: Any) -> Any:
        writes.append(fn.__name__)
        return write(fn, *args)

    monkeypatch.setattr(backend, "write", counting)
    assert store.sweep() == 0  # nothing dead yet: a read finds it out
    assert writes == ["sweep_leases"]
    clock.advance(20)
    writes.clear()
    assert store.sweep() == 600
    assert writes.count("sweep_batch") == 3  # 256 + 256 + 88
    stats = store.stats()
    assert (stats["entries"], stats["expired_removed"]) == (5, 600)
    assert (stats["entries"], stats["bytes"]) == recount(store)


def test_sweep_removes_leases_of_dead_holders(make, clock):
    store = make()
    store.acquire_lease("dead-holder", 5)
    live = store.acquire_lease("live-holder", 100)
    clock.advance(10)
    store.sweep()
    assert inspect_store(store.path).leases == 1
    assert store.acquire_lease("live-holder", 1) is None
    store.release_lease("live-holder", live)


@pytest.mark.slow
def test_the_background_sweep_runs_on_its_interval(tmp_path):
    import time

    with LMDBStorage(tmp_path / "s", sweep_interval=0.05) as store:
        now = time.time()
        store.set("k", Entry("v", now - 10, now - 5, now - 1, now + 0.05))
        deadline = time.monotonic() + 5
        while store.stats()["entries"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.stats()["entries"] == 0
        assert store.stats()["expired_removed"] == 1


# -- leases ------------------------------------------------------------------------------


def test_lease_settings_and_foreign_tokens(make):
    store = make()
    with pytest.raises(ValueError, match="ttl"):
        store.acquire_lease("k", 0)
    with pytest.raises(ValueError, match="ttl"):
        store.acquire_lease("k", float("nan"))
    with pytest.raises(TypeError, match="ttl"):
        store.acquire_lease("k", "1")
    for bad_ttl in (0.0, -1.0, math.inf, math.nan):  # floats: acquire_lease's inline test
        with pytest.raises(ValueError, match="ttl"):
            store.acquire_lease("k", bad_ttl)
    with pytest.raises(ValueError, match="empty"):
        store.acquire_lease("", 30.0)
    with pytest.raises(TypeError, match="str"):
        store.acquire_lease(b"k", 30.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="UTF-8"):
        store.acquire_lease("\ud800", 30.0)
    long_key = "k" * 2000  # over LMDB's key size: leased under its digest, like its entry
    long_token = store.acquire_lease(long_key, 30.0)
    assert long_token is not None and store.acquire_lease(long_key, 30.0) is None
    store.release_lease(long_key, long_token)
    assert store.acquire_lease(long_key, 30.0) is not None
    token = store.acquire_lease("k", 30)
    for bad in ("not-hex", "00" * 8, "", None):
        store.release_lease("k", bad)  # type: ignore[arg-type]
    assert store.acquire_lease("k", 30) is None
    store.release_lease("k", token)
    assert store.acquire_lease("k", 30) is not None


def count_writes(store: LMDBStorage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of every write transaction the store's backend runs."""
    backend = store._h.backend
    write = backend.write
    names: list[str] = []

    def counting(fn: Any, *args: Any) -> Any:
        names.append(fn.__name__)
        return write(fn, *args)

    monkeypatch.setattr(backend, "write", counting)
    return names


def test_set_and_release_stores_and_frees_the_lease_in_one_transaction(make, clock, monkeypatch):
    store = make()
    token = store.acquire_lease("k", 30)
    writes = count_writes(store, monkeypatch)
    store.set_and_release("k", entry("fetched", clock), token)
    assert writes == ["put_and_release"]
    assert store.get("k").value == "fetched"
    assert store.acquire_lease("k", 30) is not None  # free again


def test_set_and_release_with_a_lease_taken_over_keeps_the_new_holders(make, clock):
    store = make()
    mine = store.acquire_lease("k", 5)
    clock.advance(6)  # mine expired; another holder takes it
    theirs = store.acquire_lease("k", 30)
    store.set_and_release("k", entry("late", clock), mine)
    assert store.get("k").value == "late"
    assert store.acquire_lease("k", 30) is None  # still theirs
    store.release_lease("k", theirs)
    store.set_and_release("k", entry("no lease", clock), "not-a-token")
    assert store.get("k").value == "no lease"


def test_set_and_release_of_a_refused_entry_still_frees_the_lease(make):
    store = make()
    token = store.acquire_lease("k", 30)
    with pytest.raises(ValueError, match="ordered"):
        store.set_and_release("k", Entry("v", 0.0, 2.0, 1.0, 3.0), token)
    assert store.get("k") is None
    assert store.acquire_lease("k", 30) is not None


def test_purge_keeps_the_leases_other_holders_hold(make, clock):
    store = make()
    other = make()  # another holder (a second storage, as another process would be)
    store.set_many({"a": entry("A", clock), "b": entry("B", clock)})
    assert other.acquire_lease("a", 30) is not None
    assert store.purge() == 2
    assert store.get("a") is None and store.stats()["entries"] == 0
    assert store.acquire_lease("a", 30) is None  # the other holder's lease stayed
    assert store.acquire_lease("b", 30) is not None


# -- sharing, views, async ---------------------------------------------------------------


def test_one_directory_opened_twice_in_a_process_shares_one_environment(make, clock):
    a = make()
    b = make()
    assert a._h.backend is b._h.backend
    a.set("k", entry("v", clock))
    a.close()
    assert b.get("k").value == "v"  # closing one leaves the other open
    with pytest.raises(StorageError):
        a.get("k")


def test_reopening_with_other_bound_or_durability_is_refused(make):
    make()
    with pytest.raises(ValueError, match="durability='process'"):
        make(durability="system")
    with pytest.raises(ValueError, match="max_bytes"):
        make(max_bytes=123456)


def test_a_serializer_view_shares_the_store_and_its_closing(make, clock):
    store = make()
    view = store.with_serializer(JSONSerializer())
    view.set("json", entry({"a": [1, 2]}, clock))
    assert view.get("json").value == {"a": [1, 2]}
    assert raw_get(store, b"json")[38:].startswith(b'{"a"')
    other = store.with_serializer(MsgpackSerializer())
    assert other._cache is not store._cache
    with pytest.raises(TypeError, match="serializer"):
        store.with_serializer("json")  # type: ignore[arg-type]
    store.close()
    with pytest.raises(StorageUnavailableError):
        view.get("json")


@pytest.mark.parametrize(("durability", "inline"), [("process", True), ("system", False)])
def test_the_asyncio_view_writes_off_the_loop_only_when_durable(make, clock, durability, inline):
    store = make(durability=durability)
    seen: list[int] = []

    class Recording(MsgpackSerializer):
        def dumps(self, value: Any) -> bytes:
            seen.append(threading.get_ident())
            return super().dumps(value)

    view = store.with_serializer(Recording()).as_async()
    assert view.inline is inline and view.supports_leases

    async def main() -> int:
        await view.set("k", entry("v", clock))
        assert (await view.get("k")).value == "v"
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert (seen == [loop_thread]) is inline


def test_stats_after_close_keep_the_counters(make, clock):
    store = make()
    raw_put(store, b"bad", b"garbage")
    store.get("bad")
    store.close()
    assert store.stats() == {
        "corrupt_entries": 1,
        "evictions": 0,
        "expired_removed": 0,
        "map_resizes": 0,
        "stores_recreated": 0,
    }
    assert "LMDBStorage(" in repr(store)


def test_an_entry_factory_view_decodes_into_its_own_entries(make, clock):
    class Tagged(Entry):
        __slots__ = ()

    store = make()
    view = store.with_entry_factory(Tagged)
    store.set("k", entry("v", clock))
    got = view.get("k")
    assert type(got) is Tagged and astuple(got) == astuple(store.get("k"))
    assert type(store.get("k")) is Entry
    assert view.get("k") is got  # kept by the view's read cache
    with pytest.raises(TypeError, match="callable"):
        store.with_entry_factory(None)  # type: ignore[arg-type]
    uncached = make("uncached", read_cache=0)
    assert uncached.with_entry_factory(Tagged) is uncached  # nothing to keep


def test_read_cache_admits_records_read_once_only_while_it_has_room():
    from swr.storage.lmdb.storage import _ReadCache

    cache: _ReadCache[int] = _ReadCache(16)
    for i in range(14):  # up to what a trim leaves: room
        assert cache.wants(f"warm{i}")
        cache.keep(f"warm{i}", i)
    for i in range(200):  # a working set read once never goes in, even after trims
        assert not cache.wants(f"once{i}")
    assert cache.wants("once199")  # read twice lately: kept
    for i in range(20):
        cache.keep(f"again{i}", i)  # over the limit: trimmed back by an eighth and more
        assert len(cache) <= 16
    assert not cache.wants("fresh")


def test_incr_in_place_keeps_the_header_and_refuses_a_damaged_one(make, clock):
    # incr rewrites only the payload of a live plain int record (the fast path); a
    # header it cannot vouch for (times out of order) is corrupt: it starts again at 0.
    import struct

    store = make()
    now = clock()
    store.set("n", Entry(5, now, now + 10, now + 20, now + 30))
    before = raw_get(store, b"n")
    assert store.incr("n", 2) == 7
    after = raw_get(store, b"n")
    assert after[:39] == before[:39] and len(after) == len(before)  # header and marker
    assert store.get("n") == Entry(7, now, now + 10, now + 20, now + 30)
    assert recount(store) == (1, store.stats()["bytes"])
    damaged = bytearray(after)
    struct.pack_into("<d", damaged, 12, now + 99)  # fresh_until after stale_until
    raw_put(store, b"n", bytes(damaged))
    assert store.incr("n", 3, ttl=5) == 3
    assert store.get("n") == Entry(3, now, now + 5, now + 5, now + 5)
    long_key = "k" * 600  # a digest key with a key check: the general path
    assert store.incr(long_key, 4) == 4
    assert store.incr(long_key, 4) == 8
    assert store.get(long_key).value == 8
