"""LMDBStorage: a durable cache directory shared by the processes of one host.

How it works
------------
A directory holds one LMDB environment with four named databases:

- ``swr-entries``: storage key -> record (the layout of :mod:`storage._record`).
- ``swr-expiry``: the expiry index, ``sortable(expires_at) + storage key`` -> empty.
  Its last key, ``_TOTAL_KEY``, holds the running byte total of the entries. Read
  from the front, the index lists the entries already dead first, then those closest
  to their end of life: eviction and the sweep only ever touch what they remove.
- ``swr-leases``: storage key -> 16-byte token + expiry (a little-endian double).
- ``swr-meta``: the layout version, written once when the store is created.

Each process opens the environment once (py-lmdb refuses a second open of the same
files in one process) in a ``_Backend``, shared by every :class:`LMDBStorage` on that
directory in the process and by their serializer views. Every change is one LMDB write
transaction, atomic across processes and crashes, so these always hold after a commit:

- each record has one index key, built from its own ``expires_at`` (a record whose
  header is unreadable may leave a stale index key; the index walk drops it);
- the byte total is the sum of ``len(key) + len(record)`` over the entries;
- after a write that adds bytes, the total is at most ``max_bytes``.

Reads take one read transaction (py-lmdb reuses one reset transaction per process,
which spares the reader-table mutex all processes share) and one ``get``. Decoded
entries are kept in a small per-view cache keyed by the caller's key and validated
against the stored bytes on every read, so a value changed by any process is never
served from it; the engines read through a view that decodes into their own entries
(``with_entry_factory``), so a hit allocates nothing.

Threads of a process write one at a time (``_Backend.wlock``); growing the map happens
under that lock, and py-lmdb invalidates read transactions racing it, which the read
path retries.

Commits write pages straight into the memory map (LMDB's ``writemap``), about three
times cheaper than writing them through the file. Two rules keep that safe, both kept
under an ``flock`` of the data file that orders map size changes across processes
(:func:`_remap`): the file is allocated on disk up to the end of the map before the map
is used (a hole written on a full disk would be a SIGBUS, not an error), and no process
ever maps less than the whole file (LMDB truncates the file to the size a process maps,
which would cut off pages another process maps). On copy-on-write filesystems, where
allocating up front reserves nothing, LMDB writes through the file instead.

Around ``os.fork()`` the process waits for in-flight transactions to end, so the child
can close the inherited environment safely and reopen its own on first use.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import struct
import sys
import threading
import time as _time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import lmdb
import structlog

from swr.storage._record import ReadCache, RecordCodec, digest_key
from swr.storage.base import Entry, StorageMixin
from swr.storage.errors import (
    CorruptEntryError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from swr.storage.serializers import Serializer, default_serializer

if TYPE_CHECKING:
    from swr.storage.adapters import AsyncAdapter

__all__ = ["LMDBStorage", "StoreSummary", "inspect_store", "purge_store"]

T = TypeVar("T")
Durability = Literal["process", "system"]
EntryFactory = Callable[[Any, float, float, float, float], Entry]
"""Builds an entry from ``(value, stored_at, fresh_until, stale_until, expires_at)``."""

_log: Any = structlog.get_logger("swr")

_ENTRIES: Final = b"swr-entries"
_EXPIRY: Final = b"swr-expiry"
_LEASES: Final = b"swr-leases"
_META: Final = b"swr-meta"
_OUR_DBS: Final = frozenset((_ENTRIES, _EXPIRY, _LEASES, _META))
_LAYOUT_KEY: Final = b"layout"
_LAYOUT_VERSION: Final = 1
# Sorts after every index key: the largest sortable finite double starts 0xffef.
_TOTAL_KEY: Final = b"\xff\xffbytes"
_STAMP: Final = 8  # bytes of sortable expires_at in front of an index key

_DURABILITIES: Final = ("process", "system")
_MIB: Final = 1 << 20
_DEFAULT_MAP: Final = 16 * _MIB  # most a new store maps (and allocates) before it grows
_DATA_FILE: Final = "data.mdb"
# statfs magic numbers of copy-on-write filesystems (btrfs, ZFS, bcachefs): every write
# takes new blocks there, so allocating a file up front reserves nothing for later writes.
_COPY_ON_WRITE: Final = frozenset((0x9123683E, 0x2FC12FC1, 0xCA451A4E))
_LOW_WATER: Final = 0.9  # eviction frees down to this share of max_bytes: batches, not one-by-one
_BATCH: Final = 256  # most removals per sweep transaction
_ATTEMPTS: Final = 12  # retries of one operation around map growth and resizes
_FORK_WAIT: Final = 1.0  # seconds a fork waits for in-flight transactions

# lmdb errors saying the files are not a readable environment: the store is moved aside.
_DAMAGED: Final = (
    lmdb.InvalidError,
    lmdb.CorruptedError,
    lmdb.PanicError,
    lmdb.PageNotFoundError,
    lmdb.VersionMismatchError,
)

_I64: Final = struct.Struct("<q")
_U64: Final = struct.Struct(">Q")
_F64: Final = struct.Struct(">d")
_LEASE: Final = struct.Struct("<16sd")
_EXPIRES: Final = struct.Struct("<d")
_EXPIRES_OFFSET: Final = 28  # magic, version, flags, then stored/fresh/stale (8 bytes each)
_HEADER_END: Final = 38
_SIGN: Final = 1 << 63
_ALL_BITS: Final = (1 << 64) - 1


def _stamp(expires_at: float) -> bytes:
    """Return 8 bytes whose byte order is the numeric order of ``expires_at``."""
    (bits,) = _U64.unpack(_F64.pack(expires_at))
    return _U64.pack(bits ^ _ALL_BITS if bits & _SIGN else bits | _SIGN)


def _index_key(record: bytes, kb: bytes) -> bytes:
    """The index key of ``record`` stored under ``kb``; empty if its header is unreadable.

    Reads ``expires_at`` straight from its offset in the header (see storage._record):
    deleting a wrong index key is harmless, so this needs none of decode's checks.
    """
    if len(record) < _HEADER_END or record[:2] != b"SW":
        return b""
    return _stamp(_EXPIRES.unpack_from(record, _EXPIRES_OFFSET)[0]) + kb


# -- process-wide state ---------------------------------------------------------------

_pid = os.getpid()
_registry_lock = threading.Lock()
_registry: dict[str, _Backend] = {}
_forking: list[_Backend] = []


@dataclass(frozen=True, slots=True)
class _Options:
    max_bytes: int
    durability: Durability
    map_size: int
    max_readers: int
    sweep_interval: float | None


class _Backend:
    """One open environment of one directory in one process. Thread-safe.

    Writers take ``wlock`` (one write transaction at a time in this process; LMDB
    orders processes). Readers announce themselves in ``inflight`` so that a fork can
    wait for them; they never lock.
    """

    def __init__(
        self,
        path: str,
        env: lmdb.Environment,
        data: _DataFile,
        options: _Options,
        clock: Callable[[], float] | None,
    ) -> None:
        self.path = path
        self.env = env
        self.data = data
        self.options = options
        self.clock = clock
        self.pid = _pid
        self.begin = env.begin
        # Handles of the named databases _initialize checked. Without a transaction
        # py-lmdb opens them in a short write transaction: handles opened in a read
        # transaction would close when it ends.
        self.entries = env.open_db(_ENTRIES, create=False)
        self.expiry = env.open_db(_EXPIRY, create=False)
        self.leases = env.open_db(_LEASES, create=False)
        self.key_limit = env.max_key_size() - _STAMP
        self.times = RecordCodec(default_serializer()).decode_times
        self.wlock = threading.Lock()
        self.inflight: list[None] = []
        self.push = self.inflight.append
        self.pop = self.inflight.pop
        self.paused = False
        self.resumed = threading.Event()
        self.resumed.set()
        self.quiescent = True
        self.refs = 0
        self.closed = False
        self.corrupt_entries = 0
        self.evictions = 0
        self.expired_removed = 0
        self.map_resizes = 0
        self.stop = threading.Event()
        self.sweeper: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start_sweeper(self) -> None:
        interval = self.options.sweep_interval
        if interval is None:
            return
        self.sweeper = threading.Thread(
            target=self._sweep_loop, args=(interval,), name=f"swr-lmdb-sweep:{self.path}"
        )
        self.sweeper.daemon = True
        self.sweeper.start()

    def _sweep_loop(self, interval: float) -> None:
        while not self.stop.wait(interval):
            self._sweep_once()

    def _sweep_once(self) -> None:
        try:
            self.sweep(self.now())
        except Exception as exc:  # noqa: BLE001 - the sweep must never die
            _log.warning("lmdb_sweep_failed", path=self.path, error=repr(exc))

    def close(self) -> None:
        """Stop the sweeper and close the environment. Called under the registry lock."""
        self.stop.set()
        sweeper = self.sweeper
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(5)
        with self.wlock:
            self.closed = True
            self.env.close()
            self.data.close()

    def now(self) -> float:
        clock = self.clock
        return clock() if clock is not None else _time.time()

    @contextlib.contextmanager
    def reading(self) -> Iterator[lmdb.Transaction[bytes]]:
        """A read transaction counted for fork (the hot read path inlines the same)."""
        while True:
            self.push(None)
            if not self.paused:
                break
            self.pop()
            self.resumed.wait(5)
        try:
            if self.closed:
                raise StorageUnavailableError(f"the LMDB store {self.path} is closed")
            with self.begin() as txn:
                yield txn
        finally:
            self.pop()

    # -- writes -----------------------------------------------------------------------

    def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(txn, *args)`` in one write transaction and commit it.

        The map grows when full and adopts a size grown by another process; ``fn`` is
        then run again in a new transaction, so it must only change the database (and
        return what its caller applies after the commit).

        Raises:
            StorageUnavailableError: the store is closed.
            StorageFullError: the map could not be grown enough.
            lmdb.Error: any other LMDB failure (callers translate it).
        """
        with self.wlock:
            if self.closed:
                raise StorageUnavailableError(f"the LMDB store {self.path} is closed")
            env = self.env
            for _ in range(_ATTEMPTS):
                try:
                    txn = env.begin(write=True)
                except lmdb.MapResizedError:
                    self.remap(0)  # another process grew the map: adopt its size
                    continue
                try:
                    result = fn(txn, *args)
                    txn.commit()
                except lmdb.MapFullError:
                    _end_failed(txn)
                    self._grow()
                    continue
                except lmdb.MapResizedError:
                    _end_failed(txn)
                    self.remap(0)
                    continue
                except BaseException:
                    txn.abort()
                    raise
                return result
        raise StorageFullError(
            f"the LMDB store {self.path} stayed full after growing its map {_ATTEMPTS} times"
        )

    def _grow(self) -> None:
        """Double the map. Called with ``wlock`` held, so no write is in flight here."""
        size = self.remap(self.env.info()["map_size"] * 2)
        self.map_resizes += 1
        _log.info("lmdb_map_grown", path=self.path, map_size=size)

    def remap(self, want: int) -> int:
        """Map at least ``want`` bytes and all of the data file; return the map size.

        Called with ``wlock`` held and no transaction of this process in flight (or
        while pausing for fork).

        Raises:
            StorageFullError: the disk has no room for a larger file.
        """
        with self.data.locked() as fd:
            return _remap(self.env, fd, self.path, want)

    def adopt_map_size(self) -> None:
        with self.wlock:
            if not self.closed:
                self.remap(0)

    def wait_for_writer(self) -> None:
        """Return once no write (nor map resize) of this process is under way."""
        with self.wlock:
            pass

    def check_readers(self) -> None:
        """Free the reader slots of processes that died inside a read transaction."""
        with self.wlock:
            if not self.closed:
                self.env.reader_check()

    @staticmethod
    def total(txn: lmdb.Transaction[bytes], expiry: lmdb._Database) -> int:
        raw = txn.get(_TOTAL_KEY, db=expiry)
        return _I64.unpack(raw)[0] if raw is not None and len(raw) == _I64.size else 0

    def put(self, txn: lmdb.Transaction[bytes], items: list[tuple[bytes, bytes, bytes]]) -> int:
        """Store ``(key, record, index key)`` items, evict if over the bound; return evictions.

        A write that adds no bytes (a record replaced by one of the same size, the
        common refresh) leaves the byte total alone: one B-tree fewer to touch.
        """
        entries, expiry = self.entries, self.expiry
        added = 0
        for kb, record, ikey in items:
            old = txn.replace(kb, record, db=entries)
            if old is None:
                added += len(kb) + len(record)
            else:
                added += len(record) - len(old)
                old_ikey = _index_key(old, kb)
                if old_ikey == ikey:
                    continue  # same expiry: the index already holds this key
                if old_ikey:
                    txn.delete(old_ikey, db=expiry)
            txn.put(ikey, b"", db=expiry)
        if not added:
            return 0
        total = self.total(txn, expiry) + added
        evicted = 0
        limit = self.options.max_bytes
        if total > limit:
            keep = {kb for kb, _, _ in items}
            total, evicted = self._evict(txn, total, int(limit * _LOW_WATER), keep)
            if total > limit:  # a batch bigger than the bound: its own shortest-lived go too
                total, more = self._evict(txn, total, limit, set())
                evicted += more
        txn.put(_TOTAL_KEY, _I64.pack(max(total, 0)), db=expiry)
        return evicted

    def _evict(
        self, txn: lmdb.Transaction[bytes], total: int, target: int, keep: set[bytes]
    ) -> tuple[int, int]:
        """Remove entries from the front of the index until ``total <= target``."""
        entries = self.entries
        cursor = txn.cursor(db=self.expiry)
        evicted = 0
        positioned = cursor.first()
        while positioned and total > target:
            ikey = cursor.key()
            if ikey == _TOTAL_KEY or not ikey:
                break
            kb = ikey[_STAMP:]
            if kb in keep:
                positioned = cursor.next()
                continue
            freed = self._drop_indexed(txn, entries, kb, ikey)
            positioned = cursor.delete()
            if freed:
                total -= freed
                evicted += 1
        return total, evicted

    def _drop_indexed(
        self, txn: lmdb.Transaction[bytes], entries: lmdb._Database, kb: bytes, ikey: bytes
    ) -> int:
        """Delete the record the index key ``ikey`` points at, if it still does.

        Returns the bytes freed (0 for a stale index key). The caller deletes ``ikey``.
        """
        record = txn.get(kb, db=entries)
        if record is None:
            return 0
        try:
            current = _stamp(self.times(record)[3])
        except CorruptEntryError:
            current = b""  # unreadable header: the record goes too
        if current and current != ikey[:_STAMP]:
            return 0  # the key was rewritten with another expiry: a stale index key
        txn.delete(kb, db=entries)
        return len(kb) + len(record)

    def sweep_batch(self, txn: lmdb.Transaction[bytes], stamp: bytes) -> tuple[int, bool]:
        """Remove up to ``_BATCH`` entries whose expiry is at or before ``stamp``.

        Returns ``(removed, more)`` where ``more`` says the batch limit was reached.
        """
        expiry = self.expiry
        total = self.total(txn, expiry)
        cursor = txn.cursor(db=expiry)
        removed = seen = 0
        positioned = cursor.first()
        while positioned and seen < _BATCH:
            ikey = cursor.key()
            if not ikey or ikey == _TOTAL_KEY or ikey[:_STAMP] > stamp:
                break
            seen += 1
            freed = self._drop_indexed(txn, self.entries, ikey[_STAMP:], ikey)
            positioned = cursor.delete()
            if freed:
                total -= freed
                removed += 1
        txn.put(_TOTAL_KEY, _I64.pack(max(total, 0)), db=expiry)
        return removed, seen >= _BATCH

    def sweep_leases(self, txn: lmdb.Transaction[bytes], now: float) -> int:
        """Remove the leases past their expiry (left by holders that died)."""
        cursor = txn.cursor(db=self.leases)
        removed = 0
        positioned = cursor.first()
        while positioned and cursor.key():
            value = cursor.value()
            if len(value) != _LEASE.size or _LEASE.unpack(value)[1] <= now:
                positioned = cursor.delete()
                removed += 1
            else:
                positioned = cursor.next()
        return removed

    def sweep(self, now: float) -> int:
        """Remove every entry past its ``expires_at``, a batch per transaction."""
        stamp = _stamp(now)
        with self.reading() as txn:
            cursor = txn.cursor(db=self.expiry)
            first = cursor.key() if cursor.first() else b""
        removed = 0
        if first and first != _TOTAL_KEY and first[:_STAMP] <= stamp:
            more = True
            while more:
                count, more = self.write(self.sweep_batch, stamp)
                removed += count
                self.expired_removed += count
        self.write(self.sweep_leases, now)
        return removed

    def drop_if_same(self, txn: lmdb.Transaction[bytes], kb: bytes, data: bytes) -> bool:
        """Delete the record of ``kb`` only if it still holds ``data`` (a corrupt record)."""
        if txn.get(kb, db=self.entries) != data:
            return False
        txn.delete(kb, db=self.entries)
        ikey = _index_key(data, kb)
        if ikey:
            txn.delete(ikey, db=self.expiry)
        total = self.total(txn, self.expiry) - len(kb) - len(data)
        txn.put(_TOTAL_KEY, _I64.pack(max(total, 0)), db=self.expiry)
        return True

    def delete(self, txn: lmdb.Transaction[bytes], kb: bytes) -> bool:
        old = txn.pop(kb, db=self.entries)
        if old is None:
            return False
        ikey = _index_key(old, kb)
        if ikey:
            txn.delete(ikey, db=self.expiry)
        total = self.total(txn, self.expiry) - len(kb) - len(old)
        txn.put(_TOTAL_KEY, _I64.pack(max(total, 0)), db=self.expiry)
        return True

    def purge(self, txn: lmdb.Transaction[bytes]) -> int:
        count = txn.stat(self.entries)["entries"]
        txn.drop(self.entries, delete=False)
        txn.drop(self.expiry, delete=False)
        txn.drop(self.leases, delete=False)
        txn.put(_TOTAL_KEY, _I64.pack(0), db=self.expiry)
        return count

    # -- leases -----------------------------------------------------------------------

    def acquire(
        self, txn: lmdb.Transaction[bytes], kb: bytes, token: bytes, now: float, until: float
    ) -> bool:
        held = txn.get(kb, db=self.leases)
        if held is not None and len(held) == _LEASE.size and _LEASE.unpack(held)[1] > now:
            return False
        txn.put(kb, _LEASE.pack(token, until), db=self.leases)
        return True

    def release(self, txn: lmdb.Transaction[bytes], kb: bytes, token: bytes) -> None:
        held = txn.get(kb, db=self.leases)
        if held is not None and held[:16] == token:
            txn.delete(kb, db=self.leases)

    # -- fork -------------------------------------------------------------------------

    def pause_for_fork(self, deadline: float) -> None:
        """Stop new transactions and wait (until ``deadline``) for running ones."""
        self.wlock.acquire()
        self.resumed.clear()
        self.paused = True
        while self.inflight and _time.monotonic() < deadline:
            _time.sleep(0.0002)
        self.quiescent = not self.inflight
        if self.quiescent and not self.closed:
            # Drop py-lmdb's spare read transaction: its reader slot must not be
            # inherited, or the child closing its copy would free the slot this
            # process still uses. Setting the map size (to the file's, so it never
            # shrinks) is the call that aborts it; nothing else is running now.
            try:
                self.remap(0)
            except (lmdb.Error, OSError, StorageError):
                self.quiescent = False  # the child then leaves its copy alone

    def resume_after_fork(self, child: bool) -> None:
        if child:
            # This process's only thread holds the locks; fresh ones are simpler.
            self.wlock = threading.Lock()
            self.resumed = threading.Event()
            self.inflight.clear()
            self.resumed.set()
        else:
            self.resumed.set()
            self.wlock.release()
        self.paused = False

    def retire_in_child(self) -> None:
        """Close an environment inherited through fork so this process can reopen it.

        Safe only when no transaction was in flight at the fork: then nothing of the
        parent's (reader slots, write lock) is touched, and py-lmdb forgets the files.
        """
        self.closed = True
        self.stop.set()
        if self.quiescent:
            self.env.close()
            self.data.close()

    def abandon_in_child(self) -> None:
        """Keep an inherited environment that cannot be closed safely alive for good.

        A transaction of a thread that no longer exists holds it: closing it (also at
        interpreter exit) would wait for that thread forever, or reset a reader slot the
        parent still uses. One extra reference means it is never deallocated.
        """
        import ctypes  # noqa: PLC0415 - only on this rare path

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self.env))


def _end_failed(txn: lmdb.Transaction[bytes]) -> None:
    """End a write transaction that LMDB has marked failed (map full, resized).

    LMDB refuses to commit a failed transaction and aborts it instead. Going through
    ``commit`` matters: py-lmdb's ``abort`` of a write transaction first waits until no
    LMDB call is running on any thread of the process, which under a steady stream of
    reads in other threads may never happen.
    """
    with contextlib.suppress(lmdb.Error):
        txn.commit()


def _before_fork() -> None:
    _registry_lock.acquire()
    deadline = _time.monotonic() + _FORK_WAIT
    _forking[:] = [b for b in _registry.values() if b.pid == _pid and not b.closed]
    for backend in _forking:
        backend.pause_for_fork(deadline)


def _after_fork_parent() -> None:
    for backend in _forking:
        backend.resume_after_fork(child=False)
    _forking.clear()
    _registry_lock.release()


def _after_fork_child() -> None:
    global _pid, _registry_lock  # noqa: PLW0603 - process-wide state after fork
    _pid = os.getpid()
    for backend in _forking:
        backend.resume_after_fork(child=True)
        if not backend.quiescent:
            backend.abandon_in_child()
    _forking.clear()
    _registry_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
    )


# -- opening ----------------------------------------------------------------------------


def _open_env(path: str, options: _Options, *, create: bool) -> tuple[lmdb.Environment, _DataFile]:
    """Open the environment at ``path`` and make sure it is an swr store.

    Raises:
        lmdb.Error: one of ``_DAMAGED`` when the files are damaged.
        StorageUnavailableError: the directory holds something that is not an swr
            store (another program's LMDB database, or a newer layout), or is no store
            at all and ``create`` is false.
        StorageFullError: the disk has no room for the map.
    """
    try:
        data = _DataFile(path, create=create)
    except FileNotFoundError as exc:
        raise StorageUnavailableError(f"{path} is not an swr LMDB store (no data.mdb)") from exc
    try:
        with data.locked() as fd:
            return _open_locked(path, fd, options, create=create), data
    except BaseException:
        data.close()
        raise


def _open_locked(path: str, fd: int, options: _Options, *, create: bool) -> lmdb.Environment:
    """:func:`_open_env` with the data file ``fd`` open and locked."""
    system = options.durability == "system"
    existing = os.fstat(fd).st_size
    if not existing and not create:
        raise StorageUnavailableError(f"{path} is not an swr LMDB store (empty data.mdb)")
    env = lmdb.open(
        path,
        # An existing file is first mapped as it is: nothing about it changes
        # before _initialize has checked it is an swr store.
        map_size=existing or options.map_size,
        subdir=True,
        max_dbs=len(_OUR_DBS),
        max_readers=options.max_readers,
        # "process": no flush per commit. A killed process loses nothing: its
        # commits are in the file (the kernel's page cache) before commit returns.
        # An OS crash loses what the kernel had not yet written back and may leave
        # the store unreadable; one that does not open is moved aside. "system":
        # every commit is flushed (msync) before it returns. metasync only matters
        # with sync, so it follows it.
        sync=system,
        metasync=system,
        writemap=_writemap_is_safe(path),
        lock=True,
        create=create,
        # One reset read transaction kept per process: a read then skips the
        # allocation and the reader-table mutex shared by every process, which is
        # what lets reads in several processes scale (twice the throughput of two
        # processes measured with 0). Dropped before fork, see pause_for_fork.
        max_spare_txns=1,
    )
    try:
        if not existing:
            _allocate(env, fd, path, env.info()["map_size"])  # before the first write
        _initialize(env, path, create=create)
        if existing:
            _remap(env, fd, path, options.map_size)
    except BaseException:
        env.close()
        raise
    return env


if sys.platform == "win32":  # pragma: no cover - no flock; LMDB grows files itself there

    def _lock(fd: int) -> None:
        pass

    def _unlock(fd: int) -> None:
        pass

else:
    import fcntl

    def _lock(fd: int) -> None:
        """Take an exclusive ``flock`` of ``fd`` (held until unlocked or closed)."""
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class _DataFile:
    """The store's data file, kept open to order map size changes between processes.

    Every change of a map size holds an ``flock`` of it (LMDB takes none on this file):
    see :func:`_remap`. The backend keeps it open, so it stays the file its environment
    maps even if the directory is moved aside meanwhile.
    """

    __slots__ = ("fd",)

    def __init__(self, path: str, *, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(os.path.join(path, _DATA_FILE), flags, 0o644)

    @contextlib.contextmanager
    def locked(self) -> Iterator[int]:
        _lock(self.fd)
        try:
            yield self.fd
        finally:
            _unlock(self.fd)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def _remap(env: lmdb.Environment, fd: int, path: str, want: int) -> int:
    """Map at least ``want`` bytes and at least the whole data file; return the size.

    With a writable map LMDB truncates the data file to the size it maps, so a
    process must never map less than the file: it would cut off pages that another
    process maps and writes into (a SIGBUS there). Called with the data file locked
    (:meth:`_DataFile.locked`), so no other process resizes meanwhile.

    Raises:
        StorageFullError: the disk has no room for a larger file; the map and the
            file are left as they were.
    """
    before = os.fstat(fd).st_size
    env.set_mapsize(max(want, before))
    size: int = env.info()["map_size"]
    try:
        _allocate(env, fd, path, size)
    except StorageFullError:
        if size > before:
            env.set_mapsize(before)  # truncates the file back: no unallocated tail
        raise
    return size


def _writemap_is_safe(path: str) -> bool:
    """Whether LMDB may write pages straight into the map of the store at ``path``.

    A commit is then about three times cheaper than writing the pages through the
    file, but a write into the map that finds no room on the disk is a SIGBUS, not an
    error. That cannot happen once the file is allocated up to the map's end
    (:func:`_allocate`), which needs ``posix_fallocate`` and a filesystem that
    overwrites blocks in place. Every process on a directory decides alike.
    """
    return hasattr(os, "posix_fallocate") and _filesystem_type(path) not in _COPY_ON_WRITE


def _filesystem_type(path: str) -> int | None:
    """The ``statfs`` magic number of the filesystem holding ``path``; None if unknown."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # noqa: PLC0415 - only when a store is opened

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buffer = ctypes.create_string_buffer(256)  # struct statfs; f_type comes first
        if libc.statfs(os.fsencode(path), buffer) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return ctypes.c_ulong.from_buffer(buffer).value & 0xFFFFFFFF


def _allocate(env: lmdb.Environment, fd: int, path: str, size: int) -> None:
    """Give the first ``size`` bytes of the data file their disk blocks (with writemap).

    LMDB writes into a writable map directly: a page in a hole of a sparse file, on a
    full disk, would kill the process with SIGBUS instead of failing the write. With
    the file allocated to the map's end, a full disk fails here, as an error.

    Raises:
        StorageFullError: no room on the disk (or over quota).
    """
    if not env.flags()["writemap"]:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise StorageFullError(
                f"no space left to allocate {size} bytes for the LMDB store {path}: {exc}"
            ) from exc
        raise


def _initialize(env: lmdb.Environment, path: str, *, create: bool) -> None:
    with env.begin(write=create) as txn:
        names = {bytes(name) for name, _ in txn.cursor()}
        if _META not in names:
            if not create:
                raise StorageUnavailableError(f"{path} is not an swr LMDB store")
            if names:
                raise StorageUnavailableError(
                    f"{path} holds an LMDB database that is not an swr store; "
                    "give LMDBStorage a directory of its own"
                )
        meta = env.open_db(_META, txn=txn, create=create)
        for name in (_ENTRIES, _EXPIRY, _LEASES):
            env.open_db(name, txn=txn, create=create)
        layout = txn.get(_LAYOUT_KEY, db=meta)
        if layout is None:
            if not create:
                raise StorageUnavailableError(f"{path} is not an swr LMDB store")
            txn.put(_LAYOUT_KEY, str(_LAYOUT_VERSION).encode(), db=meta)
        elif layout != str(_LAYOUT_VERSION).encode():
            raise StorageUnavailableError(
                f"{path} holds an swr store of layout {layout.decode(errors='replace')!r}, "
                f"this version reads layout {_LAYOUT_VERSION}; use another directory"
            )


@contextlib.contextmanager
def _recovery_lock(path: str) -> Iterator[None]:
    """Serialize the processes that found the store damaged at the same time."""
    fd = os.open(f"{path}.swr-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd)
        yield
    finally:
        os.close(fd)


def _open_or_recreate(path: str, options: _Options) -> tuple[lmdb.Environment, _DataFile]:
    try:
        return _open_env(path, options, create=True)
    except _DAMAGED as damage:
        with _recovery_lock(path):
            try:  # another process may have recreated it meanwhile
                return _open_env(path, options, create=True)
            except _DAMAGED:
                pass
            stamp = _time.strftime("%Y%m%dT%H%M%S", _time.gmtime())
            aside = f"{path}.corrupt-{stamp}-{os.getpid()}"
            os.rename(path, aside)
            _log.error(
                "lmdb_store_recreated",
                path=path,
                moved_to=aside,
                error=f"{type(damage).__name__}: {damage}",
            )
            os.makedirs(path, exist_ok=True)
            return _open_env(path, options, create=True)


def _acquire(
    path: str, options: _Options, clock: Callable[[], float] | None, *, check: bool = True
) -> _Backend:
    """Return this process's backend of ``path``, opening it if needed. Registry lock held."""
    backend = _registry.get(path)
    if backend is not None and (backend.pid != _pid or backend.closed):
        if backend.pid != _pid:
            backend.retire_in_child()
            if not backend.quiescent:
                _log.error(
                    "lmdb_reopen_failed",
                    path=path,
                    reason="a transaction was in flight in another thread at fork",
                )
                raise StorageUnavailableError(
                    f"cannot reopen the LMDB store {path} after fork: a transaction was in "
                    "flight in another thread when the process forked"
                )
        del _registry[path]
        backend = None
    if backend is not None:
        if check:
            for name in ("durability", "max_bytes", "sweep_interval"):
                mine, theirs = getattr(options, name), getattr(backend.options, name)
                if mine != theirs:
                    raise ValueError(
                        f"{path} is already open in this process with {name}={theirs!r}; "
                        f"got {name}={mine!r}"
                    )
        backend.refs += 1
        return backend
    try:
        env, data = _open_or_recreate(path, options)
    except (lmdb.Error, OSError) as exc:
        raise StorageUnavailableError(f"cannot open the LMDB store {path}: {exc}") from exc
    backend = _Backend(path, env, data, options, clock)
    backend.refs = 1
    _registry[path] = backend
    backend.start_sweeper()
    return backend


def _release(backend: _Backend) -> None:
    """Drop one reference; close the environment with the last. Registry lock held."""
    if backend.pid != _pid:
        return  # inherited through fork: retired when this process reopens the path
    backend.refs -= 1
    if backend.refs <= 0 and not backend.closed:
        backend.close()
        if _registry.get(backend.path) is backend:
            del _registry[backend.path]


class _ClosedBackend:
    """Stands in for the backend of a closed handle: its pid matches no process."""

    pid = -1
    closed = True


class _Handle:
    """What an LMDBStorage and its serializer views share: the backend, and closing.

    After close, ``backend`` is a ``_ClosedBackend`` (so the read path's single pid
    comparison also catches use after close) and ``last`` keeps the counters.
    """

    __slots__ = ("backend", "clock", "closed", "last", "options", "path")

    def __init__(
        self, path: str, options: _Options, clock: Callable[[], float] | None, backend: _Backend
    ) -> None:
        self.path = path
        self.options = options
        self.clock = clock
        self.backend = backend
        self.last = backend
        self.closed = False

    def current(self) -> _Backend:
        """The backend for this process: reopened after fork, an error after close."""
        with _registry_lock:
            if self.closed:
                raise StorageUnavailableError(f"LMDBStorage({self.path!r}) is closed")
            backend = self.backend
            if backend.pid != _pid or backend.closed:
                backend = _acquire(self.path, self.options, self.clock, check=False)
                self.backend = self.last = backend
            return backend

    def close(self) -> None:
        with _registry_lock:
            if self.closed:
                return
            self.closed = True
            _release(self.last)
            self.backend = cast("_Backend", _ClosedBackend())


def _translate(path: str, exc: lmdb.Error) -> StorageError:
    """The storage error for an LMDB failure."""
    if isinstance(exc, lmdb.DiskError):
        return StorageFullError(f"no space left for the LMDB store {path}: {exc}")
    return StorageUnavailableError(f"LMDB store {path} failed: {exc}")


@contextlib.contextmanager
def _translated(path: str) -> Iterator[None]:
    """Turn LMDB failures into the storage error tree (off the hot paths)."""
    try:
        yield
    except lmdb.Error as exc:
        raise _translate(path, exc) from exc


def _positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class LMDBStorage(StorageMixin):
    """Entries in an LMDB directory that survives restarts and is shared by processes.

    Example::

        store = LMDBStorage("var/cache", max_bytes=1 << 30)
        engine = StaleEngine(store, ttl=CacheTTL(fresh=60, stale=600, expired=86400))

    Every worker process of an application (gunicorn, uvicorn, Celery) can open the same
    directory: each sees the others' writes at once, and the engine's singleflight takes
    a lease stored in the directory, so one process fetches a missing or stale key while
    the others wait for its result or keep serving the stale value.

    Within one process, reads return shared objects (like
    :class:`~storage.MemoryStorage`): decoded values are kept in a small cache and
    handed to every reader until the stored bytes change. Treat them as read-only, or
    pass ``read_cache=0`` to decode a fresh copy on every read.

    Args:
        path: Directory of the store; created with its parents if missing. Open one
            directory per cache: it must not hold other data.
        max_bytes: Bound on the stored keys and records, in bytes. A write that goes
            over it evicts (in the same transaction) the entries already dead, then
            those closest to their ``expires_at``, down to 90% of the bound. LMDB's
            pages make the file somewhat larger than this.
        durability: ``"process"`` (default): commits are not flushed to disk; every
            write whose ``set`` returned survives the process being killed, and an OS
            crash may lose the last writes but leaves the store usable. ``"system"``:
            every commit is flushed (fsync) before ``set`` returns; slower writes.
        serializer: Encodes values; zstd-compressed msgpack by default.
        clock: Zero-argument callable returning epoch seconds, judging expiry and
            leases. Default ``time.time``, looked up at each call (freezegun works).
        map_size: Initial size of the memory map in bytes; default twice ``max_bytes``,
            at most 16 MiB (at least 1 MiB). It doubles on its own whenever it fills up.
            The data file is allocated on disk to the map's size, so that a full disk
            fails a write instead of the process.
        max_readers: Most read transactions at once across all processes (threads
            reading at the same moment). Only the first process to open the directory
            sets it.
        sweep_interval: Seconds between background removals of dead entries (a daemon
            thread per directory and process, in small transactions); ``None`` turns the
            sweep off. Eviction and :meth:`sweep` work either way.
        read_cache: Most decoded entries kept per process (records up to 64 KiB);
            0 decodes on every read.

    Raises:
        ValueError: a setting is out of range, or the directory is already open in
            this process with a different ``durability``, ``max_bytes`` or
            ``sweep_interval``.
        TypeError: a setting has the wrong type.
        StorageUnavailableError: the directory cannot be created or opened, or holds
            something that is not an swr store. A damaged store is not an error: it is
            moved aside to ``<path>.corrupt-<time>-<pid>``, a new one is created, and
            the event ``lmdb_store_recreated`` is logged.

    Thread-safe; after ``os.fork()`` the child reopens the directory on first use.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = 1 << 30,
        *,
        durability: Durability = "process",
        serializer: Serializer | None = None,
        clock: Callable[[], float] | None = None,
        map_size: int | None = None,
        max_readers: int = 1024,
        sweep_interval: float | None = 60.0,
        read_cache: int = 1024,
    ) -> None:
        max_bytes = _positive_int("max_bytes", max_bytes, 1)
        if durability not in _DURABILITIES:
            raise ValueError(
                f"durability must be one of {', '.join(map(repr, _DURABILITIES))}; "
                f"got {durability!r}"
            )
        if map_size is None:
            map_size = max(_MIB, min(_DEFAULT_MAP, 2 * max_bytes))
        map_size = _positive_int("map_size", map_size, _MIB)
        max_readers = _positive_int("max_readers", max_readers, 1)
        read_cache = _positive_int("read_cache", read_cache, 0)
        if sweep_interval is not None:
            if isinstance(sweep_interval, bool) or not isinstance(sweep_interval, (int, float)):
                raise TypeError("sweep_interval must be seconds as a number, or None")
            if not (sweep_interval > 0 and math.isfinite(sweep_interval)):
                raise ValueError(
                    f"sweep_interval must be a finite number of seconds > 0, got {sweep_interval}"
                )
            sweep_interval = float(sweep_interval)
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError(
                f"serializer must have dumps() and loads(), got {type(serializer).__name__}"
            )
        raw_path = os.fspath(path)
        if not raw_path:
            raise ValueError(f"path must be a non-empty directory path, got {path!r}")
        try:
            Path(raw_path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot use {raw_path!r} as an LMDB store directory: {exc}"
            ) from exc
        real = os.path.realpath(raw_path)
        options = _Options(max_bytes, durability, map_size, max_readers, sweep_interval)
        with _registry_lock:
            backend = _acquire(real, options, clock)
        self._setup(_Handle(real, options, clock, backend), serializer, clock, read_cache, None)

    def _setup(
        self,
        handle: _Handle,
        serializer: Serializer | None,
        clock: Callable[[], float] | None,
        read_cache: int,
        entry_factory: EntryFactory | None,
    ) -> None:
        self._h = handle
        self.serializer: Serializer = serializer if serializer is not None else default_serializer()
        self._entry_factory = entry_factory
        self._codec = RecordCodec(self.serializer)
        self._decode = self._codec.decode if entry_factory is None else self._decode_into
        self._encode = self._codec.encode
        self._clock = clock
        self._key_limit = handle.backend.key_limit
        self._cache: ReadCache[tuple[bytes, bytes, bytes, Entry]] = ReadCache(read_cache)
        self._cache_get = self._cache.get

    # -- public attributes ------------------------------------------------------------

    @property
    def path(self) -> str:
        """The store's directory (resolved)."""
        return self._h.path

    @property
    def durability(self) -> Durability:
        """``"process"`` or ``"system"``."""
        return self._h.options.durability

    @property
    def max_bytes(self) -> int:
        """The bound on stored keys and records, in bytes."""
        return self._h.options.max_bytes

    # -- keys -------------------------------------------------------------------------

    def _key(self, key: object) -> tuple[bytes, bytes]:
        """Return ``(storage key, key check)`` of ``key``; raise naming a bad key."""
        if not isinstance(key, str):
            raise TypeError(f"cache key must be a str, got {type(key).__name__}: {key!r}")
        if not key:
            raise ValueError("cache key must not be empty")
        try:
            raw = key.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(f"cache key is not encodable as UTF-8: {key!r}") from exc
        if len(raw) <= self._key_limit:
            return raw, b""
        return digest_key(key, self._key_limit)

    def _backend(self) -> _Backend:
        backend = self._h.backend
        if backend.pid != _pid or backend.closed:
            return self._h.current()
        return backend

    # -- reads ------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """Return the live entry under ``key``, or ``None`` (absent, dead or corrupt).

        One read transaction and one lookup; the decoded entry comes from the read
        cache while the stored bytes are unchanged. A record that does not decode is
        counted (``stats()["corrupt_entries"]``), logged (``corrupt_entry``), deleted
        and read as ``None``.

        Raises:
            TypeError, ValueError: ``key`` is not a non-empty str.
            StorageUnavailableError: the storage is closed or LMDB fails.
        """
        try:
            cached = self._cache_get(key)
        except TypeError:  # unhashable: _key names the problem
            cached = None
        if cached is None:
            kb, check = self._key(key)
        else:
            kb, check, known, entry = cached
        backend = self._h.backend
        if backend.pid != _pid:  # forked, or closed (see _ClosedBackend)
            return self._get_slow(key, kb, check)
        data: bytes | None = None
        # Counted in flight so that a fork waits for this transaction to end.
        backend.push(None)
        try:
            retry = backend.paused
            if not retry:
                txn = backend.begin(backend.entries)
                try:
                    data = txn.get(kb)
                finally:
                    txn.abort()
        except lmdb.Error:  # e.g. invalidated by a map resize in another thread
            retry = True
        finally:
            backend.pop()
        if retry:
            return self._get_slow(key, kb, check)
        if cached is None or data != known:
            return self._finish(key, kb, check, data, cached)
        # The stored bytes are those the cached entry was decoded from.
        clock = self._clock
        if entry.expires_at <= (clock() if clock is not None else _time.time()):
            return None
        return entry

    def _finish(
        self,
        key: str,
        kb: bytes,
        check: bytes,
        data: bytes | None,
        cached: tuple[bytes, bytes, bytes, Entry] | None,
    ) -> Entry | None:
        if data is None:
            if cached is not None:
                self._cache.pop(key, None)
            return None
        if cached is not None and cached[2] == data:
            entry = cached[3]
        else:
            try:
                entry = self._decode(data, check)
            except CorruptEntryError as exc:
                self._corrupt(key, kb, data, exc)
                return None
            if self._cache.limit and self._codec.decoded_size(data) <= ReadCache.DECODED_MAX:
                self._cache.remember(((key, (kb, check, data, entry)),))
        clock = self._clock
        if entry.expires_at <= (clock() if clock is not None else _time.time()):
            return None
        return entry

    def _decode_into(self, data: bytes, check: bytes) -> Entry:
        """Decode with the view's entry factory (only on read cache misses)."""
        entry = self._codec.decode(data, check)
        factory = cast("EntryFactory", self._entry_factory)
        return factory(
            entry.value, entry.stored_at, entry.fresh_until, entry.stale_until, entry.expires_at
        )

    def _get_slow(self, key: str, kb: bytes, check: bytes) -> Entry | None:
        (data,) = self._read([kb])
        return self._finish(key, kb, check, data, self._cache.get(key))

    def _read(self, kbs: Sequence[bytes]) -> list[bytes | None]:
        """Read ``kbs`` in one read transaction, retrying around resizes and forks."""
        failure: lmdb.Error | None = None
        for _ in range(_ATTEMPTS):
            backend = self._backend()
            paused = resized = readers_full = False
            backend.push(None)
            try:
                paused = backend.paused
                if not paused:
                    txn = backend.begin(backend.entries)
                    try:
                        return [txn.get(kb) for kb in kbs]
                    finally:
                        txn.abort()
            except lmdb.MapResizedError as exc:
                resized, failure = True, exc
            except lmdb.ReadersFullError as exc:
                readers_full, failure = True, exc
            except lmdb.Error as exc:
                failure = exc  # invalidated by a resize in another thread, or closed
            finally:
                backend.pop()
            if paused:
                backend.resumed.wait(5)
                continue
            try:
                if resized:
                    backend.adopt_map_size()  # another process grew the map
                elif readers_full:
                    backend.check_readers()
                else:
                    backend.wait_for_writer()  # e.g. a map resize in another thread
            except lmdb.Error as exc:
                raise _translate(self.path, exc) from exc
        raise StorageUnavailableError(f"LMDB store {self.path} failed: {failure}") from failure

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the live entries of ``keys`` in order, read in one transaction."""
        pairs = [self._key(key) for key in keys]
        if not pairs:
            return []
        datas = self._read([kb for kb, _ in pairs])
        return [
            self._finish(key, kb, check, data, self._cache.get(key))
            for key, (kb, check), data in zip(keys, pairs, datas, strict=True)
        ]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(key) and self.get(key) is not None

    # -- writes -----------------------------------------------------------------------

    def _item(self, key: str, entry: Entry, max_bytes: int) -> tuple[bytes, bytes, bytes]:
        kb, check = self._key(key)
        record = self._encode(entry, check)  # checks the entry
        if len(kb) + len(record) > max_bytes:
            raise StorageFullError(
                f"the record of {key!r} takes {len(kb) + len(record)} bytes, more than "
                f"max_bytes={max_bytes}"
            )
        return kb, record, _stamp(entry.expires_at) + kb

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` under ``key`` in one write transaction, evicting if over the bound.

        Returns once committed: the entry then survives this process being killed (and
        an OS crash, with ``durability="system"``).

        Raises:
            TypeError, ValueError: bad key, or entry times not finite and ordered.
            SerializationError: the serializer cannot encode the value.
            StorageFullError: the record alone is larger than ``max_bytes``, or the disk
                is full.
            StorageUnavailableError: the storage is closed or LMDB fails.
        """
        backend = self._backend()
        item = self._item(key, entry, backend.options.max_bytes)
        self._cache.pop(key, None)
        try:
            evicted = backend.write(backend.put, [item])
        except lmdb.Error as exc:
            raise _translate(self.path, exc) from exc
        if evicted:
            backend.evictions += evicted

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries in one write transaction."""
        if not entries:
            return
        backend = self._backend()
        limit = backend.options.max_bytes
        items = [self._item(key, entry, limit) for key, entry in entries.items()]
        for key in entries:
            self._cache.pop(key, None)
        with _translated(self.path):
            evicted = backend.write(backend.put, items)
        if evicted:
            backend.evictions += evicted

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it held an entry (live or not). Idempotent."""
        backend = self._backend()
        kb, _ = self._key(key)
        self._cache.pop(key, None)
        with _translated(self.path):
            return backend.write(backend.delete, kb)

    def _corrupt(self, key: str, kb: bytes, data: bytes, exc: CorruptEntryError) -> None:
        """Count, log and delete an undecodable record (unless rewritten meanwhile)."""
        self._cache.pop(key, None)
        _log.warning("corrupt_entry", key=key, backend="lmdb", path=self.path, error=str(exc))
        try:
            backend = self._backend()
            backend.corrupt_entries += 1
            with _translated(self.path):
                backend.write(backend.drop_if_same, kb, data)
        except StorageError as error:
            _log.warning("corrupt_entry_not_deleted", key=key, path=self.path, error=repr(error))

    # -- leases -----------------------------------------------------------------------

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds unless a live one is held.

        One write transaction, atomic across the processes sharing the directory. A
        lease expires on its own (judged by this storage's clock), so a holder that
        died costs one lease period.

        Returns:
            A token for :meth:`release_lease`, or ``None`` when someone holds it.

        Raises:
            TypeError, ValueError: ``ttl`` is not a finite number of seconds > 0.
        """
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise TypeError(f"lease ttl must be seconds as a number, got {type(ttl).__name__}")
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"lease ttl must be a finite number of seconds > 0, got {ttl}")
        backend = self._backend()
        kb, _ = self._key(key)
        token = uuid.uuid4().bytes
        now = self._clock() if self._clock is not None else _time.time()
        with _translated(self.path):
            taken = backend.write(backend.acquire, kb, token, now, now + ttl)
        return token.hex() if taken else None

    def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still holds it (else do nothing)."""
        try:
            raw = bytes.fromhex(token)
        except (TypeError, ValueError):
            return
        if len(raw) != 16:
            return
        backend = self._backend()
        kb, _ = self._key(key)
        with _translated(self.path):
            backend.write(backend.release, kb, raw)

    # -- maintenance ------------------------------------------------------------------

    def sweep(self) -> int:
        """Remove every entry past its ``expires_at`` now, and dead leases; return entries.

        The background sweep runs the same code: write transactions of at most 256
        removals each, so other writers get their turn in between.
        """
        backend = self._backend()
        now = self._clock() if self._clock is not None else _time.time()
        with _translated(self.path):
            return backend.sweep(now)

    def purge(self, *, expired_only: bool = False) -> int:
        """Remove every entry (and lease), or only the dead entries; return how many."""
        if expired_only:
            return self.sweep()
        backend = self._backend()
        self._cache.items.clear()
        with _translated(self.path):
            return backend.write(backend.purge)

    def summary(self) -> StoreSummary:
        """Count the entries by window now (reads every record header).

        Raises:
            StorageUnavailableError: the storage is closed or LMDB fails.
        """
        backend = self._backend()
        now = self._clock() if self._clock is not None else _time.time()
        with _translated(self.path):
            return _summarize(backend, now)

    def stats(self) -> dict[str, int]:
        """Counters of this directory in this process, and the store's size.

        ``entries`` and ``bytes`` (keys + records) describe the whole store as every
        process left it, ``map_size`` is the memory map in bytes; ``corrupt_entries``,
        ``evictions``, ``expired_removed`` and ``map_resizes`` count this process's work.
        Never raises: after close only the counters remain.
        """
        last = self._h.last
        counters = {
            "corrupt_entries": last.corrupt_entries,
            "evictions": last.evictions,
            "expired_removed": last.expired_removed,
            "map_resizes": last.map_resizes,
        }
        try:
            backend = self._backend()
            with backend.reading() as txn:
                counters["entries"] = txn.stat(backend.entries)["entries"]
                counters["bytes"] = backend.total(txn, backend.expiry)
                counters["map_size"] = backend.env.info()["map_size"]
        except (StorageError, lmdb.Error):
            pass
        return counters

    # -- views and lifecycle ----------------------------------------------------------

    def with_serializer(self, serializer: Serializer) -> LMDBStorage:
        """Return a view of the same store that encodes values with ``serializer``.

        The view shares the directory, counters and closing with this storage (closing
        either closes both); it has its own read cache.
        """
        if not isinstance(serializer, Serializer):
            raise TypeError(
                f"serializer must have dumps() and loads(), got {type(serializer).__name__}"
            )
        view = object.__new__(LMDBStorage)
        view._setup(self._h, serializer, self._clock, self._cache.limit, self._entry_factory)
        return view

    def with_entry_factory(self, factory: EntryFactory) -> LMDBStorage:
        """Return a view of the same store whose reads build entries with ``factory``.

        ``factory(value, stored_at, fresh_until, stale_until, expires_at)`` returns an
        :class:`~storage.Entry` (or subclass). The engine passes one that builds its
        hit and stale results once per decoded record; with the read cache, a hit then
        allocates nothing. Without a read cache (``read_cache=0``) this returns the
        storage itself: every read decodes anyway, so there is nothing to save.

        The view shares the directory, counters and closing with this storage.
        """
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {type(factory).__name__}")
        if not self._cache.limit:
            return self
        view = object.__new__(LMDBStorage)
        view._setup(self._h, self.serializer, self._clock, self._cache.limit, factory)
        return view

    def as_async(self) -> AsyncAdapter:
        """Return an asyncio view: reads inline; writes inline, or in a thread when durable.

        With ``durability="process"`` a write never waits for the disk and takes
        microseconds, so it runs on the event loop; with ``"system"`` each commit waits
        for fsync, so writes run in a worker thread (``asyncio.to_thread``).
        """
        from swr.storage.adapters import AsyncAdapter  # noqa: PLC0415 - avoids an import cycle

        return AsyncAdapter(self, inline=self.durability == "process")

    def close(self) -> None:
        """Close this storage and its views; the directory stays. Idempotent.

        The environment closes with the last storage of this process using it; later
        calls raise :class:`~storage.errors.StorageUnavailableError`.
        """
        self._cache.items.clear()
        self._h.close()

    def __repr__(self) -> str:
        options = self._h.options
        return (
            f"LMDBStorage({self.path!r}, max_bytes={options.max_bytes}, "
            f"durability={options.durability!r})"
        )


# -- inspection -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSummary:
    """What ``python -m swr inspect`` prints about a store.

    Attributes:
        path: The store's directory.
        entries: Records stored.
        bytes: Keys and records, in bytes (the quantity ``max_bytes`` bounds).
        file_bytes: Size of the data file on disk.
        map_size: Size of the memory map, in bytes.
        fresh: Entries before ``fresh_until``.
        stale: Entries before ``stale_until``.
        expired: Entries before ``expires_at`` (kept as fallbacks).
        dead: Entries past ``expires_at``, waiting for the sweep.
        corrupt: Records whose header does not decode.
        leases: Leases stored (live or not).
    """

    path: str
    entries: int
    bytes: int
    file_bytes: int
    map_size: int
    fresh: int
    stale: int
    expired: int
    dead: int
    corrupt: int
    leases: int


def _summarize(backend: _Backend, now: float) -> StoreSummary:
    counts = {"fresh": 0, "stale": 0, "expired": 0, "dead": 0, "corrupt": 0}
    with backend.reading() as txn:
        for _, record in txn.cursor(db=backend.entries):
            try:
                _, fresh, stale, expires = backend.times(record)
            except CorruptEntryError:
                counts["corrupt"] += 1
                continue
            if now >= expires:
                counts["dead"] += 1
            elif now < fresh:
                counts["fresh"] += 1
            elif now < stale:
                counts["stale"] += 1
            else:
                counts["expired"] += 1
        entries = txn.stat(backend.entries)["entries"]
        leases = txn.stat(backend.leases)["entries"]
        total = backend.total(txn, backend.expiry)
        map_size = backend.env.info()["map_size"]
    return StoreSummary(
        path=backend.path,
        entries=entries,
        bytes=total,
        file_bytes=os.path.getsize(os.path.join(backend.path, "data.mdb")),
        map_size=map_size,
        leases=leases,
        **counts,
    )


@contextlib.contextmanager
def _existing(path: str | os.PathLike[str]) -> Iterator[_Backend]:
    """This process's backend of an existing store; never creates or moves anything."""
    raw = os.fspath(path)
    if not os.path.isdir(raw):
        reason = "no such directory" if not os.path.exists(raw) else "not a directory"
        raise StorageUnavailableError(f"{raw} is not an swr LMDB store ({reason})")
    if not os.path.isfile(os.path.join(raw, "data.mdb")):
        raise StorageUnavailableError(f"{raw} is not an swr LMDB store (no data.mdb)")
    real = os.path.realpath(raw)
    with _registry_lock:
        backend = _registry.get(real)
        if backend is not None and backend.pid == _pid and not backend.closed:
            backend.refs += 1
        else:
            # map_size 0: adopt the size the store records (what its users map).
            options = _Options(1 << 62, "process", 0, 1024, None)
            try:
                env, data = _open_env(real, options, create=False)
            except _DAMAGED as exc:
                raise StorageUnavailableError(f"{raw} is a damaged LMDB store: {exc}") from exc
            except (lmdb.Error, OSError) as exc:
                raise StorageUnavailableError(f"cannot open {raw}: {exc}") from exc
            backend = _Backend(real, env, data, options, None)
            backend.refs = 1
            _registry[real] = backend
    try:
        with _translated(real):
            yield backend
    finally:
        with _registry_lock:
            _release(backend)


def inspect_store(path: str | os.PathLike[str], now: float | None = None) -> StoreSummary:
    """Count the entries of the store at ``path`` by window, at ``now`` (default: now).

    Raises:
        StorageUnavailableError: ``path`` is not an swr LMDB store (nothing is created).
    """
    with _existing(path) as backend:
        return _summarize(backend, _time.time() if now is None else now)


def purge_store(
    path: str | os.PathLike[str], *, expired_only: bool = False, now: float | None = None
) -> int:
    """Empty the store at ``path`` (or remove only its dead entries); return how many went.

    Safe while other processes use the store: each removal is a transaction.

    Raises:
        StorageUnavailableError: ``path`` is not an swr LMDB store (nothing is created).
    """
    with _existing(path) as backend:
        if expired_only:
            return backend.sweep(_time.time() if now is None else now)
        return backend.write(backend.purge)
