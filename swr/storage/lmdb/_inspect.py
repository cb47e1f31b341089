"""Inspecting and emptying a store from outside an application (``python -m swr``)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import lmdb

from swr.storage.errors import (
    CorruptEntryError,
    StorageError,
    StorageUnavailableError,
)
from swr.storage.lmdb import _process
from swr.storage.lmdb._files import _DAMAGED, _open_env, _Options, _WalkFailed
from swr.storage.lmdb._process import _Backend, _registry, _release, _translate

__all__ = ["StoreSummary", "inspect_store", "purge_store"]


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
def _existing(
    path: str | os.PathLike[str], *, damaged: tuple[type[BaseException], ...] = ()
) -> Iterator[_Backend]:
    """This process's backend of an existing store; never creates or moves anything.

    Errors of the ``damaged`` types propagate as they are; others become storage errors.
    """
    raw = os.fspath(path)
    if not os.path.isdir(raw):
        reason = "no such directory" if not os.path.exists(raw) else "not a directory"
        raise StorageUnavailableError(f"{raw} is not an swr LMDB store ({reason})")
    if not os.path.isfile(os.path.join(raw, "data.mdb")):
        raise StorageUnavailableError(f"{raw} is not an swr LMDB store (no data.mdb)")
    real = os.path.realpath(raw)
    with _process._registry_lock:
        backend = _registry.get(real)
        if backend is not None and backend.pid == _process._pid and not backend.closed:
            backend.refs += 1
        else:
            # map_size 0: adopt the size the store records (what its users map).
            options = _Options(1 << 62, "process", 0, 1024, None)
            try:
                env, data = _open_env(real, options, create=False)
            except damaged:
                raise
            except _DAMAGED as exc:
                raise StorageUnavailableError(f"{raw} is a damaged LMDB store: {exc}") from exc
            except (lmdb.Error, OSError) as exc:
                raise StorageUnavailableError(f"cannot open {raw}: {exc}") from exc
            backend = _Backend(real, env, data, options, None)
            backend.refs = 1
            _registry[real] = backend
    try:
        try:
            yield backend
        except damaged:
            raise
        except lmdb.Error as exc:
            raise _translate(real, exc) from exc
    finally:
        with _process._registry_lock:
            _release(backend)


def _walk_in_child(path: str, now: float) -> StoreSummary:
    """Summarize the store at ``path`` in a child process, which damaged pages may kill.

    LMDB checks the pages a search descends into, but stepping a cursor onto a damaged
    page fails an assertion and aborts the process (SIGABRT): the walk over every
    record runs where that costs nothing but a report.

    Raises:
        _WalkFailed: the store is damaged.
        StorageUnavailableError: ``path`` is not an swr store, or the child failed.
    """
    root = str(Path(__file__).resolve().parents[3])  # the folder holding the swr package
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    code = "import sys, swr.storage.lmdb._inspect as m; sys.exit(m._child_walk(*sys.argv[1:]))"
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code, path, repr(now)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise StorageUnavailableError(f"cannot inspect {path} in a child process: {exc}") from exc
    said = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode == 0:
        return StoreSummary(**json.loads(done.stdout.strip().splitlines()[-1]))
    if -done.returncode in _CRASHES:  # LMDB's assertions abort; a wild page faults
        name = signal.Signals(-done.returncode).name
        raise _WalkFailed(f"LMDB stopped walking its pages with {name}: {said}")
    if done.returncode == _CHILD_DAMAGED:
        raise _WalkFailed(said)
    raise StorageUnavailableError(said or f"inspecting {path} failed ({done.returncode})")


_CHILD_DAMAGED: Final = 3
_CRASHES: Final = frozenset(
    getattr(signal, name) for name in ("SIGABRT", "SIGSEGV", "SIGBUS") if hasattr(signal, name)
)


def _child_walk(path: str, now: str) -> int:
    """The child of :func:`_walk_in_child`: print the summary as JSON; 3 when damaged."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource  # noqa: PLC0415 - POSIX only

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort here dumps no core
    try:
        with _existing(path, damaged=_DAMAGED) as backend:
            summary = _summarize(backend, float(now))
    except _DAMAGED as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return _CHILD_DAMAGED
    except StorageError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(summary)))
    return 0


def inspect_store(path: str | os.PathLike[str], now: float | None = None) -> StoreSummary:
    """Count the entries of the store at ``path`` by window, at ``now`` (default: now).

    The walk over the records runs in a child process (see :func:`_walk_in_child`),
    so a damaged store is reported, never the end of this process.

    Raises:
        StorageUnavailableError: ``path`` is not an swr LMDB store, or is damaged
            (nothing is created or moved; an application opening it moves it aside).
    """
    with _existing(path) as backend:
        real = backend.path
    try:
        return _walk_in_child(real, _time.time() if now is None else now)
    except _WalkFailed as exc:
        raise StorageUnavailableError(
            f"{os.fspath(path)} is a damaged LMDB store: {exc}; the next application to "
            "use it moves it aside and starts a new one"
        ) from exc


def purge_store(
    path: str | os.PathLike[str], *, expired_only: bool = False, now: float | None = None
) -> int:
    """Empty the store at ``path`` (or remove only its dead entries); return how many went.

    Emptying removes the leases too (an operator's reset; ``LMDBStorage.purge`` keeps
    them). Safe while other processes use the store: each removal is a transaction.

    Raises:
        StorageUnavailableError: ``path`` is not an swr LMDB store (nothing is created).
    """
    with _existing(path) as backend:
        if expired_only:
            return backend.sweep(_time.time() if now is None else now)
        return backend.write(backend.purge, True)
