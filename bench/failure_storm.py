"""Callers during an upstream outage: upstream calls, callers' latency, throughput.

Every key has an entry past its stale window (the expired window: kept as a fallback)
when the upstream goes down. Many threads then call ``execute`` on random keys for a
bounded time. Without backoff each caller of a failing key calls the upstream itself (a
failure storm); with it, a failing key is tried once per backoff step and its callers get
FALLBACK at once.

    python bench/failure_storm.py [--clients 50] [--keys 100] [--seconds 10] [--hung]

``--hung``: the upstream hangs (each call blocks for twice the refresh timeout) instead
of failing at once.
"""

from __future__ import annotations

import argparse
import functools
import random
import threading
import time
from collections import Counter

from swr import CacheTTL, RefreshOptions, StaleEngine
from swr.storage import MemoryStorage


class Upstream:
    def __init__(self, hang: float) -> None:
        self.calls = 0
        self.down = False
        self.hang = hang
        self.lock = threading.Lock()

    def fetch(self, key: str) -> str:
        with self.lock:
            self.calls += 1
        if self.down:
            if self.hang:
                time.sleep(self.hang)
            raise ConnectionError("upstream down")
        return f"value of {key}"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(clients: int, keys: int, seconds: float, hung: bool) -> dict[str, float]:
    refresh_timeout = 0.5
    upstream = Upstream(hang=2 * refresh_timeout if hung else 0.0)
    engine = StaleEngine(
        MemoryStorage(),
        ttl=CacheTTL(fresh=0.2, stale=0.2, expired=3600),
        refresh=RefreshOptions(timeout=refresh_timeout),
    )
    names = [f"item:{i}" for i in range(keys)]
    for name in names:
        engine.execute(name, functools.partial(upstream.fetch, name))
    time.sleep(0.5)  # every entry is now in its expired window
    upstream.down = True
    upstream.calls = 0
    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: Counter[str] = Counter()
    errors = [0] * clients
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(index)
        mine = latencies[index]
        seen: Counter[str] = Counter()
        while time.monotonic() < stop:
            name = rng.choice(names)
            began = time.perf_counter()
            try:
                result = engine.execute(name, functools.partial(upstream.fetch, name))
                seen[result.status.value] += 1
            except Exception:  # the caller got the upstream's error
                errors[index] += 1
            mine.append(time.perf_counter() - began)
        with lock:
            statuses.update(seen)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    engine.close(timeout=0)
    samples = [s for per in latencies for s in per]
    return {
        "requests": len(samples),
        "requests/s": len(samples) / elapsed,
        "upstream calls": upstream.calls,
        "upstream calls per key": upstream.calls / keys,
        "errors to callers": sum(errors),
        "fallback": statuses["fallback"],
        "p50 ms": percentile(samples, 0.50) * 1000,
        "p99 ms": percentile(samples, 0.99) * 1000,
        "max ms": max(samples) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hung", action="store_true")
    args = parser.parse_args()
    outcome = run(args.clients, args.keys, args.seconds, args.hung)
    mode = "hung" if args.hung else "failing"
    print(
        f"{args.clients} clients, {args.keys} keys, {mode} upstream for {args.seconds:.0f} s"
        f" (backoff 1 s doubling to 60 s: at most ~{args.seconds:.0f} steps a key)"
    )
    for name, value in outcome.items():
        print(f"  {name:<24} {value:>12,.1f}")


if __name__ == "__main__":
    main()
