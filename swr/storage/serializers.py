"""Value serializers for byte storages (LMDB, Redis).

A serializer turns a value into bytes and back. Memory storages never use one: they
keep the objects themselves.

- :class:`MsgpackSerializer` (the default, inside :class:`ZstdSerializer`) is compact,
  fast and safe to read from stores others can write.
- :class:`JSONSerializer` for stores read by other languages or people.
- :class:`PickleSerializer` only when you pass it yourself: unpickling runs code chosen
  by whoever wrote the bytes, so never use it on a store others can write to.
- :class:`ZstdSerializer` wraps any of them and compresses large values.

``swr.serializers`` re-exports this module; it lives in ``storage`` because byte
storages need it and ``storage`` never imports ``swr``.
"""

from __future__ import annotations

import json
import pickle
import threading
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import msgpack
import zstandard

from swr.storage.errors import CorruptEntryError, SerializationError

__all__ = [
    "JSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "ZstdSerializer",
    "default_serializer",
]


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back.

    ``dumps`` raises :class:`~storage.errors.SerializationError` (a ``TypeError``) for a
    value it cannot encode; ``loads`` raises any exception for bytes it cannot decode
    (the storage then treats the record as corrupt). Both must be thread-safe.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by :meth:`dumps`."""
        ...


# Reused msgpack Packers, one per thread (a Packer is not thread-safe). A packer whose
# output exceeded _PACKER_KEEP bytes is dropped, so a thread keeps no large buffer.
_packers = threading.local()
_PACKER_KEEP = 1 << 20

# Extension type codes of MsgpackSerializer. They are part of the stored format:
# never renumber, only add.
_EXT_TUPLE = 1
_EXT_SET = 2
_EXT_FROZENSET = 3
_EXT_DATETIME = 4
_EXT_DATE = 5
_EXT_TIME = 6
_EXT_TIMEDELTA = 7
_EXT_UUID = 8
_EXT_DECIMAL = 9


class MsgpackSerializer:
    """msgpack with round trips for the common Python types msgpack lacks.

    What comes back as what:

    ============================== =========================================
    stored                         read back
    ============================== =========================================
    None, bool, int, float, str    the same (ints must fit in 64 bits)
    bytes, bytearray, memoryview   bytes
    list, dict                     list, dict (keys may be any of these types)
    tuple, set, frozenset          tuple, set, frozenset
    datetime (naive or aware)      datetime; an aware one keeps its UTC offset
                                   as a fixed ``timezone`` (zone names are lost)
    date, time, timedelta          the same
    uuid.UUID, decimal.Decimal     the same
    subclasses of str/int/float/   the base type (an ``IntEnum`` member comes
    list/dict (e.g. enums)         back as its ``int`` value)
    ============================== =========================================

    Anything else raises :class:`~storage.errors.SerializationError` naming the type.
    Thread-safe.
    """

    __slots__ = ()

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise ``SerializationError`` for an unsupported type."""
        # A Packer per thread, reused: msgpack.packb builds a new one (and its buffer)
        # on every call, which costs three times the packing of a small value.
        packer = _packers.__dict__.get("packer")
        if packer is None:
            packer = _packers.packer = msgpack.Packer(default=_msgpack_default, strict_types=True)
        try:
            packed: bytes = packer.pack(value)
        except BaseException as exc:
            _packers.packer = None  # never reuse a packer interrupted mid-value
            if isinstance(exc, SerializationError):
                raise
            if isinstance(exc, OverflowError):
                raise SerializationError(
                    "MsgpackSerializer cannot encode an integer outside the 64-bit range "
                    f"[-2**63, 2**64): {exc}"
                ) from exc
            if isinstance(exc, (TypeError, ValueError)):
                raise SerializationError(
                    f"MsgpackSerializer cannot encode the value: {exc}"
                ) from exc
            raise
        if len(packed) > _PACKER_KEEP:
            _packers.packer = None  # do not keep a grown buffer alive in this thread
        return packed

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by :meth:`dumps`."""
        return msgpack.unpackb(data, ext_hook=_msgpack_ext_hook, strict_map_key=False)

    def __repr__(self) -> str:
        return "MsgpackSerializer()"


def _pack_nested(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, default=_msgpack_default, strict_types=True)
    return packed


def _msgpack_default(obj: Any) -> Any:
    # strict_types sends tuples and subclasses of builtins here, so that tuples can
    # round-trip and enums or other subclasses are flattened on purpose.
    if isinstance(obj, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _pack_nested(list(obj)))
    if isinstance(obj, frozenset):
        return msgpack.ExtType(_EXT_FROZENSET, _pack_nested(list(obj)))
    if isinstance(obj, set):
        return msgpack.ExtType(_EXT_SET, _pack_nested(list(obj)))
    if isinstance(obj, datetime):
        return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, date):
        return msgpack.ExtType(_EXT_DATE, obj.isoformat().encode())
    if isinstance(obj, time):
        return msgpack.ExtType(_EXT_TIME, obj.isoformat().encode())
    if isinstance(obj, timedelta):
        return msgpack.ExtType(
            _EXT_TIMEDELTA, _pack_nested([obj.days, obj.seconds, obj.microseconds])
        )
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(_EXT_UUID, obj.bytes)
    if isinstance(obj, Decimal):
        return msgpack.ExtType(_EXT_DECIMAL, str(obj).encode())
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(obj)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, list):
        return list(obj)
    raise SerializationError(
        f"MsgpackSerializer cannot encode a value of type {type(obj).__module__}."
        f"{type(obj).__qualname__}; convert it to supported types first, or choose "
        "another serializer"
    )


def _unpack_nested(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_msgpack_ext_hook, strict_map_key=False)


_EXT_DECODERS: dict[int, Callable[[bytes], Any]] = {
    _EXT_TUPLE: lambda data: tuple(_unpack_nested(data)),
    _EXT_SET: lambda data: set(_unpack_nested(data)),
    _EXT_FROZENSET: lambda data: frozenset(_unpack_nested(data)),
    _EXT_DATETIME: lambda data: datetime.fromisoformat(data.decode()),
    _EXT_DATE: lambda data: date.fromisoformat(data.decode()),
    _EXT_TIME: lambda data: time.fromisoformat(data.decode()),
    _EXT_TIMEDELTA: lambda data: timedelta(*_unpack_nested(data)),
    _EXT_UUID: lambda data: uuid.UUID(bytes=bytes(data)),
    _EXT_DECIMAL: lambda data: Decimal(data.decode()),
}


def _msgpack_ext_hook(code: int, data: bytes) -> Any:
    decoder = _EXT_DECODERS.get(code)
    if decoder is None:
        raise ValueError(f"unknown msgpack extension type {code}")
    return decoder(data)


class JSONSerializer:
    """JSON (UTF-8), for stores shared with other languages.

    JSON has fewer types than Python: tuples come back as lists, dict keys as strings,
    and anything ``json`` cannot encode raises ``SerializationError`` unless ``default``
    converts it.

    Args:
        default: Optional ``json.dumps`` hook converting unsupported objects.
    """

    __slots__ = ("_default",)

    def __init__(self, default: Callable[[Any], Any] | None = None) -> None:
        self._default = default

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as compact UTF-8 JSON."""
        try:
            text = json.dumps(
                value, separators=(",", ":"), ensure_ascii=False, default=self._default
            )
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"JSONSerializer cannot encode the value: {exc}") from exc
        return text.encode()

    def loads(self, data: bytes) -> Any:
        """Decode UTF-8 JSON."""
        return json.loads(data)

    def __repr__(self) -> str:
        return "JSONSerializer()"


class PickleSerializer:
    """pickle: any picklable object, but UNSAFE for stores that others can write.

    Reading a pickle runs code chosen by whoever wrote the bytes. Use this only when
    every writer of the store is trusted (a private LMDB directory, a Redis no one else
    can write). The engine never picks it on its own.

    Args:
        protocol: The pickle protocol; the highest by default.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self._protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value``."""
        try:
            return pickle.dumps(value, protocol=self._protocol)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(f"PickleSerializer cannot encode the value: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle ``data``; only ever do this with bytes you wrote yourself."""
        return pickle.loads(data)  # noqa: S301 - chosen explicitly by the user, documented

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self._protocol})"


_RAW = 0
_ZSTD = 1


class ZstdSerializer:
    """Wraps a serializer and compresses its output with zstandard above a size.

    Output is one marker byte (raw or compressed) then the payload. Values smaller than
    ``threshold`` bytes are stored raw: compressing them costs more than it saves.
    Reading refuses to inflate a payload beyond ``max_size`` bytes, so a damaged or
    hostile record cannot exhaust memory.

    Args:
        inner: The serializer producing the bytes to compress; msgpack by default.
        threshold: Serialized size in bytes from which values are compressed.
        level: zstd compression level (1 fastest .. 22 smallest).
        max_size: Largest decompressed size accepted, in bytes.

    Raises:
        ValueError: ``threshold`` < 0, ``level`` outside 1..22 or ``max_size`` < 1.
    """

    __slots__ = ("_local", "inner", "level", "max_size", "threshold")

    def __init__(
        self,
        inner: Serializer | None = None,
        *,
        threshold: int = 1024,
        level: int = 3,
        max_size: int = 64 * 1024 * 1024,
    ) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0 bytes, got {threshold}")
        if not 1 <= level <= 22:
            raise ValueError(f"level must be between 1 and 22, got {level}")
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1 byte, got {max_size}")
        self.inner: Serializer = inner if inner is not None else MsgpackSerializer()
        self.threshold = threshold
        self.level = level
        self.max_size = max_size
        # zstd contexts are not safe for concurrent use: one pair per thread.
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor: zstandard.ZstdCompressor | None = getattr(self._local, "c", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(level=self.level)
            self._local.c = compressor
        return compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor: zstandard.ZstdDecompressor | None = getattr(self._local, "d", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.d = decompressor
        return decompressor

    def dumps(self, value: Any) -> bytes:
        """Serialize with the inner serializer, compressing if large enough to pay."""
        raw = self.inner.dumps(value)
        if len(raw) >= self.threshold:
            packed = self._compressor().compress(raw)
            if len(packed) < len(raw):
                return b"\x01" + packed
        return b"\x00" + raw

    def loads(self, data: bytes) -> Any:
        """Decompress if needed, refusing more than ``max_size`` bytes, then deserialize."""
        if not data:
            raise CorruptEntryError("empty payload")
        marker = data[0]
        if marker == _RAW:
            return self.inner.loads(data[1:])
        if marker != _ZSTD:
            raise CorruptEntryError(f"unknown compression marker {marker}")
        frame = data[1:]
        try:
            size = zstandard.frame_content_size(frame)
            if size > self.max_size:
                raise CorruptEntryError(
                    f"compressed value would inflate to {size} bytes, over max_size={self.max_size}"
                )
            raw = self._decompressor().decompress(frame, max_output_size=self.max_size)
        except zstandard.ZstdError as exc:
            raise CorruptEntryError(f"cannot decompress value: {exc}") from exc
        return self.inner.loads(raw)

    def __repr__(self) -> str:
        return (
            f"ZstdSerializer({self.inner!r}, threshold={self.threshold}, level={self.level}, "
            f"max_size={self.max_size})"
        )


def default_serializer() -> Serializer:
    """Return the serializer byte storages use unless told otherwise: zstd over msgpack."""
    return ZstdSerializer(MsgpackSerializer())
