"""The optional C decoder of the common record (swr.storage._speedups) against the rule.

``RecordCodec.decode`` (pure Python) is the rule. ``RecordCodec.plain_decode``, in C
when the extension is built and in Python (``_decode_plain``) otherwise, must return exactly the entry ``decode`` returns for every record it
accepts, and ``None`` (leaving the verdict to ``decode``) for every other: hostile headers
and payloads, NaN and disordered times, other versions, flags, key checks, compressed
payloads, lengths past the bounds. The storages' read paths run the whole suite both
ways: CI runs tests/storage again with ``SWR_PURE_PYTHON=1``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import subprocess
import sys
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swr._core.ttl import CachedEntry
from swr.storage import CorruptEntryError, Entry
from swr.storage._record import PLAIN_SIZE, SPEEDUPS, ReadCache, RecordCodec, _none_slots
from swr.storage.serializers import MsgpackSerializer, ZstdSerializer
from tests.storage.test_decoder_fuzz import CODECS, payloads
from tests.storage.test_record import KEYS, held_keys
from tests.storage.test_serializers import same

PURE = os.environ.get("SWR_PURE_PYTHON", "") not in ("", "0")

if not SPEEDUPS and not PURE:
    if os.environ.get("CI") == "true":
        pytest.fail(
            "swr.storage._speedups is not built (CI builds it: a C compiler is needed)",
            pytrace=False,
        )
    pytest.skip("swr.storage._speedups is not built here", allow_module_level=True)


def test_pure_python_mode_turns_the_decoder_off():
    """SWR_PURE_PYTHON=1 (tests/storage runs again with it in CI) leaves no C decoder,
    admission or msgpack decoder in use."""
    code = (
        "import msgpack\n"
        "from swr.storage._record import SPEEDUPS, RecordCodec\n"
        "from swr.storage.serializers import ZstdSerializer, _unpackb\n"
        "codec = RecordCodec(ZstdSerializer())\n"
        "from swr.storage._record import ReadCache\n"
        "cache = ReadCache(4)\n"
        "print(SPEEDUPS, codec.plain_decode == codec._decode_plain, cache.admits == cache.wants,"
        " _unpackb is msgpack.unpackb)\n"
    )
    env = dict(os.environ, SWR_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True", "True", "True"]


def test_the_batch_pass_sorts_each_record_by_the_rule():
    """The rule of plain_batch on one record of each kind, in C and in Python."""
    codec = RecordCodec(ZstdSerializer())
    alive = codec.encode(Entry("a", 1.0, 2.0, 3.0, 10.0))
    dead = codec.encode(Entry("d", 1.0, 2.0, 3.0, 4.0))
    forever = codec.encode(Entry("f", 1.0, 2.0, 3.0, sys.float_info.max))
    checked = codec.encode(Entry("c", 1.0, 2.0, 3.0, 10.0), b"key-check")
    held = Entry("held", 1.0, 2.0, 3.0, 10.0)
    keys = ["none", "alive", "dead", "forever", "checked", "hit", "changed", "new"]
    records = [None, alive, dead, forever, checked, alive, alive, alive]
    known = {"hit": (alive, held), "changed": (dead, held)}
    for form in (codec.plain_batch, codec._plain_batch):
        seen = {"new"}  # the cache is full, and "new" was read lately
        entries, keep, rest = form(keys, records, known, 5.0, seen, 8)
        assert [e is not None for e in entries] == [0, 1, 0, 1, 0, 1, 1, 1]
        assert entries[5] is held
        assert entries[1].value == "a"
        assert entries[3].expires_at == sys.float_info.max  # the caller restores the window
        # Kept: a key the cache holds, and one read a second time; "alive" is now seen.
        assert keep == [6, 7]
        assert seen == {"alive"}
        assert rest == [3, 4]  # a finite window, a record with a key check
        # Not full yet: every entry decoded is kept.
        assert form(keys, records, known, 5.0, None, 8)[1:] == ([1, 6, 7], [3, 4])


if PURE:  # the rest checks the C decoder, absent in this mode

    def test_no_decoder_in_pure_mode():
        assert not SPEEDUPS
        codec = RecordCodec(ZstdSerializer())
        assert codec.plain_decode == codec._decode_plain
        cache: ReadCache[int] = ReadCache(4)
        assert cache.admits == cache.wants

else:

    @given(
        st.integers(1, 6),
        st.integers(0, 8),
        st.lists(st.integers(0, 30).map(str), max_size=60),
        st.none() | st.integers(0, 7),
    )
    def test_admission_in_c_follows_read_cache_wants(limit, held, keys, room):
        """``ReadCache.admits`` (in C) answers as ``ReadCache.wants`` and leaves the same
        state: below the room, full, keys read again, and across the seen span's clears.
        """
        rule: ReadCache[int] = ReadCache(limit, room)
        ours: ReadCache[int] = ReadCache(limit, room)
        assert ours.admits != ours.wants
        for cache in (rule, ours):
            cache.remember((f"held{i}", i) for i in range(held))
        for at, key in enumerate(keys):
            assert ours.admits(key) is rule.wants(key)
            assert held_keys(ours.seen, KEYS) == held_keys(rule.seen, KEYS)
            if at % 7 == 0:  # now and then a key is kept, as a storage would
                rule.remember(((key, at),))
                ours.remember(((key, at),))

    @given(
        st.integers(0, 6),
        st.lists(
            st.tuples(st.sampled_from(["add", "discard", "in", "clear"]), st.integers(0, 40)),
            max_size=300,
        ),
    )
    def test_seen_keys_answer_as_a_set_of_the_keys(span, operations):
        """SeenKeys (hashes in a table that starts at 8 slots and grows, removal by shifting
        runs back) answers ``in`` and ``len`` as a set of the same keys would.
        """
        from swr.storage._speedups import SeenKeys

        seen, rule = SeenKeys(span), set()
        for operation, n in operations:
            key = f"key-{n}"
            if operation == "add":
                seen.add(key)
                rule.add(key)
            elif operation == "discard":
                seen.discard(key)
                rule.discard(key)
            elif operation == "clear":
                seen.clear()
                rule.clear()
            assert (key in seen) is (key in rule)
            assert len(seen) == len(rule)
        assert held_keys(seen, [f"key-{n}" for n in range(41)]) == held_keys(rule, rule)

    def test_read_caches_hold_hashes_not_keys():
        """A key read once is not kept alive by the admission (the reason for SeenKeys)."""
        cache: ReadCache[int] = ReadCache(0)
        key = "".join(["fresh-", "key"])  # a string of its own
        assert not cache.admits(key)
        assert key in cache.seen
        assert sys.getrefcount(key) == 2  # the local name and getrefcount's argument

    def test_seen_keys_refuse_bad_input():
        from swr.storage._speedups import SeenKeys

        with pytest.raises(ValueError, match="span must be >= 0"):
            SeenKeys(-1)
        with pytest.raises(TypeError, match="unhashable"):
            SeenKeys(4).add([])  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="not initialized"):
            _ = "k" in SeenKeys.__new__(SeenKeys)

    def test_a_read_cache_holding_itself_is_collected():
        """SeenKeys holds the cache's items: a cycle through them is still collected."""
        import gc
        import weakref

        class Value:
            pass

        value = Value()
        gone = weakref.ref(value)
        cache: ReadCache[Any] = ReadCache(4)
        cache.items["self"] = cache  # cache -> seen -> items -> cache
        cache.items["value"] = value
        del cache, value
        gc.collect()
        assert gone() is None

    def test_admission_in_c_refuses_bad_input():
        from swr.storage._speedups import SeenKeys

        with pytest.raises(TypeError, match="made with a cache's items"):
            SeenKeys(4).admits("k")
        with pytest.raises(TypeError, match="must be dict"):
            SeenKeys(4, [])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="room must be >= 0"):
            SeenKeys(4, {}, -1)
        with pytest.raises(TypeError, match="unhashable"):
            ReadCache(0).admits([])  # type: ignore[arg-type]

    def user_factory(value: Any, stored: float, fresh: float, stale: float, expires: float):
        """A factory that is not a class: the decoder calls it."""
        return CachedEntry(value, stored, fresh, stale, expires)

    FACTORIES = {"entry": None, "cached": CachedEntry, "function": user_factory}
    DECODERS = {
        (name, kind): RecordCodec(codec.serializer, factory)
        for name, codec in CODECS.items()
        for kind, factory in FACTORIES.items()
    }
    HEADER = struct.Struct("<2sBB4dH")
    times = st.floats(allow_nan=True, allow_infinity=True, width=64)
    headers = st.tuples(
        st.sampled_from([b"SW", b"SW", b"SW", b"WS", b"\x00\x00"]),
        st.sampled_from([1, 1, 1, 0, 2, 255]),
        st.sampled_from([0, 0, 0, 1, 128]),
        st.one_of(
            st.tuples(times, times, times, times),
            st.floats(-1e12, 1e12).map(lambda t: (t, t + 1, t + 2, t + 3)),
            st.just((1.0, 1.0, 1.0, math.inf)),
            st.just((1.0, 2.0, math.inf, math.inf)),
        ),
        st.sampled_from([0, 0, 0, 1, 7]),
    )

    def record(header: tuple[Any, ...], payload: bytes) -> bytes:
        magic, version, flags, (stored, fresh, stale, expires), check = header
        return HEADER.pack(magic, version, flags, stored, fresh, stale, expires, check) + payload

    def plain(data: bytes) -> bool:
        """Whether ``data`` is a common record by its header (the payload may be bad)."""
        if len(data) < PLAIN_SIZE:
            return False
        head, stored, fresh, stale, expires, tail = struct.unpack_from("<4s4d3s", data)
        return (
            head == b"SW\x01\x00"
            and tail == b"\x00\x00\x00"
            and -math.inf < stored <= fresh <= stale <= expires
            and stored < math.inf
        )

    def check(codec: RecordCodec, data: bytes) -> None:
        """Both forms of plain_decode, C and Python, against decode."""
        if codec.plain_max:  # the default serializer: the C form is in place
            assert codec.plain_decode != codec._decode_plain
        for form in (codec.plain_decode, codec._decode_plain):
            check_form(codec, form, data)

    def check_form(codec: RecordCodec, decode_plain: Any, data: bytes) -> None:
        got = decode_plain(data)
        try:
            want = codec.decode(data)
        except CorruptEntryError:
            assert got is None
            return
        if got is None:
            # Left to decode: not a common record, or one longer than plain_max.
            assert not plain(data) or len(data) > codec.plain_max
            return
        assert type(got) is type(want)
        assert same(got.value, want.value)
        assert (got.stored_at, got.fresh_until, got.stale_until, got.expires_at) == (
            want.stored_at,
            want.fresh_until,
            want.stale_until,
            want.expires_at,
        )
        if isinstance(got, CachedEntry):
            assert got.hit is None
            assert got.stale is None
        assert got == want

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(DECODERS)), headers, payloads)
    def test_the_c_decoder_agrees_with_decode(name, header, payload):
        check(DECODERS[name], record(header, payload))

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=120))
    def test_random_bytes_read_as_none_or_as_decode_reads_them(name, data):
        check(DECODERS[name], data)

    def test_a_common_record_is_decoded_in_c_into_the_factorys_type():
        value = {"id": 7, "roles": ["a", "b"], "t": (1, 2)}
        entry = CachedEntry(value, 1.0, 2.0, 3.0, 4.0)
        for factory, kind in ((None, Entry), (CachedEntry, CachedEntry)):
            codec = RecordCodec(ZstdSerializer(), factory)
            got = codec.plain_decode(codec.encode(entry))
            assert type(got) is kind
            assert got.value == value
            assert (got.stored_at, got.fresh_until, got.stale_until, got.expires_at) == (
                1.0,
                2.0,
                3.0,
                4.0,
            )

    @pytest.mark.parametrize(
        ("data", "why"),
        [
            (b"", "empty"),
            (b"SW\x01\x00" + bytes(35), "no payload"),
        ],
    )
    def test_short_records_are_left_to_decode(data, why):
        codec = RecordCodec(ZstdSerializer())
        assert codec.plain_decode(data) is None, why
        with pytest.raises(CorruptEntryError):
            codec.decode(data)

    def test_a_record_longer_than_plain_max_is_left_to_decode():
        codec = RecordCodec(ZstdSerializer(MsgpackSerializer(max_objects=10), threshold=1 << 20))
        small = codec.encode(Entry("x" * 5, 1.0, 2.0, 3.0, 4.0))
        large = codec.encode(Entry("x" * 500, 1.0, 2.0, 3.0, 4.0))
        assert len(small) <= codec.plain_max < len(large)
        assert codec.plain_decode(small) == codec.decode(small)
        assert codec.plain_decode(large) is None

    def test_only_bytes_are_decoded_in_c():
        codec = RecordCodec(ZstdSerializer())
        data = codec.encode(Entry(1, 1.0, 2.0, 3.0, 4.0))
        assert codec.plain_decode(bytearray(data)) is None  # type: ignore[arg-type]
        assert codec.plain_decode(memoryview(data)) is None  # type: ignore[arg-type]

    def test_an_ext_hook_failing_leaves_the_verdict_to_decode_and_never_hides_an_interrupt():
        from swr.storage._speedups import PlainDecoder

        def failing(code: int, data: bytes) -> Any:
            raise ValueError("no")

        def interrupted(code: int, data: bytes) -> Any:
            raise KeyboardInterrupt

        data = RecordCodec(ZstdSerializer()).encode(Entry((1, 2), 1.0, 2.0, 3.0, 4.0))
        assert PlainDecoder(msgpack.unpackb, failing, 1 << 20, Entry, ()).decode(data) is None
        with pytest.raises(KeyboardInterrupt):
            PlainDecoder(msgpack.unpackb, interrupted, 1 << 20, Entry, ()).decode(data)

    def test_decoding_leaks_nothing():
        codec = RecordCodec(ZstdSerializer(), CachedEntry)
        data = codec.encode(Entry({"name": "x" * 40, "n": [1, 2, 3]}, 1.0, 2.0, 3.0, 4.0))
        decode = codec.plain_decode
        for _ in range(1000):
            decode(data)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(20_000):
                decode(data)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 20_000  # a leaked object per decode would be over 1 MB

    def test_bad_arguments_are_refused():
        from swr.storage._speedups import PlainDecoder

        with pytest.raises(TypeError, match="callable"):
            PlainDecoder(None, None, 10, Entry, ())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="class as factory"):
            PlainDecoder(msgpack.unpackb, None, 10, user_factory, ())
        with pytest.raises(TypeError, match="not a writable slot"):
            PlainDecoder(msgpack.unpackb, None, 10, Entry, ("missing",))
        with pytest.raises(ValueError, match="too many"):
            PlainDecoder(msgpack.unpackb, None, 10, CachedEntry, ("hit",) * 9)
        with pytest.raises(RuntimeError, match="not initialized"):
            PlainDecoder.__new__(PlainDecoder).decode(b"")

        class Borrowed(Entry):  # a slot descriptor of another class: another layout
            __slots__ = ()
            value = CachedEntry.__dict__["hit"]

        with pytest.raises(TypeError, match="not a writable slot"):
            PlainDecoder(msgpack.unpackb, None, 10, Borrowed, ())
        decoder = PlainDecoder(msgpack.unpackb, None, 10, Entry, ())
        with pytest.raises(TypeError, match="already initialized"):
            decoder.__init__(msgpack.unpackb, None, 10, CachedEntry, ("hit",))  # type: ignore[misc]

    @dataclasses.dataclass(slots=True)
    class Checked(Entry):
        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(slots=True)
    class Tagged(Entry):
        tag: str = "x"

    @dataclasses.dataclass(slots=True)
    class Noted(Entry):
        note: str | None = None

    @pytest.mark.parametrize(
        ("factory", "slots"),
        [
            (Entry, ()),
            (CachedEntry, ("hit", "stale")),
            (Noted, ("note",)),
            (Checked, None),  # __post_init__ may do anything
            (Tagged, None),  # a default other than None
            (user_factory, None),  # not a class
            (dict, None),
        ],
    )
    def test_the_decoder_builds_slot_by_slot_only_classes_it_can_build_the_same(factory, slots):
        assert _none_slots(factory) == slots

    @pytest.mark.parametrize("factory", [Noted, Checked, Tagged, user_factory])
    def test_other_factories_build_what_decode_builds(factory):
        codec = RecordCodec(ZstdSerializer(), factory)
        data = codec.encode(Entry([1, "a"], 1.0, 2.0, 3.0, 4.0))
        got, want = codec.plain_decode(data), codec.decode(data)
        assert type(got) is type(want)
        assert dataclasses.asdict(got) == dataclasses.asdict(want)

    # -- decode_batch: one pass over a batch read, with the read cache ----------------

    FOREVER = sys.float_info.max
    batch_headers = st.tuples(
        st.sampled_from([b"SW", b"SW", b"SW", b"WS"]),
        st.sampled_from([1, 1, 1, 2]),
        st.sampled_from([0, 0, 0, 1]),
        st.one_of(
            st.floats(-100, 100).map(lambda t: (t, t + 1, t + 2, t + 3)),
            st.just((1.0, 2.0, 3.0, FOREVER)),
            st.just((1.0, FOREVER, FOREVER, FOREVER)),
            st.tuples(times, times, times, times),
        ),
        st.sampled_from([0, 0, 0, 3]),
    )
    batch_items = st.lists(
        st.tuples(
            st.sampled_from(["absent", "read", "read", "known", "known-other"]),
            batch_headers,
            payloads,
            st.floats(-100, 100),  # expires_at of the entry the read cache holds
        ),
        max_size=10,
    )

    def batch(items: list[Any]) -> tuple[list[str], list[bytes | None], dict[str, Any]]:
        keys = [f"key:{index}" for index in range(len(items))]
        records: list[bytes | None] = []
        known: dict[str, Any] = {}
        for key, (kind, header, payload, expires) in zip(keys, items, strict=True):
            data = None if kind == "absent" else record(header, payload)
            records.append(data)
            held = Entry(key, expires - 3, expires - 2, expires - 1, expires)
            if kind == "known":
                known[key] = (data, held)
            elif kind == "known-other":
                known[key] = (b"SW other bytes", held)
        return keys, records, known

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.sampled_from(sorted(DECODERS)),
        batch_items,
        st.sampled_from([-50.0, 0.0, 2.5, 50.0]),
        st.one_of(st.none(), st.sets(st.sampled_from([f"key:{i}" for i in range(12)]))),
        st.integers(0, 6),
    )
    def test_the_c_batch_pass_agrees_with_its_python_rule(name, items, now, seen, span):
        codec = DECODERS[name]
        keys, records, known = batch(items)
        if codec.plain_max:
            assert codec.plain_batch != codec._plain_batch
        seen_c = None if seen is None else set(seen)
        got = codec.plain_batch(keys, records, known, now, seen_c, span)
        want = codec._plain_batch(keys, records, known, now, seen, span)
        assert got[1:] == want[1:]  # keep, rest
        assert seen_c == seen  # admission left the same keys seen
        for index, (entry, expected) in enumerate(zip(got[0], want[0], strict=True)):
            if expected is None:
                assert entry is None
                continue
            cached = known.get(keys[index])
            if cached is not None and cached[0] == records[index]:
                assert entry is cached[1]  # the read cache's entry, not decoded again
                continue
            assert type(entry) is type(expected)
            assert same(entry.value, expected.value)
            assert entry == expected

    def test_bad_batch_arguments_are_refused():
        decode_batch = RecordCodec(ZstdSerializer()).plain_batch
        with pytest.raises(TypeError, match="takes 6 arguments"):
            decode_batch([], [], {})  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="a list of keys, a list of records and a dict"):
            decode_batch((), [], {}, 0.0, None, 0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="a set or None as seen"):
            decode_batch([], [], {}, 0.0, [], 0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="got 1 keys for 2 records"):
            decode_batch(["a"], [None, None], {}, 0.0, None, 0)
        with pytest.raises(TypeError):
            decode_batch([], [], {}, "now", None, 0)  # type: ignore[arg-type]

    def test_batch_decoding_leaks_nothing():
        codec = RecordCodec(ZstdSerializer(), CachedEntry)
        data = codec.encode(Entry({"name": "x" * 40, "n": [1, 2, 3]}, 1.0, 2.0, 3.0, 4.0))
        keys = [f"k{i}" for i in range(20)]
        records: list[bytes | None] = [data] * 19 + [None]
        known = {"k0": (data, codec.decode(data)), "k1": (b"other", None)}
        for _ in range(100):
            codec.plain_batch(keys, records, known, 2.0, set(), 8)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(2_000):
                codec.plain_batch(keys, records, known, 2.0, set(), 8)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 20_000  # a leaked object per record would be over 1 MB
