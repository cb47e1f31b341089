"""``swr.storage._speedups.unpackb``, the C drop-in for ``msgpack.unpackb``, against it.

The serializers and the record codec call it in place of ``msgpack.unpackb`` when the
extension is built. The rule: for any arguments, the same result (equal, of the same
types all the way down) or the same exception (type and message). It decodes the
common values itself and hands the rest to ``msgpack.unpackb``; these tests feed both
valid values and hostile bytes (lying lengths, truncations, bad UTF-8, trailing bytes,
deep nesting, extension types, hooks that raise) and compare the outcomes.
"""

from __future__ import annotations

import math
import os
import struct
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from swr.storage import serializers
from tests.storage.test_decoder_fuzz import hostile_tokens
from tests.storage.test_serializers import same

PURE = os.environ.get("SWR_PURE_PYTHON", "") not in ("", "0")

try:  # built even where SWR_PURE_PYTHON=1 turns its use off: tested all the same
    from swr.storage._speedups import unpackb
except ImportError:
    if os.environ.get("CI") == "true":
        pytest.fail(
            "swr.storage._speedups is not built (CI builds it: a C compiler is needed)",
            pytrace=False,
        )
    pytest.skip("swr.storage._speedups is not built here", allow_module_level=True)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.text(alphabet="abc", max_size=3)  # the same short keys, again and again
    | st.binary(max_size=40)
)
keys = (
    st.text(max_size=40)
    | st.sampled_from(["id", "sku", "title", "é", "a" * 32, "b" * 33])
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=8)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=20) | st.dictionaries(keys, children, max_size=20),
    max_leaves=60,
)


tokens = hostile_tokens(most_repeats=40)  # a test of outcomes, not of sizes


def outcome(call: Any, *args: Any, **options: Any) -> tuple[str, Any]:
    try:
        return "value", call(*args, **options)
    except Exception as exc:  # the outcome compared
        return type(exc).__name__, str(exc)


def assert_same_outcome(*args: Any, **options: Any) -> Any:
    ours = outcome(unpackb, *args, **options)
    theirs = outcome(msgpack.unpackb, *args, **options)
    assert ours[0] == theirs[0], (ours, theirs)
    # A NaN map key is unequal to itself: such values are compared by their repr.
    assert same(ours[1], theirs[1]) or repr(ours[1]) == repr(theirs[1]), _first_difference(
        ours[1], theirs[1]
    )
    return ours


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if not same(x, y):
                return _first_difference(x, y, f"{path}[{i}]")
        return f"{path}: lengths {len(a)} != {len(b)}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)!r} != {list(b)!r}"
        for k in a:
            if not same(a[k], b[k]):
                return _first_difference(a[k], b[k], f"{path}[{k!r}]")
    return f"{path}: {a!r} != {b!r}"


def hook(code: int, data: bytes) -> Any:
    """An ext hook as the serializers' are: some codes decode, others are refused."""
    if code == 7:
        raise ValueError(f"code 7 is refused ({len(data)} bytes)")
    if code in (1, 2, 3):
        return tuple(msgpack.unpackb(data, strict_map_key=False))
    return (code, data)


@given(values, st.booleans())
@settings(max_examples=400, deadline=None)
def test_valid_values_decode_as_msgpack_decodes_them(value, single_float):
    try:
        packed = msgpack.packb(value, use_single_float=single_float)
    except OverflowError:  # a double past float32's range
        assume(False)
    kind, decoded = assert_same_outcome(packed, ext_hook=hook, strict_map_key=False)
    assert kind == "value"
    if not single_float:
        assert same(decoded, value) or _has_nan(value)


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, list):
        return any(map(_has_nan, value))
    if isinstance(value, dict):
        return any(map(_has_nan, value.values()))
    return False


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # large reprs
@given(tokens)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_hostile_bytes_get_msgpacks_outcome(data):
    """Lying lengths, truncations, bad bytes, extension types: the same value or error."""
    assert_same_outcome(data, ext_hook=hook, strict_map_key=False)
    assert_same_outcome(data, strict_map_key=False)  # msgpack's ExtType, no hook given


@given(values, st.integers(0, 400), st.binary(min_size=1, max_size=3))
@settings(max_examples=300, deadline=None)
def test_damaged_values_get_msgpacks_outcome(value, at, noise):
    """Valid bytes cut short, with bytes overwritten, or with bytes left over."""
    packed = msgpack.packb(value)
    assert_same_outcome(packed[:at], ext_hook=hook, strict_map_key=False)
    damaged = packed[:at] + noise + packed[at + len(noise) :]
    assert_same_outcome(damaged, ext_hook=hook, strict_map_key=False)
    assert_same_outcome(packed + noise, ext_hook=hook, strict_map_key=False)


def test_each_case_it_hands_over():
    """Every case the C code leaves to msgpack gives msgpack's outcome."""
    ext = b"\xd4\x07\x00"  # fixext 1, code 7: the hook refuses it
    cases = [
        b"",  # nothing
        b"\xc1",  # never used
        b"\x01\x02",  # trailing bytes
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"\xdb\xff\xff\xff\xff",  # a str longer than the bytes
        b"\xdd\xff\xff\xff\xff\xc0",  # an array longer than the bytes
        b"\xdf\x00\x00\x00\x02\xc0\xc0",  # a map longer than the bytes
        b"\x81\x91\x01\x02",  # a list as a key
        ext,  # a hook that raises
        msgpack.packb(msgpack.Timestamp(1, 2)),  # the timestamp (ext -1)
        b"\x91" * 40 + b"\xc0",  # nested past the C code's depth
        b"\x91" * 2000 + b"\xc0",  # past msgpack's
        b"\xcb" + struct.pack(">d", math.nan),
        b"\xca" + struct.pack(">f", 1.5),
    ]
    for data in cases:
        assert_same_outcome(data, ext_hook=hook, strict_map_key=False)
    with pytest.raises(ValueError, match="code 7 is refused"):
        unpackb(ext, ext_hook=hook, strict_map_key=False)


def test_strings_ascii_or_not_at_every_position():
    """ASCII strings are copied eight bytes at a time: a non-ASCII byte anywhere, a bad
    UTF-8 byte anywhere, around the word size, is still found."""
    for n in range(20):
        assert_same_outcome(msgpack.packb(["a" * n, {"k" * n: "v" * n}]), strict_map_key=False)
        for at in range(n):
            text = "a" * at + "é" + "a" * (n - at - 1)
            assert_same_outcome(msgpack.packb([text, {text: text}]), strict_map_key=False)
            bad = bytearray(msgpack.packb("a" * n))
            bad[1 + at] = 0xFF
            assert_same_outcome(bytes(bad), strict_map_key=False)


def test_other_arguments_are_msgpacks():
    """Options it does not decode itself, and buffers that are not bytes, go to msgpack."""
    packed = msgpack.packb({1: [1, 2], "a": b"x"})
    assert_same_outcome(packed)  # strict_map_key=True: int keys refused
    assert_same_outcome(packed, strict_map_key=False, use_list=False)
    assert_same_outcome(bytearray(packed), strict_map_key=False)
    assert_same_outcome(memoryview(packed), strict_map_key=False)
    assert_same_outcome(packed, strict_map_key=False, raw=True)
    assert_same_outcome(packed, strict_map_key=False, max_array_len=1)
    assert_same_outcome(packed, True)  # a second positional argument
    assert_same_outcome("not bytes", strict_map_key=False)
    with pytest.raises(TypeError):
        unpackb()


def test_map_keys_are_shared_between_decodes():
    """The point of it: a key read again is the same string (hashed once)."""
    first = unpackb(msgpack.packb([{"sku": 1, "é": 2}, {"sku": 3, "é": 4}]), strict_map_key=False)
    again = unpackb(msgpack.packb({"sku": 5}), strict_map_key=False)
    sku = [next(iter(m)) for m in (*first, again)]
    assert sku[0] is sku[1] is sku[2]
    accented = [list(m)[1] for m in first]
    assert accented[0] == accented[1] == "é"  # not ASCII: built each time, still equal
    # Two keys of one map whose hashes meet (as "score" and "created" do) are both kept.
    fields = ["id", "name", "email", "roles", "active", "score", "bio", "created"]
    record = msgpack.packb(dict.fromkeys(fields, 0))
    first, again = (unpackb(record, strict_map_key=False) for _ in range(2))
    assert all(a is b for a, b in zip(first, again, strict=True))
    long_key = "k" * 40
    assert list(unpackb(msgpack.packb({long_key: 1}), strict_map_key=False)) == [long_key]


def test_colliding_keys_are_never_confused():
    """Keys of one length that share a table slot replace each other, never alias."""
    names = [f"key{i:05d}" for i in range(20_000)]
    names += [f"same-head-{i:05d}-same-tail" for i in range(2_000)]  # differ in the middle
    names += [chr(a) + chr(b) for a in range(32, 127) for b in range(32, 127, 7)]  # short
    names += [f"{i:04d}" for i in range(1000)] + ["", "a", "é", "ab" * 16, "ab" * 16 + "c"]
    packed = msgpack.packb([{name: i} for i, name in enumerate(names)])
    decoded = unpackb(packed, strict_map_key=False)
    assert [next(iter(m)) for m in decoded] == names
    assert unpackb(packed, strict_map_key=False) == decoded


def test_serializers_use_it_unless_pure_python_is_asked():
    """In both CI runs (test_speedups checks the pure mode in a process of its own too)."""
    assert serializers._unpackb is (msgpack.unpackb if PURE else unpackb)


def test_it_does_not_leak():
    doc = msgpack.packb(
        [{"sku": f"SKU-{i}", "price": i / 3, "tags": ["a", b"b"]} for i in range(50)]
    )
    cases = [doc, doc[:-3], b"\x92\x01\xd4\x07\x00"]  # decoded, cut short, hook refuses
    failures = [0]

    def run() -> None:
        for _ in range(300):
            for data in cases:
                try:
                    unpackb(data, ext_hook=hook, strict_map_key=False)
                except ValueError:  # noqa: PERF203 - the error path is measured
                    failures[0] += 1

    run()
    tracemalloc.start()
    try:
        run()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            run()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert failures[0] == 7 * 300 * 2  # two of the three cases raise, every time
    assert after - before < 5 * 8 * 300  # a leak would grow by each object of each call
