"""RedisStorage and AsyncRedisStorage: entries in Redis or Redis Cluster, shared by hosts.

How it works: each entry is one Redis string under ``prefix + key`` holding the record
of :mod:`storage._record` (a fixed header with the entry's windows, then the value as
msgpack by default), written with ``PX`` equal to the entry's whole remaining lifetime
(until ``expires_at``), so Redis drops dead entries on its own. A read is one ``GET`` and
one decode; ``get_many`` is one ``MGET`` (per-slot ``MGET`` in one pipeline on a
cluster); ``set_many`` is one pipeline. Leases for singleflight across hosts are
``SET lease:<prefix+key> <token> NX PX <ttl>``, released by a compare-and-delete script,
so only the owner releases and a dead owner's lease expires by itself.

Health, the state machine shared by both classes (:class:`_Health`)::

    HEALTHY --a connection error or timeout--> DOWN --a background PING answers--> HEALTHY

While DOWN every call raises :class:`~storage.errors.StorageUnavailableError` at once,
without touching the network, so a dead or hung Redis costs one socket timeout, not one
per request. A background probe (a thread for :class:`RedisStorage`, a task for
:class:`AsyncRedisStorage`) sends ``PING`` after ``backoff_initial`` seconds, doubling
the wait after each failed probe up to ``backoff_max``; the first answer re-opens the
storage, so traffic returns to Redis by itself.

Every decision (keys, record encoding, expiry to ``PX``, error mapping, health) lives
in :class:`_RedisBase`; the sync and async classes only perform the I/O.

``redis`` is an optional dependency (``pip install "swr[redis]"``): it is imported when a
storage is created, never when :mod:`storage` is imported.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import threading
import time as _time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from swr.storage._log import logger
from swr.storage._record import ReadCache, RecordCodec
from swr.storage.base import AsyncStorageMixin, Entry, StorageMixin
from swr.storage.errors import CorruptEntryError, StorageError, StorageUnavailableError
from swr.storage.serializers import Serializer, default_serializer

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncRedisStorage", "RedisStorage", "lease_key"]

INSTALL_HINT = 'pip install "swr[redis]"'
DEFAULT_SOCKET_TIMEOUT = 0.5
DEFAULT_CONNECT_TIMEOUT = 0.5

# Deletes the lease only if the caller's token still owns it (KEYS[1] lease, ARGV[1] token).
_RELEASE_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""
_RELEASE_SHA = hashlib.sha1(_RELEASE_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _import_redis() -> ModuleType:
    """Import redis-py, or fail with the extra to install."""
    try:
        import redis  # noqa: PLC0415 - optional dependency, imported on first use
    except ImportError as exc:
        raise ImportError(
            f"RedisStorage needs the redis package, which is not installed: {INSTALL_HINT}"
        ) from exc
    return redis


def _has_hash_tag(key: str) -> bool:
    start = key.find("{")
    if start < 0:
        return False
    end = key.find("}", start + 1)
    return end > start + 1


def lease_key(storage_key: str) -> str:
    """Return the Redis key of the lease on the entry stored under ``storage_key``.

    On a cluster the lease should live in the entry's hash slot (same node, same
    failover). ``lease:`` has no braces, so a key with its own hash tag keeps it; a key
    without a tag is wrapped whole in one, which hashes exactly like the bare key. A key
    with a stray ``}`` and no valid tag cannot be wrapped: its lease may sit in another
    slot, which stays correct because every lease command touches only the lease key.

    With an empty ``prefix``, avoid cache keys starting with ``lease:``.
    """
    if _has_hash_tag(storage_key) or "}" in storage_key:
        return "lease:" + storage_key
    return "lease:{" + storage_key + "}"


def _check_seconds(name: str, value: object, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds as a number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value}")
    return float(value)


class _Health:
    """HEALTHY / DOWN state of one Redis connection, shared by every view of a storage.

    ``blocked`` is true while the storage is closed or DOWN: the hot path reads only this
    flag. Transitions happen under ``lock``, so exactly one caller turns a storage DOWN
    and starts the probe. Pure state: the shells do the I/O (probing, closing).
    """

    __slots__ = (
        "blocked",
        "closed",
        "delay",
        "down",
        "failures",
        "initial",
        "lock",
        "maximum",
        "probe",
        "probe_pid",
        "recoveries",
        "refused",
        "stop",
    )

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.lock = threading.Lock()
        self.blocked = False
        self.closed = False
        self.down = False
        self.delay = initial
        self.failures = 0
        self.recoveries = 0
        self.refused = 0
        self.probe: Any = None  # the running probe: a Thread or an asyncio Task
        self.probe_pid = 0
        self.stop = threading.Event()

    def went_down(self) -> bool:
        """Record a connection failure; return whether this call must start the probe."""
        with self.lock:
            self.failures += 1
            if self.down or self.closed:
                return False
            self.down = self.blocked = True
            self.delay = self.initial
            return True

    def probe_failed(self) -> float:
        """Record a failed probe; return the seconds to wait before the next one."""
        with self.lock:
            self.delay = min(self.delay * 2, self.maximum)
            return self.delay

    def came_back(self) -> None:
        """Record an answered probe: calls go to Redis again."""
        with self.lock:
            if self.down:
                self.recoveries += 1
            self.down = False
            self.blocked = self.closed
            self.probe = None

    def close(self) -> bool:
        """Mark closed; return whether it was open."""
        with self.lock:
            was_open = not self.closed
            self.closed = self.blocked = True
            self.stop.set()
            return was_open


class _RedisBase:
    """Every decision of the Redis storages, without I/O: keys, records, errors, health."""

    _client: Any
    _codec: RecordCodec
    _health: _Health

    def _setup(
        self,
        client: Any,
        *,
        prefix: str,
        serializer: Serializer | None,
        clock: Callable[[], float] | None,
        cluster: bool,
        owns_client: bool,
        backoff_initial: float,
        backoff_max: float,
        read_cache: int,
        twin_options: dict[str, Any] | None,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if isinstance(read_cache, bool) or not isinstance(read_cache, int):
            raise TypeError(f"read_cache must be an int, got {type(read_cache).__name__}")
        if read_cache < 0:
            raise ValueError(f"read_cache must be >= 0, got {read_cache}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        initial = _check_seconds("backoff_initial", backoff_initial)
        maximum = _check_seconds("backoff_max", backoff_max)
        assert initial is not None  # noqa: S101 - checked above
        assert maximum is not None  # noqa: S101 - checked above
        if maximum < initial:
            raise ValueError(
                f"backoff_max ({backoff_max}) must be >= backoff_initial ({backoff_initial})"
            )
        redis = _import_redis()
        self._redis = redis
        self._client = client
        # GET and MGET go straight to execute_command: the same command on the same
        # client, without redis-py's per-command wrapper (measurable on the hit path).
        self._command = client.execute_command
        self.prefix = prefix
        self._codec = RecordCodec(serializer if serializer is not None else default_serializer())
        self._cache: ReadCache[tuple[bytes, Entry]] = ReadCache(read_cache)
        self._clock = clock
        self._cluster = cluster
        self._owns_client = owns_client
        self._health = _Health(initial, maximum)
        self._counters = {"corrupt_entries": 0}
        self._twin_options = twin_options
        exceptions = redis.exceptions
        # What makes the storage DOWN: the server cannot be reached or answered too late.
        self._unavailable: tuple[type[BaseException], ...] = (
            exceptions.ConnectionError,
            exceptions.TimeoutError,
            exceptions.ClusterError,
            exceptions.RedisClusterException,
            OSError,
        )
        # Everything the driver raises; anything else is a bug and propagates unchanged.
        self._driver_errors: tuple[type[BaseException], ...] = (exceptions.RedisError, OSError)
        self._no_script: type[BaseException] = exceptions.NoScriptError

    # -- keys, records, expiry --------------------------------------------------------

    def _now(self) -> float:
        clock = self._clock
        return clock() if clock is not None else _time.time()

    def _px(self, expires_at: float) -> int:
        """Milliseconds ``expires_at`` is away (rounded up); <= 0 when already dead."""
        return math.ceil((expires_at - self._now()) * 1000.0)

    def _record(self, entry: Entry) -> tuple[bytes, int]:
        """The record bytes of ``entry`` and its ``PX``; ``PX <= 0`` means dead already.

        Raises:
            SerializationError: the serializer cannot encode the value.
        """
        px = self._px(entry.expires_at)
        return (self._codec.encode(entry) if px > 0 else b""), px

    def _entry(self, skey: str, data: bytes) -> Entry | None:
        """The entry of the record ``data`` read under ``skey``; ``None`` once dead.

        Decoded once per distinct record: the read cache hands out the entry decoded
        from these very bytes.

        Raises:
            CorruptEntryError: the record does not decode.
        """
        cache = self._cache
        cached = cache.get(skey)
        if cached is not None and cached[0] == data:
            entry = cached[1]
        else:
            entry = self._codec.decode(data)
            if cache.limit and self._codec.decoded_size(data) <= ReadCache.DECODED_MAX:
                cache.remember(((skey, (data, entry)),))
        clock = self._clock
        if entry.expires_at <= (clock() if clock is not None else _time.time()):
            return None
        return entry

    def _entries(
        self, skeys: Sequence[str], records: Sequence[bytes | None]
    ) -> tuple[list[Entry | None], list[tuple[int, CorruptEntryError]]]:
        """The entries of an ``MGET`` reply (``None`` for absent or dead ones) and the
        ``(index, error)`` of each corrupt record. Only records not in the read cache
        are decoded, in one batch.
        """  # noqa: D205 - the summary names both results
        now = self._now()
        cache = self._cache
        if not cache.limit:
            return self._codec.decode_many(records, now)
        get = cache.get
        entries: list[Entry | None] = []
        append = entries.append
        missed: list[int] = []
        for index, data in enumerate(records):
            if data is not None:
                cached = get(skeys[index])
                if cached is not None and cached[0] == data:
                    entry = cached[1]
                    append(entry if entry.expires_at > now else None)
                    continue
                missed.append(index)
            append(None)
        if not missed:
            return entries, []
        datas = cast("list[bytes]", [records[index] for index in missed])
        decoded, corrupt = self._codec.decode_many(datas, now)
        fresh: list[tuple[str, tuple[bytes, Entry]]] = []
        for index, data, live in zip(missed, datas, decoded, strict=True):
            if live is not None:
                entries[index] = live
                if self._codec.decoded_size(data) <= ReadCache.DECODED_MAX:
                    fresh.append((skeys[index], (data, live)))
        if fresh:
            cache.remember(fresh)
        return entries, [(missed[at], error) for at, error in corrupt]

    def _lease_request(self, key: str, ttl: float) -> tuple[str, str, int]:
        """``(lease key, new token, PX)`` for a lease on ``key`` lasting ``ttl`` seconds."""
        _check_seconds("ttl", ttl)
        return lease_key(self.prefix + key), uuid.uuid4().hex, max(1, math.ceil(ttl * 1000.0))

    def _corrupt_found(self, skey: str, exc: CorruptEntryError) -> None:
        self._counters["corrupt_entries"] += 1
        logger.warning("corrupt_entry", backend="redis", key=skey, error=str(exc))

    # -- errors and health --------------------------------------------------------------

    def _where(self) -> str:
        options = self._twin_options
        if options is not None:
            url = str(options["url"])
            return url.split("@", 1)[-1] if "@" in url else url  # no credentials in logs
        return type(self._client).__name__

    def _refused(self) -> StorageUnavailableError:
        """The error for a call while closed or DOWN (and restart a lost probe)."""
        health = self._health
        if health.closed:
            return StorageUnavailableError(f"{type(self).__name__} is closed")
        health.refused += 1
        self._ensure_probe()
        return StorageUnavailableError(
            f"Redis at {self._where()} is unavailable; calls resume once a background PING answers"
        )

    def _failure(self, exc: BaseException) -> StorageError:
        """Map a driver exception to a storage error, turning DOWN on unavailability."""
        if isinstance(exc, self._unavailable):
            if self._health.went_down():
                logger.warning(
                    "redis_unavailable", backend="redis", server=self._where(), error=repr(exc)
                )
                self._start_probe()
            return StorageUnavailableError(f"Redis at {self._where()} failed: {exc!r}")
        return StorageError(f"Redis command failed: {exc!r}")

    def _probe_answered(self) -> None:
        self._health.came_back()
        logger.info("redis_recovered", backend="redis", server=self._where())

    def _ensure_probe(self) -> None:  # pragma: no cover - overridden by both shells
        raise NotImplementedError

    def _start_probe(self) -> None:  # pragma: no cover - overridden by both shells
        raise NotImplementedError

    # -- shared public helpers -------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether calls currently go to Redis (open and not DOWN). Cheap, no I/O."""
        return not self._health.blocked

    @property
    def client(self) -> Any:
        """The redis-py client this storage uses."""
        return self._client

    def stats(self) -> dict[str, int]:
        """Counters: ``corrupt_entries``, ``unavailable_errors`` (connection failures),
        ``refused`` (calls answered at once while DOWN), ``recoveries`` and ``available``.
        """  # noqa: D205 - the list of counters is the summary
        health = self._health
        return {
            "corrupt_entries": self._counters["corrupt_entries"],
            "unavailable_errors": health.failures,
            "refused": health.refused,
            "recoveries": health.recoveries,
            "available": int(not health.blocked),
        }

    def _view(self, serializer: Serializer) -> Self:
        """A shallow copy sharing the client, health and counters, with another codec."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._codec = RecordCodec(serializer)
        view._cache = ReadCache(self._cache.limit)  # entries decoded by another serializer
        return view

    def __repr__(self) -> str:
        state = "closed" if self._health.closed else "down" if self._health.down else "up"
        return (
            f"{type(self).__name__}({self._where()}, prefix={self.prefix!r}, "
            f"cluster={self._cluster}, {state})"
        )


def _client_options(
    redis: ModuleType,
    *,
    asyncio_client: bool,
    cluster: bool,
    socket_timeout: float,
    connect_timeout: float,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Keyword arguments for redis-py's ``from_url``: short timeouts, one quick retry.

    redis-py retries ten times with backoff by default, which would multiply a dead
    server's cost; here only an immediate connection error (a pooled socket the server
    closed, a refused connect) is retried once, never a timeout.
    """
    from redis.backoff import NoBackoff  # noqa: PLC0415 - optional dependency

    if asyncio_client:
        from redis.asyncio.retry import Retry  # noqa: PLC0415 - optional dependency
    else:
        from redis.retry import Retry  # type: ignore[assignment]  # noqa: PLC0415
    kwargs: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
    }
    if not cluster:
        kwargs["retry_on_error"] = []
    kwargs.update(options)
    return kwargs


def _connect(
    url: str,
    *,
    asyncio_client: bool,
    cluster: bool,
    socket_timeout: float,
    connect_timeout: float,
    options: Mapping[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """A client for ``url`` with short timeouts, and the settings its twin is built from.

    Raises:
        ImportError: redis-py is not installed.
        ValueError, TypeError: a timeout is not a positive number of seconds.
    """
    redis = _import_redis()
    socket_t = _check_seconds("socket_timeout", socket_timeout)
    connect_t = _check_seconds("connect_timeout", connect_timeout)
    assert socket_t is not None  # noqa: S101 - checked
    assert connect_t is not None  # noqa: S101 - checked
    kwargs = _client_options(
        redis,
        asyncio_client=asyncio_client,
        cluster=cluster,
        socket_timeout=socket_t,
        connect_timeout=connect_t,
        options=options,
    )
    clients = redis.asyncio if asyncio_client else redis
    factory = clients.cluster.RedisCluster if cluster else clients.Redis
    twin = {
        "url": url,
        "cluster": cluster,
        "socket_timeout": socket_t,
        "connect_timeout": connect_t,
        "redis_options": dict(options),
    }
    return factory.from_url(url, **kwargs), twin


class RedisStorage(_RedisBase, StorageMixin):
    """Entries in Redis or Redis Cluster, shared by every process and host using it.

    Example::

        store = RedisStorage.from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
        engine = StaleEngine(store, ttl=CacheTTL(fresh=60, stale=600))
        safe = FallbackStorage(primary=store, fallback=MemoryStorage(max_entries=50_000))

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster`` (it keeps its own
            timeouts and retries; :meth:`from_url` sets short ones). Not closed by
            :meth:`close` unless ``owns_client``.
        prefix: Prepended to every key in Redis (e.g. ``"myapp:"``).
        serializer: Encodes values; zstd over msgpack by default. Never pickle unless
            you pass :class:`~storage.serializers.PickleSerializer` yourself.
        clock: Zero-argument callable returning epoch seconds, for ``PX`` and for the
            expiry check on reads; ``time.time`` at each call by default.
        backoff_initial: Seconds after a failure before the first background ``PING``.
        backoff_max: Largest wait between probes; the wait doubles up to it.
        owns_client: Whether :meth:`close` closes ``client``.
        read_cache: Most decoded entries kept (records up to 64 KiB); 0 decodes every
            read. A read still fetches the record and hands out the kept entry only if
            it was decoded from the very same bytes, so a value written by any host is
            seen at once; readers then share the value object (treat it as read-only,
            as with :class:`~storage.MemoryStorage`).

    Raises:
        ImportError: redis-py is not installed (``pip install "swr[redis]"``).
        TypeError, ValueError: a setting has the wrong type or is out of range.

    Thread-safe (redis-py's connection pool). After ``fork()`` redis-py reconnects in
    the child and a lost probe is restarted on the next call.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "",
        serializer: Serializer | None = None,
        clock: Callable[[], float] | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        owns_client: bool = False,
        read_cache: int = 1024,
        _twin_options: dict[str, Any] | None = None,
    ) -> None:
        redis = _import_redis()
        cluster_class = redis.cluster.RedisCluster
        if not isinstance(client, (redis.Redis, cluster_class)):
            raise TypeError(
                "client must be a redis.Redis or redis.cluster.RedisCluster, got "
                f"{type(client).__name__} (use AsyncRedisStorage for redis.asyncio clients)"
            )
        self._setup(
            client,
            prefix=prefix,
            serializer=serializer,
            clock=clock,
            cluster=isinstance(client, cluster_class),
            owns_client=owns_client,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            read_cache=read_cache,
            twin_options=_twin_options,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "",
        cluster: bool = False,
        serializer: Serializer | None = None,
        clock: Callable[[], float] | None = None,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        read_cache: int = 1024,
        **redis_options: Any,
    ) -> RedisStorage:
        """Connect to ``url`` with short timeouts; the storage owns (and closes) the client.

        ``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS and
        ``unix://`` work as in redis-py; AUTH, ACL user names and TLS settings pass
        through to it, as do ``redis_options`` (e.g. ``ssl_ca_certs``,
        ``max_connections``).

        Args:
            url: The server's URL (any node of the cluster when ``cluster``).
            prefix: Prepended to every key.
            cluster: Connect to a Redis Cluster (``redis.cluster.RedisCluster``).
            serializer: See :class:`RedisStorage`.
            clock: See :class:`RedisStorage`.
            socket_timeout: Seconds a command may wait for its reply.
            connect_timeout: Seconds a new connection may take.
            backoff_initial: See :class:`RedisStorage`.
            backoff_max: See :class:`RedisStorage`.
            read_cache: See :class:`RedisStorage`.
            **redis_options: More keyword arguments for redis-py's ``from_url``.

        Raises:
            ImportError: redis-py is not installed.
            ValueError: a timeout is not a positive number of seconds.
        """
        client, twin = _connect(
            url,
            asyncio_client=False,
            cluster=cluster,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            options=redis_options,
        )
        return cls(
            client,
            prefix=prefix,
            serializer=serializer,
            clock=clock,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            owns_client=True,
            read_cache=read_cache,
            _twin_options=twin,
        )

    # -- the hot path -----------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """Return the live entry under ``key``: one ``GET`` and one decode.

        Raises:
            StorageUnavailableError: Redis is unreachable, hung or DOWN, or the storage
                is closed.
            StorageError: Redis refused the command.
        """
        if self._health.blocked:
            raise self._refused()
        skey = self.prefix + key
        try:
            data = self._command("GET", skey)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc
        if data is None:
            return None
        try:
            return self._entry(skey, data)
        except CorruptEntryError as exc:
            self._drop_corrupt(skey, exc)
            return None

    def _drop_corrupt(self, skey: str, exc: CorruptEntryError) -> None:
        self._corrupt_found(skey, exc)
        try:
            self._client.delete(skey)
        except self._driver_errors as error:
            self._failure(error)  # the record stays; it reads as a miss again

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the live entries of ``keys`` in order, in one round trip (per node).

        Raises:
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        if self._health.blocked:
            raise self._refused()
        if not keys:
            return []
        prefix = self.prefix
        skeys = [prefix + key for key in keys]
        try:
            if self._cluster:
                values = self._client.mget_nonatomic(skeys)
            else:
                values = self._command("MGET", *skeys)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc
        entries, corrupt = self._entries(skeys, values)
        for index, error in corrupt:
            self._drop_corrupt(skeys[index], error)
        return entries

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` with ``PX`` = its remaining lifetime; a dead entry removes the key.

        Raises:
            SerializationError: the value cannot be encoded (nothing is written).
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        if self._health.blocked:
            raise self._refused()
        data, px = self._record(entry)
        skey = self.prefix + key
        try:
            if px > 0:
                self._client.set(skey, data, px=px)
            else:
                self._client.delete(skey)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries in one pipeline (one round trip per node).

        Raises:
            SerializationError: a value cannot be encoded (nothing is written).
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        if self._health.blocked:
            raise self._refused()
        if not entries:
            return
        prefix = self.prefix
        records = [(prefix + key, *self._record(entry)) for key, entry in entries.items()]
        try:
            pipe = self._client.pipeline(transaction=False)
            for skey, data, px in records:
                if px > 0:
                    pipe.set(skey, data, px=px)
                else:
                    pipe.delete(skey)
            pipe.execute()
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether Redis held it. Idempotent.

        Raises:
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        if self._health.blocked:
            raise self._refused()
        try:
            return bool(self._client.delete(self.prefix + key))
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    # -- leases -----------------------------------------------------------------------

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds (``SET NX PX``); ``None`` if held.

        Raises:
            ValueError: ``ttl`` is not a positive number of seconds.
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        lkey, token, px = self._lease_request(key, ttl)
        if self._health.blocked:
            raise self._refused()
        try:
            taken = self._client.set(lkey, token, nx=True, px=px)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc
        return token if taken else None

    def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still owns it (compare-and-delete).

        Raises:
            StorageUnavailableError, StorageError: as :meth:`get`; the lease then
                expires on its own.
        """
        if self._health.blocked:
            raise self._refused()
        lkey = lease_key(self.prefix + key)
        client = self._client
        try:
            try:
                client.evalsha(_RELEASE_SHA, 1, lkey, token)
            except self._no_script:
                client.eval(_RELEASE_SCRIPT, 1, lkey, token)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    # -- health probe -------------------------------------------------------------------

    def _start_probe(self) -> None:
        health = self._health
        thread = threading.Thread(target=self._probe_loop, name="swr-redis-probe", daemon=True)
        health.probe = thread
        health.probe_pid = os.getpid()
        thread.start()

    def _ensure_probe(self) -> None:
        # A fork keeps DOWN but not the probe thread: start one in this process.
        health = self._health
        if health.down and health.probe_pid != os.getpid():
            with health.lock:
                if health.probe_pid == os.getpid():
                    return
                health.probe_pid = os.getpid()
            self._start_probe()

    def _probe_loop(self) -> None:
        health = self._health
        delay = health.delay
        while not health.stop.wait(delay):
            try:
                self._client.ping()
            except self._driver_errors:
                delay = health.probe_failed()
                continue
            except Exception as exc:  # noqa: BLE001 - a probe must never kill its thread
                logger.warning("redis_probe_failed", backend="redis", error=repr(exc))
                delay = health.probe_failed()
                continue
            self._probe_answered()
            return

    # -- views, twin, closing ------------------------------------------------------------

    def with_serializer(self, serializer: Serializer) -> RedisStorage:
        """Return a view of the same Redis (client, health, counters) using ``serializer``."""
        return self._view(serializer)

    def as_async(self) -> AsyncRedisStorage:
        """Return the asyncio twin: the same server, prefix, serializer, clock and settings.

        The twin has its own ``redis.asyncio`` client (no thread hop) and its own health
        state; close it with ``aclose()``.

        Raises:
            TypeError: the client was passed in and its settings cannot be copied to an
                asyncio client (build :class:`AsyncRedisStorage` yourself then).
        """
        options = self._twin_options
        common: dict[str, Any] = {
            "prefix": self.prefix,
            "serializer": self._codec.serializer,
            "clock": self._clock,
            "backoff_initial": self._health.initial,
            "backoff_max": self._health.maximum,
            "read_cache": self._cache.limit,
        }
        if options is not None:
            return AsyncRedisStorage.from_url(
                options["url"],
                cluster=options["cluster"],
                socket_timeout=options["socket_timeout"],
                connect_timeout=options["connect_timeout"],
                **common,
                **options["redis_options"],
            )
        return AsyncRedisStorage(
            _async_client_like(self._redis, self._client), owns_client=True, **common
        )

    def close(self) -> None:
        """Stop the probe and close the client if this storage owns it. Idempotent.

        Later calls raise ``StorageUnavailableError``.
        """
        if self._health.close() and self._owns_client:
            try:
                self._client.close()
            except self._driver_errors as exc:  # pragma: no cover - closing sockets
                logger.debug("redis_close_failed", backend="redis", error=repr(exc))


# Settings copied from a sync client when building its asyncio twin; the rest of
# redis-py's connection keywords are internal to its sync classes.
_COPIED_SETTINGS = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
    "client_name",
    "credential_provider",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
    "protocol",
)


def _async_client_like(redis: ModuleType, client: Any) -> Any:
    """A ``redis.asyncio`` client reaching the same server(s) with the same settings."""
    if isinstance(client, redis.cluster.RedisCluster):
        settings = client.nodes_manager.connection_kwargs
        nodes = [
            redis.asyncio.cluster.ClusterNode(node.host, node.port)
            for node in client.get_primaries()
        ]
        copied = {k: settings[k] for k in _COPIED_SETTINGS if k in settings}
        copied.pop("host", None)
        copied.pop("port", None)
        copied.pop("db", None)
        if "ssl_certfile" in settings or "ssl_ca_certs" in settings:
            copied["ssl"] = True
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **copied)
    pool = client.connection_pool
    settings = pool.connection_kwargs
    connection_class = pool.connection_class
    if issubclass(connection_class, redis.connection.UnixDomainSocketConnection):
        copied = {k: settings[k] for k in _COPIED_SETTINGS if k in settings}
        copied["unix_socket_path"] = settings["path"]
        copied.pop("host", None)
        copied.pop("port", None)
    elif issubclass(connection_class, redis.connection.SSLConnection):
        copied = {k: settings[k] for k in _COPIED_SETTINGS if k in settings}
        copied["ssl"] = True
    elif connection_class is redis.connection.Connection:
        copied = {
            k: settings[k] for k in _COPIED_SETTINGS if k in settings and not k.startswith("ssl")
        }
    else:
        raise TypeError(
            f"cannot derive an asyncio client from a redis client using "
            f"{connection_class.__name__}; pass AsyncRedisStorage(client=redis.asyncio.Redis(...))"
        )
    return redis.asyncio.Redis(**copied)


class AsyncRedisStorage(_RedisBase, AsyncStorageMixin):
    """The asyncio twin of :class:`RedisStorage`, over ``redis.asyncio`` (no thread hop).

    Example::

        store = AsyncRedisStorage.from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
        async with AsyncStaleEngine(store, ttl=CacheTTL(fresh=60, stale=600)) as engine:
            result = await engine.execute("user:1", lambda: fetch_user(1))

    ``AsyncStaleEngine(RedisStorage...)`` builds this twin by itself (``as_async()``).
    Arguments are those of :class:`RedisStorage` with a ``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster`` client. Use it from one event loop; the
    background probe is a task on the loop where Redis failed.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "",
        serializer: Serializer | None = None,
        clock: Callable[[], float] | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        owns_client: bool = False,
        read_cache: int = 1024,
        _twin_options: dict[str, Any] | None = None,
    ) -> None:
        redis = _import_redis()
        cluster_class = redis.asyncio.cluster.RedisCluster
        if not isinstance(client, (redis.asyncio.Redis, cluster_class)):
            raise TypeError(
                "client must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster, "
                f"got {type(client).__name__} (use RedisStorage for synchronous clients)"
            )
        self._setup(
            client,
            prefix=prefix,
            serializer=serializer,
            clock=clock,
            cluster=isinstance(client, cluster_class),
            owns_client=owns_client,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            read_cache=read_cache,
            twin_options=_twin_options,
        )
        # redis.asyncio's cluster client races when its first commands run concurrently
        # (a connection is closed under a command still connecting): the first call
        # initializes it alone, behind one lock.
        self._ready = not self._cluster
        self._ready_lock: asyncio.Lock | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "",
        cluster: bool = False,
        serializer: Serializer | None = None,
        clock: Callable[[], float] | None = None,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        read_cache: int = 1024,
        **redis_options: Any,
    ) -> AsyncRedisStorage:
        """Connect to ``url``; the twin of :meth:`RedisStorage.from_url`, same arguments."""
        client, twin = _connect(
            url,
            asyncio_client=True,
            cluster=cluster,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            options=redis_options,
        )
        return cls(
            client,
            prefix=prefix,
            serializer=serializer,
            clock=clock,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            owns_client=True,
            read_cache=read_cache,
            _twin_options=twin,
        )

    async def _prepare(self) -> None:
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if self._ready:
                return
            try:
                await self._client.initialize()
            except self._driver_errors as exc:
                raise self._failure(exc) from exc
            self._ready = True

    async def get(self, key: str) -> Entry | None:
        """Return the live entry under ``key``; see :meth:`RedisStorage.get`."""
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            await self._prepare()
        skey = self.prefix + key
        try:
            data = await self._command("GET", skey)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc
        if data is None:
            return None
        try:
            return self._entry(skey, data)
        except CorruptEntryError as exc:
            await self._drop_corrupt(skey, exc)
            return None

    async def _drop_corrupt(self, skey: str, exc: CorruptEntryError) -> None:
        self._corrupt_found(skey, exc)
        try:
            await self._client.delete(skey)
        except self._driver_errors as error:
            self._failure(error)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the live entries of ``keys``; see :meth:`RedisStorage.get_many`."""
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            await self._prepare()
        if not keys:
            return []
        prefix = self.prefix
        skeys = [prefix + key for key in keys]
        try:
            if self._cluster:
                values = await self._client.mget_nonatomic(skeys)
            else:
                values = await self._command("MGET", *skeys)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc
        entries, corrupt = self._entries(skeys, values)
        for index, error in corrupt:
            await self._drop_corrupt(skeys[index], error)
        return entries

    async def set(self, key: str, entry: Entry) -> None:
        """Store ``entry``; see :meth:`RedisStorage.set`."""
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            await self._prepare()
        data, px = self._record(entry)
        skey = self.prefix + key
        try:
            if px > 0:
                await self._client.set(skey, data, px=px)
            else:
                await self._client.delete(skey)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries in one pipeline; see :meth:`RedisStorage.set_many`."""
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            await self._prepare()
        if not entries:
            return
        prefix = self.prefix
        records = [(prefix + key, *self._record(entry)) for key, entry in entries.items()]
        try:
            pipe = self._client.pipeline(transaction=False)
            for skey, data, px in records:
                if px > 0:
                    pipe.set(skey, data, px=px)
                else:
                    pipe.delete(skey)
            await pipe.execute()
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    async def delete(self, key: str) -> bool:
        """Remove ``key``; see :meth:`RedisStorage.delete`."""
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            await self._prepare()
        try:
            return bool(await self._client.delete(self.prefix + key))
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    async def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease on ``key``; see :meth:`RedisStorage.acquire_lease`."""
        lkey, token, px = self._lease_request(key, ttl)
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            await self._prepare()
        try:
            taken = await self._client.set(lkey, token, nx=True, px=px)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc
        return token if taken else None

    async def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key``; see :meth:`RedisStorage.release_lease`."""
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            await self._prepare()
        lkey = lease_key(self.prefix + key)
        client = self._client
        try:
            try:
                await client.evalsha(_RELEASE_SHA, 1, lkey, token)
            except self._no_script:
                await client.eval(_RELEASE_SCRIPT, 1, lkey, token)
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    def _start_probe(self) -> None:
        health = self._health
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - the async methods always run in a loop
            return
        health.probe = loop.create_task(self._probe_loop())
        health.probe_pid = os.getpid()

    def _ensure_probe(self) -> None:
        # The probe task is lost with its event loop or across fork(): start another.
        health = self._health
        task = health.probe
        if not health.down:
            return
        lost = task is None or task.done() or health.probe_pid != os.getpid()
        if not lost:
            try:
                lost = task.get_loop() is not asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover - called from coroutines only
                lost = False
        if lost:
            self._start_probe()

    async def _probe_loop(self) -> None:
        health = self._health
        delay = health.delay
        while True:
            await asyncio.sleep(delay)
            if health.closed:
                return
            try:
                await self._client.ping()
            except self._driver_errors:
                delay = health.probe_failed()
                continue
            except Exception as exc:  # noqa: BLE001 - a probe must never die on an error
                logger.warning("redis_probe_failed", backend="redis", error=repr(exc))
                delay = health.probe_failed()
                continue
            self._probe_answered()
            return

    def with_serializer(self, serializer: Serializer) -> AsyncRedisStorage:
        """Return a view of the same Redis using ``serializer``."""
        return self._view(serializer)

    async def aclose(self) -> None:
        """Cancel the probe and close the client if this storage owns it. Idempotent."""
        health = self._health
        if not health.close():
            return
        task = health.probe
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
        if self._owns_client:
            try:
                await self._client.aclose()
            except self._driver_errors as exc:  # pragma: no cover - closing sockets
                logger.debug("redis_close_failed", backend="redis", error=repr(exc))
