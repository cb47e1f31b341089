"""Value serializers for byte storages (LMDB, Redis).

A serializer turns a value into bytes and back. Memory storages never use one: they
keep the objects themselves.

- :class:`MsgpackSerializer` (the default, inside :class:`ZstdSerializer`) is compact,
  fast and safe to read from stores others can write: decoding is bounded in depth and
  objects, so a hostile record is refused as corrupt rather than crashing or exhausting
  the reader.
- :class:`JSONSerializer` for stores read by other languages or people.
- :class:`PickleSerializer` only when you pass it yourself: unpickling runs code chosen
  by whoever wrote the bytes, so never use it on a store others can write to.
- :class:`ZstdSerializer` wraps any of them and compresses large values.

``swr.serializers`` re-exports this module; it lives in ``storage`` because byte
storages need it and ``storage`` never imports ``swr``.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import os
import pickle
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgpack
import zstandard

from swr.storage._validate import check_int
from swr.storage.errors import CorruptEntryError, SerializationError

__all__ = [
    "JSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "ZstdSerializer",
    "default_serializer",
]

_T = TypeVar("_T")


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back.

    ``dumps`` raises :class:`~storage.errors.SerializationError` (a ``TypeError``) for a
    value it cannot encode or would not give back equal and of the same type; ``loads``
    raises :class:`~storage.errors.CorruptEntryError` (or any exception: the storage then
    treats the record as corrupt) for bytes it cannot decode. Whatever ``dumps``
    accepts, ``loads`` must read back. Both must be thread-safe.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by :meth:`dumps`."""
        ...


# A thread keeps its reused Packer or nested Unpacker only while its buffer stays below
# this size, so no thread holds on to a large buffer.
_BUFFER_KEEP = 1 << 20

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
_EXT_REGISTERED = 10  # [name, fields] of a type registered on the serializer

# Tuples, sets, frozensets, timedeltas and registered types are extensions whose payload
# is itself msgpack, decoded by a nested unpacker: each level costs C stack (about
# 2 KiB with a heap-allocated Unpacker; 40 KiB with msgpack.unpackb, which crashed a
# reader at 195 levels on an 8 MiB stack). No setting may go past this ceiling.
MAX_DEPTH_CEILING = 128
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_OBJECTS = 1 << 21
# msgpack's own bound on lists and maps nested inside one another (between two extension
# levels): its packer refuses deeper values and its unpacker refuses deeper bytes.
MSGPACK_NESTING = 1024


_MSGPACK_UNPACKB: Callable[..., Any] = msgpack.unpackb


def _speedups_allowed() -> bool:
    """Whether ``swr.storage._speedups`` may be used (the storage layer's one test).

    Not when ``SWR_PURE_PYTHON`` is set to anything but ``0``.
    """
    return os.environ.get("SWR_PURE_PYTHON", "") in ("", "0")


def _speedup(module: str, name: str) -> Any:
    """``name`` from the optional C extension ``module``, or ``None``.

    ``None`` where the extension was not built, or with ``SWR_PURE_PYTHON`` set (see
    :func:`_speedups_allowed`): the caller keeps its Python form.
    """
    if not _speedups_allowed():
        return None
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        return None


def _fast_unpackb() -> Callable[..., Any]:
    """``msgpack.unpackb``, or its drop-in in C (``swr.storage._speedups``) when built.

    The C form decodes the common values itself, the keys of maps shared (a document's
    repeated keys are built once), and hands everything else to ``msgpack.unpackb`` with
    the same arguments: the same results, the same errors. ``SWR_PURE_PYTHON=1`` keeps
    msgpack's.
    """
    unpackb = _speedup("swr.storage._speedups", "unpackb")
    return _MSGPACK_UNPACKB if unpackb is None else unpackb


_unpackb = _fast_unpackb()


class MsgpackSerializer:
    """msgpack with round trips for the common Python types msgpack lacks.

    Every value either reads back equal and of the same type, or is refused by
    :meth:`dumps` with :class:`~storage.errors.SerializationError` naming the type or
    the limit. What round-trips:

    ============================== =========================================
    type (exactly; not subclasses) read back
    ============================== =========================================
    None, bool, int, float, str    the same (ints must fit in 64 bits)
    bytes                          bytes
    bytearray, memoryview          bytes (the one conversion: msgpack packs them
                                   natively, so they read back equal, as bytes)
    list, dict                     list, dict (keys may be any of these types)
    tuple, set, frozenset          tuple, set, frozenset
    datetime (naive or aware)      datetime; an aware one keeps its UTC offset
                                   as a fixed ``timezone`` (zone names are lost)
    date, time, timedelta          the same
    uuid.UUID, decimal.Decimal     the same
    registered named tuples,       the same type, rebuilt field by field
    dataclasses and enums          (see ``types`` and :meth:`register`)
    ============================== =========================================

    Refused: every other type, including subclasses of the types above that are not
    registered (an ``IntEnum`` member, an ``OrderedDict``, an unregistered named
    tuple or dataclass).

    Bounds, the same when writing and reading so a stored value can always be read back
    and a hostile record cannot exhaust a reader:

    - ``max_depth``: tuples, sets, frozensets, timedeltas and registered types nest at
      most this deep inside one another (lists and dicts between them do not count;
      they nest at most 1024 deep, msgpack's own bound). Past 4 levels, such an
      extension may hold at most 64 KiB.
    - ``max_objects``: at most this many objects in a value (elements, keys and values
      of every container). A payload of ``n`` bytes holds at most ``n`` objects, so
      only payloads longer than ``max_objects`` bytes are counted.

    Args:
        types: Named tuples, dataclasses and enums to round-trip. A registered type is
            stored under its name (``module.qualname``); reading never imports a class
            named in the bytes, it only looks the name up in this registry.
        max_depth: Most nested extension levels, 1 to 128.
        max_objects: Most objects in one value, at least 1.

    Raises:
        ValueError: a limit is out of range, or a type cannot be registered.

    Thread-safe; register types before sharing the serializer between threads.
    """

    __slots__ = (
        "_by_name",
        "_by_type",
        "_default",
        "_ext_hook",
        "_local",
        "max_depth",
        "max_objects",
    )

    def __init__(
        self,
        types: Iterable[type] = (),
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_objects: int = DEFAULT_MAX_OBJECTS,
    ) -> None:
        check_int("max_depth", max_depth, 1, MAX_DEPTH_CEILING)
        check_int("max_objects", max_objects, 1)
        self.max_depth = max_depth
        self.max_objects = max_objects
        self._by_type: dict[type, _Registered] = {}
        self._by_name: dict[str, _Registered] = {}
        self._local = threading.local()  # the packer each thread reuses
        self._default = self._defaults()
        self._ext_hook = self._hooks(None)
        for cls in types:
            self.register(cls)

    def register(self, cls: type[_T], *, name: str | None = None) -> type[_T]:
        """Round-trip instances of ``cls``, a named tuple, dataclass or enum class.

        Returns ``cls``, so this works as a class decorator. Instances are stored
        under ``name`` (``module.qualname`` by default); every reader of the store must
        register the class under the same name. Only the exact class round-trips; its
        subclasses must be registered too.

        Raises:
            ValueError: ``cls`` is none of these kinds, or the name or class is taken.
        """
        if not isinstance(cls, type):
            raise TypeError(f"register() takes a class, got {type(cls).__name__}")
        label = name if name is not None else f"{cls.__module__}.{cls.__qualname__}"
        if cls in self._by_type:
            raise ValueError(f"{label} is already registered")
        if label in self._by_name:
            raise ValueError(f"the name {label!r} is already registered for another type")
        entry = _Registered.of(cls, label)
        self._by_type[cls] = entry
        self._by_name[label] = entry
        return cls

    # -- writing ----------------------------------------------------------------------

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``.

        Raises:
            SerializationError: a type it cannot round-trip (named), an integer outside
                64 bits, or a value beyond ``max_depth`` / ``max_objects``.
        """
        local = self._local
        # A Packer per thread, reused: msgpack.packb builds a new one (and its buffer)
        # on every call, which costs three times the packing of a small value.
        packer = local.__dict__.get("packer")
        if packer is None:
            packer = local.packer = msgpack.Packer(default=self._default, strict_types=True)
        try:
            packed: bytes = packer.pack(value)
        except BaseException as exc:
            local.packer = None  # never reuse a packer interrupted mid-value
            error = _encode_error(exc)
            if error is exc:
                raise
            raise error from exc
        if len(packed) > _BUFFER_KEEP:
            local.packer = None  # do not keep a grown buffer alive in this thread
        if len(packed) > self.max_objects:
            # Only a payload this long can hold more objects than allowed: count them
            # the way a reader will, so nothing stored is refused when read.
            try:
                self._loads_counted(packed)
            except Exception as exc:
                raise SerializationError(
                    f"MsgpackSerializer cannot store the value: {exc}"
                ) from exc
        return packed

    def _defaults(self) -> Callable[[Any], Any]:
        """The ``default`` hook of depth 0 of the chain the writer packs with.

        As on reading, one hook per depth: the hook of depth d packs an extension's
        content with the hook of depth d + 1, and the hook of max_depth refuses them.
        """
        default: Callable[[Any], Any] | None = None
        for depth in range(self.max_depth, -1, -1):
            default = self._default_at(depth, default)
        assert default is not None  # noqa: S101 - max_depth >= 1
        return default

    def _default_at(self, depth: int, deeper: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
        by_type = self._by_type
        max_depth = self.max_depth
        large_refused = depth >= _LARGE_LEVELS

        def pack(value: Any) -> bytes:
            if deeper is None:
                raise SerializationError(
                    "MsgpackSerializer cannot store the value: tuples, sets, frozensets, "
                    f"timedeltas or registered types nest more than max_depth={max_depth} "
                    "levels deep"
                )
            packed: bytes = msgpack.packb(value, default=deeper, strict_types=True)
            if large_refused and len(packed) > _LARGE_NESTED:
                raise SerializationError(
                    "MsgpackSerializer cannot store the value: an extension (tuple, set, "
                    f"...) of over {_LARGE_NESTED} bytes nests inside {_LARGE_LEVELS} or "
                    "more others"
                )
            return packed

        def default(obj: Any) -> Any:
            # strict_types sends every type but the exact builtins here.
            kind = type(obj)
            if kind is tuple:
                return msgpack.ExtType(_EXT_TUPLE, pack(list(obj)))
            if kind is frozenset:
                return msgpack.ExtType(_EXT_FROZENSET, pack(list(obj)))
            if kind is set:
                return msgpack.ExtType(_EXT_SET, pack(list(obj)))
            if kind is datetime:
                return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())
            if kind is date:
                return msgpack.ExtType(_EXT_DATE, obj.isoformat().encode())
            if kind is time:
                return msgpack.ExtType(_EXT_TIME, obj.isoformat().encode())
            if kind is timedelta:
                return msgpack.ExtType(
                    _EXT_TIMEDELTA, pack([obj.days, obj.seconds, obj.microseconds])
                )
            if kind is uuid.UUID:
                return msgpack.ExtType(_EXT_UUID, obj.bytes)
            if kind is Decimal:
                return msgpack.ExtType(_EXT_DECIMAL, str(obj).encode())
            registered = by_type.get(kind)
            if registered is not None:
                return msgpack.ExtType(
                    _EXT_REGISTERED, pack([registered.name, registered.fields(obj)])
                )
            if kind is int:  # msgpack hands over the ints it cannot pack
                raise SerializationError(
                    "MsgpackSerializer cannot encode an integer outside the 64-bit range "
                    f"[-2**63, 2**64): {obj}"
                )
            raise SerializationError(_unsupported(kind))

        return default

    # -- reading ----------------------------------------------------------------------
    #
    # Extension payloads are msgpack themselves. Instead of one ext hook tracking the
    # depth in thread-local state, there is one hook per depth: the hook of depth d
    # decodes nested payloads with the hook of depth d + 1, and the hook of max_depth
    # refuses them. The chain is built once (and once per counted decode).

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by :meth:`dumps`.

        Raises:
            CorruptEntryError: the bytes are not such a value, or are beyond the bounds.
        """
        try:
            if len(data) <= self.max_objects:
                return _unpackb(data, ext_hook=self._ext_hook, strict_map_key=False)
            return self._loads_counted(data)
        except CorruptEntryError:
            raise
        except Exception as exc:
            raise CorruptEntryError(
                f"msgpack payload does not decode: {type(exc).__name__}: {exc}"
            ) from exc

    def _loads_counted(self, data: bytes) -> Any:
        """Decode while counting objects, for payloads that could hold too many."""
        options = _Counter(self.max_objects).options()
        hook = self._hooks(options)
        try:
            return _unpackb(data, ext_hook=hook, **options)
        except ValueError as exc:
            if "exceeds max_" not in str(exc):  # msgpack's max_array_len / max_map_len
                raise
            raise ValueError(
                f"the value holds more than max_objects={self.max_objects} objects: {exc}"
            ) from exc

    def _hooks(self, options: dict[str, Any] | None) -> Callable[[int, bytes], Any]:
        """The ext hook of depth 0 of a chain decoding with ``options`` (counting)."""
        hook: Callable[[int, bytes], Any] | None = None
        for depth in range(self.max_depth, -1, -1):
            hook = self._hook_at(depth, hook, options)
        assert hook is not None  # noqa: S101 - max_depth >= 1
        return hook

    def _hook_at(
        self,
        depth: int,
        deeper: Callable[[int, bytes], Any] | None,
        options: dict[str, Any] | None,
    ) -> Callable[[int, bytes], Any]:
        nested = _nested_decoder(depth, deeper, options, self.max_depth)
        by_name = self._by_name

        def listed(data: bytes) -> list[Any]:
            items = nested(data)
            if type(items) is not list:
                raise ValueError(f"extension payload is a {type(items).__name__}, not a list")
            return items

        def hook(code: int, data: bytes) -> Any:
            if code == _EXT_TUPLE:
                return tuple(listed(data))
            if code == _EXT_SET:
                return set(listed(data))
            if code == _EXT_FROZENSET:
                return frozenset(listed(data))
            if code == _EXT_DATETIME:
                return datetime.fromisoformat(data.decode())
            if code == _EXT_DATE:
                return date.fromisoformat(data.decode())
            if code == _EXT_TIME:
                return time.fromisoformat(data.decode())
            if code == _EXT_TIMEDELTA:
                days, seconds, micros = listed(data)
                if not (type(days) is type(seconds) is type(micros) is int):
                    raise ValueError("timedelta fields are not integers")
                return timedelta(days, seconds, micros)
            if code == _EXT_UUID:
                return uuid.UUID(bytes=bytes(data))
            if code == _EXT_DECIMAL:
                return Decimal(data.decode())
            if code == _EXT_REGISTERED:
                name, fields = listed(data)
                registered = by_name.get(name) if type(name) is str else None
                if registered is None:
                    raise ValueError(f"no type is registered under the name {name!r}")
                return registered.build(fields)
            raise ValueError(f"unknown msgpack extension type {code}")

        return hook

    def __repr__(self) -> str:
        types = ", ".join(self._by_name)
        return (
            f"MsgpackSerializer(types=[{types}], max_depth={self.max_depth}, "
            f"max_objects={self.max_objects})"
        )


_MAX_BUFFER = 2**32 - 1
_UNPACKB_LEVELS = 2  # extension levels decoded by msgpack.unpackb before the Unpackers
# Each extension level holds a copy of its payload (two past _UNPACKB_LEVELS) while the
# levels inside it decode. Past _LARGE_LEVELS levels, payloads over _LARGE_NESTED bytes
# are refused (when writing too), so the copies of a payload of n bytes stay under
# about 6n + 4 MiB instead of 2n per level allowed.
_LARGE_LEVELS = 4
_LARGE_NESTED = 64 * 1024


class _Counter:
    """Counts the objects of one decode, failing past ``limit``."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def options(self) -> dict[str, Any]:
        """Unpacker options that count every list and map and bound their lengths."""
        return {
            "strict_map_key": False,
            "list_hook": self.count_list,
            "object_hook": self.count_map,
            "max_array_len": self.limit,
            "max_map_len": self.limit,
        }

    def count_list(self, items: list[Any]) -> list[Any]:
        self.left -= len(items) + 1
        if self.left < 0:
            raise ValueError(f"the value holds more than max_objects={self.limit} objects")
        return items

    def count_map(self, items: dict[Any, Any]) -> dict[Any, Any]:
        self.left -= 2 * len(items) + 1
        if self.left < 0:
            raise ValueError(f"the value holds more than max_objects={self.limit} objects")
        return items


def _nested_decoder(
    depth: int,
    deeper: Callable[[int, bytes], Any] | None,
    options: dict[str, Any] | None,
    max_depth: int,
) -> Callable[[bytes], Any]:
    """Decodes an extension's payload found at ``depth`` with the hook ``deeper``."""
    if deeper is None:

        def refuse(data: bytes) -> Any:
            raise ValueError(f"extension types nest more than max_depth={max_depth} levels deep")

        return refuse
    settings: dict[str, Any] = {"strict_map_key": False, **(options or {}), "ext_hook": deeper}
    if depth < _UNPACKB_LEVELS:
        # The first levels re-enter msgpack.unpackb: twice as fast as an Unpacker, and
        # these few 40 KiB frames stay far below any thread's stack.
        if options is None:
            return lambda data: _unpackb(data, ext_hook=deeper, strict_map_key=False)
        return lambda data: _unpackb(data, **settings)
    # Deeper levels use a msgpack.Unpacker, whose state lives on the heap (about 2 KiB
    # of stack per level): a value max_depth=32 deep decodes on a 256 KiB thread stack,
    # one at MAX_DEPTH_CEILING on 512 KiB (tested). One Unpacker per thread, reused
    # while its buffer stays small.
    local = threading.local()
    large_refused = depth >= _LARGE_LEVELS

    def unpack(data: bytes) -> Any:
        if large_refused and len(data) > _LARGE_NESTED:
            raise ValueError(
                f"an extension of over {_LARGE_NESTED} bytes nests inside {depth} others"
            )
        unpacker: msgpack.Unpacker | None = getattr(local, "unpacker", None)
        local.unpacker = None  # an unpacker that fails is never reused
        if unpacker is None:
            unpacker = msgpack.Unpacker(max_buffer_size=_MAX_BUFFER, **settings)
        start = unpacker.tell()
        unpacker.feed(data)
        value = unpacker.unpack()
        if unpacker.tell() - start != len(data):
            raise ValueError("extension payload has bytes after its value")
        if len(data) <= _BUFFER_KEEP:
            local.unpacker = unpacker
        return value

    return unpack


def _as_list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise ValueError(f"extension payload is a {type(value).__name__}, not a list")
    return value


def _encode_error(exc: BaseException) -> BaseException:
    """The error ``dumps`` raises for ``exc`` raised while packing."""
    if isinstance(exc, SerializationError):
        return exc
    if isinstance(exc, OverflowError):
        return SerializationError(
            "MsgpackSerializer cannot encode an integer outside the 64-bit range "
            f"[-2**63, 2**64): {exc}"
        )
    if isinstance(exc, ValueError) and "recursion limit" in str(exc):
        return SerializationError(
            "MsgpackSerializer cannot store the value: lists and dicts nest more than "
            f"{MSGPACK_NESTING} levels deep"
        )
    if isinstance(exc, (TypeError, ValueError, RecursionError)):
        return SerializationError(f"MsgpackSerializer cannot encode the value: {exc}")
    return exc


def _unsupported(kind: type) -> str:
    name = f"{kind.__module__}.{kind.__qualname__}"
    if _Registered.kind_of(kind) is not None:
        hint = f"register it: MsgpackSerializer(types=[{kind.__qualname__}])"
    else:
        hint = "convert it to supported types first, or choose another serializer"
    return f"MsgpackSerializer cannot round-trip a value of type {name}; {hint}"


class _Registered:
    """How one registered type is stored and rebuilt."""

    __slots__ = ("cls", "kind", "name", "names")

    def __init__(self, cls: type, kind: str, name: str, names: tuple[str, ...]) -> None:
        self.cls = cls
        self.kind = kind
        self.name = name
        self.names = names

    @staticmethod
    def kind_of(kind: type) -> str | None:
        if issubclass(kind, enum.Enum):
            return "enum"
        if issubclass(kind, tuple) and isinstance(getattr(kind, "_fields", None), tuple):
            return "namedtuple"
        if dataclasses.is_dataclass(kind):
            return "dataclass"
        return None

    @classmethod
    def of(cls, kind_cls: type, name: str) -> _Registered:
        kind = cls.kind_of(kind_cls)
        if kind is None:
            raise ValueError(
                f"{name} is not a named tuple, dataclass or enum: only those can be registered"
            )
        names: tuple[str, ...] = ()
        if kind == "namedtuple":
            names = tuple(kind_cls._fields)  # type: ignore[attr-defined]
        elif kind == "dataclass":
            names = tuple(field.name for field in dataclasses.fields(kind_cls))
        return cls(kind_cls, kind, name, names)

    def fields(self, obj: Any) -> Any:
        if self.kind == "enum":
            return obj.value
        if self.kind == "namedtuple":
            return list(obj)
        extra = getattr(obj, "__dict__", {}).keys() - set(self.names)
        if extra:
            raise SerializationError(
                f"MsgpackSerializer cannot round-trip this {self.name}: attributes "
                f"{sorted(extra)} are not dataclass fields"
            )
        return [getattr(obj, field) for field in self.names]

    def build(self, fields: Any) -> Any:
        if self.kind == "enum":
            return self.cls(fields)
        values = _as_list(fields)
        if len(values) != len(self.names):
            raise ValueError(
                f"{self.name} has {len(self.names)} fields, the record holds {len(values)}"
            )
        if self.kind == "namedtuple":
            return self.cls(*values)
        # Rebuilt field by field, without running __init__ or __post_init__ again, so
        # the object read is the object written (frozen and slotted classes included).
        obj: Any = object.__new__(self.cls)
        for field, value in zip(self.names, values, strict=True):
            object.__setattr__(obj, field, value)
        return obj


_msgpack_ext_hook = MsgpackSerializer()._ext_hook  # the default's, for reading raw records

_JSON_SCALARS = (str, int, float, bool, type(None))


class JSONSerializer:
    """JSON (UTF-8), for stores shared with other languages.

    Only values JSON gives back as they went in are accepted: ``None``, bool, int,
    float (finite), str, list, and dict with str keys, exactly these types, nested at
    most ``max_depth`` deep. Anything else (a tuple, which JSON would turn into a list;
    a dict with int keys, which would come back as strings; NaN) raises
    ``SerializationError`` naming it, unless ``default`` converts it: objects converted
    by ``default`` come back as what it returned.

    Args:
        default: Optional ``json.dumps`` hook converting unsupported objects.
        max_depth: Most nested lists and dicts, 1 to 128.

    Raises:
        ValueError: ``max_depth`` out of range.
    """

    __slots__ = ("_default", "max_depth")

    def __init__(
        self, default: Callable[[Any], Any] | None = None, *, max_depth: int = 128
    ) -> None:
        check_int("max_depth", max_depth, 1, MAX_DEPTH_CEILING)
        self._default = default
        self.max_depth = max_depth

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as compact UTF-8 JSON.

        Raises:
            SerializationError: a value JSON would not give back as it is, named.
        """
        self._check(value)
        try:
            text = json.dumps(
                value,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
                default=self._default,
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(f"JSONSerializer cannot encode the value: {exc}") from exc
        return text.encode()

    def _check(self, value: Any) -> None:
        """Refuse what would not round-trip, walking the value without recursion."""
        converts = self._default is not None
        stack: list[tuple[Any, int]] = [(value, 0)]
        pop, push = stack.pop, stack.append
        while stack:
            item, depth = pop()
            kind = type(item)
            if kind is dict:
                if depth >= self.max_depth:
                    raise SerializationError(self._too_deep())
                for key, child in item.items():
                    if type(key) is not str:
                        raise SerializationError(
                            f"JSONSerializer cannot round-trip a dict key of type "
                            f"{type(key).__qualname__} (JSON keys are strings)"
                        )
                    push((child, depth + 1))
            elif kind is list:
                if depth >= self.max_depth:
                    raise SerializationError(self._too_deep())
                for child in item:
                    push((child, depth + 1))
            elif kind in _JSON_SCALARS:
                continue
            elif not converts or isinstance(item, (tuple, *_JSON_SCALARS, list, dict)):
                raise SerializationError(
                    f"JSONSerializer cannot round-trip a value of type "
                    f"{kind.__module__}.{kind.__qualname__}"
                )

    def _too_deep(self) -> str:
        return (
            f"JSONSerializer cannot store the value: lists and dicts nest more than "
            f"max_depth={self.max_depth} levels deep"
        )

    def loads(self, data: bytes) -> Any:
        """Decode UTF-8 JSON.

        Raises:
            CorruptEntryError: the bytes are not JSON.
        """
        try:
            return json.loads(data)
        except Exception as exc:
            raise CorruptEntryError(
                f"JSON payload does not decode: {type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"JSONSerializer(max_depth={self.max_depth})"


class PickleSerializer:
    """pickle: any picklable object, but UNSAFE for stores that others can write.

    Reading a pickle runs code chosen by whoever wrote the bytes. Use this only when
    every writer of the store is trusted (a private LMDB directory, a Redis no one else
    can write). The engine never picks it on its own.

    Every failure is wrapped, with the original as ``__cause__``: ``dumps`` raises
    ``SerializationError`` (also for an exception raised by an object's ``__reduce__``),
    ``loads`` raises ``CorruptEntryError``.

    Args:
        protocol: The pickle protocol; the highest by default.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self._protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value``; raise ``SerializationError`` naming its type if that fails."""
        try:
            return pickle.dumps(value, protocol=self._protocol)
        except Exception as exc:
            kind = type(value)
            raise SerializationError(
                f"PickleSerializer cannot encode a value of type {kind.__module__}."
                f"{kind.__qualname__}: {type(exc).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle ``data``; only ever do this with bytes you wrote yourself."""
        try:
            return pickle.loads(data)  # noqa: S301 - chosen explicitly by the user, documented
        except Exception as exc:
            raise CorruptEntryError(
                f"pickle payload does not load: {type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self._protocol})"


_RAW = 0
_ZSTD = 1
# A compressed payload may always inflate to this many bytes, whatever its size.
_INFLATE_FLOOR = 64 * 1024


class ZstdSerializer:
    """Wraps a serializer and compresses its output with zstandard above a size.

    Output is one marker byte (raw or compressed) then the payload. Values smaller than
    ``threshold`` bytes are stored raw: compressing them costs more than it saves.

    Reading is bounded by the record: a payload is refused beyond ``max_size`` bytes, and
    a compressed one of ``n`` bytes may inflate to at most ``max(64 KiB, max_ratio * n)``
    bytes, so a small hostile record cannot make a reader build a large value. Writing
    follows the same rules: a value whose serialized form is over ``max_size`` is
    refused, and one compressing better than ``max_ratio`` is stored raw.

    Args:
        inner: The serializer producing the bytes to compress; msgpack by default.
        threshold: Serialized size in bytes from which values are compressed.
        level: zstd compression level (1 fastest .. 22 smallest).
        max_size: Largest serialized value accepted, in bytes.
        max_ratio: Most bytes a compressed byte may inflate to (beyond 64 KiB).

    Raises:
        ValueError: ``threshold`` < 0, ``level`` outside 1..22, ``max_size`` < 1 or
            ``max_ratio`` < 1.
    """

    __slots__ = ("_local", "inner", "level", "max_ratio", "max_size", "threshold")

    def __init__(
        self,
        inner: Serializer | None = None,
        *,
        threshold: int = 1024,
        level: int = 3,
        max_size: int = 64 * 1024 * 1024,
        max_ratio: int = 128,
    ) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0 bytes, got {threshold}")
        if not 1 <= level <= 22:
            raise ValueError(f"level must be between 1 and 22, got {level}")
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1 byte, got {max_size}")
        if max_ratio < 1:
            raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
        self.inner: Serializer = inner if inner is not None else MsgpackSerializer()
        self.threshold = threshold
        self.level = level
        self.max_size = max_size
        self.max_ratio = max_ratio
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

    def inflation_limit(self, size: int) -> int:
        """Most bytes a compressed payload of ``size`` bytes (marker included) may give."""
        return min(self.max_size, max(_INFLATE_FLOOR, self.max_ratio * size))

    def dumps(self, value: Any) -> bytes:
        """Serialize with the inner serializer, compressing if large enough to pay.

        Raises:
            SerializationError: the inner serializer refuses the value, or its bytes are
                over ``max_size``.
        """
        raw = self.inner.dumps(value)
        if len(raw) > self.max_size:
            raise SerializationError(
                f"the value serializes to {len(raw)} bytes, over max_size={self.max_size}"
            )
        if len(raw) >= self.threshold:
            packed = self._compressor().compress(raw)
            if len(packed) < len(raw) and len(raw) <= self.inflation_limit(len(packed) + 1):
                return b"\x01" + packed
        return b"\x00" + raw

    def loads(self, data: bytes) -> Any:
        """Decompress if needed, within the bounds, then deserialize.

        Raises:
            CorruptEntryError: unknown marker, damaged frame, or a payload beyond the
                bounds (and whatever the inner serializer raises).
        """
        if not data:
            raise CorruptEntryError("empty payload")
        marker = data[0]
        if marker == _RAW:
            if len(data) - 1 > self.max_size:
                raise CorruptEntryError(
                    f"payload of {len(data) - 1} bytes is over max_size={self.max_size}"
                )
            return self.inner.loads(data[1:])
        if marker != _ZSTD:
            raise CorruptEntryError(f"unknown compression marker {marker}")
        frame = data[1:]
        limit = self.inflation_limit(len(data))
        try:
            size = zstandard.frame_content_size(frame)
            if size > limit:
                raise CorruptEntryError(
                    f"{len(data)} compressed bytes would inflate to {size}, over the "
                    f"limit of {limit} (max_size={self.max_size}, max_ratio={self.max_ratio})"
                )
            raw = self._decompressor().decompress(frame, max_output_size=limit)
        except zstandard.ZstdError as exc:
            raise CorruptEntryError(f"cannot decompress value: {exc}") from exc
        return self.inner.loads(raw)

    def decoded_size(self, data: bytes, start: int = 0) -> int:
        """The serialized size of the value in ``data[start:]``, without decompressing.

        A bounded estimate for a compressed payload whose frame hides its size.
        """
        if len(data) <= start or data[start] != _ZSTD:
            return len(data) - start - 1
        try:
            size = zstandard.frame_content_size(data[start + 1 : start + 19])
        except zstandard.ZstdError:
            size = -1
        limit = self.inflation_limit(len(data) - start)
        return size if 0 <= size <= limit else limit

    def __repr__(self) -> str:
        return (
            f"ZstdSerializer({self.inner!r}, threshold={self.threshold}, level={self.level}, "
            f"max_size={self.max_size}, max_ratio={self.max_ratio})"
        )


def default_serializer() -> Serializer:
    """Return the serializer byte storages use unless told otherwise: zstd over msgpack."""
    return ZstdSerializer(MsgpackSerializer())
