"""Bodies of the worker processes the LMDB tests start with multiprocessing (spawn).

Spawned processes import their target by module name, so the targets live here
rather than in the test modules. Each reports through a queue or a pipe.
"""

from __future__ import annotations

import os
import time
from typing import Any

import lmdb

from swr import CacheTTL, RefreshOptions, StaleEngine
from swr.storage import Entry, LMDBStorage

TTL = CacheTTL(fresh=60, stale=600, expired=3600)


def write_entries(path: str, entries: dict[str, tuple[Any, float, float, float, float]]) -> None:
    """Write entries given as (value, stored_at, fresh_until, stale_until, expires_at)."""
    with LMDBStorage(path, sweep_interval=None) as store:
        store.set_many({key: Entry(*fields) for key, fields in entries.items()})


def open_write_read(path: str, name: str, names: list[str], barrier: Any, results: Any) -> None:
    """Open a (maybe new) store together with other processes, write, then read all."""
    barrier.wait(30)
    now = time.time()
    with LMDBStorage(path, sweep_interval=None) as store:
        store.set(name, Entry(f"from {name}", now, now + 60, now + 120, now + 180))
        barrier.wait(30)
        seen = {key: store.get(key) for key in names}
        results.put((name, {key: e.value for key, e in seen.items() if e is not None}))


def stream_writes(path: str, durability: str, conn: Any) -> None:
    """Write keys k0, k1, ... forever, reporting each number once its set returned."""
    now = time.time()
    with LMDBStorage(path, durability=durability, sweep_interval=None) as store:  # type: ignore[arg-type]
        i = 0
        while True:
            store.set(f"k{i}", Entry(f"value {i} " * 10, now, now + 60, now + 120, now + 3600))
            conn.send(i)
            i += 1


def fill(path: str, prefix: str, count: int, max_bytes: int, results: Any) -> None:
    """Write ``count`` records of about 500 bytes with growing lifetimes; report evictions."""
    now = time.time()
    with LMDBStorage(path, max_bytes=max_bytes, sweep_interval=None, read_cache=0) as store:
        for i in range(count):
            expires = now + 1000 + i
            store.set(f"{prefix}{i}", Entry("x" * 480, now, now + 10, now + 20, expires))
        results.put(store.stats()["evictions"])


def write_garbage(path: str, key: bytes, data: bytes) -> None:
    """Overwrite a record with raw bytes, as a damaged disk or a foreign writer would."""
    env = lmdb.open(path, max_dbs=4)
    entries = env.open_db(b"swr-entries", create=False)
    with env.begin(write=True) as txn:
        txn.put(key, data, db=entries)
    env.close()


def hold_lease(path: str, key: str, ttl: float, results: Any) -> None:
    """Take a lease and exit without releasing it, like a process that died."""
    store = LMDBStorage(path, sweep_interval=None)
    results.put(store.acquire_lease(key, ttl))
    results.close()
    results.join_thread()  # the token is sent; now die without any cleanup
    os._exit(0)


def engine_execute(
    path: str, key: str, counter: str, delay: float, ready: Any, start: Any, results: Any
) -> None:
    """One worker of an application: execute ``key`` through an engine on the shared store.

    The fetch appends a line to ``counter`` (one line per upstream call) and takes
    ``delay`` seconds. After a STALE answer the worker waits for its background
    refresh to end (done or skipped) before closing the engine.
    """

    def fetch() -> str:
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(delay)
        return f"fetched by {os.getpid()}"

    with LMDBStorage(path, sweep_interval=None) as store:
        engine = StaleEngine(store, ttl=TTL, refresh=RefreshOptions(timeout=10))
        ready.put(os.getpid())
        start.wait(30)
        result = engine.execute(key, fetch)
        deadline = time.monotonic() + 20
        while result.status.value == "stale" and time.monotonic() < deadline:
            stats = engine.stats()  # wait for the background refresh to end its way
            if stats.refreshes_succeeded + stats.refreshes_skipped + stats.refreshes_failed:
                break
            time.sleep(0.005)
        engine.close()
        stats = engine.stats()
        results.put((result.status.value, result.value, stats.refreshes_skipped))


def engine_write(path: str, key: str, value: str, now: float) -> None:
    """Store ``value`` through an engine whose clock reads ``now``, then exit."""
    with LMDBStorage(path, sweep_interval=None) as store:
        engine = StaleEngine(store, ttl=TTL, clock=lambda: now)
        engine.execute(key, lambda: value)
        engine.close()


def map_large_then_write(path: str, conn: Any) -> None:
    """Open with an 8 MiB map, report, then on "go" write 5 MiB and read it back.

    The pages written lie beyond what the other process maps; if it had cut the file
    to its own size, touching them here would kill this process with SIGBUS.
    """
    now = time.time()
    with LMDBStorage(
        path, map_size=8 << 20, max_bytes=1 << 30, sweep_interval=None, read_cache=0
    ) as store:
        conn.send(os.path.getsize(os.path.join(path, "data.mdb")))
        assert conn.recv() == "go"
        blobs = {f"far{i}": os.urandom(256 * 1024) for i in range(20)}
        for key, blob in blobs.items():
            store.set(key, Entry(blob, now, now + 60, now + 120, now + 3600))
        ok = all(store.get(key).value == blob for key, blob in blobs.items())  # type: ignore[union-attr]
        conn.send("ok" if ok else "mismatch")


def serve_damaged(path: str, operation: str, results: Any) -> None:
    """Open a damaged store, run ``operation`` on it, then write and read a new entry.

    Reports ``(what the operation returned, log events, stats, the entry read back)``.
    """
    from structlog.testing import capture_logs

    now = time.time()
    fresh = Entry("after", now, now + 60, now + 120, now + 3600)
    with capture_logs() as logs, LMDBStorage(path, sweep_interval=None) as store:
        later = LMDBStorage(path, sweep_interval=None, clock=lambda: now + 10**6)
        outcome: Any
        if operation == "get":
            outcome = sum(store.get(f"k{i}") is not None for i in range(0, 2000, 3))
        elif operation == "set":
            for i in range(100):
                store.set(f"n{i}", Entry("w" * 300, now, now + 60, now + 120, now + 3600))
            outcome = sum(store.get(f"n{i}") is not None for i in range(100))
        elif operation == "delete":
            outcome = sum(store.delete(f"k{i}") for i in range(0, 2000, 3))
        elif operation == "sweep":
            outcome = later.sweep()  # every entry is dead by its clock
        elif operation == "summary":
            outcome = store.summary().entries
        else:
            raise ValueError(operation)
        later.close()
        store.set("fresh", fresh)
        back = store.get("fresh")
        stats = store.stats()
    events = [(log["event"], log.get("found")) for log in logs if log["event"].startswith("lmdb")]
    results.put((outcome, events, stats, None if back is None else back.value))


def serve_through_damage(path: str, role: str, conn: Any) -> None:
    """One of two processes serving a store that gets damaged under them.

    ``role`` "finder" reads every key after "go" (finding the damage), then writes
    "finder"; "follower" writes "follower" and reads until it sees the finder's entry.
    Each reports its stats, then waits until it reads the other's entry.
    """
    from swr.storage.lmdb import _process, storage

    for module in (_process, storage):  # check for a new store often
        module._FOLLOW_INTERVAL = 0.01  # type: ignore[misc]
    other = "follower" if role == "finder" else "finder"
    now = time.time()
    mine = Entry(role, now, now + 60, now + 120, now + 3600)
    with LMDBStorage(path, sweep_interval=None) as store:
        assert sum(store.get(f"k{i}") is not None for i in range(2000)) == 2000
        conn.send("ready")
        assert conn.recv() == "go"
        if role == "finder":
            misses = sum(store.get(f"k{i}") is None for i in range(2000))
            store.set(role, mine)
            conn.send(("recovered", misses, store.stats()["stores_recreated"]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            store.set(role, mine)
            seen = store.get(other)
            if seen is not None and seen.value == other:
                break
            time.sleep(0.005)
        conn.send(("done", store.get(other) is not None, store.stats()["stores_recreated"]))
