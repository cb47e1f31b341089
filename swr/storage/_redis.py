"""Every decision of the Redis storages, without I/O: keys, records, expiry, errors, health.

The storages themselves are written once, as asyncio code, in
:mod:`swr.storage._async.redis`; the thread twin is generated from it. Both inherit
:class:`_RedisBase` from here, and the thread twin :class:`SyncTwin` (its ``as_async``).
See :mod:`swr.storage.redis` for how the storage works.
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
import threading
import time as _time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from swr.storage._clock import now
from swr.storage._log import logger
from swr.storage._record import (
    ReadCache,
    RecordCodec,
)
from swr.storage._validate import check_int, check_seconds
from swr.storage._verbs import check_key, check_times, checked_tags, checked_times
from swr.storage.base import CounterEntry, Entry
from swr.storage.errors import CorruptEntryError, StorageError, StorageUnavailableError
from swr.storage.serializers import Serializer, default_serializer

if TYPE_CHECKING:
    from typing_extensions import Self

    from swr.storage._async.redis import AsyncRedisStorage

__all__ = [
    "BATCH",
    "PX_MAX",
    "SyncTwin",
    "board_key",
    "connect",
    "counter_entry",
    "describe_error",
    "glob_escape",
    "header_live",
    "in_int64",
    "lease_key",
    "native_int",
    "same_slot",
    "tag_key",
    "wrong_client",
]

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

# Stores a record and releases the lease in one round trip (KEYS[1] entry, KEYS[2] lease;
# ARGV[1] record, ARGV[2] PX: "" for no TTL, <= 0 to delete the entry; ARGV[3] token).
# The entry is written whoever holds the lease now, as a set then a release would.
_STORE_RELEASE_SCRIPT = """
local px = ARGV[2]
if px == "" then
    redis.call("set", KEYS[1], ARGV[1])
elseif tonumber(px) > 0 then
    redis.call("set", KEYS[1], ARGV[1], "px", px)
else
    redis.call("del", KEYS[1])
end
if redis.call("get", KEYS[2]) == ARGV[3] then
    return redis.call("del", KEYS[2])
end
return 0
"""
_STORE_RELEASE_SHA = hashlib.sha1(_STORE_RELEASE_SCRIPT.encode(), usedforsecurity=False).hexdigest()


# Gives a live entry new instants without touching its payload (KEYS[1] entry; ARGV[1] the
# 32 bytes of the four times, ARGV[2] PX as for _STORE_RELEASE_SCRIPT, ARGV[3] now). The
# record's header is read with GETRANGE (the value is never sent back) and the times are
# overwritten in place with SETRANGE at their offset (see swr.storage._record). A native
# counter (digits, see native_int) has no times: only its TTL is set.
_TOUCH_SCRIPT = """
local head = redis.call("getrange", KEYS[1], 0, 37)
local px = ARGV[2]
local sign, digits = string.match(head, "^(%-?)([1-9]%d*)$")
local native = head == "0" or (digits ~= nil and (#digits < 19 or (#digits == 19 and
    digits <= (sign == "" and "9223372036854775807" or "9223372036854775808"))))
if native then
    -- a native counter (exactly native_int's form): only its TTL changes
    if px ~= "" and tonumber(px) <= 0 then
        redis.call("del", KEYS[1])
    elseif px == "" then
        redis.call("persist", KEYS[1])
    else
        redis.call("pexpire", KEYS[1], px)
    end
    return 1
end
if #head < 38 or string.sub(head, 1, 2) ~= "SW" then
    return 0
end
if struct.unpack("<d", head, 29) <= tonumber(ARGV[3]) then
    return 0
end
if px ~= "" and tonumber(px) <= 0 then
    redis.call("del", KEYS[1])
    return 1
end
redis.call("setrange", KEYS[1], 4, ARGV[1])
if px == "" then
    redis.call("persist", KEYS[1])
else
    redis.call("pexpire", KEYS[1], px)
end
return 1
"""
_TOUCH_SHA = hashlib.sha1(_TOUCH_SCRIPT.encode(), usedforsecurity=False).hexdigest()

# Records an entry under its tags (KEYS: the entry when ARGV[4] is "1", then one set per
# tag; ARGV[1] record, ARGV[2] PX ("" for no TTL, > 0), ARGV[3] the entry's Redis key).
# A tag's set lives at least as long as each entry recorded in it: its TTL only grows,
# and an entry without a TTL makes it persistent.
_TAG_SCRIPT = """
local px = ARGV[2]
local first = 1
if ARGV[4] == "1" then
    first = 2
    if px == "" then
        redis.call("set", KEYS[1], ARGV[1])
    else
        redis.call("set", KEYS[1], ARGV[1], "px", px)
    end
end
for i = first, #KEYS do
    local ttl = redis.call("pttl", KEYS[i])
    redis.call("sadd", KEYS[i], ARGV[3])
    if px == "" then
        if ttl ~= -1 then
            redis.call("persist", KEYS[i])
        end
    elseif ttl == -2 or (ttl >= 0 and ttl < tonumber(px)) then
        redis.call("pexpire", KEYS[i], px)
    end
end
return 1
"""
_TAG_SHA = hashlib.sha1(_TAG_SCRIPT.encode(), usedforsecurity=False).hexdigest()

# Takes up to ARGV[1] keys out of a tag's set and unlinks them: one batch of an
# invalidation, one round trip (KEYS[1] the tag's set). Standalone Redis only: the keys
# it unlinks are not declared, which a cluster forbids (there each batch is an SPOP on
# the set's node, then one UNLINK per hash slot).
# Returns {entries removed, {keys taken}, keys left in the set}.
_INVALIDATE_SCRIPT = """
local keys = redis.call("spop", KEYS[1], ARGV[1])
if #keys == 0 then
    return {0, keys, 0}
end
return {redis.call("unlink", unpack(keys)), keys, redis.call("scard", KEYS[1])}
"""
_INVALIDATE_SHA = hashlib.sha1(_INVALIDATE_SCRIPT.encode(), usedforsecurity=False).hexdigest()

# Keys per UNLINK, per SPOP of an invalidation and per SCAN page: large enough that round
# trips stay few, small enough that Redis never blocks long on one command.
BATCH = 1000
_GLOB_SPECIAL = frozenset("*?[]\\")


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern (every glob character escaped)."""
    return "".join("\\" + char if char in _GLOB_SPECIAL else char for char in text)


def tag_key(storage_prefix: str, tag: str) -> bytes:
    """The Redis key of the set of entries recorded under ``tag`` by a storage.

    ``0xFF tag:{<digest>}:`` then the prefix and the tag. The 0xFF byte keeps it out of
    the entries' namespace (as for leases); the hash tag is a digest of the rest, so a
    tag holding braces still has one, and the set sits in one slot of its own.
    """
    name = (storage_prefix + tag).encode()
    digest = hashlib.blake2b(name, digest_size=8).hexdigest().encode()
    return LEASE_MARK + b"tag:{" + digest + b"}:" + name


_HEADER_TIMES = struct.Struct("<4d")
# Where a record's payload starts when it holds no key check (the header's size).
_PAYLOAD_AT = 38


def header_live(head: bytes | None, now: float) -> bool:
    """Whether a record's first 38 bytes (its header) say a live entry, by ``now``."""
    if not head or len(head) < 38 or head[:2] != b"SW":
        return False
    expires: float = _HEADER_TIMES.unpack_from(head, 4)[3]
    return expires > now


# Compare-and-set of one record (KEYS[1]). ARGV[1] the record expected ("" for none),
# ARGV[2] the new record, ARGV[3] its PX ("" for no TTL, "keep" to keep the key's own
# TTL: a value derived from a native counter, whose expiry only Redis knows). Returns 1
# if it stored. Every atomic operation but incr on a native counter reads, decides in
# Python, then stores through this: a write by anyone in between makes it fail, and
# the caller reads again.
_CAS_SCRIPT = """
local cur = redis.call("get", KEYS[1])
if (cur or "") ~= ARGV[1] then
    return 0
end
if ARGV[3] == "" then
    redis.call("set", KEYS[1], ARGV[2])
elseif ARGV[3] == "keep" then
    redis.call("set", KEYS[1], ARGV[2], "keepttl")
else
    redis.call("set", KEYS[1], ARGV[2], "px", ARGV[3])
end
return 1
"""
_CAS_SHA = hashlib.sha1(_CAS_SCRIPT.encode(), usedforsecurity=False).hexdigest()

# incr creating the key with a TTL, atomically (KEYS[1]; ARGV[1] delta, ARGV[2] PX): a
# counter absent (or expired by Redis) is created at 0 with that PX, then INCRBY. A key
# holding anything but a native integer makes INCRBY fail (the caller then decides in
# Python, see RedisStorage.incr). Without a TTL, incr is a bare INCRBY. The new value
# is returned as Redis's string (a Lua number is a double: 64-bit integers would round).
_INCR_TTL_SCRIPT = """
redis.call("set", KEYS[1], "0", "nx", "px", ARGV[2])
redis.call("incrby", KEYS[1], ARGV[1])
return redis.call("get", KEYS[1])
"""
_INCR_TTL_SHA = hashlib.sha1(_INCR_TTL_SCRIPT.encode(), usedforsecurity=False).hexdigest()

# incr of a key only if it holds something (Django's incr; KEYS[1], ARGV[1] delta):
# false when absent, else INCRBY (which fails on anything but a native integer) and the
# new value as a string, as _INCR_TTL_SCRIPT.
_INCR_EXISTING_SCRIPT = """
if redis.call("exists", KEYS[1]) == 0 then
    return false
end
redis.call("incrby", KEYS[1], ARGV[1])
return redis.call("get", KEYS[1])
"""
_INCR_EXISTING_SHA = hashlib.sha1(_INCR_EXISTING_SCRIPT.encode(), usedforsecurity=False).hexdigest()

# The longest native integer: "-9223372036854775808".
NATIVE_MAX_LEN = 20
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_DIGITS = frozenset(b"0123456789")


def native_int(data: bytes | None) -> int | None:
    """The integer of a native Redis counter (what ``INCRBY`` writes), else ``None``.

    The bytes come from the server and are not trusted: only Redis's own canonical
    form is accepted (what ``INCRBY`` itself takes): ``0``, or an optional ``-`` and
    digits without a leading zero, at most 20 bytes, within int64. A record always
    starts with the magic ``SW`` (see :mod:`swr.storage._record`), which is neither a
    digit nor ``-``: the two forms never collide.
    """
    if not data or len(data) > NATIVE_MAX_LEN:
        return None
    digits = data[1:] if data[:1] == b"-" else data
    if not digits or not _DIGITS.issuperset(digits):
        return None
    if digits[:1] == b"0" and (len(digits) > 1 or data[:1] == b"-"):
        return None  # a leading zero, or "-0": not Redis's form
    value = int(digits)
    value = -value if data[:1] == b"-" else value
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def counter_entry(value: int, now: float) -> CounterEntry:
    """The entry a native counter reads as: fresh until Redis's own TTL removes the key.

    Redis keeps a counter's expiry (its ``PX``) and nothing else, so the entry's
    windows are infinite and ``stored_at`` is the time of the read.
    """
    return CounterEntry(value, now, _INF, _INF, _INF)


def in_int64(value: int) -> bool:
    """Whether ``value`` fits a native counter (a signed 64-bit integer)."""
    return _INT64_MIN <= value <= _INT64_MAX


# Most reads-then-compare-and-set one atomic operation tries before giving up.
CAS_ATTEMPTS = 1000


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


# The first byte of every lease key. 0xFF never occurs in UTF-8, and an entry's Redis key
# is the UTF-8 of ``prefix + key``: no entry key, whatever its prefix, equals a lease key.
LEASE_MARK = b"\xff"


def lease_key(storage_key: str) -> bytes:
    """Return the Redis key of the lease on the entry stored under ``storage_key``.

    ``0xFF lease:`` then the storage key: a byte string that is not UTF-8, so the lease
    namespace is disjoint from the entries' (a cache key named ``lease:{user}`` is an
    entry like any other). On a cluster the lease lives in the entry's hash slot (same
    node, same failover): a key with its own hash tag keeps it, a key without one is
    wrapped whole in one, which hashes exactly like the bare key. A key with a stray
    ``}`` and no valid tag cannot be wrapped: its lease may sit in another slot, which
    stays correct because every lease command then touches only the lease key.

    Raises:
        UnicodeEncodeError: ``storage_key`` is not valid UTF-8 (a lone surrogate).
    """
    if _has_hash_tag(storage_key) or "}" in storage_key:
        return LEASE_MARK + b"lease:" + storage_key.encode()
    return LEASE_MARK + b"lease:{" + storage_key.encode() + b"}"


# The first byte of every leaderboard key: like LEASE_MARK, never in UTF-8, and another
# byte, so leaderboards collide neither with entries nor with leases.
BOARD_MARK = b"\xfe"


def board_key(prefix: str, name: str) -> bytes:
    """The Redis key of the leaderboard ``name`` of a storage with ``prefix``.

    ``0xFE board:`` then the prefix and the name: one sorted set, one key, so one
    cluster slot.

    Raises:
        TypeError, ValueError: ``name`` is not a non-empty UTF-8 str.
    """
    if not isinstance(name, str):
        raise TypeError(f"a leaderboard name must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("a leaderboard name must not be empty")
    try:
        return BOARD_MARK + b"board:" + (prefix + name).encode()
    except UnicodeEncodeError as exc:
        raise bad_key(name, exc) from None


def same_slot(storage_key: str) -> bool:
    """Whether the entry under ``storage_key`` and its lease share one hash slot."""
    return _has_hash_tag(storage_key) or "}" not in storage_key


def bad_key(key: str, exc: UnicodeEncodeError) -> ValueError:
    """The error for a key Redis cannot hold: a str that is not valid UTF-8."""
    return ValueError(f"key {key!r} is not valid UTF-8 ({exc.reason}); keys must encode as UTF-8")


# Entries that never expire (``expires_at = inf``) are stored without a TTL, and so is any
# entry whose TTL would exceed this (about 31,700 years): Redis refuses a ``PX`` that
# overflows its clock, and dropping such an entry early would be wrong.
PX_MAX = 10**15
# Most cluster masters whose health is tracked (stats() has two counters per node).
MAX_NODES = 64

# The record format holds finite times: an infinite one is written as the largest float
# and read back as infinity.
_FOREVER = sys.float_info.max
_INF = math.inf


def _finite(entry: Entry) -> Entry:
    """``entry`` with each infinite window written as ``_FOREVER`` (the record's form)."""
    if entry.expires_at != _INF:
        return entry
    return Entry(
        entry.value,
        entry.stored_at,
        min(entry.fresh_until, _FOREVER),
        min(entry.stale_until, _FOREVER),
        _FOREVER,
    )


def _infinite(entry: Entry) -> Entry:
    """Undo :func:`_finite` on a freshly decoded entry (in place)."""
    if entry.expires_at == _FOREVER:
        entry.expires_at = _INF
        if entry.stale_until == _FOREVER:
            entry.stale_until = _INF
        if entry.fresh_until == _FOREVER:
            entry.fresh_until = _INF
    return entry


def describe_error(exc: BaseException) -> str:
    """The driver's own message with its class name, e.g. ``ResponseError: NOPERM ...``.

    ``str(exc)``, never ``repr``: redis-py 8's repr is only ``network:ConnectionError``,
    which drops the reason (a refused connection, a failed certificate check, an ACL
    denial, the server's error text).
    """
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _location(client: Any) -> str:
    """Where ``client`` connects, as ``host:port/db`` or a socket path: never credentials.

    Read from the client's own connection settings (parsed by redis-py, which splits a
    URL's userinfo on its last ``@``), so no character of a password, in the URL or in a
    query argument, can reach a repr, a log event or an error message.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        settings = pool.connection_kwargs
        if "path" in settings:
            return f"unix:{settings['path']}/{settings.get('db', 0)}"
        return f"{settings.get('host', '?')}:{settings.get('port', '?')}/{settings.get('db', 0)}"
    nodes = getattr(client, "startup_nodes", None)
    if nodes is None:
        manager = getattr(client, "nodes_manager", None)
        nodes = getattr(manager, "startup_nodes", None)
    if isinstance(nodes, dict):
        nodes = list(nodes.values())
    if nodes:
        first = nodes[0]
        more = f" (+{len(nodes) - 1})" if len(nodes) > 1 else ""
        return f"cluster {first.host}:{first.port}{more}"
    return type(client).__name__


def wrong_client(client: object) -> TypeError:
    """The error for a client of the wrong kind, naming which storage takes which."""
    kind = f"{type(client).__module__}.{type(client).__name__}"
    return TypeError(
        f"got a {kind} client: RedisStorage takes a redis.Redis or redis.cluster.RedisCluster,"
        " AsyncRedisStorage a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster"
    )


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
        "probe_object",
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
        self.probe_object: Any = None  # a cluster node's Probe or AsyncProbe
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
    _probe: Any  # a Probe or an AsyncProbe (swr.storage._primitives), set by the shell
    _probe_class: Any  # Probe or AsyncProbe, for the probes of cluster nodes

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
        try:
            prefix.encode()
        except UnicodeEncodeError as exc:
            raise bad_key(prefix, exc) from None
        check_int("read_cache", read_cache, 0)
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        initial = check_seconds("backoff_initial", backoff_initial)
        maximum = check_seconds("backoff_max", backoff_max)
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
        self._own_clock = clock
        self._cluster = cluster
        self._owns_client = owns_client
        self._health = _Health(initial, maximum)
        self._counters = {"corrupt_entries": 0}
        self._twin_options = twin_options
        self._location = _location(client)
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
        # UnicodeEncodeError: redis-py encodes a str key that is not valid UTF-8.
        self._driver_errors: tuple[type[BaseException], ...] = (
            exceptions.RedisError,
            OSError,
            UnicodeEncodeError,
        )
        self._no_script: type[BaseException] = exceptions.NoScriptError
        # A cluster node that answers with a redirection (MOVED after a failover or a
        # reshard, ASK during one): redis-py's cluster client follows it for that one
        # call and updates its slot map.
        self._redirect: tuple[type[BaseException], ...] = (
            exceptions.AskError,  # and MovedError, its subclass
            exceptions.TryAgainError,
        )
        self._unavailable += (exceptions.ClusterDownError,)
        self._driver_errors += (exceptions.RedisClusterException,)
        # Cluster: the health of each master, by node name, and whether all are down.
        self._nodes: dict[str, _Health] = {}
        self._node_changes: dict[str, float] = {}
        self._all_down = False

    # -- keys, records, expiry --------------------------------------------------------

    def adopt_clock(self, clock: Callable[[], float] | None) -> Callable[[], float] | None:
        """Judge expiry with ``clock`` (an engine's) unless one was given; return that one.

        ``PX`` is then computed from each entry's ``expires_at`` relative to that clock,
        so Redis drops a key no earlier than the engine judges it dead (give or take the
        server's own millisecond rounding, which rounds up).
        """
        if self._own_clock is None:
            self._clock = clock
        return self._own_clock

    def _now(self) -> float:
        return now(self._clock)

    def _record(self, entry: Entry) -> tuple[bytes, int | None]:
        """The record bytes of ``entry`` and its ``PX``.

        ``PX <= 0`` means dead already (the key is deleted, nothing encoded); ``None``
        means no TTL (``expires_at`` is infinite or beyond :data:`PX_MAX`).

        Raises:
            ValueError: the entry's times are NaN or out of order.
            SerializationError: the serializer cannot encode the value.
        """
        check_times(entry)
        remaining = (entry.expires_at - self._now()) * 1000.0
        if remaining > PX_MAX:
            return self._codec.encode(_finite(entry)), None
        px = math.ceil(remaining)
        return (self._codec.encode(entry) if px > 0 else b""), px

    def _live(self, data: bytes | None, now: float) -> Entry | None:
        """The live entry of ``data`` at ``now``; absent, dead or corrupt: ``None``.

        A native counter (see :func:`native_int`) is live: Redis removes it at its TTL.
        """
        if data is None:
            return None
        try:
            entry = _infinite(self._codec.decode(data))
        except CorruptEntryError:
            value = native_int(data)
            return None if value is None else counter_entry(value, now)
        return entry if entry.expires_at > now else None

    def _counter(self, data: bytes | None) -> Entry | None:
        """The entry of a native counter read by ``get``/``get_many``, else ``None``."""
        value = native_int(data)
        return None if value is None else counter_entry(value, self._now())

    def _changed(
        self, new: Entry | tuple[int, int | str | None], data: bytes | None
    ) -> tuple[bytes, int | str | None]:
        """The record and ``PX`` (``"keep"``: the key's own TTL) an atomic step stores.

        ``new`` is an entry, or ``(value, PX)`` for a native counter. An entry derived
        from a native counter (its windows infinite) keeps the key's TTL: Redis alone
        knows when that counter dies.
        """
        if isinstance(new, tuple):
            return str(new[0]).encode(), new[1]
        record, px = self._record(new)
        if px is None and new.expires_at == _INF and native_int(data) is not None:
            return record, "keep"
        return record, px

    @staticmethod
    def _counter_px(ttl: float | None) -> int | None:
        """The ``PX`` of a counter created with ``ttl`` (``None``: no TTL)."""
        if ttl is None or ttl * 1000.0 > PX_MAX:
            return None
        return math.ceil(ttl * 1000.0)

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
            codec = self._codec
            decoded = codec.plain_decode(data)  # the common record (in C when built)
            entry = codec.decode(data) if decoded is None else decoded
            if entry.expires_at == _FOREVER:
                _infinite(entry)
            if cache.limit and (cached is not None or cache.admits(skey)) and self._small(data):
                cache.remember(((skey, (data, entry)),))
        clock = self._clock
        if entry.expires_at <= (clock() if clock is not None else _time.time()):
            return None
        return entry

    def _entries(
        self, skeys: list[str], records: list[bytes | None]
    ) -> tuple[list[Entry | None], list[tuple[int, CorruptEntryError]]]:
        """The entries of an ``MGET`` reply (``None`` for absent or dead ones) and the
        ``(index, error)`` of each corrupt record.

        One pass of :attr:`RecordCodec.plain_batch` (in C when built): a record whose
        very bytes the read cache holds is not decoded again, the common record is
        decoded exactly as :meth:`RecordCodec.decode` would, and admission to the read
        cache is decided key by key (:meth:`ReadCache.wants`). The records it leaves
        (``rest``) go through ``decode`` here, after the pass.
        """  # noqa: D205 - the summary names both results
        now = self._now()
        cache = self._cache
        # Until the cache is full every key decoded is kept (see ReadCache.wants).
        full = cache.limit and len(cache.items) >= cache.room
        entries, keep, rest = self._codec.plain_batch(
            skeys,
            records,
            cache.items,
            now,
            cache.seen if full else None,
            cache.span,
        )
        corrupt: list[tuple[int, CorruptEntryError]] = []
        if rest:
            decode = self._codec.decode
            for index in rest:
                entry = entries[index]  # a window written finite, else not decoded yet
                if entry is None:
                    try:
                        entry = decode(cast("bytes", records[index]))
                    except CorruptEntryError as exc:
                        corrupt.append((index, exc))
                        continue
                    if entry.expires_at <= now:
                        continue
                if entry.expires_at == _FOREVER:
                    _infinite(entry)
                entries[index] = entry
                skey = skeys[index]
                if not full or cache.get(skey) is not None or cache.admits(skey):
                    keep.append(index)
            keep.sort()  # in the order of the batch
        if not cache.limit or not keep:
            return entries, corrupt
        small = self._small
        pairs: list[tuple[str, tuple[bytes, Entry]]] = []
        for index in keep:
            data = cast("bytes", records[index])
            if small(data):
                pairs.append((skeys[index], (data, cast("Entry", entries[index]))))
        if pairs:
            cache.remember(pairs)
        return entries, corrupt

    def _small(self, data: bytes) -> bool:
        """Whether the value of a record :meth:`_entry` decoded fits the read cache.

        Such a record holds no key check (its decode would have failed), so its
        payload starts right after the header: an uncompressed one (zstd marker 0)
        no longer than the limit needs no further look.
        """
        if _PAYLOAD_AT < len(data) <= ReadCache.DECODED_MAX and data[_PAYLOAD_AT] == 0:
            return True
        return self._codec.decoded_size(data) <= ReadCache.DECODED_MAX

    def _lease_key(self, key: str) -> bytes:
        """The lease key of ``key``.

        Raises:
            ValueError: ``key`` is not valid UTF-8.
        """
        try:
            return lease_key(self.prefix + key)
        except UnicodeEncodeError as exc:
            raise bad_key(key, exc) from exc

    def _lease_request(self, key: str, ttl: float) -> tuple[bytes, str, int]:
        """``(lease key, new token, PX)`` for a lease on ``key`` lasting ``ttl`` seconds."""
        check_seconds("ttl", ttl)
        return self._lease_key(key), uuid.uuid4().hex, max(1, math.ceil(ttl * 1000.0))

    def _store_release(
        self, key: str, entry: Entry, token: str
    ) -> tuple[tuple[str, bytes], tuple[bytes, str, str]] | None:
        """The keys and arguments of the store-and-release script, or ``None`` when the
        entry and its lease live in two hash slots of a cluster (two calls then).

        Raises:
            ValueError, SerializationError: as :meth:`_record`.
        """  # noqa: D205 - the summary names both results
        skey = self.prefix + check_key(key)
        lkey = self._lease_key(key)
        if self._cluster and not same_slot(skey):
            return None
        data, px = self._record(entry)
        return (skey, lkey), (data, "" if px is None else str(px), token)

    def _touch_args(self, times: object) -> tuple[bytes, str, str]:
        """The arguments of the touch script: packed times, ``PX``, now.

        Raises:
            TypeError, ValueError: ``times`` is not four ordered instants.
        """
        entry = Entry(None, *checked_times(times))
        remaining = (entry.expires_at - self._now()) * 1000.0
        px = "" if remaining > PX_MAX else str(math.ceil(remaining))
        finite = _finite(entry)
        packed = struct.pack(
            "<4d", finite.stored_at, finite.fresh_until, finite.stale_until, finite.expires_at
        )
        return packed, px, repr(self._now())

    def _tag_keys(self, tags: object) -> list[bytes]:
        """The Redis keys of the sets of ``tags``; a bare str is refused.

        Raises:
            TypeError: ``tags`` is not a sequence of non-empty str.
            ValueError: a tag is not valid UTF-8.
        """
        names = checked_tags(tags)
        try:
            return [tag_key(self.prefix, tag) for tag in names]
        except UnicodeEncodeError as exc:
            raise bad_key(str(exc.object), exc) from exc

    def _scan_pattern(self, prefix: str) -> str:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        return glob_escape(self.prefix + prefix) + "*"

    def _scanned(self, raw: Sequence[bytes]) -> list[str]:
        """The cache keys of a ``SCAN`` page: the storage prefix cut, leases left out."""
        cut = len(self.prefix)
        out = []
        for skey in raw:
            if skey[:1] == LEASE_MARK:
                continue
            try:
                out.append(skey.decode()[cut:])
            except UnicodeDecodeError:
                continue
        return out

    def _corrupt_found(self, skey: str, exc: CorruptEntryError) -> None:
        self._counters["corrupt_entries"] += 1
        logger.warning("corrupt_entry", backend="redis", key=skey, error=str(exc))

    # -- errors and health --------------------------------------------------------------

    def _where(self) -> str:
        return self._location

    def _refused(self) -> StorageUnavailableError:
        """The error for a call while closed or DOWN (and restart a lost probe)."""
        health = self._health
        if health.closed:
            return StorageUnavailableError(f"{type(self).__name__} is closed")
        health.refused += 1
        self._probe.ensure()
        return StorageUnavailableError(
            f"Redis at {self._where()} is unavailable; calls resume once a background PING answers"
        )

    def _failure(self, exc: BaseException) -> StorageError | ValueError:
        """Map a driver exception to a storage error, turning DOWN on unavailability.

        A key redis-py could not encode (not valid UTF-8) is the caller's ``ValueError``.
        """
        if isinstance(exc, UnicodeEncodeError):
            return bad_key(str(exc.object), exc)
        if isinstance(exc, self._unavailable):
            if self._health.went_down():
                logger.warning(
                    "redis_unavailable",
                    backend="redis",
                    server=self._where(),
                    error=describe_error(exc),
                )
                self._probe.start()
            return StorageUnavailableError(
                f"Redis at {self._where()} failed: {describe_error(exc)}"
            )
        return StorageError(f"Redis at {self._where()} refused the command: {describe_error(exc)}")

    def _probe_answered(self) -> None:
        self._health.came_back()
        logger.info("redis_recovered", backend="redis", server=self._where())

    # -- shared public helpers -------------------------------------------------------------

    # -- cluster: health per node -------------------------------------------------------

    def _owner(self, skey: str | bytes) -> tuple[Any, _Health]:
        """The master owning ``skey``'s hash slot and its health; refused while it is DOWN.

        Read from redis-py's slot map, without I/O.

        Raises:
            StorageUnavailableError: the node is DOWN (no network call), or no node
                covers the slot.
        """
        client = self._client
        slot = client.keyslot(skey)
        owners = client.nodes_manager.slots_cache.get(slot)
        if not owners:
            self._health.refused += 1
            raise StorageUnavailableError(
                f"Redis cluster at {self._where()}: no node serves hash slot {slot}"
            )
        node = owners[0]
        health = self._nodes.get(node.name)
        if health is None:
            health = self._node_health(node.name)
        if health.blocked:
            health.refused += 1
            self._node_probe(node.name, health).ensure()
            raise StorageUnavailableError(
                f"Redis cluster node {node.name} is unavailable; its keys resume once a "
                "background probe of that node answers"
            )
        return node, health

    def _node_health(self, name: str) -> _Health:
        """The health of node ``name``, created on first use; at most MAX_NODES kept."""
        with self._health.lock:
            health = self._nodes.get(name)
            if health is None:
                if len(self._nodes) >= MAX_NODES:  # forget nodes that serve no slot now
                    serving = self._masters()
                    for gone in [n for n in self._nodes if n not in serving]:
                        self._nodes.pop(gone).close()
                        self._node_changes.pop(gone, None)
                health = _Health(self._health.initial, self._health.maximum)
                health.probe_object = None
                if len(self._nodes) < MAX_NODES:
                    self._nodes[name] = health
            return health

    def _masters(self) -> set[str]:
        """The names of the nodes owning a slot now (a walk of the slot map: rare calls)."""
        caches = list(self._client.nodes_manager.slots_cache.values())
        return {owners[0].name for owners in caches if owners}

    def _node_probe(self, name: str, health: _Health) -> Any:
        probe = health.probe_object
        if probe is None:
            probe = self._probe_class(
                health,
                lambda: self._probe_node(name),
                lambda: self._node_back(name, health),
                self._driver_errors,
                name=f"swr-redis-probe-{name}",
            )
            health.probe_object = probe
        return probe

    def _probe_node(self, name: str) -> Any:  # pragma: no cover - overridden by the shells
        raise NotImplementedError

    def _node_failure(self, name: str, health: _Health, exc: BaseException) -> Exception:
        """Map a driver error of node ``name``: DOWN (that node alone) on unavailability."""
        if not isinstance(exc, self._unavailable):
            return self._failure(exc)
        if health.went_down():
            self._node_changes[name] = _time.time()
            logger.warning(
                "redis_unavailable", backend="redis", server=name, error=describe_error(exc)
            )
            self._node_probe(name, health).start()
            self._all_down = self._masters() <= {n for n, h in self._nodes.items() if h.down}
        return StorageUnavailableError(f"Redis cluster node {name} failed: {describe_error(exc)}")

    def _node_back(self, name: str, health: _Health) -> None:
        """Node ``name`` answered its probe, or serves no slot any more (forgotten)."""
        health.came_back()
        self._all_down = False
        if name not in self._masters():  # failed over or resharded away: not a master now
            with self._health.lock:
                if self._nodes.get(name) is health:
                    del self._nodes[name]
                self._node_changes.pop(name, None)
            logger.info("redis_node_left", backend="redis", server=name)
            return
        self._node_changes[name] = _time.time()
        logger.info("redis_recovered", backend="redis", server=name)

    def _close_nodes(self) -> None:
        """Stop the probes of every cluster node (the storage is closing)."""
        for health in list(self._nodes.values()):
            health.close()
            if health.probe_object is not None:
                health.probe_object.cancel()

    def _slot_groups(self, skeys: Sequence[str]) -> dict[int, list[int]]:
        """The indexes of ``skeys`` grouped by hash slot (one ``MGET`` per slot)."""
        keyslot = self._client.keyslot
        groups: dict[int, list[int]] = {}
        for index, skey in enumerate(skeys):
            groups.setdefault(keyslot(skey), []).append(index)
        return groups

    def nodes(self) -> list[dict[str, Any]]:
        """The health of each cluster master met so far (at most ``MAX_NODES``).

        Each: ``address`` (``host:port``), ``up``, ``errors`` (failures that turned it
        DOWN or happened while DOWN), ``refused`` (calls answered at once while DOWN),
        ``recoveries`` and ``last_change`` (epoch seconds, 0 if never). Empty when not
        on a cluster.
        """
        return [
            {
                "address": name,
                "up": not health.down,
                "errors": health.failures,
                "refused": health.refused,
                "recoveries": health.recoveries,
                "last_change": self._node_changes.get(name, 0.0),
            }
            for name, health in sorted(self._nodes.items())
        ]

    @property
    def available(self) -> bool:
        """Whether calls currently go to Redis (open and not DOWN; on a cluster, at least
        one master up). Cheap, no I/O.
        """  # noqa: D205 - the cluster case is part of the summary
        return not (self._health.blocked or self._all_down)

    @property
    def client(self) -> Any:
        """The redis-py client this storage uses."""
        return self._client

    def stats(self) -> dict[str, int]:
        """Counters: ``corrupt_entries``, ``unavailable_errors`` (connection failures),
        ``refused`` (calls answered at once while DOWN), ``recoveries`` and ``available``;
        on a cluster also ``nodes_down`` and, per master met (at most ``MAX_NODES``),
        ``node <host:port> up`` (0/1) and ``node <host:port> errors``.
        """  # noqa: D205 - the list of counters is the summary
        health = self._health
        nodes = self._nodes.values()
        stats = {
            "corrupt_entries": self._counters["corrupt_entries"],
            "unavailable_errors": health.failures + sum(h.failures for h in nodes),
            "refused": health.refused + sum(h.refused for h in nodes),
            "recoveries": health.recoveries + sum(h.recoveries for h in nodes),
            "available": int(self.available),
        }
        if self._cluster:
            stats["nodes_down"] = sum(h.down for h in nodes)
            for node in self.nodes():  # at most MAX_NODES: bounded cardinality
                address = node["address"]
                stats[f"node {address} up"] = int(node["up"])
                stats[f"node {address} errors"] = node["errors"]
        return stats

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
    clients: ModuleType,
    *,
    cluster: bool,
    socket_timeout: float,
    connect_timeout: float,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Keyword arguments for redis-py's ``from_url``: short timeouts, one quick retry.

    redis-py retries ten times with backoff by default, which would multiply a dead
    server's cost; here only an immediate connection error (a pooled socket the server
    closed, a refused connect) is retried once, never a timeout. ``clients`` is
    ``redis`` or ``redis.asyncio``.
    """
    from redis.backoff import NoBackoff  # noqa: PLC0415 - optional dependency

    redis = _import_redis()
    # On a cluster, redis-py's own retries (with a 0.25 s sleep on CLUSTERDOWN) are off:
    # the storage sends each command straight to its node and judges health per node.
    retry = clients.retry.Retry(
        NoBackoff(), 0 if cluster else 1, supported_errors=(redis.exceptions.ConnectionError,)
    )
    kwargs: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": retry,
    }
    if not cluster:
        kwargs["retry_on_error"] = []
    kwargs.update(options)
    return kwargs


def connect(
    url: str,
    clients: ModuleType,
    *,
    cluster: bool,
    socket_timeout: float,
    connect_timeout: float,
    options: Mapping[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """A client of ``clients`` (``redis`` or ``redis.asyncio``) for ``url`` with short
    timeouts, and the settings its twin is built from.

    Raises:
        ImportError: redis-py is not installed.
        ValueError, TypeError: a timeout is not a positive number of seconds.
        StorageUnavailableError: a cluster whose nodes all fail to answer (the sync
            cluster client reads the slot map at once).
    """  # noqa: D205 - the summary names both results
    socket_t = check_seconds("socket_timeout", socket_timeout)
    connect_t = check_seconds("connect_timeout", connect_timeout)
    assert socket_t is not None  # noqa: S101 - checked
    assert connect_t is not None  # noqa: S101 - checked
    kwargs = _client_options(
        clients,
        cluster=cluster,
        socket_timeout=socket_t,
        connect_timeout=connect_t,
        options=options,
    )
    factory = clients.cluster.RedisCluster if cluster else clients.Redis
    twin = {
        "url": url,
        "cluster": cluster,
        "socket_timeout": socket_t,
        "connect_timeout": connect_t,
        "redis_options": dict(options),
    }
    redis = _import_redis()
    try:
        # A sync cluster client reads the slot map here: every node may be down.
        return factory.from_url(url, **kwargs), twin
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise StorageUnavailableError(
            f"Redis cluster cannot be reached: {describe_error(exc)}"
        ) from exc


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


class SyncTwin:
    """What only the synchronous storage has: :meth:`as_async`, its asyncio twin."""

    _clock: Callable[[], float] | None
    _codec: RecordCodec
    _health: _Health
    _cache: ReadCache[Any]
    _client: Any
    _redis: ModuleType
    _twin_options: dict[str, Any] | None
    prefix: str

    def as_async(self) -> AsyncRedisStorage:
        """Return the asyncio twin: the same server, prefix, serializer, clock and settings.

        The twin has its own ``redis.asyncio`` client (no thread hop) and its own health
        state; close it with ``aclose()``.

        Raises:
            TypeError: the client was passed in and its settings cannot be copied to an
                asyncio client (build :class:`AsyncRedisStorage` yourself then).
        """
        from swr.storage._async.redis import AsyncRedisStorage  # noqa: PLC0415 - cycle

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
