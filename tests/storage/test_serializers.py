"""Serializers: round trips, documented conversions, clear errors, bounded inflation."""

from __future__ import annotations

import dataclasses
import enum
import math
import pickle
import uuid
from collections import OrderedDict
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple

import msgpack
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from swr.serializers import (
    JSONSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    ZstdSerializer,
    default_serializer,
)
from swr.storage import CorruptEntryError, SerializationError
from swr.storage.serializers import DEFAULT_MAX_DEPTH, MAX_DEPTH_CEILING

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.datetimes()
    | st.datetimes(timezones=st.just(timezone(timedelta(hours=5, minutes=30))))
    | st.dates()
    | st.uuids()
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children)
        | st.tuples(children, children)
        | st.dictionaries(st.text() | st.integers(min_value=-100, max_value=100), children)
        | st.frozensets(st.integers(min_value=-(2**63), max_value=2**63) | st.text())
    ),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a):
        return same(dataclasses.asdict(a), dataclasses.asdict(b))  # type: ignore[arg-type]
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@given(msgpack_values)
def test_msgpack_round_trips_types_exactly(value):
    s = MsgpackSerializer()
    assert same(s.loads(s.dumps(value)), value)


@given(msgpack_values)
def test_zstd_wrapper_round_trips(value):
    s = ZstdSerializer(threshold=16)
    assert same(s.loads(s.dumps(value)), value)


def test_msgpack_documented_conversions():
    s = MsgpackSerializer()
    # The one conversion: msgpack packs these natively, as bytes (equal, not the type).
    assert s.loads(s.dumps(bytearray(b"ab"))) == b"ab"
    assert s.loads(s.dumps(memoryview(b"ab"))) == b"ab"
    assert s.loads(s.dumps({1, 2})) == {1, 2}
    assert type(s.loads(s.dumps({1, 2}))) is set
    assert s.loads(s.dumps(time(1, 2, 3))) == time(1, 2, 3)
    assert s.loads(s.dumps(timedelta(days=2, microseconds=5))) == timedelta(days=2, microseconds=5)
    aware = datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-3)))
    back = s.loads(s.dumps(aware))
    assert back == aware
    assert back.utcoffset() == timedelta(hours=-3)
    naive = datetime(2030, 5, 6, 7, 8, 9)
    assert s.loads(s.dumps(naive)).tzinfo is None
    assert s.loads(s.dumps({(1, 2): "tuple key"})) == {(1, 2): "tuple key"}


class Level(enum.IntEnum):
    HIGH = 3


class Color(str, enum.Enum):
    RED = "red"


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class Counter:
    hits: int = 0
    seen: list[str] = dataclasses.field(default_factory=list)
    total: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.hits += 1  # would count twice if reading ran __init__ again


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (Level.HIGH, "Level"),
        (Color.RED, "Color"),
        (Point(1, 2), "Point"),
        (User(1, "ada"), "User"),
        (OrderedDict(a=1), "OrderedDict"),
        ([1, {"deep": [Point(1, 2)]}], "Point"),
    ],
)
def test_msgpack_refuses_what_would_not_come_back_as_the_same_type(value, name):
    with pytest.raises(SerializationError, match=name):
        MsgpackSerializer().dumps(value)


def test_registered_named_tuples_dataclasses_and_enums_round_trip():
    s = MsgpackSerializer(types=[Point, User, Level, Color])
    s.register(Counter)
    counter = Counter(hits=4, seen=["a"])
    counter.total = 9
    value = {
        "p": Point(1, 2),
        "u": User(7, "ada", ("x", "y")),
        "levels": [Level.HIGH, Color.RED],
        "nested": (Point(3, 4), {Point(5, 6)}),
        "counter": counter,
    }
    back = s.loads(s.dumps(value))
    assert same(back, value)
    assert back["counter"].hits == 5 and back["counter"].total == 9  # __init__ not rerun
    assert back["u"].tags == ("x", "y")
    assert "Point" in repr(s)


def test_reading_a_registered_type_needs_the_same_registry():
    data = MsgpackSerializer(types=[Point]).dumps(Point(1, 2))
    with pytest.raises(CorruptEntryError, match="no type is registered"):
        MsgpackSerializer().loads(data)
    renamed = MsgpackSerializer()
    renamed.register(Point, name="geo.Point")
    with pytest.raises(CorruptEntryError, match="no type is registered"):
        renamed.loads(data)
    assert renamed.loads(renamed.dumps(Point(1, 2))) == Point(1, 2)


def test_the_registry_never_imports_a_class_named_in_the_bytes():
    import msgpack

    # A record naming a real, importable class: only the registry is consulted.
    payload = msgpack.packb(["collections.OrderedDict", [1]])
    data = msgpack.packb(msgpack.ExtType(10, payload))
    with pytest.raises(CorruptEntryError, match="collections.OrderedDict"):
        MsgpackSerializer().loads(data)


def test_registered_records_that_do_not_fit_the_class_are_corrupt():
    import msgpack

    s = MsgpackSerializer(types=[Point, Level])
    name = f"{Point.__module__}.{Point.__qualname__}"
    for fields in ([1], [1, 2, 3], "xy"):
        data = msgpack.packb(msgpack.ExtType(10, msgpack.packb([name, fields])))
        with pytest.raises(CorruptEntryError):
            s.loads(data)
    level = f"{Level.__module__}.{Level.__qualname__}"
    with pytest.raises(CorruptEntryError):
        s.loads(msgpack.packb(msgpack.ExtType(10, msgpack.packb([level, 99]))))


def test_register_refuses_what_it_cannot_rebuild():
    s = MsgpackSerializer()
    with pytest.raises(ValueError, match="named tuple, dataclass or enum"):
        s.register(dict)
    s.register(Point)
    with pytest.raises(ValueError, match="already registered"):
        s.register(Point)
    with pytest.raises(ValueError, match="already registered"):
        s.register(User, name=f"{Point.__module__}.{Point.__qualname__}")
    with pytest.raises(TypeError, match="class"):
        s.register(Point(1, 2))  # type: ignore[arg-type]

    @dataclasses.dataclass
    class Loose:
        a: int

    loose = Loose(1)
    loose.extra = 2  # type: ignore[attr-defined]
    s.register(Loose)
    with pytest.raises(SerializationError, match="extra"):
        s.dumps(loose)


def test_msgpack_names_unsupported_types():
    class Custom:
        pass

    with pytest.raises(SerializationError, match="Custom") as caught:
        MsgpackSerializer().dumps({"x": [Custom()]})
    assert isinstance(caught.value, TypeError)
    with pytest.raises(SerializationError, match="64"):
        MsgpackSerializer().dumps(2**70)


def test_msgpack_rejects_unknown_extension_codes():
    import msgpack

    with pytest.raises(CorruptEntryError, match="unknown msgpack extension"):
        MsgpackSerializer().loads(msgpack.packb(msgpack.ExtType(99, b"")))


def nest(kind, depth: int) -> object:
    value: object = None
    for _ in range(depth):
        value = kind(value)
    return value


@pytest.mark.parametrize(
    "kind",
    [
        lambda v: (v,),
        lambda v: frozenset([v]),
        lambda v: [(v, 1)],  # lists between tuples do not count
        lambda v: Point(v, 0),
    ],
    ids=["tuple", "frozenset", "tuple-in-list", "registered"],
)
def test_extension_nesting_is_bounded_at_max_depth_both_ways(kind):
    s = MsgpackSerializer(types=[Point])
    at_bound = nest(kind, s.max_depth)
    assert s.loads(s.dumps(at_bound)) == at_bound
    with pytest.raises(SerializationError, match="max_depth=32"):
        s.dumps(nest(kind, s.max_depth + 1))
    # The same bytes, crafted: the reader refuses them as corrupt.
    with pytest.raises(CorruptEntryError, match="max_depth=32"):
        s.loads(crafted_tuples(s.max_depth + 1))


def crafted_tuples(depth: int) -> bytes:
    """A tuple nested ``depth`` deep, packed level by level as a writer without bounds."""
    import msgpack

    data = msgpack.packb(None)
    for _ in range(depth):
        data = msgpack.packb(msgpack.ExtType(1, b"\x91" + data))
    return data


def test_max_depth_is_configurable_up_to_a_ceiling():
    s = MsgpackSerializer(max_depth=3)
    assert s.loads(s.dumps(nest(lambda v: (v,), 3))) == nest(lambda v: (v,), 3)
    with pytest.raises(SerializationError, match="max_depth=3"):
        s.dumps(nest(lambda v: (v,), 4))
    with pytest.raises(CorruptEntryError, match="max_depth=3"):
        s.loads(MsgpackSerializer().dumps(nest(lambda v: (v,), 4)))
    for bad in (0, MAX_DEPTH_CEILING + 1):
        with pytest.raises(ValueError, match="max_depth"):
            MsgpackSerializer(max_depth=bad)
    with pytest.raises(TypeError, match="max_depth"):
        MsgpackSerializer(max_depth=True)
    with pytest.raises(ValueError, match="max_objects"):
        MsgpackSerializer(max_objects=0)


@pytest.mark.parametrize("kind", [lambda v: [v], lambda v: {"k": v}], ids=["list", "dict"])
def test_deep_lists_and_dicts_are_refused_with_serialization_error(kind):
    s = MsgpackSerializer()
    back, levels = s.loads(s.dumps(nest(kind, 1024))), 0
    while back is not None:  # compared by hand: == itself recurses too deep here
        back, levels = (back[0] if type(back) is list else back["k"]), levels + 1
    assert levels == 1024
    for depth in (1025, 2000):
        with pytest.raises(SerializationError, match="1024"):
            s.dumps(nest(kind, depth))


def test_a_2000_deep_tuple_is_refused_not_a_recursion_error():
    with pytest.raises(SerializationError, match="max_depth"):
        default_serializer().dumps(nest(lambda v: (v,), 2000))


def test_objects_are_bounded_by_max_objects_both_ways():
    s = MsgpackSerializer(max_objects=1000)
    fits = [0] * 998  # the list and its elements: 999 objects
    assert s.loads(s.dumps(fits)) == fits
    with pytest.raises(SerializationError, match="max_objects=1000"):
        s.dumps([0] * 1000)
    with pytest.raises(SerializationError, match="max_objects=1000"):
        s.dumps([{"a": (1, 2)}] * 300)  # counted inside maps and extensions too
    big = MsgpackSerializer().dumps([[0] * 100] * 20)  # 2,021 objects in 2,043 bytes
    with pytest.raises(CorruptEntryError, match="max_objects=1000"):
        s.loads(big)
    with pytest.raises(CorruptEntryError, match="max_objects=1000"):
        s.loads(MsgpackSerializer().dumps(([0] * 100,) * 20))
    # Short payloads cannot hold more objects than bytes: they are not counted.
    assert s.loads(s.dumps("x" * 5000)) == "x" * 5000


def test_extension_payloads_with_trailing_or_missing_bytes_are_corrupt():
    import msgpack

    s = MsgpackSerializer()
    for payload in (msgpack.packb([1]) + b"\x01", b"\x92\x01", msgpack.packb({"a": 1})):
        with pytest.raises(CorruptEntryError):
            s.loads(msgpack.packb(msgpack.ExtType(1, payload)))
    # The decoder is clean afterwards.
    assert s.loads(s.dumps((1, (2, 3)))) == (1, (2, 3))


def test_json_round_trips_what_it_accepts_and_refuses_the_rest():
    s = JSONSerializer()
    assert s.loads(s.dumps({"a": [1, 2.5, None, "é", True]})) == {"a": [1, 2.5, None, "é", True]}
    for value, name in (
        ((1, 2), "tuple"),
        ({1: "x"}, "int"),
        ([Color.RED], "Color"),
        (uuid.uuid4(), "UUID"),
        (float("nan"), "Out of range float"),
        (nest(lambda v: [v], 200), "max_depth=128"),
    ):
        with pytest.raises(SerializationError, match=name):
            s.dumps(value)
    converting = JSONSerializer(default=str)
    assert converting.loads(converting.dumps(Decimal("1.5"))) == "1.5"
    with pytest.raises(SerializationError, match="tuple"):
        converting.dumps((1, 2))  # default never sees tuples: still refused
    with pytest.raises(CorruptEntryError, match="JSON"):
        s.loads(b"{nope")
    with pytest.raises(CorruptEntryError):
        s.loads(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ValueError, match="max_depth"):
        JSONSerializer(max_depth=0)


def test_pickle_only_when_chosen_and_round_trips_anything_picklable():
    s = PickleSerializer()
    value = {"when": datetime(2030, 1, 1), "ids": {uuid.UUID(int=1)}}
    assert s.loads(s.dumps(value)) == value
    with pytest.raises(SerializationError):
        s.dumps(lambda: 1)
    # The default never unpickles: pickled bytes are corrupt to it.
    with pytest.raises(CorruptEntryError):
        default_serializer().loads(b"\x00" + pickle.dumps(value))


class Exploding:
    def __reduce__(self):
        raise RuntimeError("no pickles here")


def boom() -> None:
    raise OSError("unpickling ran code")


class RunsCode:
    def __reduce__(self):
        return (boom, ())


def test_pickle_wraps_every_failure_with_its_cause():
    s = PickleSerializer()
    with pytest.raises(SerializationError, match="Exploding.*no pickles here") as caught:
        s.dumps(Exploding())
    assert isinstance(caught.value.__cause__, RuntimeError)
    with pytest.raises(SerializationError) as caught:
        s.dumps(nest(lambda v: [v], 100_000))
    assert isinstance(caught.value.__cause__, RecursionError)
    with pytest.raises(CorruptEntryError, match="unpickling ran code") as loading:
        s.loads(pickle.dumps(RunsCode()))
    assert isinstance(loading.value.__cause__, OSError)
    with pytest.raises(CorruptEntryError):
        s.loads(b"garbage")


def test_zstd_stores_small_values_raw_and_compresses_large_ones():
    s = ZstdSerializer(threshold=1024)
    small = s.dumps("x" * 100)
    assert small[0] == 0
    big_value = [f"user:{i}" for i in range(10_000)]
    big = s.dumps(big_value)
    assert big[0] == 1
    assert len(big) < 40_000
    assert s.loads(big) == big_value
    # Incompressible data above the threshold is stored raw rather than grown.
    import os

    noise = os.urandom(4096)
    assert s.dumps(noise)[0] == 0


def test_zstd_stores_raw_what_compresses_beyond_max_ratio():
    s = ZstdSerializer(threshold=0)
    zeros = [0] * 1_000_000  # 1 MB of msgpack, a few hundred bytes compressed
    stored = s.dumps(zeros)
    assert stored[0] == 0  # raw: a reader would refuse it compressed
    assert s.loads(stored) == zeros
    assert s.decoded_size(stored) == len(stored) - 1
    assert ZstdSerializer(threshold=0, max_ratio=100_000).dumps(zeros)[0] == 1


def bomb(size: int) -> bytes:
    return b"\x01" + zstandard.ZstdCompressor().compress(b"\x00" * size)


def test_zstd_refuses_to_inflate_beyond_the_bounds():
    reader = ZstdSerializer(max_size=1 << 20)
    with pytest.raises(CorruptEntryError, match="max_size"):
        reader.loads(bomb(10 << 20))
    small = bomb(100_000)  # ~20 bytes inflating to 100 kB: over 64 KiB and 128x
    assert len(small) < 100
    with pytest.raises(CorruptEntryError, match="max_ratio=128"):
        ZstdSerializer().loads(small)
    assert ZstdSerializer().decoded_size(small) == 64 * 1024  # bounded, not the claim
    within = bomb(60_000)  # inflating to less than 64 KiB is always allowed
    assert ZstdSerializer(MsgpackSerializer()).decoded_size(within) == 60_000
    # Frames that hide their size are bounded while decompressing.
    streamed = zstandard.ZstdCompressor().compressobj()
    frame = streamed.compress(b"\x00" * (10 << 20)) + streamed.flush()
    assert zstandard.frame_content_size(frame) == -1
    with pytest.raises(CorruptEntryError):
        reader.loads(b"\x01" + frame)
    with pytest.raises(CorruptEntryError, match="max_size"):
        ZstdSerializer(max_size=10).loads(b"\x00" + b"\xc4\x10" + b"x" * 16)


def test_zstd_refuses_to_write_what_it_would_refuse_to_read():
    with pytest.raises(SerializationError, match="max_size=100"):
        ZstdSerializer(max_size=100).dumps("x" * 200)


def test_zstd_rejects_garbage_and_bad_settings():
    s = ZstdSerializer()
    with pytest.raises(CorruptEntryError):
        s.loads(b"")
    with pytest.raises(CorruptEntryError, match="marker"):
        s.loads(b"\x07abc")
    with pytest.raises(CorruptEntryError):
        s.loads(b"\x01not zstd at all")
    for kwargs, field in (
        ({"threshold": -1}, "threshold"),
        ({"level": 0}, "level"),
        ({"max_size": 0}, "max_size"),
        ({"max_ratio": 0}, "max_ratio"),
    ):
        with pytest.raises(ValueError, match=field):
            ZstdSerializer(**kwargs)


def test_all_serializers_satisfy_the_protocol():
    for s in (MsgpackSerializer(), JSONSerializer(), PickleSerializer(), ZstdSerializer()):
        assert isinstance(s, Serializer)
        assert repr(s)


def test_msgpack_dumps_is_clean_after_a_failure_and_across_threads():
    import threading

    s = MsgpackSerializer()

    class Custom:
        pass

    with pytest.raises(SerializationError):
        s.dumps([1, 2, Custom()])
    assert s.loads(s.dumps([1, 2, 3])) == [1, 2, 3]  # nothing left over from the failure
    big = "x" * (2 << 20)
    assert s.loads(s.dumps(big)) == big
    errors: list[object] = []

    def work(n: int) -> None:
        for i in range(500):
            value = {"thread": n, "i": i, "items": list(range(i % 7))}
            if s.loads(s.dumps(value)) != value:
                errors.append(value)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_large_extensions_nest_at_most_four_deep_both_ways():
    s = MsgpackSerializer()
    blob = "x" * 70_000  # over 64 KiB once packed
    inside_four = ((((blob,),),),)
    assert s.loads(s.dumps(inside_four)) == inside_four
    with pytest.raises(SerializationError, match="inside 4 or more"):
        s.dumps((inside_four,))
    small_deep = nest(lambda v: (v, "y" * 1000), 32)  # 32 levels, each under 64 KiB
    assert s.loads(s.dumps(small_deep)) == small_deep
    crafted = MsgpackSerializer().dumps(blob)
    for _ in range(5):
        crafted = msgpack.packb(msgpack.ExtType(1, b"\x91" + crafted))
    with pytest.raises(CorruptEntryError, match="nests inside 4 others"):
        s.loads(crafted)


def test_deep_decoders_are_clean_after_a_failure_and_across_threads():
    import threading

    s = MsgpackSerializer()
    good = nest(lambda v: (v, [1, "a"]), 12)
    data = s.dumps(good)
    broken = b"\x92\xc0"  # the innermost payload lacks its second element
    for _ in range(8):
        broken = msgpack.packb(msgpack.ExtType(1, b"\x91" + broken))
    with pytest.raises(CorruptEntryError, match="OutOfData"):
        s.loads(broken)
    trailing = msgpack.packb(msgpack.ExtType(1, b"\x91\xc0\xc0"))
    for _ in range(6):
        trailing = msgpack.packb(msgpack.ExtType(1, b"\x91" + trailing))
    with pytest.raises(CorruptEntryError, match="bytes after"):
        s.loads(trailing)
    assert s.loads(data) == good  # no unpacker was left holding a partial value
    errors: list[object] = []

    def work() -> None:
        for i in range(300):
            try:
                if i % 3 == 0:
                    s.loads(broken)
            except CorruptEntryError:
                pass
            if s.loads(data) != good:
                errors.append(i)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


SMALL_STACK_READER = """
import sys, threading
from swr.storage.serializers import MsgpackSerializer

depth, stack = int(sys.argv[1]), int(sys.argv[2])
s = MsgpackSerializer(max_depth=depth)
value = None
for _ in range(depth):
    value = (value, [1, {"k": "v"}])
data = s.dumps(value)
results = []
threading.stack_size(stack)
reader = threading.Thread(target=lambda: results.append(s.loads(data) == value))
reader.start()
reader.join()
sys.exit(0 if results == [True] else 1)
"""


@pytest.mark.parametrize(
    ("depth", "stack_kib"), [(DEFAULT_MAX_DEPTH, 256), (MAX_DEPTH_CEILING, 512)]
)
def test_the_deepest_values_allowed_decode_on_small_thread_stacks(depth, stack_kib):
    # Measured: the default needs under 256 KiB, the ceiling under 384 KiB of stack
    # (before the bounds, 195 levels overflowed 8 MiB).
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SMALL_STACK_READER, str(depth), str(stack_kib * 1024)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
