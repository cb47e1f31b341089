"""The record envelope of byte storages."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swr.serializers import JSONSerializer, MsgpackSerializer, ZstdSerializer, default_serializer
from swr.storage import CorruptEntryError, Entry, SerializationError
from swr.storage._record import FORMAT_VERSION, ReadCache, RecordCodec, digest_key

E = Entry(value={"a": 1}, stored_at=100.0, fresh_until=110.0, stale_until=130.0, expires_at=160.0)


def codec() -> RecordCodec:
    return RecordCodec(default_serializer())


def test_round_trip():
    c = codec()
    assert c.decode(c.encode(E)) == E
    assert c.decode_times(c.encode(E)) == (100.0, 110.0, 130.0, 160.0)


def test_header_layout_is_versioned():
    data = codec().encode(E)
    assert data[:2] == b"SW"
    assert data[2] == FORMAT_VERSION


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"", "shorter than its header"),
        (lambda d: d[:10], "shorter than its header"),
        (lambda d: b"XX" + d[2:], "magic"),
        (lambda d: d[:2] + bytes([9]) + d[3:], "version 9"),
        (lambda d: d[:3] + b"\x01" + d[4:], "flags"),
        (lambda d: d[:4] + struct.pack("<d", float("nan")) + d[12:], "times"),
        (lambda d: d[:4] + struct.pack("<d", 999.0) + d[12:], "times"),
        (lambda d: d[:-3] + b"\xc1\xc1\xc1", "payload"),
        (lambda d: d[:36] + struct.pack("<H", 5000) + d[38:], "key check"),
    ],
)
def test_damaged_records_are_corrupt(mutate, message):
    with pytest.raises(CorruptEntryError, match=message):
        codec().decode(mutate(codec().encode(E)))


@given(st.binary(max_size=200))
def test_random_bytes_never_decode_to_anything_but_corrupt(data):
    try:
        codec().decode(data)
    except CorruptEntryError:
        pass


def test_foreign_serializer_payload_is_corrupt():
    data = RecordCodec(JSONSerializer()).encode(E)
    with pytest.raises(CorruptEntryError):
        codec().decode(data)


def test_key_check_detects_collisions():
    c = codec()
    data = c.encode(E, key_check=b"the-long-key")
    assert c.decode(data, key_check=b"the-long-key") == E
    with pytest.raises(CorruptEntryError, match="another key"):
        c.decode(data, key_check=b"another-long-key")
    with pytest.raises(CorruptEntryError, match="another key"):
        c.decode(data)


def test_digest_key_keeps_short_keys_and_bounds_long_ones():
    assert digest_key("user:1", 511) == (b"user:1", b"")
    long_key = "é" * 400
    skey, check = digest_key(long_key, 511)
    assert len(skey) == 511
    assert check == long_key.encode()
    assert skey.startswith("é".encode() * 10)
    assert digest_key(long_key + "x", 511)[0] != skey


@pytest.mark.parametrize(
    "serializer", [default_serializer(), JSONSerializer()], ids=["default", "json"]
)
def test_decode_many_agrees_with_decode(serializer):
    c = RecordCodec(serializer)
    big = Entry({"blob": "x" * 5000}, 100.0, 110.0, 130.0, 160.0)  # zstd-compressed
    dead = Entry("dead", 10.0, 11.0, 12.0, 50.0)
    records = [c.encode(E), None, c.encode(big), c.encode(dead), b"SW\x01junk", c.encode(E)]
    entries, corrupt = c.decode_many(records, now=100.0)
    assert entries == [E, None, big, None, None, E]
    assert [index for index, _ in corrupt] == [4]
    assert isinstance(corrupt[0][1], CorruptEntryError)


def test_decode_many_rejects_what_decode_rejects():
    c = codec()
    good = c.encode(E)
    unordered = bytearray(good)
    struct.pack_into("<d", unordered, 4, 500.0)  # stored_at after expires_at
    bad_payload = good[:38] + b"\x00\xc1"  # 0xc1 is never valid msgpack
    entries, corrupt = c.decode_many([bytes(unordered), bad_payload], now=0.0)
    assert entries == [None, None]
    assert str(corrupt[0][1]) == "record times are not finite and ordered"
    assert "payload does not deserialize" in str(corrupt[1][1])


def test_decoded_entries_are_plain_entries_built_without_validation():
    # The codec fills Entry's slots directly; that is only equivalent while Entry's
    # constructor does nothing but assign them.
    assert not hasattr(Entry, "__post_init__")
    got = codec().decode(codec().encode(E))
    assert type(got) is Entry
    assert (got.value, got.stored_at, got.fresh_until, got.stale_until, got.expires_at) == (
        {"a": 1},
        100.0,
        110.0,
        130.0,
        160.0,
    )


@pytest.mark.parametrize(
    "times",
    [
        (float("inf"), float("inf"), float("inf"), float("inf")),
        (float("-inf"), 1.0, 2.0, 3.0),
        (0.0, 1.0, float("nan"), 3.0),
        (0.0, 5.0, 2.0, 3.0),
    ],
)
def test_entries_whose_record_could_not_be_read_back_are_not_encoded(times):
    with pytest.raises(ValueError, match="ordered"):
        codec().encode(Entry("v", *times))


def test_only_entries_are_encoded():
    with pytest.raises(TypeError, match="Entry"):
        codec().encode(("v", 0.0, 1.0, 2.0, 3.0))  # type: ignore[arg-type]


def test_decoded_size_is_the_size_of_the_serialized_value():
    c = codec()
    packed = MsgpackSerializer().dumps({"a": 1})
    assert c.decoded_size(c.encode(E, key_check=b"a-long-key")) == len(packed)
    listing = [f"user:{i}" for i in range(10_000)]
    data = c.encode(Entry(listing, 100.0, 110.0, 130.0, 160.0))
    assert data[38] == 1  # compressed
    assert c.decoded_size(data) == len(MsgpackSerializer().dumps(listing)) > 10 * len(data)
    j = RecordCodec(JSONSerializer())
    assert j.decoded_size(j.encode(E)) == len(b'{"a":1}')


def test_the_fast_paths_keep_the_serializers_bounds():
    bounded = ZstdSerializer(MsgpackSerializer(max_objects=100), threshold=10**9)
    c = RecordCodec(bounded)
    fits = Entry([0] * 98, 100.0, 110.0, 130.0, 160.0)  # 99 objects, more than 100 bytes
    assert c.decode(c.encode(fits)) == fits
    over = RecordCodec(default_serializer()).encode(Entry([0] * 150, 100.0, 110.0, 130.0, 160.0))
    with pytest.raises(CorruptEntryError, match="max_objects=100"):
        c.decode(over)
    entries, corrupt = c.decode_many([over, c.encode(fits)], now=0.0)
    assert entries == [None, fits]
    assert [index for index, _ in corrupt] == [0]
    with pytest.raises(SerializationError, match="max_objects=100"):
        c.encode(Entry([0] * 150, 100.0, 110.0, 130.0, 160.0))


KEYS = [str(n) for n in range(31)]  # every key the admission tests draw


def held_keys(seen: Any, keys: Iterable[str]) -> tuple[int, set[str]]:
    """What a read cache's ``seen`` holds, as far as ``keys`` tell: its size and which.

    ``seen`` is a set, or a ``SeenKeys`` (hashes only, in C): compared by what they answer.
    """
    return len(seen), {key for key in keys if key in seen}


@given(
    st.integers(1, 6),
    st.integers(0, 8),
    st.lists(st.lists(st.integers(0, 30).map(str), max_size=12), max_size=12),
)
def test_the_batch_pass_admits_keys_as_wants_decides_each_key(limit, held, batches):
    """``plain_batch`` keeps the keys ``ReadCache.wants`` keeps called in turn, and leaves
    the same state behind: below the room, full, with duplicates, and across the seen
    span's clears.
    """
    codec = RecordCodec(default_serializer())
    data = codec.encode(Entry("v", 1.0, 2.0, 3.0, 10.0))
    one: ReadCache[tuple[bytes, Entry | None]] = ReadCache(limit)
    batch: ReadCache[tuple[bytes, Entry | None]] = ReadCache(limit)
    for cache in (one, batch):
        cache.remember((f"held{i}", (b"other", None)) for i in range(held))
    for keys in batches:
        # A key the cache holds (under other bytes) is kept without asking wants.
        expected = [at for at, key in enumerate(keys) if key in one.items or one.wants(key)]
        full = len(batch.items) >= batch.room
        seen = batch.seen if full else None
        span = ReadCache.SEEN_SPAN * limit
        entries, keep, rest = codec.plain_batch(
            keys, [data] * len(keys), batch.items, 5.0, seen, span
        )
        assert keep == expected
        assert rest == []
        assert all(entry is not None and entry.value == "v" for entry in entries)
        assert held_keys(batch.seen, KEYS) == held_keys(one.seen, KEYS)
        # What a storage then keeps, both caches keep.
        one.remember((keys[at], (b"kept", None)) for at in expected)
        batch.remember((keys[at], (b"kept", None)) for at in expected)
        assert batch.items == one.items
