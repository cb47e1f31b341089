"""Semantics a user can trust: one clock, no dead entry served, no failure storms.

Every test gives the clock to the engine only, never to the storage, as users run it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import pytest

from swr import CacheTTL, CircuitBreaker, RefreshOptions, Status
from swr.storage import Entry, LMDBStorage, MemoryPool, MemoryStorage
from swr.testing import FakeClock
from tests.helpers import wait_until

YEAR = 365 * 86400.0
TTL = CacheTTL(fresh=10, stale=100, expired=1000)


def past_clock() -> FakeClock:
    # A year behind real time: a storage judging by its own clock sees every entry
    # this engine writes as long dead.
    return FakeClock(time.time() - YEAR)


def future_clock() -> FakeClock:
    # A year ahead: a storage judging by its own clock keeps entries the engine
    # judges dead.
    return FakeClock(time.time() + YEAR)


class Upstream:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            calls = self.calls
        if self.fail:
            raise ConnectionError("upstream down")
        return f"v{calls}"


# -- 1. one clock (make_driver: tests/swr/conftest.py, sync and async engines) ---------


def test_engine_get_agrees_with_execute(make_driver):
    clock = past_clock()
    d = make_driver(storage=MemoryStorage(), ttl=TTL, clock=clock)
    d.execute("k", Upstream())
    clock.advance(20)
    assert d.execute("k", Upstream()).status is Status.STALE
    got = d.get("k")
    assert got is not None
    assert got.value == "v1"


def test_an_open_circuit_serves_the_stale_entry_as_fallback(make_driver):
    clock = past_clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=600, clock=clock)
    d = make_driver(storage=MemoryStorage(), ttl=TTL, clock=clock, breaker=breaker)
    d.execute("k", Upstream())
    clock.advance(20)
    breaker.record_failure(breaker.acquire())  # the circuit opens
    assert breaker.state == "open"
    result = d.execute("k", Upstream())
    assert result.status is Status.FALLBACK
    assert result.value == "v1"


def test_a_pool_cache_under_an_engine_hits(make_driver):
    clock = past_clock()
    pool = MemoryPool(capacity=100, gc_interval=None)
    d = make_driver(storage=pool.register("api", max=50), ttl=TTL, clock=clock)
    upstream = Upstream()
    d.execute("k", upstream)
    assert d.execute("k", upstream).status is Status.HIT
    assert upstream.calls == 1
    pool.close()


def test_an_lmdb_store_under_an_engine_keeps_the_engine_windows(make_driver, tmp_path):
    clock = past_clock()
    store = LMDBStorage(tmp_path / "store", sweep_interval=None)
    d = make_driver(storage=store, ttl=TTL, clock=clock)
    upstream = Upstream()
    d.execute("k", upstream)
    assert d.execute("k", upstream).status is Status.HIT
    clock.advance(20)
    assert d.execute("k", upstream).status is Status.STALE
    d.settle()
    store.close()


def test_a_storage_with_its_own_different_clock_is_refused():
    from swr import StaleEngine

    with pytest.raises(ValueError, match="clock"):
        StaleEngine(MemoryStorage(clock=FakeClock()), ttl=TTL, clock=FakeClock())


# -- 2. a dead entry is never served --------------------------------------------------


class KeepingStorage:
    """Six verbs and leases, and it never drops anything: expiry is the engine's job."""

    def __init__(self) -> None:
        self.data: dict[str, Entry] = {}
        self.leases: dict[str, str] = {}

    def get(self, key: str) -> Entry | None:
        return self.data.get(key)

    def set(self, key: str, entry: Entry) -> None:
        self.data[key] = entry

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self.data.get(k) for k in keys]

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        self.data.update(entries)

    def close(self) -> None:
        pass

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        if key in self.leases:
            return None
        self.leases[key] = token = f"t{len(self.leases)}"
        return token

    def release_lease(self, key: str, token: str) -> None:
        if self.leases.get(key) == token:
            del self.leases[key]


def test_an_entry_dead_by_the_engine_clock_is_refetched():
    from swr import StaleEngine

    clock = FakeClock()
    store = KeepingStorage()
    with StaleEngine(store, ttl=TTL, clock=clock) as engine:
        upstream = Upstream()
        engine.execute("k", upstream)
        clock.advance(2000)  # past expires_at; the store still holds it
        result = engine.execute("k", upstream)
        assert upstream.calls == 2
        assert result.status is Status.MISS
        assert result.value == "v2"


def test_an_lmdb_entry_dead_by_the_engine_clock_is_refetched(make_driver, tmp_path):
    clock = future_clock()
    store = LMDBStorage(tmp_path / "store", sweep_interval=None)
    d = make_driver(storage=store, ttl=TTL, clock=FakeClock(time.time()))
    upstream = Upstream()
    d.execute("k", upstream)
    d2 = make_driver(storage=store, ttl=TTL, clock=clock)
    result = d2.execute("k", upstream)
    assert (result.status, result.value, upstream.calls) == (Status.MISS, "v2", 2)
    store.close()


# -- 3. no failure storms --------------------------------------------------------------


def test_a_failing_key_backs_off_instead_of_fetching_per_caller(make_driver):
    clock = FakeClock()
    d = make_driver(storage=MemoryStorage(), ttl=TTL, clock=clock)
    d.execute("k", Upstream())
    clock.advance(200)  # past the stale window: the expired window
    down = Upstream(fail=True)
    for _ in range(20):
        result = d.execute("k", down)
        assert (result.status, result.value) == (Status.FALLBACK, "v1")
    assert down.calls == 1  # one try, then the key backs off
    clock.advance(1.5)  # past the first backoff step
    assert d.execute("k", down).status is Status.FALLBACK
    assert d.execute("k", down).status is Status.FALLBACK
    assert down.calls == 2
    assert d.stats().fetches_backed_off >= 20


def test_a_key_that_backs_off_recovers(make_driver):
    clock = FakeClock()
    d = make_driver(storage=MemoryStorage(), ttl=TTL, clock=clock)
    d.execute("k", Upstream())
    clock.advance(200)
    d.execute("k", Upstream(fail=True))
    clock.advance(1.5)
    up = Upstream()
    result = d.execute("k", up)
    assert (result.status, result.value, up.calls) == (Status.EXPIRED, "v1", 1)


def test_a_value_stored_after_a_failed_fetch_ends_its_backoff(make_driver):
    # The engine skips forgetting failures while none ever happened: a failed foreground
    # fetch must count as one, or its key would go on backing off after a new value.
    clock = FakeClock()
    slow = RefreshOptions(backoff_initial=500.0, backoff_max=500.0)
    d = make_driver(storage=MemoryStorage(), ttl=TTL, clock=clock, refresh=slow)
    d.execute("k", Upstream())
    clock.advance(200)  # expired window
    down = Upstream(fail=True)
    assert d.execute("k", down).status is Status.FALLBACK  # backs off for 500 s now
    d.set("k", "by hand")
    clock.advance(200)  # expired again, within the 500 s the failure would still delay
    assert d.execute("k", down).status is Status.FALLBACK
    assert down.calls == 2  # fetched at once: the stored value ended the backoff
    assert d.stats().fetches_backed_off == 0


def test_a_miss_never_backs_off_without_an_entry(make_driver):
    clock = FakeClock()
    d = make_driver(storage=MemoryStorage(), ttl=TTL, clock=clock)
    down = Upstream(fail=True)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            d.execute("k", down)
    assert down.calls == 3  # nothing to fall back on: every caller is told


# -- 4. a fetch that re-enters its own key ---------------------------------------------


def test_a_fetch_that_reenters_its_own_key_fails_at_once():
    from swr import ReentrantFetchError, StaleEngine

    with StaleEngine(ttl=TTL) as engine:

        def load() -> str:
            return engine.execute("user:1", load).value

        with pytest.raises(ReentrantFetchError, match="user:1"):
            engine.execute("user:1", load)
        assert issubclass(ReentrantFetchError, RuntimeError)
        # other keys may be fetched from inside a fetch
        assert engine.execute("a", lambda: engine.execute("b", lambda: 2).value).value == 2


async def test_an_async_fetch_that_reenters_its_own_key_fails_at_once():
    from swr import AsyncStaleEngine, ReentrantFetchError

    async with AsyncStaleEngine(ttl=TTL) as engine:

        async def load() -> str:
            return (await engine.execute("user:1", load)).value

        with pytest.raises(ReentrantFetchError, match="user:1"):
            await engine.execute("user:1", load)


# -- 7. a bad per-call ttl is refused before the fetch ---------------------------------


def test_a_bad_call_ttl_is_refused_before_the_fetch(make_driver):
    d = make_driver(ttl=TTL)
    upstream = Upstream()
    with pytest.raises(TypeError, match="ttl"):
        d.execute("k", upstream, ttl="x")
    assert upstream.calls == 0


# -- 1. one clock, on every backend, with the clock given to the engine alone ----------


def _backend(name: str, request: pytest.FixtureRequest, tmp_path) -> tuple[object, list]:
    """A storage built without a clock, and what to close after the test."""
    from swr.storage import FallbackStorage, RedisStorage, TieredStorage

    def redis() -> RedisStorage:
        url = request.getfixturevalue("redis_server").url
        return RedisStorage.from_url(url, prefix=f"sem{time.monotonic_ns()}:")

    if name == "memory":
        store: object = MemoryStorage()
        return store, [store]
    if name == "pool":
        pool = MemoryPool(capacity=100, gc_interval=None)
        return pool.register("api", max=50), [pool]
    if name == "lmdb":
        store = LMDBStorage(tmp_path / "store", sweep_interval=None)
        return store, [store]
    if name == "redis":
        store = redis()
        return store, [store]
    if name == "fallback":
        store = FallbackStorage(redis(), MemoryStorage())
        return store, [store]
    store = TieredStorage(MemoryStorage(), redis())
    return store, [store]


BACKENDS = [
    "memory",
    "pool",
    "lmdb",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("fallback", marks=pytest.mark.redis),
    pytest.param("tiered", marks=pytest.mark.redis),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("offset", [-YEAR, YEAR], ids=["past", "future"])
def test_every_window_by_the_engine_clock_alone(make_driver, request, tmp_path, backend, offset):
    clock = FakeClock(time.time() + offset)
    store, owned = _backend(backend, request, tmp_path)
    probe = make_driver(ttl=TTL)
    twin = None
    if probe.kind == "async" and backend in ("redis", "fallback", "tiered"):
        twin = store.as_async()  # closed below: the engine does not own it
    d = make_driver(storage=store if twin is None else twin, ttl=TTL, clock=clock)
    upstream = Upstream()
    assert d.execute("k", upstream).status is Status.MISS
    assert d.execute("k", upstream).status is Status.HIT
    clock.advance(20)
    assert d.execute("k", upstream).status is Status.STALE
    d.settle()
    assert d.get("k").value == "v2"
    clock.advance(200)  # past the stale window: expired, still served on failure
    assert d.get("k").status is Status.EXPIRED
    result = d.execute("k", Upstream(fail=True))
    assert (result.status, result.value) == (Status.FALLBACK, "v2")
    clock.advance(2000)  # dead by the engine's clock, whatever the store keeps
    assert d.get("k") is None
    result = d.execute("k", upstream)
    assert (result.status, result.value) == (Status.MISS, "v3")
    d.close_engine()
    if twin is not None:
        d.run(twin.aclose())
    for thing in owned:
        thing.close()


@pytest.mark.parametrize("backend", ["memory", "pool", "lmdb"])
def test_a_storage_keeps_its_explicit_clock(backend, tmp_path):
    from swr import StaleEngine

    own = FakeClock()
    if backend == "memory":
        store: object = MemoryStorage(clock=own)
        closing: object = store
    elif backend == "pool":
        closing = MemoryPool(capacity=10, gc_interval=None, clock=own)
        store = closing.register("api")
    else:
        store = closing = LMDBStorage(tmp_path / "s", clock=own, sweep_interval=None)
    with pytest.raises(ValueError, match="clock"):
        StaleEngine(store, ttl=TTL, clock=FakeClock())
    with StaleEngine(store, ttl=TTL, clock=own) as engine:  # the same clock: accepted
        assert engine.execute("k", lambda: 1).status is Status.MISS
    closing.close()


def test_a_bounded_refresh_never_runs_in_the_caller_by_the_engine_clock_alone(make_driver):
    from swr import RefreshOptions

    clock = past_clock()
    gate = threading.Event()
    calls: list[str] = []

    def hung() -> str:
        calls.append("call")
        gate.wait(10)
        return "late"

    d = make_driver(
        storage=MemoryStorage(),
        ttl=TTL,
        clock=clock,
        refresh=RefreshOptions(max_concurrent=2, queue_size=0, timeout=30),
    )
    for key in ("a", "b", "c"):
        d.execute(key, Upstream())
    clock.advance(20)
    for key in ("a", "b", "c"):
        assert d.execute(key, hung).status is Status.STALE
    wait_until(lambda: len(calls) == 2)
    assert len(calls) == 2  # the bound holds; the third key's refresh was dropped
    assert d.stats().refreshes_dropped == 1
    gate.set()
    d.settle()


# -- 3. a hung upstream: at most one caller per key waits ------------------------------


def test_callers_of_a_backing_off_key_do_not_wait_for_its_retry(make_driver):
    from swr import RefreshOptions

    clock = FakeClock()
    d = make_driver(
        storage=MemoryStorage(), ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=5)
    )
    d.execute("k", Upstream())
    clock.advance(200)
    d.execute("k", Upstream(fail=True))  # the key backs off
    clock.advance(1.5)
    gate = threading.Event()
    entered = threading.Event()

    def hung() -> str:
        entered.set()
        gate.wait(10)
        return "late"

    retry = threading.Thread(target=d.execute, args=("k", hung))
    retry.start()
    assert entered.wait(5)
    started = time.monotonic()
    for _ in range(5):  # the retry runs: the others are served at once
        assert d.execute("k", Upstream()).status is Status.FALLBACK
    assert time.monotonic() - started < 2
    gate.set()
    retry.join(10)


# -- 5. repeated failures log once per backoff step ------------------------------------


def test_a_failing_key_logs_once_per_backoff_step(make_driver):
    from structlog.testing import capture_logs

    clock = FakeClock()
    d = make_driver(storage=MemoryStorage(), ttl=TTL, clock=clock)
    down = Upstream(fail=True)
    with capture_logs() as logs:
        for _ in range(5):  # no entry: each caller fetches, one line for the step
            with pytest.raises(ConnectionError):
                d.execute("k", down)
        clock.advance(1.5)
        with pytest.raises(ConnectionError):
            d.execute("k", down)
    lines = [e for e in logs if e["event"] == "fetch_failed"]
    assert down.calls == 6
    assert [e["suppressed"] for e in lines] == [0, 4]
    d.execute("k", Upstream())  # success: the key is forgotten
    with capture_logs() as logs:
        with pytest.raises(ConnectionError):
            d.execute("k2", down)
    assert [e["suppressed"] for e in logs if e["event"] == "fetch_failed"] == [0]


# -- 7. one contract: what MemoryStorage refuses like the byte storages ----------------


@pytest.mark.parametrize(
    "times",
    [(0.0, float("nan"), 2.0, 3.0), (0.0, 2.0, 1.0, 3.0), (0.0, 1.0, 2.0, float("nan"))],
)
def test_memory_refuses_nan_and_out_of_order_times(times):
    stored, fresh, stale, expires = times
    entry = Entry(
        value=1, stored_at=stored, fresh_until=fresh, stale_until=stale, expires_at=expires
    )
    with MemoryStorage() as store:
        with pytest.raises(ValueError, match="ordered"):
            store.set("k", entry)
        assert store.get("k") is None


def test_memory_refuses_the_empty_key_and_accepts_forever():
    forever = Entry(
        value=1, stored_at=0.0, fresh_until=1.0, stale_until=2.0, expires_at=float("inf")
    )
    with MemoryStorage() as store:
        with pytest.raises(ValueError, match="empty"):
            store.set("", forever)
        with pytest.raises(TypeError, match="str"):
            store.set(b"k", forever)  # type: ignore[arg-type]
        store.set("k", forever)
        assert store.get("k") is forever
