"""Serializers: round trips, documented conversions, clear errors, bounded inflation."""

from __future__ import annotations

import enum
import math
import pickle
import uuid
from collections import OrderedDict
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

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

    class Level(enum.IntEnum):
        HIGH = 3

    class Color(str, enum.Enum):
        RED = "red"

    assert s.loads(s.dumps(bytearray(b"ab"))) == b"ab"
    assert s.loads(s.dumps({1, 2})) == {1, 2}
    assert type(s.loads(s.dumps({1, 2}))) is set
    assert s.loads(s.dumps(Level.HIGH)) == 3
    assert type(s.loads(s.dumps(Level.HIGH))) is int
    assert s.loads(s.dumps(Color.RED)) == "red"
    assert s.loads(s.dumps(OrderedDict(a=1))) == {"a": 1}
    assert s.loads(s.dumps(time(1, 2, 3))) == time(1, 2, 3)
    assert s.loads(s.dumps(timedelta(days=2, microseconds=5))) == timedelta(days=2, microseconds=5)
    aware = datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-3)))
    back = s.loads(s.dumps(aware))
    assert back == aware
    assert back.utcoffset() == timedelta(hours=-3)
    naive = datetime(2030, 5, 6, 7, 8, 9)
    assert s.loads(s.dumps(naive)).tzinfo is None
    assert s.loads(s.dumps({(1, 2): "tuple key"})) == {(1, 2): "tuple key"}


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

    with pytest.raises(ValueError, match="unknown msgpack extension"):
        MsgpackSerializer().loads(msgpack.packb(msgpack.ExtType(99, b"")))


def test_json_round_trip_and_documented_losses():
    s = JSONSerializer()
    assert s.loads(s.dumps({"a": [1, 2.5, None, "é"]})) == {"a": [1, 2.5, None, "é"]}
    assert s.loads(s.dumps((1, 2))) == [1, 2]
    assert s.loads(s.dumps({1: "x"})) == {"1": "x"}
    with pytest.raises(SerializationError, match="JSONSerializer"):
        s.dumps(uuid.uuid4())
    assert (
        JSONSerializer(default=str).loads(JSONSerializer(default=str).dumps(Decimal("1.5")))
        == "1.5"
    )


def test_pickle_only_when_chosen_and_round_trips_anything_picklable():
    s = PickleSerializer()
    value = {"when": datetime(2030, 1, 1), "ids": {uuid.UUID(int=1)}}
    assert s.loads(s.dumps(value)) == value
    with pytest.raises(SerializationError):
        s.dumps(lambda: 1)
    # The default never unpickles: pickled bytes are corrupt to it.
    with pytest.raises(Exception):  # noqa: B017 - any decode error is fine
        default_serializer().loads(b"\x00" + pickle.dumps(value))


def test_zstd_stores_small_values_raw_and_compresses_large_ones():
    s = ZstdSerializer(threshold=1024)
    small = s.dumps("x" * 100)
    assert small[0] == 0
    big_value = "y" * 100_000
    big = s.dumps(big_value)
    assert big[0] == 1
    assert len(big) < 1000
    assert s.loads(big) == big_value
    # Incompressible data above the threshold is stored raw rather than grown.
    import os

    noise = os.urandom(4096)
    assert s.dumps(noise)[0] == 0


def test_zstd_refuses_to_inflate_beyond_max_size():
    writer = ZstdSerializer(threshold=0)
    bomb = writer.dumps(b"\x00" * (10 << 20))
    assert len(bomb) < 2000
    reader = ZstdSerializer(threshold=0, max_size=1 << 20)
    with pytest.raises(CorruptEntryError, match="max_size"):
        reader.loads(bomb)
    # Frames that hide their size are bounded while decompressing.
    streamed = zstandard.ZstdCompressor().compressobj()
    frame = streamed.compress(b"\x00" * (10 << 20)) + streamed.flush()
    assert zstandard.frame_content_size(frame) == -1
    with pytest.raises(CorruptEntryError):
        reader.loads(b"\x01" + frame)


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
