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
from typing import Any, Final

import lmdb

from swr.storage._record import _HEADER_SIZE, digest_key
from swr.storage.errors import (
    CorruptEntryError,
    StorageError,
    StorageUnavailableError,
)
from swr.storage.lmdb import _process
from swr.storage.lmdb._files import _DAMAGED, _open_env, _Options, _WalkFailed
from swr.storage.lmdb._format import _CHECK_MAX, _long_key_check
from swr.storage.lmdb._process import _Backend, _registry, _release, _translate

__all__ = [
    "EntryInfo",
    "StoreSummary",
    "census",
    "inspect_store",
    "list_entries",
    "purge_store",
    "read_record",
    "window_at",
]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryInfo:
    """One entry of a store as :func:`list_entries` reports it (its value is not decoded).

    Attributes:
        key: The cache key; for a key longer than the store keeps, its stored form (a
            readable prefix and a digest, ``digest`` true).
        window: ``"fresh"``, ``"stale"``, ``"expired"``, ``"dead"`` (past
            ``expires_at``) or ``"corrupt"`` (the header does not decode).
        size: Bytes of its key and record (what ``max_bytes`` counts).
        stored_at: When its value was fetched (epoch seconds; NaN when corrupt).
        fresh_until: End of the fresh window.
        stale_until: End of the stale window.
        expires_at: End of the expired window.
        digest: Whether ``key`` is the stored digest form of a longer key.
    """

    key: str
    window: str
    size: int
    stored_at: float
    fresh_until: float
    stale_until: float
    expires_at: float
    digest: bool = False


def window_at(now: float, fresh: float, stale: float, expires: float) -> str:
    """The window an entry with these ends is in at ``now``."""
    if now >= expires:
        return "dead"
    if now < fresh:
        return "fresh"
    if now < stale:
        return "stale"
    return "expired"


_NAN = float("nan")


def _summarize(
    backend: _Backend, now: float, since: float | None = None
) -> tuple[StoreSummary, int]:
    """Count the records by window; with ``since``, also those stored after it.

    Returns:
        The summary and how many records were stored after ``since`` (0 without).
    """
    counts = {"fresh": 0, "stale": 0, "expired": 0, "dead": 0, "corrupt": 0}
    written = 0
    with backend.reading() as txn:
        for _, record in txn.cursor(db=backend.entries):
            try:
                stored, fresh, stale, expires = backend.times(record)
            except CorruptEntryError:
                counts["corrupt"] += 1
                continue
            counts[window_at(now, fresh, stale, expires)] += 1
            if since is not None and stored > since:
                written += 1
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
    ), written


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

    Raises:
        _WalkFailed: the store is damaged.
        StorageUnavailableError: ``path`` is not an swr store, or the child failed.
    """
    return StoreSummary(**_in_child(path, "summary", repr(now)))


def _in_child(path: str, command: str, *args: str) -> Any:
    """Run ``command`` over the store at ``path`` in a child process; return its JSON.

    LMDB checks the pages a search descends into, but stepping a cursor onto a damaged
    page fails an assertion and aborts the process (SIGABRT): every walk over the
    records runs where that costs nothing but a report.

    Raises:
        _WalkFailed: the store is damaged.
        StorageUnavailableError: ``path`` is not an swr store, or the child failed.
    """
    root = str(Path(__file__).resolve().parents[3])  # the folder holding the swr package
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    code = "import sys, swr.storage.lmdb._inspect as m; sys.exit(m._child_main(*sys.argv[1:]))"
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code, command, path, *args],
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
        return json.loads(done.stdout.strip().splitlines()[-1])
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
_CHECK_LEN_AT: Final = _HEADER_SIZE - 2  # the header ends with the key check's length


def _entries(backend: _Backend, now: float, prefix: str, limit: int) -> list[dict[str, Any]]:
    """The entries whose stored key starts with ``prefix``, in key order, at most ``limit``."""
    start = prefix.encode()
    found: list[dict[str, Any]] = []
    with backend.reading() as txn:
        cursor = txn.cursor(db=backend.entries)
        if not cursor.set_range(start):
            return found
        for skey, record in cursor:
            if not skey.startswith(start) or len(found) >= limit:
                break
            check_len = int.from_bytes(record[_CHECK_LEN_AT:_HEADER_SIZE], "little")
            check = record[_HEADER_SIZE : _HEADER_SIZE + check_len] if check_len else b""
            # A digested key keeps the key itself as its check, or (longer still) a digest.
            digest = bool(check) and check[:1] == b"\xff"
            key = (check if check and not digest else skey).decode("utf-8", "replace")
            try:
                times = backend.times(record)
                window = window_at(now, *times[1:])
            except CorruptEntryError:
                times, window = (_NAN,) * 4, "corrupt"
            found.append(
                dataclasses.asdict(
                    EntryInfo(
                        key=key,
                        window=window,
                        size=len(skey) + len(record),
                        stored_at=times[0],
                        fresh_until=times[1],
                        stale_until=times[2],
                        expires_at=times[3],
                        digest=digest,
                    )
                )
            )
    return found


def _child_main(command: str, path: str, *args: str) -> int:
    """The child of :func:`_in_child`: print the answer as JSON; 3 when damaged."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource  # noqa: PLC0415 - POSIX only

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort here dumps no core
    answer: Any
    try:
        with _existing(path, damaged=_DAMAGED) as backend:
            if command == "summary":
                answer = dataclasses.asdict(_summarize(backend, float(args[0]))[0])
            elif command == "census":
                summary, written = _summarize(backend, float(args[0]), float(args[1]))
                answer = {**dataclasses.asdict(summary), "written": written}
            else:
                answer = _entries(backend, float(args[0]), args[1], int(args[2]))
    except _DAMAGED as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return _CHILD_DAMAGED
    except StorageError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    # NaN (the times of a corrupt record) travels as JSON's NaN extension, read back.
    print(json.dumps(answer))
    return 0


def _checked(path: str | os.PathLike[str], command: str, *args: str) -> Any:
    """:func:`_in_child` on an existing store, a damaged one reported as unavailable."""
    with _existing(path) as backend:
        real = backend.path
    try:
        return _in_child(real, command, *args)
    except _WalkFailed as exc:
        raise StorageUnavailableError(
            f"{os.fspath(path)} is a damaged LMDB store: {exc}; the next application to "
            "use it moves it aside and starts a new one"
        ) from exc


def list_entries(
    path: str | os.PathLike[str],
    *,
    prefix: str = "",
    limit: int | None = None,
    now: float | None = None,
) -> list[EntryInfo]:
    """The entries of the store at ``path`` whose key starts with ``prefix``, in key order.

    At most ``limit`` of them (default: all); values are not decoded. The walk runs in
    a child process, like :func:`inspect_store`'s.

    Raises:
        StorageUnavailableError: ``path`` is not an swr LMDB store, or is damaged.
    """
    when = _time.time() if now is None else now
    most = sys.maxsize if limit is None else limit
    rows = _checked(path, "entries", repr(when), prefix, str(most))
    return [EntryInfo(**row) for row in rows]


def census(path: str | os.PathLike[str], now: float, since: float) -> tuple[StoreSummary, int]:
    """The summary at ``now`` and how many records were stored after ``since``.

    Raises:
        StorageUnavailableError: ``path`` is not an swr LMDB store, or is damaged.
    """
    answer = dict(_checked(path, "census", repr(now), repr(since)))
    written = int(answer.pop("written"))
    return StoreSummary(**answer), written


def inspect_store(path: str | os.PathLike[str], now: float | None = None) -> StoreSummary:
    """Count the entries of the store at ``path`` by window, at ``now`` (default: now).

    The walk over the records runs in a child process (see :func:`_walk_in_child`),
    so a damaged store is reported, never the end of this process.

    Raises:
        StorageUnavailableError: ``path`` is not an swr LMDB store, or is damaged
            (nothing is created or moved; an application opening it moves it aside).
    """
    when = _time.time() if now is None else now
    return StoreSummary(**_checked(path, "summary", repr(when)))


def read_record(path: str | os.PathLike[str], key: str) -> tuple[bytes, bytes] | None:
    """The raw record under ``key`` and the key check it must carry, or ``None``.

    Nothing is decoded and nothing is removed (a storage's ``get`` deletes a record it
    cannot decode; an operator reading with another serializer must not lose it).

    Raises:
        StorageUnavailableError: ``path`` is not an swr LMDB store.
        ValueError: ``key`` is empty or not valid UTF-8.
    """
    if not key:
        raise ValueError("cache key must not be empty")
    try:
        raw = key.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"cache key is not encodable as UTF-8: {key!r}") from exc
    with _existing(path) as backend:
        skey, check = raw, b""
        if len(raw) > backend.key_limit:
            skey, check = digest_key(key, backend.key_limit)
            if len(check) > _CHECK_MAX:
                check = _long_key_check(raw)
        with backend.reading() as txn:
            record = txn.get(skey, db=backend.entries)
    return None if record is None else (bytes(record), check)


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
