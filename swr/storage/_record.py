"""The byte layout of an entry in byte storages (LMDB, Redis).

A record is a fixed header, the original key when the storage key is a digest, then
the serializer's payload::

    offset  size  field
    0       2     magic b"SW"
    2       1     format version (1)
    3       1     flags (none defined in version 1; any bit set is unreadable)
    4       32    stored_at, fresh_until, stale_until, expires_at (little-endian doubles)
    36      2     length n of the key check (little-endian unsigned)
    38      n     key check: the full UTF-8 key, present only when the storage key
                  is a digest of it, to detect digest collisions
    38+n    ...   payload: the value as written by the serializer

A fixed header decodes with one ``struct`` call, much cheaper than a msgpack array,
which keeps the read path of byte storages close to a raw ``get``. Anything that
does not match this layout exactly, carries an unknown version or flag, has times out
of order or a payload the serializer rejects is corrupt: :meth:`RecordCodec.decode`
raises :class:`~storage.errors.CorruptEntryError` and the storage deletes the record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from swr.storage.base import Entry
from swr.storage.errors import CorruptEntryError
from swr.storage.serializers import (
    MsgpackSerializer,
    Serializer,
    ZstdSerializer,
    _speedups_allowed,
)
from swr.storage.serializers import _unpackb as _UNPACKB

try:  # the optional C decoder of the common record; pure Python without it
    if not _speedups_allowed():
        raise ImportError("SWR_PURE_PYTHON is set")  # noqa: TRY301 - one fallback below
    from swr.storage._speedups import PlainDecoder, SeenKeys
except ImportError:
    PlainDecoder = None  # type: ignore[assignment,misc]
    SeenKeys = None  # type: ignore[assignment,misc]

SPEEDUPS = PlainDecoder is not None
"""Whether the common record is decoded in C (``swr.storage._speedups``)."""

__all__ = ["FORMAT_VERSION", "SPEEDUPS", "ReadCache", "RecordCodec", "digest_key"]

EntryFactory = Callable[[Any, float, float, float, float], Entry]

FORMAT_VERSION = 1
_MAGIC = b"SW"
_HEADER = struct.Struct("<2sBB4dH")
_HEADER_SIZE = _HEADER.size
_UNPACK_HEADER = _HEADER.unpack_from
_PACK_HEADER = _HEADER.pack
# The common record, read in one struct call: magic, version 1, no flags, four times,
# no key check (length 0) and an uncompressed payload (zstd marker 0).
# plain_decode (and its C form) tests a record with these; so does LMDB's in-place incr.
_PLAIN = struct.Struct("<4s4d3s")
UNPACK_PLAIN = _PLAIN.unpack_from
PLAIN_HEAD = _MAGIC + bytes((FORMAT_VERSION, 0))
PLAIN_TAIL = bytes(3)
PLAIN_SIZE = _PLAIN.size  # the header and the marker byte
_CHECK_LEN = struct.Struct("<H")
_INF = math.inf
_FLOAT_MAX = sys.float_info.max  # an infinite window as the Redis storages write it
# Entries are built on every read. Entry is a plain slotted dataclass (no validation,
# no __post_init__), so allocating it and filling its five slots here gives the same
# object as Entry(...) at about half the cost of calling its generated __init__.
_NEW_ENTRY = Entry.__new__


class RecordCodec:
    """Encodes entries to records and back with one serializer. Thread-safe.

    Args:
        serializer: Encodes the entry's value (the payload).
        factory: Builds the entries :meth:`decode` returns, from
            ``(value, stored_at, fresh_until, stale_until, expires_at)``; default
            :class:`~storage.Entry`. A storage handing entries to an engine builds the
            engine's entry type here, once per record read.
    """

    __slots__ = (
        "_factory",
        "_fast_max",
        "_hook",
        "_plain_limit",
        "_raw_msgpack",
        "plain_batch",
        "plain_decode",
        "serializer",
    )

    def __init__(self, serializer: Serializer, factory: EntryFactory | None = None) -> None:
        self.serializer = serializer
        self._factory = factory
        # Reads are the hot path of byte storages: with the default serializer an
        # uncompressed payload (marker 0) is unpacked here directly, skipping two
        # Python-level calls. The bytes read are exactly those the serializer reads, and
        # only payloads too short to break its bounds (a payload of n bytes holds at
        # most n objects) take this path; longer ones go through the serializer.
        self._raw_msgpack = False
        self._fast_max = 0  # the longest record remainder (marker + payload) unpacked here
        self._hook = None
        if type(serializer) is ZstdSerializer and type(serializer.inner) is MsgpackSerializer:
            inner = serializer.inner
            self._raw_msgpack = True
            self._fast_max = min(inner.max_objects, serializer.max_size) + 1
            self._hook = inner._ext_hook
        self._plain_limit = self.plain_max
        self.plain_decode: Callable[[bytes], Entry | None] = self._decode_plain
        """The entry of a common record (see :attr:`plain_max`), or ``None``.

        Returns the entry :meth:`decode` would return for a common record no longer than
        :attr:`plain_max`, and ``None`` for any other bytes (also when its payload does
        not unpack): those go to :meth:`decode` for the verdict. The hot read paths of
        the byte storages call it; it runs in C (``swr.storage._speedups``) when built.
        """
        self.plain_batch: Callable[
            [list[str], list[bytes | None], dict[str, Any], float, set[str] | SeenKeys | None, int],
            tuple[list[Entry | None], list[int], list[int]],
        ] = self._plain_batch
        """One pass of :attr:`plain_decode` over a batch read, with its read cache.

        ``plain_batch(keys, records, known, now, seen, span)`` returns ``(entries,
        keep, rest)``; see :meth:`_plain_batch`, the rule it follows (in C when built).
        """
        if PlainDecoder is not None and self._raw_msgpack:
            decoder = PlainDecoder(
                _UNPACKB,
                self._hook,
                self._plain_limit,
                Entry if factory is None else factory,
                _none_slots(Entry if factory is None else factory),
            )
            self.plain_decode = decoder.decode
            self.plain_batch = decoder.decode_batch

    def encode(self, entry: Entry, key_check: bytes = b"") -> bytes:
        """Return the record of ``entry``.

        Raises:
            TypeError: ``entry`` is not an :class:`~storage.Entry`.
            ValueError: its times are not ordered, are NaN, or ``stored_at`` is not
                finite (the record could not be read back). An infinite ``expires_at``
                (and windows) is kept: an entry that never expires.
            SerializationError: the serializer cannot encode the value.
        """
        if not isinstance(entry, Entry):
            raise TypeError(f"expected an Entry, got {type(entry).__name__}")
        stored, fresh, stale, expires = (
            entry.stored_at,
            entry.fresh_until,
            entry.stale_until,
            entry.expires_at,
        )
        # Written so that NaN (false in every comparison) is refused too.
        if not (-_INF < stored <= fresh <= stale <= expires and stored < _INF):
            raise ValueError(
                "entry times must be ordered stored_at <= fresh_until <= stale_until <= "
                f"expires_at, with no NaN and a finite stored_at, got {stored}, {fresh}, "
                f"{stale}, {expires}"
            )
        payload = self.serializer.dumps(entry.value)
        header = _PACK_HEADER(
            _MAGIC, FORMAT_VERSION, 0, stored, fresh, stale, expires, len(key_check)
        )
        if key_check:
            return b"".join((header, key_check, payload))
        return header + payload

    def decode_times(self, data: bytes) -> tuple[float, float, float, float]:
        """Return ``(stored_at, fresh_until, stale_until, expires_at)`` without the payload.

        Sweeps and inspections use this to judge a record without deserializing it.

        Raises:
            CorruptEntryError: the header is not a valid version-1 header.
        """
        stored, fresh, stale, expires, _ = _parse_header(data)
        return stored, fresh, stale, expires

    def decode(self, data: bytes, key_check: bytes = b"") -> Entry:
        """Return the entry stored in ``data``.

        Args:
            data: The record bytes.
            key_check: The full key when the storage key is a digest; must match.

        Raises:
            CorruptEntryError: the record is damaged, foreign, of another version, was
                written for another key, or its payload does not deserialize.
        """
        try:
            magic, version, flags, stored, fresh, stale, expires, check_len = _UNPACK_HEADER(data)
        except struct.error:
            _parse_header(data)  # raises the precise error
            raise  # pragma: no cover - _parse_header always raises here
        # One combined test on the hot path; _parse_header says what is wrong.
        if (
            magic != _MAGIC
            or version != FORMAT_VERSION
            or flags
            or not (stored <= fresh <= stale <= expires and -_INF < stored < _INF)
        ):
            _parse_header(data)
        start = _HEADER_SIZE + check_len
        if check_len or key_check:
            if len(data) < start:
                raise CorruptEntryError("record is shorter than its key check")
            if data[_HEADER_SIZE:start] != key_check:
                raise CorruptEntryError("record belongs to another key (digest collision)")
        try:
            if self._raw_msgpack and data[start] == 0 and len(data) - start <= self._fast_max:
                # What MsgpackSerializer.loads does, called directly (a partial would
                # rebuild its keyword dict on every call).
                value = _UNPACKB(data[start + 1 :], ext_hook=self._hook, strict_map_key=False)
            else:
                value = self.serializer.loads(data[start:])
        except CorruptEntryError:
            raise
        except Exception as exc:
            raise CorruptEntryError(
                f"payload does not deserialize: {type(exc).__name__}: {exc}"
            ) from exc
        return self._build(value, stored, fresh, stale, expires)

    def _decode_plain(self, data: bytes) -> Entry | None:
        """:attr:`plain_decode` in Python: the rule the C decoder follows."""
        if not PLAIN_SIZE <= len(data) <= self._plain_limit:
            return None
        head, stored, fresh, stale, expires, tail = UNPACK_PLAIN(data)
        if not (
            head == PLAIN_HEAD
            and tail == PLAIN_TAIL
            and -_INF < stored <= fresh <= stale <= expires
            and stored < _INF
        ):
            return None
        try:
            # What MsgpackSerializer.loads does, called directly (see decode).
            value = _UNPACKB(data[PLAIN_SIZE:], ext_hook=self._hook, strict_map_key=False)
        except Exception:  # noqa: BLE001 - decode gives the verdict
            return None
        return self._build(value, stored, fresh, stale, expires)

    def _plain_batch(
        self,
        keys: list[str],
        records: list[bytes | None],
        known: dict[str, Any],
        now: float,
        seen: KeySet | None,
        span: int,
    ) -> tuple[list[Entry | None], list[int], list[int]]:
        """:attr:`plain_batch` in Python: the rule the C decoder follows.

        For the records of ``keys`` (``None``: absent), given a read cache (see
        :class:`ReadCache`): ``known``, its items (key to ``(record, entry)``), and
        ``seen``, its set of keys decoded lately and not kept (``None`` while it is not
        full: then every key decoded is kept), with ``span``, its size limit:

        - ``entries``: the live entry of each record, ``None`` for an absent or dead one
          and for those in ``rest``. A record whose very bytes ``known`` holds gives
          the entry held there, and is not decoded again;
        - ``keep``: the positions of the entries decoded and alive to keep in the cache,
          in order: those of keys it holds, and those :meth:`ReadCache.wants`, whose
          rule is applied here to ``seen`` key by key;
        - ``rest``: the positions the caller decides: the records :attr:`plain_decode`
          does not decode (``entries`` holds ``None``: :meth:`decode` gives the
          verdict), and the live entries whose ``expires_at`` is the largest float
          (``entries`` holds the entry: a window written finite by the Redis storages).
        """
        entries: list[Entry | None] = [None] * len(records)
        keep: list[int] = []
        rest: list[int] = []
        decode = self.plain_decode
        get = known.get
        for index, data in enumerate(records):
            if data is None:
                continue
            key = keys[index]
            cached = get(key)
            if cached is not None and cached[0] == data:
                hit: Entry = cached[1]
                if hit.expires_at > now:
                    entries[index] = hit
                continue
            entry = decode(data)
            if entry is None:
                rest.append(index)
                continue
            if entry.expires_at <= now:
                continue
            entries[index] = entry
            if entry.expires_at == _FLOAT_MAX:
                rest.append(index)
            elif seen is None or cached is not None:
                keep.append(index)
            elif key in seen:  # ReadCache.wants once the cache is full: a second read
                seen.discard(key)
                keep.append(index)
            else:
                if len(seen) >= span:
                    seen.clear()
                seen.add(key)
        return entries, keep, rest

    def _build(
        self, value: Any, stored: float, fresh: float, stale: float, expires: float
    ) -> Entry:
        """The entry of a decoded record: the factory's, or an Entry built slot by slot."""
        if self._factory is not None:
            return self._factory(value, stored, fresh, stale, expires)
        entry = _NEW_ENTRY(Entry)
        entry.value = value
        entry.stored_at = stored
        entry.fresh_until = fresh
        entry.stale_until = stale
        entry.expires_at = expires
        return entry

    def decode_many(
        self, records: Sequence[bytes | None], now: float
    ) -> tuple[list[Entry | None], list[tuple[int, CorruptEntryError]]]:
        """Decode a batch of records (no key checks), ``None`` for absent or dead ones.

        Each record as :meth:`decode` would. (The Redis storages' batch read makes its
        own pass over an ``MGET`` reply, with :attr:`plain_decode` and the read cache.)

        Args:
            records: Record bytes, ``None`` where the key was absent.
            now: Epoch seconds; an entry with ``expires_at <= now`` reads as ``None``.

        Returns:
            The entries in order, and ``(index, error)`` of each corrupt record (read
            as ``None`` in the entries).
        """
        entries: list[Entry | None] = []
        corrupt: list[tuple[int, CorruptEntryError]] = []
        append = entries.append
        decode = self.decode
        for index, data in enumerate(records):
            if data is None:
                append(None)
                continue
            try:
                entry = decode(data)
            except CorruptEntryError as exc:
                corrupt.append((index, exc))
                append(None)
                continue
            append(entry if entry.expires_at > now else None)
        return entries, corrupt

    @property
    def plain_max(self) -> int:
        """The longest record :attr:`plain_decode` decodes (a common record); 0 if none.

        Such a record has no key check and an uncompressed msgpack payload short enough
        that the serializer's bounds cannot be crossed: unpacking its payload with
        ``msgpack.unpackb(payload, ext_hook=codec.ext_hook, strict_map_key=False)`` reads
        exactly what :meth:`decode` would.
        """
        return self._fast_max + _HEADER_SIZE if self._raw_msgpack else 0

    @property
    def ext_hook(self) -> Any:
        """The msgpack ext hook of the default serializer (see :attr:`plain_max`)."""
        return self._hook

    def decoded_size(self, data: bytes) -> int:
        """The serialized size of the value in a record :meth:`decode` accepted.

        The uncompressed payload's length (bounded by the serializer's limits when the
        frame does not say); the objects decoded from it hold at most that many
        elements, so this bounds the decoded value where the record size does not.
        """
        start: int = _HEADER_SIZE + _CHECK_LEN.unpack_from(data, _HEADER_SIZE - 2)[0]
        serializer = self.serializer
        if type(serializer) is ZstdSerializer:
            return serializer.decoded_size(data, start)
        return len(data) - start


T = TypeVar("T")


class KeySet(Protocol):
    """What the read cache's admission uses of its set of keys seen lately."""

    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def add(self, key: str, /) -> None: ...
    def discard(self, key: str, /) -> None: ...
    def clear(self) -> None: ...


class ReadCache(Generic[T]):
    """Decoded records of a byte storage, kept per key and checked against the bytes read.

    A storage reads the record of a key, and hands out the entry cached for that key
    only if it was decoded from the very same bytes; so a value changed by any process
    or host is never served from here, and a hot key is decoded once. Holds at most
    ``limit`` keys (the oldest insertion goes first) of values whose serialized form
    (decompressed, :meth:`RecordCodec.decoded_size`) is at most ``DECODED_MAX`` bytes:
    admitting by record size would let a small compressed record keep a huge value
    resident. Thread-safe: lookups are plain dict reads.

    Args:
        limit: Most keys kept; 0 keeps none.
        room: Below this many keys, every key decoded is kept (see :meth:`wants`);
            default ``limit``. Fixed once the cache is made (the C admission holds it).
    """

    __slots__ = ("admits", "get", "items", "limit", "lock", "pop", "room", "seen", "span")

    DECODED_MAX = 64 * 1024  # larger values are decoded on every read
    SEEN_SPAN = 2  # how many times ``limit`` first reads a second read must come within

    def __init__(self, limit: int, room: int | None = None) -> None:
        self.limit = limit
        self.items: dict[str, T] = {}
        self.get = self.items.get
        self.pop = self.items.pop
        self.lock = threading.Lock()
        # Below this many keys, every key decoded is kept (default: limit).
        self.room = limit if room is None else room
        self.span = self.SEEN_SPAN * limit  # the most keys ``seen`` holds
        # Keys decoded lately but not kept (see wants): their hashes in C when built
        # (SeenKeys keeps no key string alive), else a set of them.
        self.seen: set[str] | SeenKeys
        self.admits: Callable[[str], bool]
        """:meth:`wants`, in C when built (``SeenKeys.admits``, on this cache's items)."""
        if SPEEDUPS:
            self.seen = SeenKeys(self.span, self.items, self.room)
            self.admits = self.seen.admits
        else:
            self.seen = set()
            self.admits = self.wants

    def __len__(self) -> int:
        return len(self.items)

    def wants(self, key: str) -> bool:
        """Whether to keep the record of ``key`` just decoded (not in the cache).

        Always while the cache holds fewer than ``room`` keys. Once full, only a key
        decoded a second time within the last ``SEEN_SPAN * limit`` keys decoded and not
        kept: a working set larger than the cache, read in no particular order, then
        costs no insertion and eviction per read (each evicting a cold decoded value, to
        be evicted itself before its next read), while a hot key gets in on its second
        read.
        """
        if len(self.items) < self.room:
            return True
        seen = self.seen
        if key in seen:
            seen.discard(key)
            return True
        if len(seen) >= self.span:
            seen.clear()
        seen.add(key)
        return False

    def remember(self, pairs: Iterable[tuple[str, T]]) -> None:
        """Keep ``(key, item)`` pairs, dropping the oldest keys beyond ``limit``."""
        items, limit = self.items, self.limit
        with self.lock:
            items.update(pairs)
            # Oldest insertion first: cheap, and a hot key comes back on its next read.
            # Writers pop keys without the lock, so iterating may fail: then the next
            # call trims.
            with contextlib.suppress(RuntimeError, StopIteration):
                while len(items) > limit:
                    items.pop(next(iter(items)), None)


def _none_slots(factory: EntryFactory) -> tuple[str, ...] | None:
    """The slots besides Entry's five that ``factory(value, *times)`` sets to ``None``.

    ``None`` when the factory is not a class the C decoder may build slot by slot: a
    slotted dataclass deriving from :class:`~storage.Entry`, with the generated
    ``__init__``, no ``__post_init__``, no ``__new__`` and every other field an
    ``init`` field defaulting to ``None``. The decoder then calls the factory.
    """
    if not (isinstance(factory, type) and issubclass(factory, Entry)):
        return None
    if "__dict__" in dir(factory):  # not slotted all the way
        return None
    if hasattr(factory, "__post_init__") or factory.__new__ is not object.__new__:
        return None
    init = factory.__init__
    code = getattr(init, "__code__", None)
    generated = (  # by @dataclass for this very class, not written by hand nor inherited
        getattr(init, "__qualname__", None) == f"{factory.__qualname__}.__init__"
        and getattr(code, "co_filename", None) == "<string>"
    )
    if not generated:
        return None
    extra: list[str] = []
    for field in dataclasses.fields(factory)[5:]:
        if not field.init or field.default is not None:
            return None
        extra.append(field.name)
    if [field.name for field in dataclasses.fields(factory)[:5]] != [
        "value",
        "stored_at",
        "fresh_until",
        "stale_until",
        "expires_at",
    ]:
        return None
    return tuple(extra)


def _parse_header(data: bytes) -> tuple[float, float, float, float, int]:
    if len(data) < _HEADER_SIZE:
        raise CorruptEntryError(f"record of {len(data)} bytes is shorter than its header")
    magic, version, flags, stored, fresh, stale, expires, check_len = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise CorruptEntryError("record does not start with the swr magic bytes")
    if version != FORMAT_VERSION:
        raise CorruptEntryError(f"record format version {version} is not supported")
    if flags:
        raise CorruptEntryError(f"record has unknown flags {flags:#04x}")
    # Written in this order so NaN (which fails every comparison) is rejected too.
    if not (stored <= fresh <= stale <= expires and -math.inf < stored < math.inf):
        raise CorruptEntryError("record times are not finite and ordered")
    return stored, fresh, stale, expires, check_len


def digest_key(key: str, limit: int) -> tuple[bytes, bytes]:
    """Map ``key`` to a storage key of at most ``limit`` bytes and its key check.

    Keys that fit are used as they are (UTF-8) with an empty check. Longer keys keep a
    readable prefix followed by a BLAKE2b digest of the whole key; the full key is then
    the check stored inside the record, so a digest collision reads as corrupt, never as
    another key's value.
    """
    raw = key.encode()
    if len(raw) <= limit:
        return raw, b""
    digest = b"#" + hashlib.blake2b(raw, digest_size=32).hexdigest().encode()
    return raw[: limit - len(digest)] + digest, raw
