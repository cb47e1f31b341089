"""One environment per directory and process: the registry, writes, fork and recovery."""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time as _time
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar, cast

import lmdb

from swr.storage._clock import now
from swr.storage._log import logger as _log
from swr.storage._record import RecordCodec
from swr.storage.errors import (
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from swr.storage.lmdb._files import (
    _DAMAGED,
    _DATA_FILE,
    _DataFile,
    _move_aside,
    _open_or_recreate,
    _Options,
    _recovery_lock,
    _remap,
    _Replaced,
)
from swr.storage.lmdb._format import (
    _ENTRIES,
    _EXPIRY,
    _LEASES,
    _STAMP,
    _TAGS,
    _TOTAL_KEY,
    _Index,
    _stamp,
)
from swr.storage.serializers import default_serializer

T = TypeVar("T")
_ATTEMPTS: Final = 12  # retries of one operation around map growth and resizes
_FORK_WAIT: Final = 1.0  # seconds a fork waits for in-flight transactions
_FOLLOW_INTERVAL: Final = 1.0  # seconds between checks that the store was not replaced

_pid = os.getpid()
_registry_lock = threading.Lock()
_registry: dict[str, _Backend] = {}
_forking: list[_Backend] = []


class _Backend(_Index):
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
        self.tags = env.open_db(_TAGS, create=False, dupsort=True)
        self.key_limit = env.max_key_size() - _STAMP
        self.times = RecordCodec(default_serializer()).decode_times
        self.wlock = threading.Lock()
        # A deque keeps its block when it empties: a list would reallocate its storage
        # on every read (growing from empty on the push, shrinking back on the pop).
        self.inflight: collections.deque[None] = collections.deque()
        self.push = self.inflight.append
        self.pop = self.inflight.pop
        self.paused = False
        self.resumed = threading.Event()
        self.resumed.set()
        self.quiescent = True
        self.refs = 0
        self.closed = False
        self.retired = False
        self.successor: _Backend | None = None
        self.corrupt_entries = 0
        self.evictions = 0
        self.expired_removed = 0
        self.map_resizes = 0
        self.stores_recreated = 0
        self.stop = threading.Event()
        self.sweeper: threading.Thread | None = None
        # The data file this environment maps: another at the path means the store
        # was replaced (moved aside as damaged) by another process.
        self.data_path = os.path.join(path, _DATA_FILE)
        info = os.fstat(data.fd)
        self.ident = (info.st_dev, info.st_ino)
        self.check_at = _time.monotonic() + _FOLLOW_INTERVAL

    def absorb(self, old: _Backend) -> None:
        """Carry the counters of the backend this one replaces (a recreated store)."""
        self.corrupt_entries += old.corrupt_entries
        self.evictions += old.evictions
        self.expired_removed += old.expired_removed
        self.map_resizes += old.map_resizes
        self.stores_recreated += old.stores_recreated

    def replaced(self) -> bool:
        """Whether the path now holds another data file (or none) than this one maps."""
        self.check_at = _time.monotonic() + _FOLLOW_INTERVAL
        try:
            info = os.stat(self.data_path)
        except OSError:
            return True
        return (info.st_dev, info.st_ino) != self.ident

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
        """Sweep every ``interval``; every second, follow a store replaced meanwhile.

        The check costs the read path nothing: once this backend retires, the read
        path's pid test sends every read to the new store.
        """
        due = _time.monotonic() + interval
        while not self.stop.wait(min(interval, _FOLLOW_INTERVAL)):
            if self.replaced():
                _recover(self, None)
                return
            if _time.monotonic() >= due:
                self._sweep_once()
                due = _time.monotonic() + interval

    def _sweep_once(self) -> None:
        try:
            self.sweep(self.now())
        except _DAMAGED as exc:
            _recover(self, exc)
        except _Replaced:
            _recover(self, None)
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

    def retire(self) -> None:
        """Stop using this environment: its store was moved aside or replaced.

        Called under the registry lock. Calls that start now see a pid of no process
        (or ``paused``) and reopen the path; the environment closes once the
        transactions in flight in other threads have ended (a second at most). One
        that never ends keeps it open for good: closing it under a running LMDB call
        could crash that thread.
        """
        self.stop.set()
        with self.wlock:
            self.pid = -1
            self.retired = self.closed = True
            self.paused = True
            deadline = _time.monotonic() + _FORK_WAIT
            while self.inflight and _time.monotonic() < deadline:
                _time.sleep(0.0002)
            if not self.inflight:
                self.env.close()
                self.data.close()

    def now(self) -> float:
        return now(self.clock)

    @contextlib.contextmanager
    def reading(self) -> Iterator[lmdb.Transaction[bytes]]:
        """A read transaction counted for fork (the hot read path inlines the same)."""
        while True:
            self.push(None)
            if not self.paused:
                break
            self.pop()
            if self.retired:  # paused for good: its store was replaced
                raise _Replaced(f"the LMDB store {self.path} was replaced")
            self.resumed.wait(5)
        try:
            if self.closed:
                raise StorageUnavailableError(f"the LMDB store {self.path} is closed")
            with self.begin() as txn:
                yield txn
        finally:
            self.pop()

    def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(txn, *args)`` in one write transaction and commit it.

        The map grows when full and adopts a size grown by another process; ``fn`` is
        then run again in a new transaction, so it must only change the database (and
        return what its caller applies after the commit).

        Every second at most, checks first that the path still holds this store.

        Raises:
            StorageUnavailableError: the store is closed.
            _Replaced: the store was replaced (this process or another found it damaged).
            StorageFullError: the map could not be grown enough.
            lmdb.Error: any other LMDB failure (callers translate it; see ``_DAMAGED``).
        """
        wlock = self.wlock
        wlock.acquire()  # not ``with``: every write takes it, and this costs half as much
        try:
            if self.closed or _time.monotonic() >= self.check_at:  # one test (retired: closed)
                self._check_writable()
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
        finally:
            wlock.release()
        raise StorageFullError(
            f"the LMDB store {self.path} stayed full after growing its map {_ATTEMPTS} times"
        )

    def _check_writable(self) -> None:
        """Raise unless this store may be written (called by :meth:`write` under ``wlock``)."""
        if self.closed and not self.retired:
            raise StorageUnavailableError(f"the LMDB store {self.path} is closed")
        if self.retired or (_time.monotonic() >= self.check_at and self.replaced()):
            raise _Replaced(f"the LMDB store {self.path} was replaced")

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


def _recover(backend: _Backend, damage: BaseException | None) -> None:
    """Leave a store found damaged (``damage``) or replaced by another process.

    A damaged store still at its path is moved aside (:func:`_move_aside`), loudly;
    one another process already replaced is just left. Either way this process's
    backend retires, and every storage on the path reopens it on its next call.
    """
    with _registry_lock:
        if backend.pid != _pid:
            return  # already retired (or inherited through fork)
        path = backend.path
        if damage is not None:
            with _recovery_lock(path):
                if backend.replaced():
                    damage = None  # another process moved it aside already
                else:
                    aside = _move_aside(path)
                    backend.stores_recreated += 1
                    _log.error(
                        "lmdb_store_recreated",
                        path=path,
                        moved_to=aside,
                        found="while serving",
                        error=f"{type(damage).__name__}: {damage}",
                    )
        if damage is None:
            _log.warning("lmdb_store_followed", path=path, reason="replaced by another process")
        if _registry.get(path) is backend:
            del _registry[path]
        backend.retire()


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
            backend = old = self.backend
            if backend.pid != _pid or backend.closed:
                backend = _acquire(self.path, self.options, self.clock, check=False)
                self.backend = self.last = backend
                if old.retired and old.successor is not backend:
                    backend.absorb(old)  # the counters go on with the new store
                    old.successor = backend
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
