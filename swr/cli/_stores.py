"""The stores the command line works on: an LMDB directory or a Redis server.

Each target answers the same questions (a census by window, the entries, one entry,
deleting, purging, the storage's stats) so the commands never ask which kind it is.
Neither kind ever creates a store: an LMDB path must already hold one, and Redis is
only read or cleared under the given prefix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from swr.storage import CorruptEntryError, Entry, LMDBStorage, RedisStorage, StorageError
from swr.storage._record import RecordCodec
from swr.storage.lmdb import inspect_store, purge_store
from swr.storage.lmdb._inspect import EntryInfo, census, list_entries, read_record, window_at
from swr.storage.serializers import default_serializer

__all__ = ["Census", "CliError", "Target", "open_target"]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# Exit statuses (docs/cli.md lists them).
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4
# The first byte of every lease key of a Redis storage (see swr.storage._redis).
_LEASE_MARK = b"\xff"
_BATCH = 500


class CliError(Exception):
    """A failure the command line reports as one line and an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# The counts of a census, in the order they are printed.
COUNTS = ("entries", "bytes", "fresh", "stale", "expired", "dead", "corrupt", "leases")


@dataclass(frozen=True, slots=True, kw_only=True)
class Census:
    """A store's entries counted by window at one instant.

    ``counts`` holds every name of :data:`COUNTS`; ``written`` counts the entries
    stored after the instant given as ``since`` (0 without one); ``details`` holds what
    only one kind of store knows (LMDB's file and map sizes).
    """

    store: str
    kind: str
    counts: dict[str, int]
    written: int = 0
    details: dict[str, int] = dataclasses.field(default_factory=dict)


class Target(Protocol):
    """What every command needs from a store."""

    kind: str
    name: str

    def census(self, now: float, since: float | None = None) -> Census:
        """Count the entries by window at ``now``."""
        ...

    def entries(self, prefix: str, limit: int, now: float) -> list[EntryInfo]:
        """The entries whose key starts with ``prefix``, at most ``limit``."""
        ...

    def get(self, key: str) -> Entry | None:
        """The decoded entry under ``key`` (whatever its window), or ``None``."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        ...

    def purge(self, *, expired_only: bool, now: float) -> int:
        """Remove every entry (or only the dead ones); how many went."""
        ...

    def stats(self) -> dict[str, int]:
        """The storage's own ``stats()``."""
        ...


def _storage_error(exc: StorageError) -> CliError:
    return CliError(str(exc), EXIT_NOT_FOUND)


_CODEC = RecordCodec(default_serializer())


def _decoded(key: str, record: bytes, check: bytes = b"") -> Entry:
    """The entry in ``record``, decoded with the default serializer; never removes it.

    Raises:
        CliError: the record does not decode (another serializer, or damage).
    """
    try:
        return _CODEC.decode(record, check)
    except CorruptEntryError as exc:
        raise CliError(
            f"the entry under {key!r} does not decode with the default serializer "
            f"(left in place): {exc}",
            EXIT_NOT_FOUND,
        ) from exc


class LMDBTarget:
    """An existing LMDB store directory."""

    kind = "lmdb"

    def __init__(self, path: str) -> None:
        self.name = path
        # Fails (without creating anything) when the path is not a store.
        try:
            summary = inspect_store(path)
        except StorageError as exc:
            raise _storage_error(exc) from exc
        self.name = summary.path
        self._map_size = summary.map_size

    @contextlib.contextmanager
    def _storage(self) -> Iterator[LMDBStorage]:
        # The store's own map size: a larger one would grow its file on disk.
        size = self._map_size
        try:
            with LMDBStorage(
                self.name, max(1, size // 2), map_size=size, sweep_interval=None, read_cache=0
            ) as storage:
                yield storage
        except StorageError as exc:
            raise _storage_error(exc) from exc

    def census(self, now: float, since: float | None = None) -> Census:
        try:
            summary, written = census(self.name, now, now if since is None else since)
        except StorageError as exc:
            raise _storage_error(exc) from exc
        fields = dataclasses.asdict(summary)
        return Census(
            store=fields.pop("path"),
            kind=self.kind,
            counts={name: fields.pop(name) for name in COUNTS},
            written=written if since is not None else 0,
            details=fields,
        )

    def entries(self, prefix: str, limit: int, now: float) -> list[EntryInfo]:
        try:
            return list_entries(self.name, prefix=prefix, limit=limit, now=now)
        except StorageError as exc:
            raise _storage_error(exc) from exc

    def get(self, key: str) -> Entry | None:
        try:
            found = read_record(self.name, key)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
        except StorageError as exc:
            raise _storage_error(exc) from exc
        return None if found is None else _decoded(key, *found)

    def delete(self, key: str) -> bool:
        with self._storage() as storage:
            return storage.delete(key)

    def purge(self, *, expired_only: bool, now: float) -> int:
        try:
            return purge_store(self.name, expired_only=expired_only, now=now)
        except StorageError as exc:
            raise _storage_error(exc) from exc

    def stats(self) -> dict[str, int]:
        with self._storage() as storage:
            return storage.stats()


def _without_password(url: str) -> str:
    """``url`` with any user name and password removed (for messages and output)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _glob_escape(text: bytes) -> bytes:
    """``text`` as a literal in a Redis MATCH pattern."""
    for special in (b"\\", b"*", b"?", b"[", b"]"):
        text = text.replace(special, b"\\" + special)
    return text


def _classify(exc: BaseException, where: str) -> CliError:
    """The one-line error and status for a failure talking to Redis."""
    import redis.exceptions as errors  # noqa: PLC0415 - only with the redis extra

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen,
            errors.AuthenticationError
            | errors.AuthenticationWrongNumberOfArgsError
            | errors.NoPermissionError,
        ) or (isinstance(seen, errors.ResponseError) and "NOAUTH" in str(seen)):
            return CliError(
                f"Redis at {where} refused the credentials: {type(seen).__name__}: {seen}",
                EXIT_REFUSED,
            )
        if isinstance(seen, errors.ConnectionError | errors.TimeoutError | OSError):
            return CliError(
                f"cannot reach Redis at {where}: {type(seen).__name__}: {seen}", EXIT_UNREACHABLE
            )
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, StorageError):
        return CliError(f"Redis at {where}: {exc}", EXIT_UNREACHABLE)
    return CliError(f"Redis at {where} failed: {type(exc).__name__}: {exc}", EXIT_UNREACHABLE)


class RedisTarget:
    """A Redis server (or cluster): the entries under one prefix.

    The storage has no verb listing its keys: this SCANs its prefix with its client,
    entries being stored under ``prefix + key`` and leases under keys that begin with
    the byte 0xFF (the layout of :mod:`swr.storage._redis`).
    """

    kind = "redis"

    def __init__(self, url: str, *, prefix: str, cluster: bool, timeout: float) -> None:
        self.where = _without_password(url)
        self.name = self.where + (f" prefix {prefix!r}" if prefix else "")
        self.prefix = prefix
        self._prefix = prefix.encode()
        self._cluster = cluster
        self._codec = _CODEC
        try:
            self.storage = RedisStorage.from_url(
                url,
                prefix=prefix,
                cluster=cluster,
                socket_timeout=timeout,
                connect_timeout=timeout,
                read_cache=0,
            )
        except ImportError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
        except (ValueError, TypeError) as exc:
            raise CliError(f"bad Redis URL {self.where}: {exc}", EXIT_USAGE) from exc
        except Exception as exc:
            raise _classify(exc, self.where) from exc
        self.client = self.storage.client
        self._call(self.client.ping)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except CliError:
            raise
        except Exception as exc:
            raise _classify(exc, self.where) from exc

    def close(self) -> None:
        """Close the storage and its client."""
        with contextlib.suppress(Exception):
            self.storage.close()

    def _keys(self, prefix: bytes) -> Iterator[bytes]:
        """Entry keys (never leases) beginning with ``prefix``, in SCAN's order."""
        pattern = _glob_escape(prefix) + b"*"
        for skey in self._call(lambda: list(self.client.scan_iter(match=pattern, count=1000))):
            if not skey.startswith(_LEASE_MARK):
                yield skey

    def _records(self, skeys: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """``(key, record)`` of each key still present, fetched in pipelined batches."""
        for start in range(0, len(skeys), _BATCH):
            batch = skeys[start : start + _BATCH]

            def fetch(batch: list[bytes] = batch) -> list[Any]:
                pipe = self.client.pipeline(transaction=False)
                for skey in batch:
                    pipe.get(skey)
                return list(pipe.execute())

            for skey, data in zip(batch, self._call(fetch), strict=True):
                if data is not None:
                    yield skey, data

    def _leases(self) -> list[bytes]:
        pattern = _LEASE_MARK + b"lease:*"
        found = self._call(lambda: list(self.client.scan_iter(match=pattern, count=1000)))
        start = len(_LEASE_MARK + b"lease:")
        return [
            lkey
            for lkey in found
            if lkey[start:].lstrip(b"{").startswith(self._prefix)
            or lkey[start:].startswith(self._prefix)
        ]

    def _info(self, skey: bytes, data: bytes, now: float) -> EntryInfo:
        key = skey[len(self._prefix) :].decode("utf-8", "replace")
        size = len(skey) + len(data)
        try:
            stored, fresh, stale, expires = self._codec.decode_times(data)
        except StorageError:
            nan = math.nan
            return EntryInfo(
                key=key,
                window="corrupt",
                size=size,
                stored_at=nan,
                fresh_until=nan,
                stale_until=nan,
                expires_at=nan,
            )
        return EntryInfo(
            key=key,
            window=window_at(now, fresh, stale, expires),
            size=size,
            stored_at=stored,
            fresh_until=fresh,
            stale_until=stale,
            expires_at=expires,
        )

    def census(self, now: float, since: float | None = None) -> Census:
        counts = dict.fromkeys(COUNTS, 0)
        written = 0
        for skey, data in self._records(list(self._keys(self._prefix))):
            info = self._info(skey, data, now)
            counts["entries"] += 1
            counts["bytes"] += info.size
            counts[info.window] += 1
            if since is not None and info.stored_at > since:
                written += 1
        counts["leases"] = len(self._leases())
        return Census(store=self.name, kind=self.kind, counts=counts, written=written)

    def entries(self, prefix: str, limit: int, now: float) -> list[EntryInfo]:
        skeys = sorted(self._keys(self._prefix + prefix.encode()))
        found: list[EntryInfo] = []
        for skey, data in self._records(skeys):
            if len(found) >= limit:
                break
            found.append(self._info(skey, data, now))
        return found

    def get(self, key: str) -> Entry | None:
        record = self._call(self.client.get, (self.prefix + key).encode())
        return None if record is None else _decoded(key, record)

    def delete(self, key: str) -> bool:
        return self._call(self.storage.delete, key)  # type: ignore[no-any-return]

    def purge(self, *, expired_only: bool, now: float) -> int:
        removed = 0
        skeys = list(self._keys(self._prefix))
        if expired_only:
            skeys = [
                skey
                for skey, data in self._records(skeys)
                if self._info(skey, data, now).window == "dead"
            ]
        for start in range(0, len(skeys), _BATCH):
            batch = skeys[start : start + _BATCH]

            def unlink(batch: list[bytes] = batch) -> int:
                pipe = self.client.pipeline(transaction=False)
                for skey in batch:
                    pipe.delete(skey)
                return sum(pipe.execute())

            removed += self._call(unlink)
        if not expired_only:
            leases = self._leases()
            for lkey in leases:
                self._call(self.client.delete, lkey)
        return removed

    def stats(self) -> dict[str, int]:
        return self.storage.stats()


def is_redis(where: str) -> bool:
    """Whether the command-line argument ``where`` names a Redis server."""
    return where.startswith(REDIS_SCHEMES)


@contextlib.contextmanager
def open_target(
    where: str, *, prefix: str = "", cluster: bool = False, timeout: float = 2.0
) -> Iterator[Target]:
    """The store named by ``where`` (a Redis URL, else an LMDB path), closed after use.

    Raises:
        CliError: ``where`` is not a store, cannot be reached, or refuses us.
    """
    if is_redis(where):
        target = RedisTarget(where, prefix=prefix, cluster=cluster, timeout=timeout)
        try:
            yield target
        finally:
            target.close()
        return
    if prefix or cluster:
        raise CliError(
            f"--prefix and --cluster apply to Redis URLs only; {where} is an LMDB path",
            EXIT_USAGE,
        )
    if not os.path.lexists(where) and os.sep not in where and ":" in where:
        raise CliError(
            f"{where} is neither a Redis URL (redis://, rediss://, unix://) nor an existing "
            "LMDB store",
            EXIT_NOT_FOUND,
        )
    yield LMDBTarget(where)


def now() -> float:
    """Epoch seconds (a function, so tests can move time)."""
    return time.time()
