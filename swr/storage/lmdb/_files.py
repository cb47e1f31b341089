"""Opening a store's files: allocation, map sizes across processes, damage and moving aside."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import sys
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import lmdb

from swr.storage._log import logger as _log
from swr.storage.errors import (
    StorageFullError,
    StorageUnavailableError,
)
from swr.storage.lmdb._format import (
    _ENTRIES,
    _EXPIRY,
    _LAYOUT_KEY,
    _LAYOUT_VERSION,
    _LEASES,
    _META,
    _OUR_DBS,
    _TAGS,
)

Durability = Literal["process", "system"]
_DATA_FILE: Final = "data.mdb"
# statfs magic numbers of copy-on-write filesystems (btrfs, ZFS, bcachefs): every write
# takes new blocks there, so allocating a file up front reserves nothing for later writes.
_COPY_ON_WRITE: Final = frozenset((0x9123683E, 0x2FC12FC1, 0xCA451A4E))


@dataclass(frozen=True, slots=True)
class _Options:
    max_bytes: int
    durability: Durability
    map_size: int
    max_readers: int
    sweep_interval: float | None


class _DamagedMeta(Exception):
    """The store's own records (its named databases, its layout) do not parse."""


class _WalkFailed(Exception):
    """Walking the pages of a store found it damaged (LMDB failed, or aborted the walk)."""


class _Replaced(StorageUnavailableError):
    """Another process moved the store aside and created a new one at the same path."""


# Errors saying the files are not a readable store: the store is moved aside, at open
# or when found while serving.
_DAMAGED: Final = (
    lmdb.InvalidError,
    lmdb.CorruptedError,
    lmdb.PanicError,
    lmdb.PageNotFoundError,
    lmdb.VersionMismatchError,
    _DamagedMeta,
    _WalkFailed,
)


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
        try:
            meta = env.open_db(_META, txn=txn, create=create)
            for name in (_ENTRIES, _EXPIRY, _LEASES):
                env.open_db(name, txn=txn, create=create)
            if create or _TAGS in names:  # a store written before tags lacks it
                env.open_db(_TAGS, txn=txn, create=create, dupsort=True)
            layout = txn.get(_LAYOUT_KEY, db=meta)
        except (lmdb.IncompatibleError, lmdb.BadDbiError, lmdb.BadValsizeError) as exc:
            raise _DamagedMeta(f"the store's named databases do not open: {exc}") from exc
        if layout is None:
            if not create:
                raise StorageUnavailableError(f"{path} is not an swr LMDB store")
            txn.put(_LAYOUT_KEY, str(_LAYOUT_VERSION).encode(), db=meta)
        elif layout != str(_LAYOUT_VERSION).encode():
            if not (0 < len(layout) <= 9 and layout.isdigit()):
                raise _DamagedMeta(f"the layout record {bytes(layout[:16])!r} does not parse")
            raise StorageUnavailableError(
                f"{path} holds an swr store of layout {int(layout)}, this version reads "
                f"layout {_LAYOUT_VERSION}; use another directory"
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


def _move_aside(path: str) -> str:
    """Rename the store at ``path`` for inspection and leave an empty directory there.

    Keeps one damaged store per path: an older one moved aside is deleted first.
    Called under :func:`_recovery_lock`.
    """
    parent, name = os.path.split(path)
    for old in Path(parent).glob(f"{glob.escape(name)}.corrupt-*"):
        shutil.rmtree(old, ignore_errors=True)
    stamp = _time.strftime("%Y%m%dT%H%M%S", _time.gmtime())
    aside = f"{path}.corrupt-{stamp}-{os.getpid()}"
    os.rename(path, aside)
    os.makedirs(path, exist_ok=True)
    return aside


def _open_or_recreate(path: str, options: _Options) -> tuple[lmdb.Environment, _DataFile]:
    os.makedirs(path, exist_ok=True)  # moved aside by a process that found it damaged
    try:
        return _open_env(path, options, create=True)
    except _DAMAGED as damage:
        with _recovery_lock(path):
            try:  # another process may have recreated it meanwhile
                return _open_env(path, options, create=True)
            except _DAMAGED:
                pass
            aside = _move_aside(path)
            _log.error(
                "lmdb_store_recreated",
                path=path,
                moved_to=aside,
                found="at open",
                error=f"{type(damage).__name__}: {damage}",
            )
            return _open_env(path, options, create=True)
