"""Quickstart: an engine on a durable LMDB store, in front of a slow, flaky upstream.

Run: python examples/quickstart.py

Time is simulated with a clock we move by hand, so a day of cache life plays out in a
second; the upstream itself really is slow (0.2 s a call). Each line shows what a
caller got: the status, the value and how old it was. Every run uses a new store in a
temporary directory, printed at the start: look inside with
``python -m swr inspect <that directory>``.
"""

from __future__ import annotations

import tempfile
import time

from swr import CacheTTL, StaleEngine, Status
from swr.storage import LMDBStorage
from swr.testing import FakeClock


class Upstream:
    """A slow service that is down while ``down`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def fetch_price(self) -> dict[str, object]:
        self.calls += 1
        time.sleep(0.2)
        if self.down:
            raise ConnectionError("upstream unavailable")
        return {"sku": "A-1", "price": 100 + self.calls}


def main() -> None:
    clock = FakeClock(time.time())  # starts now, so `swr inspect` agrees afterwards
    upstream = Upstream()
    # fresh for 60 s, then served stale for 5 min while refreshing, then kept 1 h as
    # a fallback for when the upstream fails.
    ttl = CacheTTL(fresh=60, stale=300, expired=3600)
    path = tempfile.mkdtemp(prefix="swr-quickstart-")
    print(f"store: {path}\n")
    # The store judges expiry with the same simulated clock; the background sweep is
    # off because that clock only moves when we say so.
    store = LMDBStorage(path, max_bytes=64 << 20, clock=clock, sweep_interval=None)
    with store, StaleEngine(store, ttl=ttl, clock=clock) as engine:
        started = clock()

        def call(note: str) -> None:
            began = time.perf_counter()
            try:
                result = engine.execute("price:A-1", upstream.fetch_price)
            except ConnectionError as exc:
                print(f"t={clock() - started:>6.0f}s  error     {exc!s:<32} {note}")
                return
            took = (time.perf_counter() - began) * 1000
            line = f"{result.status.value:<9} {result.value!s:<32}"
            print(
                f"t={clock() - started:>6.0f}s  {line} age {result.age:>5.0f}s  "
                f"{took:>4.0f} ms  {note}"
            )
            if result.status is Status.STALE:
                wait_for_refresh(engine)

        call("nothing cached: the caller waits for the upstream")
        clock.advance(30)
        call("fresh: served from cache, no upstream call")
        clock.advance(60)
        call("stale: old value at once, one refresh starts in the background")
        clock.advance(1)
        call("the background refresh has stored a new value")
        clock.advance(400)
        call("expired: too old to serve; the caller waits for a new value")
        upstream.down = True
        clock.advance(400)
        call("expired and the upstream is down: the old value is the fallback")
        clock.advance(4000)
        call("older than every window and the upstream is down: the error shows")
        upstream.down = False
        call("the upstream is back")
        stats = engine.stats()
        print(
            f"\nupstream calls: {upstream.calls}; hits {stats.hits}, stale {stats.stale}, "
            f"expired {stats.expired}, misses {stats.misses}, fallbacks {stats.fallbacks}, "
            f"refreshes {stats.refreshes_succeeded}"
        )
        print(
            f"store: {stats.storage['entries']} entry, {stats.storage['bytes']} bytes in {path}\n"
            f"  (the entry stays there: python -m swr inspect {path})"
        )


def wait_for_refresh(engine: StaleEngine) -> None:
    while engine.stats().refreshes_in_flight or engine.stats().refreshes_queued:
        time.sleep(0.01)


if __name__ == "__main__":
    main()
