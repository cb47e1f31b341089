"""A time-bounded fuzz of the record decoder: hostile bytes only ever read as corrupt.

Runs for ``SWR_FUZZ_SECONDS`` seconds (3 by default, so CI stays quick; set it higher to
search longer). Every generated record either decodes to a value within the bounds of
its serializer, or raises ``CorruptEntryError``; nothing else escapes, nothing crashes.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import msgpack
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swr.storage import CorruptEntryError, Entry, RedisStorage, SerializationError
from swr.storage._record import RecordCodec
from swr.storage._redis import _infinite
from swr.storage.serializers import JSONSerializer, MsgpackSerializer, ZstdSerializer
from tests.storage.test_hostile_records import record
from tests.storage.test_serializers import msgpack_values, same

SECONDS = float(os.environ.get("SWR_FUZZ_SECONDS", "3"))
MAX_DEPTH = 4
MAX_OBJECTS = 300
MAX_SIZE = 8192
INNER = MsgpackSerializer(max_depth=MAX_DEPTH, max_objects=MAX_OBJECTS)
CODECS = {
    "small-bounds": RecordCodec(ZstdSerializer(INNER, threshold=64, max_size=MAX_SIZE)),
    "default": RecordCodec(ZstdSerializer()),
    "msgpack-only": RecordCodec(INNER),
    "json": RecordCodec(ZstdSerializer(JSONSerializer(max_depth=MAX_DEPTH))),
}

# Declared lengths that lie: huge, just past the data, or zero.
counts = st.one_of(st.none(), st.sampled_from([0, 1, 2**16, 2**31, 2**32 - 1]))


def array(declared: int | None, items: list[bytes]) -> bytes:
    n = len(items) if declared is None else declared
    return b"\xdd" + struct.pack(">I", n) + b"".join(items)


def mapping(declared: int | None, items: list[bytes]) -> bytes:
    n = len(items) // 2 if declared is None else declared
    return b"\xdf" + struct.pack(">I", n) + b"".join(items)


def ext(code: int, payload: bytes) -> bytes:
    """An ext 32 of any code, negative ones (msgpack's own) included."""
    return b"\xc9" + struct.pack(">Ib", len(payload), code) + payload


def sized(kind: int, declared: int | None, data: bytes) -> bytes:
    """A str (0xdb) or bin (0xc6) whose declared size may lie."""
    return bytes([kind]) + struct.pack(">I", len(data) if declared is None else declared) + data


def wrapped(codes: list[int], item: bytes) -> bytes:
    """``item`` inside a tuple, set or frozenset extension per code, innermost first."""
    for code in codes:
        item = ext(code, array(None, [item]))
    return item


leaves = st.one_of(
    st.sampled_from([b"\xc0", b"\xc2", b"\xc3", b"\x00", b"\x7f", b"\xe0", b"\xc1", b"\x90"]),
    st.binary(max_size=12),
    st.builds(sized, st.sampled_from([0xDB, 0xC6]), counts, st.binary(max_size=8)),
    st.builds(lambda v: bytes(msgpack.packb(v)), st.integers(-(2**63), 2**64 - 1) | st.text()),
)


MAX_REPEATED = 1 << 18
"""Bytes of one array of a repeated item. Repeats nest, so without a bound their sizes
multiply: a rare draw of three nested repeats built gigabytes of test data (one full
run of the suite was killed for memory)."""


def repeated(item: bytes, n: int) -> bytes:
    """An array of ``item`` ``n`` times, at most :data:`MAX_REPEATED` bytes of items."""
    return array(None, [item] * min(n, MAX_REPEATED // max(1, len(item))))


def hostile_tokens(most_repeats: int = 400) -> st.SearchStrategy[bytes]:
    """msgpack with lying lengths, any extension code, nested extensions and an item
    repeated up to ``most_repeats`` times (repeats nest, each within
    :data:`MAX_REPEATED` bytes)."""
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(array, counts, st.lists(children, max_size=6)),
            st.builds(mapping, counts, st.lists(children, max_size=6)),
            st.builds(ext, st.integers(-128, 127) | st.integers(0, 12), children),
            st.builds(ext, st.integers(1, 3), st.builds(array, st.none(), st.lists(children))),
            st.builds(repeated, children, st.integers(0, most_repeats)),
            st.builds(wrapped, st.lists(st.integers(1, 3), max_size=MAX_DEPTH + 2), children),
        ),
        max_leaves=40,
    )


tokens = hostile_tokens()


def compress(data: bytes) -> bytes:
    return b"\x01" + zstandard.ZstdCompressor().compress(data)


raw_tokens = tokens.map(lambda t: b"\x00" + t)
payloads = st.one_of(raw_tokens, raw_tokens, tokens.map(compress), tokens, st.binary(max_size=300))
records = st.one_of(
    payloads.map(record),
    payloads.map(record),
    payloads.map(record),
    st.binary(max_size=200),
    st.tuples(payloads.map(record), st.integers(0, 400), st.binary(min_size=1, max_size=4)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
    ),
)


def extension_depth_and_objects(value: Any) -> tuple[int, int]:
    """The deepest nesting of extension containers in ``value`` and its object count."""
    deepest = objects = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        objects += 1
        kind = type(item)
        if kind in (tuple, set, frozenset):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in item)
        elif kind is list:
            stack.extend((child, depth) for child in item)
        elif kind is dict:
            stack.extend((child, depth) for pair in item.items() for child in pair)
    return deepest, objects


def check_decode(name: str, data: bytes) -> None:
    codec = CODECS[name]
    try:
        entry = codec.decode(data)
    except CorruptEntryError:
        return
    if name in {"small-bounds", "msgpack-only"}:
        depth, objects = extension_depth_and_objects(entry.value)
        assert depth <= MAX_DEPTH
        assert objects <= MAX_OBJECTS + 1  # the top-level value itself is not counted
        assert codec.decoded_size(data) <= MAX_SIZE


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(st.sampled_from(sorted(CODECS)), records)
def fuzz_decoders(name: str, data: bytes) -> None:
    check_decode(name, data)
    entries, corrupt = CODECS[name].decode_many([data], now=0.0)
    assert len(entries) == 1
    assert all(isinstance(error, CorruptEntryError) for _, error in corrupt)


# A Redis storage's batch read (MGET) decodes records inline; never connected here.
BATCH_READERS = {
    name: RedisStorage.from_url(
        "redis://127.0.0.1:9/0",
        prefix="fuzz:",
        serializer=codec.serializer,
        read_cache=3,
        clock=lambda: 0.0,
    )
    for name, codec in CODECS.items()
}


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(CODECS)), st.lists(st.one_of(st.none(), records), max_size=6))
def fuzz_batch_reads(name: str, datas: list[bytes | None]) -> None:
    """A batch read gives each record exactly what ``decode`` gives it, read once or again
    (then partly from the read cache, which holds some of the keys of the last batches).
    """
    codec, store = CODECS[name], BATCH_READERS[name]
    keys = [f"fuzz:k{index}" for index in range(len(datas))]
    for _ in range(2):
        entries, corrupt = store._entries(keys, datas)
        assert len(entries) == len(datas)
        bad = {index for index, error in corrupt if isinstance(error, CorruptEntryError)}
        assert len(bad) == len(corrupt)
        for index, (data, got) in enumerate(zip(datas, entries, strict=True)):
            if data is None:
                assert got is None
                assert index not in bad
                continue
            try:
                want = _infinite(codec.decode(data))  # Redis reads the largest float as inf
            except CorruptEntryError:
                assert got is None
                assert index in bad
                continue
            assert index not in bad
            if want.expires_at <= 0.0:
                assert got is None
                continue
            assert got is not None
            assert same(got.value, want.value)
            assert (got.stored_at, got.fresh_until, got.stale_until, got.expires_at) == (
                want.stored_at,
                want.fresh_until,
                want.stale_until,
                want.expires_at,
            )


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(msgpack_values)
def fuzz_round_trips(value: Any) -> None:
    """What the small-bounds codec stores, it reads back the same; the rest it refuses."""
    codec = CODECS["small-bounds"]
    try:
        data = codec.encode(Entry(value, 1.0, 2.0, 3.0, 4.0))
    except SerializationError:
        return
    assert same(codec.decode(data).value, value)


def test_decoders_only_ever_raise_corrupt_entry_error_within_their_bounds():
    deadline = time.monotonic() + SECONDS
    rounds = 0
    while rounds == 0 or time.monotonic() < deadline:
        fuzz_decoders()
        fuzz_batch_reads()
        fuzz_round_trips()
        rounds += 1
