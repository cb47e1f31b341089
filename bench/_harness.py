"""Shared timing helpers for the bench scripts.

Machines running these are shared and noisy, so every script measures its baselines in
the same run, interleaves the cases round by round, and reports the best round of each
(the least disturbed one) as nanoseconds per operation, plus ratios between cases.

Each round runs the cases in a new order (shuffled with the round's number as the seed,
so runs repeat): a case that always ran right after another would always find the CPU
caches as that one left them, warmed with the same keys or cooled by a large working
set, and a fixed order would favour one side of a ratio.
"""

from __future__ import annotations

import gc
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

Case = Callable[[int], object]  # runs the operation n times
T = TypeVar("T")


def measure(
    cases: dict[str, Case],
    n: int,
    rounds: int = 15,
    warmup: int = 2,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, float]:
    """Return the best ns/op of each case over ``rounds`` interleaved rounds.

    ``clock`` is wall time by default; ``time.process_time_ns`` measures the CPU time of
    the whole process instead (every thread's), which other loads on the machine
    disturb less.
    """
    best = {name: float("inf") for name in cases}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        order = list(cases.items())
        for round_no in range(warmup + rounds):
            random.Random(round_no).shuffle(order)
            for name, run in order:
                started = clock()
                run(n)
                elapsed = (clock() - started) / n
                if round_no >= warmup:
                    best[name] = min(best[name], elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


class Crew:
    """Threads started once that run one batch of calls each per round, started together.

    A service keeps its threads (a server's workers, a pool's): what a threaded case
    times is the calls, not starting threads. Starting and joining 32 threads in every
    round cost ~0.6 us per miss of a 10,000-miss round (about a tenth of a miss), which
    a single thread pays only once: it made 32 threads look slower per miss than one.
    The threads wait at a barrier between rounds; :meth:`run` releases them together
    and returns when the last one has finished its batch.
    """

    def __init__(self, size: int, call: Callable[[T], object]) -> None:
        self._call = call
        self._go = threading.Barrier(size + 1)
        self._done = threading.Barrier(size + 1)
        self._batches: Sequence[Sequence[object]] = [()] * size
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(at,), daemon=True) for at in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self, at: int) -> None:
        call = self._call
        while True:
            self._go.wait()
            if self._closed:
                return
            for item in self._batches[at]:
                call(item)  # type: ignore[arg-type]  # the batches run() was given
            self._done.wait()

    def run(self, batches: Sequence[Sequence[T]]) -> None:
        """Call ``call`` on each item of each batch, batch ``i`` on thread ``i``."""
        if len(batches) != len(self._threads):
            raise ValueError(f"{len(batches)} batches for {len(self._threads)} threads")
        self._batches = batches
        self._go.wait()
        self._done.wait()

    def close(self) -> None:
        """Stop and join the threads."""
        self._closed = True
        self._go.wait()
        for thread in self._threads:
            thread.join()


@dataclass(frozen=True)
class Target:
    """``numerator / denominator <= limit`` (or ``>=`` when ``at_least``)."""

    label: str
    numerator: str
    denominator: str
    limit: float
    at_least: bool = False

    def check(self, results: dict[str, float]) -> tuple[float, bool]:
        ratio = results[self.numerator] / results[self.denominator]
        return ratio, ratio >= self.limit if self.at_least else ratio <= self.limit


def report(
    title: str, results: dict[str, float], targets: list[Target], unit: str = "ns/op"
) -> bool:
    """Print a table of the results and the targets; return whether all targets held."""
    width = max(len(name) for name in results)
    print(f"\n{title}  (python {sys.version.split()[0]}, best of interleaved rounds)")
    print(f"{'case':<{width}}  {unit:>12}")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:>12.1f}")
    all_met = True
    if targets:
        print()
        for target in targets:
            ratio, met = target.check(results)
            all_met &= met
            sign = ">=" if target.at_least else "<="
            print(
                f"{'MET ' if met else 'MISS'}  {target.label}: {ratio:.2f}x "
                f"(target {sign} {target.limit}x)"
            )
    return all_met
