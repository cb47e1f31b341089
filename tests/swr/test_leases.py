"""Engines sharing a storage with leases fetch a key once between them."""

from __future__ import annotations

import threading
import time

from swr import CacheTTL, RefreshOptions, StaleEngine, Status
from swr.storage import MemoryStorage
from tests.helpers import wait_until
from tests.swr.upstream import Upstream

TTL = CacheTTL(fresh=10, stale=20, expired=30)


def test_two_engines_on_one_storage_fetch_a_missing_key_once(clock):
    storage = MemoryStorage(clock=clock)
    a = StaleEngine(storage, ttl=TTL, clock=clock)
    b = StaleEngine(storage, ttl=TTL, clock=clock)
    up = Upstream()
    gate = up.hold()
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("a", a.execute("k", up)))
    thread.start()
    assert up.entered.wait(5)
    other = threading.Thread(target=lambda: results.setdefault("b", b.execute("k", up)))
    other.start()
    time.sleep(0.02)  # b is polling for a's result
    gate.set()
    thread.join(5)
    other.join(5)
    assert up.calls == 1
    assert results["a"].value == results["b"].value == "v1"
    assert results["b"].status is Status.MISS


def test_a_dead_lease_holder_costs_one_lease_period(clock):
    storage = MemoryStorage(clock=clock)
    # A process that took the lease and died: its lease never gets released.
    assert storage.acquire_lease("k", ttl=3600) is not None
    engine = StaleEngine(storage, ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=0.2))
    up = Upstream()
    started = time.monotonic()
    r = engine.execute("k", up)
    waited = time.monotonic() - started
    assert (r.value, r.status) == ("v1", Status.MISS)
    assert 0.15 <= waited < 3
    assert up.calls == 1


def test_refresh_is_skipped_while_another_process_holds_the_lease(clock):
    storage = MemoryStorage(clock=clock)
    engine = StaleEngine(storage, ttl=TTL, clock=clock)
    engine.set("k", "old")
    clock.advance(15)
    token = storage.acquire_lease("k", ttl=3600)
    up = Upstream()
    assert engine.execute("k", up).status is Status.STALE
    wait_until(lambda: engine.stats().refreshes_skipped == 1)
    wait_until(lambda: engine.stats().refreshes_in_flight == 0)
    assert up.calls == 0
    assert engine.stats().refreshes_started == 0
    storage.release_lease("k", token)
    engine.execute("k", up)
    wait_until(lambda: engine.stats().refreshes_succeeded == 1)
    assert up.calls == 1


def test_lease_is_released_after_the_fetch(clock):
    storage = MemoryStorage(clock=clock)
    engine = StaleEngine(storage, ttl=TTL, clock=clock)
    engine.execute("k", Upstream())
    assert storage.acquire_lease("k", ttl=1) is not None
