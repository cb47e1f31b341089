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

import hashlib
import math
import struct

from storage.base import Entry
from storage.errors import CorruptEntryError
from storage.serializers import Serializer

__all__ = ["FORMAT_VERSION", "RecordCodec", "digest_key"]

FORMAT_VERSION = 1
_MAGIC = b"SW"
_HEADER = struct.Struct("<2sBB4dH")
_HEADER_SIZE = _HEADER.size


class RecordCodec:
    """Encodes entries to records and back with one serializer. Thread-safe.

    Args:
        serializer: Encodes the entry's value (the payload).
    """

    __slots__ = ("serializer",)

    def __init__(self, serializer: Serializer) -> None:
        self.serializer = serializer

    def encode(self, entry: Entry, key_check: bytes = b"") -> bytes:
        """Return the record of ``entry``.

        Raises:
            SerializationError: the serializer cannot encode the value.
        """
        payload = self.serializer.dumps(entry.value)
        header = _HEADER.pack(
            _MAGIC,
            FORMAT_VERSION,
            0,
            entry.stored_at,
            entry.fresh_until,
            entry.stale_until,
            entry.expires_at,
            len(key_check),
        )
        return b"".join((header, key_check, payload))

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
        stored, fresh, stale, expires, check_len = _parse_header(data)
        start = _HEADER_SIZE + check_len
        if check_len or key_check:
            if len(data) < start:
                raise CorruptEntryError("record is shorter than its key check")
            if data[_HEADER_SIZE:start] != key_check:
                raise CorruptEntryError("record belongs to another key (digest collision)")
        try:
            value = self.serializer.loads(data[start:])
        except CorruptEntryError:
            raise
        except Exception as exc:
            raise CorruptEntryError(
                f"payload does not deserialize: {type(exc).__name__}: {exc}"
            ) from exc
        return Entry(value, stored, fresh, stale, expires)


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
    if not (stored <= fresh <= stale <= expires < math.inf and stored > -math.inf):
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
