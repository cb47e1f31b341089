"""LMDBStorage: a durable cache directory shared by the processes of one host."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time as _time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import lmdb
import msgpack

from swr.storage import _atomic
from swr.storage._clock import now
from swr.storage._log import logger as _log
from swr.storage._record import (
    PLAIN_HEAD,
    PLAIN_SIZE,
    PLAIN_TAIL,
    UNPACK_PLAIN,
    ReadCache,
    RecordCodec,
    digest_key,
)
from swr.storage._tokens import new_token
from swr.storage._validate import check_int, check_seconds
from swr.storage._verbs import checked_tags, checked_times
from swr.storage.base import Entry, EntryTimes, StorageMixin
from swr.storage.errors import (
    CorruptEntryError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from swr.storage.lmdb import _process
from swr.storage.lmdb._files import _DAMAGED, Durability, _Options, _Replaced
from swr.storage.lmdb._format import (
    _CHECK_MAX,
    _EXPIRES,
    _EXPIRES_OFFSET,
    _HEADER_END,
    _TIMES,
    _long_key_check,
    _stamp,
)
from swr.storage.lmdb._inspect import StoreSummary, _walk_in_child
from swr.storage.lmdb._process import (
    _ATTEMPTS,
    _FOLLOW_INTERVAL,
    _acquire,
    _Backend,
    _Handle,
    _recover,
    _translate,
)
from swr.storage.serializers import Serializer, default_serializer

if TYPE_CHECKING:
    from swr.storage.adapters import AsyncAdapter
    from swr.storage.leaderboard.lmdb import LMDBLeaderboard

__all__ = ["EntryFactory", "LMDBStorage"]

T = TypeVar("T")
R = TypeVar("R")
EntryFactory = Callable[[Any, float, float, float, float], Entry]

_pid = os.getpid()  # this process: the read path's one check for fork and close


def _forked() -> None:
    global _pid  # noqa: PLW0603 - process-wide state after fork
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)

_DURABILITIES: Final = ("process", "system")
_MIB: Final = 1 << 20
_DEFAULT_MAP: Final = 16 * _MIB  # most a new store maps (and allocates) before it grows
# What an atomic operation writes for "never expires": records hold finite times only.
_FOREVER: Final = sys.float_info.max


class _ReadCache(ReadCache[T]):
    """:class:`ReadCache` that evicts in batches: cheap when the working set is larger.

    Dropping the oldest key one at a time costs a scan over the holes that earlier
    removals left at the front of the dict (up to thousands of slots: CPython compacts
    a dict only when it grows), on every insertion: about 1.7 us of a 7 us read that
    decodes, measured over 100,000 keys. Dropping the oldest eighth at once pays that
    scan once per ``limit / 8`` insertions (0.3 us an insertion, the dict's own cost
    included).
    """

    # Once full, a key is kept on its second read within the last ``4 * limit`` first
    # reads. "Full" starts at the size :meth:`trim` leaves (``limit - limit // 8``):
    # otherwise the room each trim makes would admit the next ``limit // 8`` records
    # read, whatever they are, and a working set read once would go through the cache.
    __slots__ = ()

    SEEN_SPAN = 4

    def __init__(self, limit: int) -> None:
        super().__init__(limit, room=limit - limit // 8)

    def keep(self, key: str, item: T) -> None:
        """Keep ``item``; beyond ``limit`` keys, drop the oldest eighth (:meth:`trim`)."""
        items = self.items
        items[key] = item
        if len(items) > self.limit:
            self.trim()

    def trim(self) -> None:
        items, limit = self.items, self.limit
        with self.lock:
            over = len(items) - limit
            if over > 0:
                # Other threads insert and pop meanwhile, so iterating may fail: then
                # the next insertion trims.
                with contextlib.suppress(RuntimeError):
                    for key in list(itertools.islice(items, over + limit // 8)):
                        items.pop(key, None)


_INF: Final = math.inf

_PUTS: Final = frozenset(("put", "put_and_release"))  # writes returning their evictions
# What _run (and _write's first attempt) absorb: damage and replacement are recovered
# from, any other LMDB error is translated (see _recover_or_raise).
_FAILURES: Final = (*_DAMAGED, _Replaced, lmdb.Error)


def _token(token: object) -> bytes | None:
    """The 16 bytes of a lease token from :meth:`LMDBStorage.acquire_lease`, else None."""
    try:
        raw = bytes.fromhex(token)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return raw if len(raw) == 16 else None


_SCAN_BATCH: Final = 512  # keys read per read transaction by scan()
_CHECK_LEN_OFFSET: Final = 36  # the record header's key check length (see _record)


def _live(record: bytes, now: float) -> bool:
    """Whether ``record`` has a readable header and is not past its ``expires_at``."""
    return (
        len(record) >= _HEADER_END
        and record[:2] == b"SW"
        and _EXPIRES.unpack_from(record, _EXPIRES_OFFSET)[0] > now
    )


def _stored_key(kb: bytes, record: bytes) -> str | None:
    """The cache key stored under ``kb``: the key itself, or the record's key check.

    ``None`` for a key longer than a record's key check can hold (over 64 KiB: only
    its digests are kept) and for an unreadable one.
    """
    length = int.from_bytes(record[_CHECK_LEN_OFFSET:_HEADER_END], "little")
    raw = record[_HEADER_END : _HEADER_END + length] if length else kb
    if raw[:1] == b"\xff":
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _entry_times(times: object) -> bytes:
    """The packed header times of ``times``; raise naming the problem if unusable."""
    stored, fresh, stale, expires = checked_times(times)
    if expires == math.inf:
        raise ValueError("expires_at must be finite in an LMDB store")
    return _TIMES.pack(stored, fresh, stale, expires)


def _incr_plain(
    txn: lmdb.Transaction[bytes], backend: _Backend, kb: bytes, delta: int, now: float
) -> int | None:
    """Add ``delta`` to a live plain int record in place (one write transaction).

    The header (the four instants, so the expiry index too) is kept and only the
    msgpack payload is rewritten; a payload of the same size leaves the byte total
    alone, so this is one ``get`` and one ``put``. Returns the new value, or ``None``
    for anything else (absent, dead, another type or layout, a payload of another
    size): :meth:`LMDBStorage.incr` then takes the general path.
    """
    # The common record of swr.storage._record (as the read path tests it) holding a
    # msgpack integer written by the default serializer.
    data = txn.get(kb, db=backend.entries)
    if data is None or len(data) <= PLAIN_SIZE:
        return None
    head, stored, fresh, stale, expires, tail = UNPACK_PLAIN(data)
    if (
        head != PLAIN_HEAD
        or tail != PLAIN_TAIL
        or not (-_INF < stored <= fresh <= stale <= expires and stored < _INF)
        or expires <= now
    ):
        return None
    try:
        old = msgpack.unpackb(data[PLAIN_SIZE:])
        if type(old) is not int:
            return None
        value: int = old + delta
        record = data[:PLAIN_SIZE] + msgpack.packb(value)
    except (ValueError, OverflowError, msgpack.UnpackException):
        return None
    if len(record) != len(data):
        return None  # another msgpack width: the general path keeps the byte total
    txn.put(kb, record, db=backend.entries)
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
            leases. Default: the clock of the engine it is given to (``adopt_clock``),
            else ``time.time`` looked up at each call (freezegun works).
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
        max_bytes = check_int("max_bytes", max_bytes, 1)
        if durability not in _DURABILITIES:
            raise ValueError(
                f"durability must be one of {', '.join(map(repr, _DURABILITIES))}; "
                f"got {durability!r}"
            )
        if map_size is None:
            map_size = max(_MIB, min(_DEFAULT_MAP, 2 * max_bytes))
        map_size = check_int("map_size", map_size, _MIB)
        max_readers = check_int("max_readers", max_readers, 1)
        read_cache = check_int("read_cache", read_cache, 0)
        if sweep_interval is not None:
            sweep_interval = check_seconds("sweep_interval", sweep_interval)
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
        with _process._registry_lock:  # replaced after fork: looked up each time
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
        self._codec = codec = RecordCodec(self.serializer, entry_factory)
        self._decode = codec.decode
        self._encode = codec.encode
        # The read path decodes the common record without a call to the codec (see get).
        self._plain_decode = codec.plain_decode
        self._clock = clock
        self._key_limit = handle.backend.key_limit
        self._cache: _ReadCache[tuple[bytes, bytes, bytes, Entry]] = _ReadCache(read_cache)
        self._cache_get = self._cache.get
        self._admits = self._cache.admits
        self._follow_at = -math.inf  # by this storage's clock: see _finish

    def adopt_clock(self, clock: Callable[[], float] | None) -> Callable[[], float] | None:
        """Judge expiry with ``clock`` (an engine's) unless one was given; return that one.

        Views made afterwards (``with_serializer``, ``with_entry_factory``) share it, and
        so does this process's sweep of the directory when no storage of it was given
        a clock.
        """
        own = self._h.clock
        if own is None:
            self._clock = clock
            backend = self._h.backend
            if backend.clock is None:
                backend.clock = clock
        return own

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
            raise ValueError(
                "cache key must not be empty: LMDB cannot store an empty key, give it a name"
            )
        try:
            raw = key.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(f"cache key is not encodable as UTF-8: {key!r}") from exc
        if len(raw) <= self._key_limit:
            return raw, b""
        kb, check = digest_key(key, self._key_limit)
        if len(check) > _CHECK_MAX:
            check = _long_key_check(raw)
        return kb, check

    def _backend(self) -> _Backend:
        backend = self._h.backend
        if backend.pid != _pid or backend.closed:
            return self._h.current()
        return backend

    def _run(self, op: Callable[[_Backend], T], attempts: int = 3) -> T:
        """Run ``op(backend)``; recover from a damaged or replaced store and run it again.

        A store found damaged is moved aside and recreated (:func:`_recover`); ``op``
        then runs on the new store, so the caller is served as if nothing happened.
        ``attempts`` runs in all (:meth:`_write` makes the first one itself).
        """
        for _ in range(attempts):
            backend = self._backend()
            try:
                return op(backend)
            except _FAILURES as exc:
                self._recover_or_raise(backend, exc)
        raise StorageUnavailableError(f"the LMDB store {self.path} was damaged again at once")

    def _recover_or_raise(self, backend: _Backend, exc: BaseException) -> None:
        """A store found damaged or replaced is recovered (the caller tries again)."""
        if isinstance(exc, _DAMAGED):
            _recover(backend, exc)
        elif isinstance(exc, _Replaced):
            _recover(backend, None)
        else:
            raise _translate(self.path, exc) from exc  # type: ignore[arg-type]  # lmdb.Error

    def _write(self, name: str, *args: Any) -> Any:
        """Run the backend's write function ``name`` in one write transaction (see _run)."""
        # _run's first attempt, inline: every write (each miss: two) goes through here.
        backend = self._backend()
        try:
            result = backend.write(getattr(backend, name), *args)
        except _FAILURES as exc:
            self._recover_or_raise(backend, exc)
        else:
            if name in _PUTS and result:
                backend.evictions += result
            return result

        def op(backend: _Backend) -> Any:
            result = backend.write(getattr(backend, name), *args)
            if name in _PUTS and result:
                backend.evictions += result
            return result

        return self._run(op, attempts=2)

    # -- reads ------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:  # noqa: PLR0915 - the hot path, inlined
        """Return the live entry under ``key``, or ``None`` (absent, dead or corrupt).

        One read transaction and one lookup; the decoded entry comes from the read
        cache while the stored bytes are unchanged. A record that does not decode is
        counted (``stats()["corrupt_entries"]``), logged (``corrupt_entry``), deleted
        and read as ``None``.

        Raises:
            TypeError, ValueError: ``key`` is not a non-empty str.
            StorageUnavailableError: the storage is closed or LMDB fails.
        """
        # Callables held in attributes are loaded, then called: CPython 3.11 specializes
        # that load, not the method-call form ``self._cache_get(key)`` (about 150
        # instructions each, five of them on this path).
        cache_get = self._cache_get
        try:
            cached = cache_get(key)
        except TypeError:  # unhashable: _key names the problem
            cached = None
        if cached is None:
            # _key's common case inline: a str that fits; _key handles (or refuses) the rest.
            kb = check = b""
            if type(key) is str:
                try:
                    kb = key.encode()
                except UnicodeEncodeError:
                    pass
            if not kb or len(kb) > self._key_limit:
                kb, check = self._key(key)
        else:
            kb, check, known, entry = cached
        backend = self._h.backend
        if backend.pid != _pid:  # forked, or closed (see _ClosedBackend)
            return self._get_slow(key, kb, check)
        data: bytes | None = None
        # Counted in flight so that a fork waits for this transaction to end.
        push, pop, begin = backend.push, backend.pop, backend.begin
        push(None)
        try:
            retry = backend.paused
            if not retry:
                txn = begin(backend.entries)
                try:
                    data = txn.get(kb)
                finally:
                    txn.abort()
        except lmdb.Error:  # e.g. invalidated by a map resize in another thread
            retry = True
        finally:
            pop()
        if retry:
            return self._get_slow(key, kb, check)
        if cached is None:
            if data is None:
                return None
            if not check:
                # The common record (see RecordCodec.plain_decode, in C when built):
                # what _finish does through RecordCodec.decode, without its calls. The
                # decoder checks the record's length itself.
                plain_decode = self._plain_decode
                decoded = plain_decode(data)  # None: _finish gives the verdict
                if decoded is not None:
                    cache, admits = self._cache, self._admits
                    if (
                        cache.limit
                        and admits(key)
                        and len(data) - PLAIN_SIZE <= ReadCache.DECODED_MAX
                    ):
                        cache.keep(key, (kb, check, data, decoded))
                    clock = self._clock
                    now = clock() if clock is not None else _time.time()
                    if now >= self._follow_at:
                        self._follow_at = now + _FOLLOW_INTERVAL
                        return self._get_slow(key, kb, check)
                    if decoded.expires_at <= now:
                        return None
                    return decoded
            return self._finish(key, kb, check, data, None)
        if data != known:
            return self._finish(key, kb, check, data, cached)
        # The stored bytes are those the cached entry was decoded from.
        clock = self._clock
        # No check that the store was replaced here: the sweeper thread makes it (the
        # backend then retires, and the pid test above sends the read to the new store).
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
            cache = self._cache
            if (
                cache.limit
                and cache.admits(key)
                and self._codec.decoded_size(data) <= ReadCache.DECODED_MAX
            ):
                cache.keep(key, (kb, check, data, entry))
        clock = self._clock
        now = clock() if clock is not None else _time.time()
        if now >= self._follow_at:
            self._follow_at = now + _FOLLOW_INTERVAL
            return self._get_slow(key, kb, check)
        if entry.expires_at <= now:
            return None
        return entry

    def _get_slow(self, key: str, kb: bytes, check: bytes) -> Entry | None:
        (data,) = self._read([kb])
        return self._finish(key, kb, check, data, self._cache.get(key))

    def _read(self, kbs: Sequence[bytes]) -> list[bytes | None]:
        """Read ``kbs`` in one read transaction, retrying around resizes and forks."""
        failure: lmdb.Error | None = None
        for _ in range(_ATTEMPTS):
            backend = self._backend()
            if _time.monotonic() >= backend.check_at and backend.replaced():
                _recover(backend, None)  # another process found it damaged: follow
                continue
            paused = resized = readers_full = False
            damage: BaseException | None = None
            backend.push(None)
            try:
                paused = backend.paused
                if not paused:
                    txn = backend.begin(backend.entries)
                    try:
                        return [txn.get(kb) for kb in kbs]
                    finally:
                        txn.abort()
            except _DAMAGED as exc:
                damage = exc
            except lmdb.MapResizedError as exc:
                resized, failure = True, exc
            except lmdb.ReadersFullError as exc:
                readers_full, failure = True, exc
            except lmdb.Error as exc:
                failure = exc  # invalidated by a resize in another thread, or closed
            finally:
                backend.pop()
            if damage is not None:
                _recover(backend, damage)  # then read the new store
                continue
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
            TypeError, ValueError: bad key, or entry times NaN or out of order (an
                infinite ``expires_at`` is an entry that never expires). An entry
                already dead is accepted and removes the key.
            SerializationError: the serializer cannot encode the value.
            StorageFullError: the record alone is larger than ``max_bytes``, or the disk
                is full.
            StorageUnavailableError: the storage is closed or LMDB fails.
        """
        item = self._item(key, entry, self._h.options.max_bytes)
        self._cache.pop(key, None)
        clock = self._clock
        if entry.expires_at <= (clock() if clock is not None else _time.time()):
            # Dead already: accepted, and nothing is kept (as on every storage).
            self._write("delete", item[0])
            return
        self._write("put", [item])

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries in one write transaction."""
        if not entries:
            return
        limit = self._h.options.max_bytes
        items = [self._item(key, entry, limit) for key, entry in entries.items()]
        for key in entries:
            self._cache.pop(key, None)
        self._write("put", items)

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it held an entry (live or not). Idempotent."""
        kb, _ = self._key(key)
        self._cache.pop(key, None)
        return bool(self._write("delete", kb))

    def _corrupt(self, key: str, kb: bytes, data: bytes, exc: CorruptEntryError) -> None:
        """Count, log and delete an undecodable record (unless rewritten meanwhile)."""
        self._cache.pop(key, None)
        _log.warning("corrupt_entry", key=key, backend="lmdb", path=self.path, error=str(exc))
        try:
            self._backend().corrupt_entries += 1
            self._write("drop_if_same", kb, data)
        except StorageError as error:
            _log.warning("corrupt_entry_not_deleted", key=key, path=self.path, error=repr(error))

    # -- atomic operations (AtomicOps): each one write transaction --------------------

    def _atomic(
        self,
        key: str,
        now: float,
        step: Callable[[Entry | None, bytes | None], tuple[Entry | None, R]],
    ) -> R:
        """Run ``step(live entry or None, stored bytes)`` in one write transaction.

        ``step`` returns ``(entry to store or None, result)``. LMDB lets one write
        transaction run at a time across every process of the host, so the read, the
        decision and the write are atomic for all of them. A record that does not
        decode counts as absent (and is overwritten if ``step`` stores).
        """
        kb, check = self._key(key)
        limit = self._h.options.max_bytes
        codec = self._codec

        def body(backend: _Backend, txn: lmdb.Transaction[bytes]) -> tuple[int, R]:
            data = txn.get(kb, db=backend.entries)
            entry: Entry | None = None
            if data is not None:
                with contextlib.suppress(CorruptEntryError):
                    entry = codec.decode(data, check)
            if entry is not None and entry.expires_at <= now:
                entry = None
            new, result = step(entry, data)
            if new is None:
                return 0, result
            record = codec.encode(new, check)
            if len(kb) + len(record) > limit:
                raise StorageFullError(
                    f"the record of {key!r} takes {len(kb) + len(record)} bytes, more than "
                    f"max_bytes={limit}"
                )
            return backend.put(txn, [(kb, record, _stamp(new.expires_at) + kb)]), result

        def op(backend: _Backend) -> R:
            evicted, result = backend.write(lambda txn: body(backend, txn))
            backend.evictions += evicted
            return result

        try:
            return self._run(op)
        finally:
            self._cache.pop(key, None)

    def _now(self) -> float:
        return now(self._clock)

    # -- bulk verbs and tags -----------------------------------------------------------
    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` in one write transaction; return how many held a record."""
        kbs = [self._key(key)[0] for key in keys]
        if not kbs:
            return 0
        for key in keys:
            self._cache.pop(key, None)
        return cast("int", self._write("delete_many", kbs))

    def exists(self, key: str) -> bool:
        """Whether a live entry is under ``key``: reads its header, never its value."""
        kb, _ = self._key(key)
        (data,) = self._read([kb])
        return data is not None and _live(data, self._now())

    def touch(self, key: str, times: EntryTimes) -> bool:
        """Give the live entry under ``key`` new instants in one write transaction.

        The record's payload bytes are kept as they are (no decode, no encode); the
        expiry index follows the new ``expires_at``.

        Returns:
            Whether a live entry was there (nothing is written otherwise).

        Raises:
            TypeError, ValueError: bad key, or times not finite and ordered.
        """
        packed = _entry_times(times)
        kb, _ = self._key(key)
        self._cache.pop(key, None)
        return bool(self._write("touch", kb, packed, self._now()))

    def scan(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys of live entries starting with the literal ``prefix``.

        Reads ``_SCAN_BATCH`` keys per read transaction, so a long scan never holds a
        reader open (nor stops LMDB from reusing pages). Keys written during a scan may
        or may not be seen; keys longer than 64 KiB are not listed.
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        raw = prefix.encode()
        # A long key is stored under its first bytes and a digest (see digest_key): seek
        # and stop on what every stored form of a matching key starts with.
        cut = raw[: max(0, self._key_limit - 65)]
        start, skip = cut, False
        while True:
            now = self._now()

            def batch(backend: _Backend, start: bytes = start, skip: bool = skip) -> list[Any]:
                with backend.reading() as txn:
                    cursor = txn.cursor(db=backend.entries)
                    found: list[tuple[bytes, bytes]] = []
                    positioned = cursor.set_range(start)
                    if positioned and skip and cursor.key() == start:
                        positioned = cursor.next()
                    while positioned and len(found) < _SCAN_BATCH:
                        kb = bytes(cursor.key())
                        if not kb.startswith(cut):
                            return [found, True]
                        value = cursor.value()
                        length = int.from_bytes(value[_CHECK_LEN_OFFSET:_HEADER_END], "little")
                        found.append((kb, bytes(value[: _HEADER_END + length])))
                        positioned = cursor.next()
                    return [found, not positioned]

            found, done = self._run(batch)
            for kb, head in found:
                key = _stored_key(kb, head) if _live(head, now) else None
                if key is not None and key.startswith(prefix):
                    yield key
            if done or not found:
                return
            start, skip = found[-1][0], True

    def clear(self) -> None:
        """Remove every entry and tag row (one transaction); leases stay, see :meth:`purge`."""
        self.purge()

    def _tags(self, tags: object) -> list[bytes]:
        limit = self._key_limit + 8  # LMDB's largest key
        out = []
        for tag in checked_tags(tags):
            raw = tag.encode()
            if len(raw) > limit:
                raise ValueError(f"tag {tag[:40]!r}... is longer than {limit} bytes")
            out.append(raw)
        return out

    def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Store ``entry`` and record ``key`` under each of ``tags``: one write transaction.

        The tag rows live in the ``swr-tags`` sub-database of the same directory, so every
        process sharing it sees them; they go with :meth:`invalidate_tags` and
        :meth:`clear`.

        Raises:
            TypeError, ValueError: as :meth:`set`, or a tag that is not a non-empty str
                (a bare str instead of a sequence is refused too).
        """
        raw_tags = self._tags(tags)
        item = self._item(key, entry, self._h.options.max_bytes)
        self._cache.pop(key, None)
        self._write("put_tagged", [item], raw_tags)

    def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry recorded under one of ``tags``, in one write transaction.

        Atomic across the processes sharing the directory: a reader sees every entry of
        the tags or none. Returns how many records were removed.
        """
        raw_tags = self._tags(tags)
        if not raw_tags:
            return 0
        removed = cast("int", self._write("invalidate", raw_tags))
        if removed:
            self._cache.items.clear()  # the read cache re-checks bytes anyway: frees memory
        return removed

    # -- atomic operations (AtomicOps), the public verbs ------------------------------

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to the ``int`` under ``key`` in one write transaction.

        An absent or dead key starts at 0 and lives ``ttl`` seconds (``None``: never,
        stored as the largest finite float); a live key keeps its windows. Atomic
        across the processes sharing the directory.

        Returns:
            The new value.

        Raises:
            TypeError: ``delta`` or the stored value is not an ``int``.
            ValueError: ``ttl`` is not a finite number of seconds > 0 (or ``None``).
            StorageUnavailableError: the storage is closed or LMDB fails.
        """
        delta = _atomic.check_delta(delta)
        ttl = _atomic.check_ttl(ttl)
        now = self._now()
        if self._codec._raw_msgpack:
            kb, check = self._key(key)
            if not check:
                try:
                    value = self._run(
                        lambda backend: backend.write(_incr_plain, backend, kb, delta, now)
                    )
                finally:
                    self._cache.pop(key, None)
                if value is not None:
                    return value

        def step(entry: Entry | None, _: bytes | None) -> tuple[Entry, int]:
            new = _atomic.incremented(entry, delta, now, ttl, _FOREVER)
            return new, new.value

        return self._atomic(key, now, step)

    def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """:meth:`incr` by ``-delta``."""
        return self.incr(key, -_atomic.check_delta(delta), ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent or dead; return whether it did.

        One write transaction: among processes racing to add one key, exactly one wins.
        """
        ttl = _atomic.check_ttl(ttl)
        now = self._now()

        def step(entry: Entry | None, _: bytes | None) -> tuple[Entry | None, bool]:
            if entry is not None:
                return None, False
            return _atomic.created(value, now, ttl, _FOREVER), True

        return self._atomic(key, now, step)

    def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """The live entry under ``key`` with its version (its stored bytes), or ``None``."""
        kb, check = self._key(key)
        (data,) = self._read([kb])
        if data is None:
            return None
        try:
            entry = self._decode(data, check)
        except CorruptEntryError:
            return None
        if entry.expires_at <= self._now():
            return None
        return entry, data

    def replace_if(self, key: str, version: Any, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` if ``key`` still holds the record ``version`` names and is live.

        The new entry keeps the old windows, or lives ``ttl`` seconds from now when
        given. Returns whether it stored.
        """
        ttl = _atomic.check_ttl(ttl)
        now = self._now()

        def step(entry: Entry | None, data: bytes | None) -> tuple[Entry | None, bool]:
            if entry is None or data != version:
                return None, False
            if ttl is None:
                return _atomic.replaced(entry, value), True
            return _atomic.created(value, now, ttl, _FOREVER), True

        return self._atomic(key, now, step)

    def append(self, key: str, data: bytes | str, ttl: float | None = None) -> int:
        """Append ``data`` to the ``bytes`` or ``str`` under ``key``; return the new length."""
        data = _atomic.check_data(data)
        ttl = _atomic.check_ttl(ttl)
        now = self._now()

        def step(entry: Entry | None, _: bytes | None) -> tuple[Entry, int]:
            new = _atomic.appended(entry, data, now, ttl, _FOREVER)
            return new, len(new.value)

        return self._atomic(key, now, step)

    def leaderboard(self, name: str, *, max_size: int | None = None) -> LMDBLeaderboard:
        """The leaderboard ``name`` of this store, shared by the processes opening it.

        Kept in an ordered LMDB index in the store's ``leaderboards`` subdirectory (see
        :mod:`swr.storage.leaderboard.lmdb` for the layout and the cost of each call).
        Every change is one write transaction. Its environment closes with the last
        storage of this process using it (then the leaderboard raises
        :class:`~storage.errors.StorageUnavailableError`).
        """
        from swr.storage.leaderboard.lmdb import (  # noqa: PLC0415 - loaded when used
            LMDBLeaderboard,
            leaderboard_env,
        )

        if self._h.closed:
            raise StorageUnavailableError(f"the LMDB store {self.path} is closed")
        env = leaderboard_env(self.path, sync=self.durability == "system", user=self._h)
        return LMDBLeaderboard(env, name, max_size=max_size)

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
        if type(ttl) is not float or not 0.0 < ttl < _INF:  # the common ttl passes
            check_seconds("lease ttl", ttl)
        kb, _ = self._key(key)
        token = new_token()
        now = self._clock() if self._clock is not None else _time.time()
        taken = self._write("acquire", kb, token, now, now + ttl)
        return token.hex() if taken else None

    def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still holds it (else do nothing)."""
        raw = _token(token)
        kb, _ = self._key(key)
        if raw is not None:
            self._write("release", kb, raw)

    def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store ``entry`` under ``key`` and release the lease ``token`` in one transaction.

        What a lease holder does once its fetch returned: one commit instead of two, and
        no moment at which other processes see the lease free but the entry missing.
        The lease is released even when the entry is refused (then the error is raised).

        Raises:
            The errors of :meth:`set`.
        """
        raw = _token(token)
        try:
            item = self._item(key, entry, self._h.options.max_bytes)
        except BaseException:
            self.release_lease(key, token)
            raise
        self._cache.pop(key, None)
        if raw is None:
            self._write("put", [item])
        else:
            self._write("put_and_release", [item], item[0], raw)

    # -- maintenance ------------------------------------------------------------------

    def sweep(self) -> int:
        """Remove every entry past its ``expires_at`` now, and dead leases; return entries.

        The background sweep runs the same code: write transactions of at most 256
        removals each, so other writers get their turn in between.
        """
        now = self._clock() if self._clock is not None else _time.time()
        return self._run(lambda backend: backend.sweep(now))

    def purge(self, *, expired_only: bool = False) -> int:
        """Remove every entry, or only the dead entries; return how many.

        The leases stay: they belong to fetches running now, in this process or
        another, whose holders release them (a dead holder's lease expires).
        """
        if expired_only:
            return self.sweep()
        self._cache.items.clear()
        return cast("int", self._write("purge", False))

    def summary(self) -> StoreSummary:
        """Count the entries by window now (reads every record header).

        Raises:
            StorageUnavailableError: the storage is closed or LMDB fails.
        """
        now = self._clock() if self._clock is not None else _time.time()
        return self._run(lambda backend: _walk_in_child(backend.path, now))

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
            "stores_recreated": last.stores_recreated,
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
        boards = sys.modules.get("swr.storage.leaderboard.lmdb")  # loaded if ever used
        if boards is not None:
            boards.release_leaderboards(self.path, self._h)

    def __repr__(self) -> str:
        options = self._h.options
        return (
            f"LMDBStorage({self.path!r}, max_bytes={options.max_bytes}, "
            f"durability={options.durability!r})"
        )
