"""The engine's MISS path on memory: its overhead over the fetch, and under 32 threads.

Run: python bench/miss_path.py   (needs the bench extra: pip install -e ".[bench]")

Every operation asks for a key never asked before (``user:<n>``, a counter), so every
call is a MISS that fetches and stores; the fetch returns a ready ~200-byte record at
once, so what is timed is the engine's own work. The stores hold at most 100_000 entries
(filled beforehand), so every miss also evicts one. Prints ns per operation for:

- the baseline of a MISS: a plain ``dict`` store of the result of a function call
  (``cache[key] = fetch()``), and the same under a ``threading.Lock`` (what a hand-made
  thread-safe cache does);
- ``StaleEngine.execute`` MISS over ``MemoryStorage`` and over a ``PoolCache``;
- the same MISS from 32 threads at once, each on its own keys (time per miss of all
  threads together), against one thread doing as many misses. The threads are started
  once, as a service keeps its workers, and released together at a barrier in every
  round (``_harness.Crew``): a round times the misses, not starting threads. For
  information, the plain store, locked and not, from 32 threads against one: CPython
  charges threads taking turns on the GIL a few percent whatever they run, and those
  ratios are the floor of the engine's.

Every case is measured twice: in wall time, and in the CPU time of the process (all its
threads), which the other loads of a shared machine disturb much less.

Targets: MISS overhead (the engine's ns per miss minus the plain dict store's) at most
5 us, over both storages; 32 threads missing 32 different keys at once cost no more per
miss than one thread. Both are checked in wall time and in CPU time.
"""

from __future__ import annotations

import gc
import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _harness import Case, Crew, Target, measure, report
from _working_set import RECORD

from swr import CacheTTL, StaleEngine
from swr.storage import MemoryPool, MemoryStorage

WORKING_SET = 100_000  # the filler entries of the stores (the misses are new keys)
OPS = 10_000
THREADS = 32
TARGET_OVERHEAD_NS = 5_000.0


def fetch() -> dict[str, Any]:
    return RECORD


def sequential(call: Callable[[str], object]) -> Case:
    """``n`` calls on keys never used before, from this thread."""
    fresh = itertools.count()

    def run(n: int) -> None:
        keys = [f"user:{next(fresh)}" for _ in range(n)]
        for key in keys:
            call(key)

    return run


def threaded(crew: Crew, threads: int, prefix: str) -> Case:
    """``n`` calls on keys never used before, shared among the ``threads`` of ``crew``."""
    fresh = itertools.count()

    def run(n: int) -> None:
        batches = [
            [f"{prefix}{t}:{next(fresh)}" for _ in range(n // threads)] for t in range(threads)
        ]
        crew.run(batches)

    return run


def main() -> int:
    windows = CacheTTL(fresh=3600, stale=3600)
    plain: dict[str, object] = {}
    guarded: dict[str, object] = {}
    lock = threading.Lock()

    def dict_store(key: str) -> None:
        plain[key] = fetch()

    def locked_store(key: str) -> None:
        value = fetch()
        with lock:
            guarded[key] = value

    memory = StaleEngine(MemoryStorage(max_entries=WORKING_SET), ttl=windows)
    pool = MemoryPool(capacity=WORKING_SET, gc_interval=None)
    pooled = StaleEngine(pool.register("api"), ttl=windows)
    engines = {"MemoryStorage": memory, "PoolCache": pooled}
    for engine in engines.values():
        for i in range(WORKING_SET):
            engine.set(f"filler:{i}", RECORD)

    cases: dict[str, Case] = {
        "dict[key] = fetch()": sequential(dict_store),
        "with lock: dict[key] = fetch()": sequential(locked_store),
    }
    crews: list[Crew] = []
    for threads, prefix, label in ((1, "one", "1 thread"), (THREADS, "t", f"{THREADS} threads")):
        crews.append(Crew(threads, locked_store))
        cases[f"with lock: dict[key] = fetch(), {label}"] = threaded(crews[-1], threads, prefix)
        crews.append(Crew(threads, dict_store))
        cases[f"dict[key] = fetch(), {label}"] = threaded(crews[-1], threads, f"u{prefix}")
    for name, engine in engines.items():

        def miss(key: str, engine: StaleEngine = engine) -> object:
            return engine.execute(key, fetch)

        cases[f"StaleEngine MISS over {name}"] = sequential(miss)
        for threads, prefix, label in (
            (1, "one", "1 thread"),
            (THREADS, "t", f"{THREADS} threads"),
        ):
            crews.append(Crew(threads, miss))
            cases[f"StaleEngine MISS over {name}, {label}"] = threaded(crews[-1], threads, prefix)
    gc.collect()
    met = True
    for clock, title in ((time.perf_counter_ns, "wall"), (time.process_time_ns, "CPU")):
        results = measure(cases, OPS, rounds=7, clock=clock)
        met &= check(results, f"miss path, {title} time", list(engines))
    for crew in crews:
        crew.close()
    for engine in engines.values():
        engine.close()
    pool.close()
    return 0 if met else 1


def check(results: dict[str, float], title: str, engines: list[str]) -> bool:
    """Print ``results`` and the targets; return whether they all held."""
    targets = [
        Target(
            f"MISS per miss over {name}: {THREADS} threads / 1 thread",
            f"StaleEngine MISS over {name}, {THREADS} threads",
            f"StaleEngine MISS over {name}, 1 thread",
            1.0,
        )
        for name in engines
    ]
    met = report(title, results, targets)
    for name in engines:
        overhead = results[f"StaleEngine MISS over {name}"] - results["dict[key] = fetch()"]
        ok = overhead <= TARGET_OVERHEAD_NS
        met &= ok
        print(
            f"{'MET ' if ok else 'MISS'}  MISS overhead over {name} (fetch excluded): "
            f"{overhead / 1000:.2f} us (target <= {TARGET_OVERHEAD_NS / 1000:.0f} us)"
        )
    for name in engines:
        ratio = results[f"StaleEngine MISS over {name}"] / results["dict[key] = fetch()"]
        print(f"info  MISS over {name} / dict[key] = fetch(): {ratio:.1f}x (no target)")
    # What the interpreter itself charges 32 threads taking turns on the GIL, whatever
    # they run: the same ratio for the plain store, under a lock and with none at all.
    for store in ("with lock: dict[key] = fetch()", "dict[key] = fetch()"):
        floor = results[f"{store}, {THREADS} threads"] / results[f"{store}, 1 thread"]
        print(
            f"info  {store}, {THREADS} threads / 1 thread: {floor:.2f}x "
            "(no target: the floor of any Python code under the GIL)"
        )
    return met


if __name__ == "__main__":
    sys.exit(main())
