"""An upstream goes down and comes back: what callers see with a circuit breaker.

Run: python examples/flaky_upstream.py

Ten callers a second ask for a handful of keys. At t=60 s the upstream starts failing;
at t=200 s it recovers. Time is simulated with a clock moved by hand, so the story
plays in a moment. Each line counts the statuses callers got in one ten-second slice,
how many calls reached the upstream, and the circuit's state.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter

from swr import CacheTTL, CircuitBreaker, CircuitOpenError, RefreshOptions, StaleEngine
from swr.testing import FakeClock

KEYS = [f"product:{i}" for i in range(5)]


class Upstream:
    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def fetch(self, key: str) -> dict[str, str]:
        self.calls += 1
        if self.down:
            raise ConnectionError("upstream unavailable")
        return {"key": key, "version": str(self.calls)}


def main() -> None:
    # The engine logs failures (to stderr while the application configures no logging);
    # this demo prints a summary instead. See docs/logging.md for routing the events.
    logging.getLogger("swr").setLevel(logging.CRITICAL)
    clock = FakeClock()
    upstream = Upstream()
    breaker = CircuitBreaker(
        failure_threshold=3, success_threshold=2, reset_timeout=30, clock=clock
    )
    engine = StaleEngine(
        ttl=CacheTTL(fresh=20, stale=40, expired=600),
        clock=clock,
        breaker=breaker,
        refresh=RefreshOptions(backoff_initial=5),
    )
    start = clock()
    print(f"{'time':>9}  {'upstream':<8} {'circuit':<9} {'calls':>5}  statuses callers got")
    for second in range(300):
        upstream.down = 60 <= second < 200
        if second % 10 == 0:
            seen: Counter[str] = Counter()
            calls_before = upstream.calls
        for caller in range(10):
            key = KEYS[(second + caller) % len(KEYS)]
            try:
                result = engine.execute(key, functools.partial(upstream.fetch, key))
                seen[result.status.value] += 1
            except CircuitOpenError:
                seen["circuit_open_error"] += 1
            except ConnectionError:
                seen["upstream_error"] += 1
        settle(engine)
        if second % 10 == 9:
            state = "down" if upstream.down else "up"
            summary = ", ".join(f"{name} {count}" for name, count in sorted(seen.items()))
            print(
                f"{clock() - start - 9:>4.0f}-{clock() - start:>3.0f}s  {state:<8} "
                f"{breaker.state:<9} {upstream.calls - calls_before:>5}  {summary}"
            )
        clock.advance(1)
    stats = engine.stats()
    print(
        f"\nupstream calls {upstream.calls} for {stats.requests} requests; "
        f"circuit opened {stats.circuit['opened']}x, closed {stats.circuit['closed']}x; "
        f"fetches refused while open: {stats.circuit_rejected}"
    )
    engine.close()


def settle(engine: StaleEngine) -> None:
    """Let background refreshes finish before simulated time moves on."""
    while engine.stats().refreshes_in_flight or engine.stats().refreshes_queued:
        time.sleep(0.001)


if __name__ == "__main__":
    main()
