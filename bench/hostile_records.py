"""Hostile records against the record decoder: peak RSS and time, and the cost of the bounds.

Run: python bench/hostile_records.py

Part 1 decodes each hostile record with the default codec in a child process of its own
and prints the child's peak RSS growth (ru_maxrss), the decode time and the outcome (a
value, CorruptEntryError, or the signal that killed the child).

Part 2 times RecordCodec.decode of small ordinary records against msgpack.unpackb of the
same payload (the floor: what any msgpack reader pays), measured in the same run, and
prints the ratios.
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
from _harness import Case, measure

from swr.storage import CorruptEntryError, Entry
from swr.storage._record import RecordCodec
from swr.storage.serializers import default_serializer

# The hostile shapes are those of the test suite, built the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.storage.test_hostile_records import MiB, record, tuples, zstd_array


def nested_sets(outer: int, inner: int) -> bytes:
    row = b"\xdd" + struct.pack(">I", inner) + b"\xd4\x02\x90" * inner
    return b"\x00\xdd" + struct.pack(">I", outer) + row * outer


CASES: dict[str, Callable[[], bytes]] = {
    "zstd: 64 MiB of small ints": lambda: zstd_array(b"\x00", 64 * MiB),
    "zstd: 64 MiB of 2-char strings": lambda: zstd_array(b"\xa2ab", 64 * MiB),
    "zstd: 64 MiB of empty sets": lambda: zstd_array(b"\xd4\x02\x90", 64 * MiB),
    "raw: 1,448 x 1,448 empty sets": lambda: nested_sets(1448, 1448),
    "raw: tuple nested 250 deep": lambda: b"\x00" + tuples(250),
}


def child(name: str) -> None:
    data = record(CASES[name]())
    codec = RecordCodec(default_serializer())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        value = codec.decode(data).value
        outcome = f"decoded a {type(value).__name__}"
    except CorruptEntryError as exc:
        outcome = f"corrupt: {str(exc)[:70]}"
    elapsed = time.perf_counter() - started
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
    print(json.dumps({"bytes": len(data), "growth": growth, "s": elapsed, "outcome": outcome}))


def hostile() -> None:
    print(f"{'record':34} {'size':>8} {'peak RSS +':>11} {'time':>8}  outcome")
    for name in CASES:
        done = subprocess.run(
            [sys.executable, __file__, "--child", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            print(f"{name:34} {'':>8} {'':>11} {'':>8}  child died: exit {done.returncode}")
            continue
        got = json.loads(done.stdout)
        print(
            f"{name:34} {got['bytes']:>8,} {got['growth'] / MiB:>8.1f} MiB "
            f"{got['s']:>7.3f}s  {got['outcome']}"
        )


def plain_unpackb(payload: bytes) -> object:
    return msgpack.unpackb(payload, strict_map_key=False)


def repeat(call: Callable[[bytes], object], data: bytes) -> Case:
    def run(n: int) -> None:
        for _ in range(n):
            call(data)

    return run


def decode_cost() -> None:
    codec = RecordCodec(default_serializer())
    now = time.time()
    values = {
        "dict of 6 fields": {
            "id": 42,
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "roles": ["admin", "dev"],
            "active": True,
            "score": 98.5,
        },
        "dict with tuples": {"id": 42, "point": (1.5, 2.5), "tags": ("a", "b"), "ok": True},
    }
    cases: dict[str, Case] = {}
    for label, value in values.items():
        data = codec.encode(Entry(value, now, now + 60, now + 60, now + 60))
        cases[f"decode, {label} ({len(data)} B)"] = repeat(codec.decode, data)
        cases[f"unpackb, {label}"] = repeat(plain_unpackb, data[39:])
    results = measure(cases, 20_000)
    names = list(results)
    for decode_name, floor_name in zip(names[::2], names[1::2], strict=True):
        ratio = results[decode_name] / results[floor_name]
        print(
            f"{decode_name:44} {results[decode_name]:7.0f} ns   "
            f"unpackb {results[floor_name]:5.0f} ns   ratio {ratio:.2f}"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        hostile()
        print()
        decode_cost()
