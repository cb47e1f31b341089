"""execute_many, loaders, invalidation and per-call control, on both engines (issue 15)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from swr import (
    BatchFetchError,
    CacheTTL,
    CircuitBreaker,
    CircuitOpenError,
    NotModified,
    StaleEngine,
    Status,
)
from swr.storage import MemoryStorage
from swr.storage.base import StorageMixin
from tests.swr.drivers import AsyncDriver, Driver

TTL = CacheTTL(fresh=10, stale=100, expired=1000)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """A fetch_many recording each call's keys; values are ``key + "@" + version``."""

    def __init__(self, version: int = 1) -> None:
        self.calls: list[list[str]] = []
        self.version = version
        self.lock = threading.Lock()

    def __call__(self, keys: list[str]) -> dict[str, str]:
        with self.lock:
            self.calls.append(list(keys))
        return {key: f"{key}@{self.version}" for key in keys}


def many(driver: Driver, fn: Callable[[list[str]], Mapping[str, Any]]) -> Any:
    """``fn`` as the fetch_many of the driver's engine (a coroutine function for asyncio)."""
    if not isinstance(driver, AsyncDriver):
        return fn

    async def afetch(keys: list[str]) -> Mapping[str, Any]:
        return await asyncio.to_thread(fn, keys)

    return afetch


def one(driver: Driver, fn: Callable[..., Any]) -> Any:
    """A conditional fetch (one argument) for the driver's engine."""
    if not isinstance(driver, AsyncDriver):
        return fn

    async def afetch(entry: Any) -> Any:
        return fn(entry)

    return afetch


def call(driver: Driver, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call an engine method, awaiting it on the driver's loop for asyncio."""
    result = getattr(driver.engine, name)(*args, **kwargs)
    if isinstance(driver, AsyncDriver):

        async def wait() -> Any:
            return await result

        return driver.run(wait())
    return result


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_missing_keys_cost_one_fetch_many_and_one_batch_write(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    store = MemoryStorage(clock=clock)
    d = make_driver(storage=store, ttl=TTL, clock=clock, namespace="ns")
    up = Upstream()
    keys = [f"k{i}" for i in range(50)]
    results = call(d, "execute_many", keys, many(d, up))
    assert up.calls == [keys]  # the caller's keys, not "ns:..."
    assert list(results) == keys
    assert {r.status for r in results.values()} == {Status.MISS}
    assert results["k3"].value == "k3@1"
    assert store.get("ns:k3") is not None
    again = call(d, "execute_many", keys, many(d, up))
    assert len(up.calls) == 1
    assert {r.status for r in again.values()} == {Status.HIT}
    assert d.stats().hits == 50
    assert d.stats().misses == 50


@pytest.mark.parametrize("namespace", ["", "ns"])
def test_keys_hit_by_execute_many_are_marked_used_in_memory(
    make_driver: Callable[..., Driver], clock: Clock, namespace: str
) -> None:
    store = MemoryStorage(max_entries=3, clock=clock)
    d = make_driver(storage=store, ttl=TTL, clock=clock, namespace=namespace)
    prefix = f"{namespace}:" if namespace else ""
    for key in ("a", "b", "c"):
        d.set(key, key)
    results = call(d, "execute_many", ["a", "c"], many(d, Upstream()))
    assert [(r.value, r.status) for r in results.values()] == [
        ("a", Status.HIT),
        ("c", Status.HIT),
    ]
    d.set("d", "d")  # full: the oldest key not read since goes
    assert store.get(prefix + "b") is None
    assert [store.get(prefix + key) is not None for key in ("a", "c", "d")] == [True] * 3


def test_only_the_missing_keys_are_fetched(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    d.set("a", "cached-a")
    up = Upstream()
    results = call(d, "execute_many", ["a", "b", "a", "c"], many(d, up))
    assert up.calls == [["b", "c"]]
    assert list(results) == ["a", "b", "c"]
    assert results["a"].value == "cached-a"
    assert results["a"].status is Status.HIT


def test_stale_keys_are_served_at_once_and_refreshed_as_their_own_batch(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    d.set("s1", "old1")
    d.set("s2", "old2")
    clock.now += 20  # stale
    release = threading.Event()
    calls: list[list[str]] = []

    def upstream(keys: list[str]) -> dict[str, str]:
        calls.append(list(keys))
        if "s1" in keys:  # the background batch blocks until released
            assert release.wait(5)
        return {key: f"{key}-new" for key in keys}

    results = call(d, "execute_many", ["s1", "m", "s2"], many(d, upstream))
    # Returned while the background batch is still blocked.
    assert results["s1"].status is Status.STALE
    assert results["s1"].value == "old1"
    assert results["m"].status is Status.MISS
    release.set()
    d.settle()
    assert sorted(map(sorted, calls)) == [["m"], ["s1", "s2"]]
    assert d.get("s2").value == "s2-new"
    assert d.stats().refreshes_succeeded == 2


def test_a_key_left_out_is_omitted_or_raises(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)

    def partial(keys: list[str]) -> dict[str, str]:
        return {key: key.upper() for key in keys if key != "gone"}

    results = call(d, "execute_many", ["a", "gone"], many(d, partial))
    assert list(results) == ["a"]
    with pytest.raises(KeyError, match="gone"):
        call(d, "execute_many", ["b", "gone"], many(d, partial), missing="raise")
    assert d.get("b").value == "B"  # the others are stored
    with pytest.raises(ValueError, match="missing"):
        call(d, "execute_many", ["b"], many(d, partial), missing="skip")


def test_a_failing_fetch_many_serves_fallback_and_raises_for_the_rest(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    d.set("old", "kept")
    d.set("hit", "h")
    clock.now += 200  # "old" expired (past stale), still live
    d.set("hit", "h")

    def broken(keys: list[str]) -> dict[str, str]:
        raise ConnectionError("db down")

    with pytest.raises(BatchFetchError) as caught:
        call(d, "execute_many", ["hit", "old", "new"], many(d, broken))
    err = caught.value
    assert err.failed == ["new"]
    assert isinstance(err.__cause__, ConnectionError)
    assert err.results["old"].status is Status.FALLBACK
    assert err.results["old"].value == "kept"
    assert err.results["hit"].status is Status.HIT
    assert d.stats().fallbacks == 1


def test_keys_another_caller_is_fetching_are_waited_on(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        assert release.wait(5)
        return "slow-a"

    answer: list[Any] = []
    worker = threading.Thread(target=lambda: answer.append(d.execute("a", slow)))
    worker.start()
    assert started.wait(5)
    up = Upstream()
    timer = threading.Timer(0.05, release.set)
    timer.start()
    results = call(d, "execute_many", ["a", "b"], many(d, up))
    worker.join(5)
    assert up.calls == [["b"]]
    assert results["a"].value == "slow-a"
    assert answer[0].value == "slow-a"


def test_concurrent_execute_waits_for_the_batch(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    started = threading.Event()
    release = threading.Event()
    calls: list[list[str]] = []

    def upstream(keys: list[str]) -> dict[str, str]:
        calls.append(list(keys))
        started.set()
        assert release.wait(5)
        return dict.fromkeys(keys, "batch")

    out: list[Any] = []
    worker = threading.Thread(
        target=lambda: out.append(call(d, "execute_many", ["x", "y"], many(d, upstream)))
    )
    worker.start()
    assert started.wait(5)
    single_calls: list[int] = []

    def single() -> str:
        single_calls.append(1)
        return "single"

    threading.Timer(0.05, release.set).start()
    assert d.execute("y", single).value == "batch"
    worker.join(5)
    assert single_calls == []
    assert calls == [["x", "y"]]


def no_rows() -> list[str]:
    return []


def test_should_cache_refuses_values_per_call_and_by_default(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock, should_cache=lambda v: v is not None)
    assert d.execute("none", lambda: None).value is None
    assert d.get("none") is None  # refused by the engine default
    assert d.execute("empty", no_rows, should_cache=bool).value == []
    assert d.get("empty") is None  # refused per call
    # The per-call predicate wins over the default.
    d.execute("n2", lambda: None, should_cache=lambda v: True)
    assert d.get("n2") is not None
    results = call(d, "execute_many", ["p", "q"], many(d, lambda ks: {"p": None, "q": 1}))
    assert results["p"].value is None
    assert d.get("p") is None
    assert d.get("q").value == 1


def test_bypass_neither_reads_nor_writes(make_driver: Callable[..., Driver], clock: Clock) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    d.set("k", "cached")
    result = d.execute("k", lambda: "live", bypass=True)
    assert result.value == "live"
    assert d.get("k").value == "cached"
    d.execute("other", lambda: "x", bypass=True)
    assert d.get("other") is None
    stats = d.stats()
    assert stats.bypasses == 2
    assert stats.requests == 0


def test_refresh_starts_one_background_refresh_now(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    d.set("k", "v1")
    assert call(
        d, "refresh", "k", d.wrap(lambda: "v2") if isinstance(d, AsyncDriver) else (lambda: "v2")
    )
    d.settle()
    assert d.get("k").value == "v2"
    assert d.get("k").status is Status.HIT


def test_conditional_refresh_keeps_the_value_and_renews_its_windows(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    seen: list[Any] = []
    value = {"etag": "v1"}

    def conditional(entry: Any) -> Any:
        seen.append(entry)
        if entry is not None and entry.value["etag"] == "v1":
            return NotModified
        return value

    first = call(d, "execute", "k", one(d, conditional))
    assert first.value is value
    assert seen == [None]
    stored = d.get("k")
    clock.now += 20  # stale: the refresh gets the entry
    assert call(d, "execute", "k", one(d, conditional)).status is Status.STALE
    d.settle()
    assert seen[1].value is value
    assert seen[1].stored_at == stored.stored_at
    renewed = d.get("k")
    assert renewed.status is Status.HIT
    assert renewed.value is value  # the same object: no payload rewrite
    assert renewed.stored_at == clock.now


def test_tags_invalidate_every_entry_carrying_one(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock, namespace="app")
    d.execute("u1", lambda: "user1", tags=("user:1", "org:7"))
    d.execute("u2", lambda: "user2", tags=("org:7",))
    d.execute("u3", lambda: "user3", tags=("user:3",))
    call(d, "execute_many", ["m1"], many(d, lambda ks: {"m1": "M"}), tags=["org:7"])
    assert call(d, "invalidate_tags", "org:7") == 3
    assert d.get("u1") is None
    assert d.get("m1") is None
    assert d.get("u3").value == "user3"
    # The next execute is a MISS with a fresh fetch, never the old value as FALLBACK.
    again = d.execute("u1", lambda: "user1-new")
    assert again.status is Status.MISS
    assert again.value == "user1-new"
    assert call(d, "invalidate_tags", "user:1") == 0  # rewritten untagged: forgotten


def test_delete_many_clear_and_literal_prefixes(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    store = MemoryStorage(clock=clock)
    d = make_driver(storage=store, ttl=TTL, clock=clock, namespace="a")
    for key in ("user:1", "user:2", "user*", "org:1"):
        d.set(key, key)
    store.set("b:user:1", store.get("a:user:1"))  # another namespace
    assert call(d, "delete_many", ["org:1", "nope"]) == 1
    assert call(d, "invalidate_prefix", "user*") == 1  # literal, no glob
    assert d.get("user:1") is not None
    assert call(d, "invalidate_prefix", "user:") == 2
    d.set("x", 1)
    assert call(d, "clear") == 1
    assert store.get("b:user:1") is not None  # outside the namespace
    plain = make_driver(storage=store, ttl=TTL, clock=clock)
    assert call(plain, "clear") is None
    assert len(store) == 0
    after = d.execute("x", lambda: "fresh")
    assert after.status is Status.MISS


class _Plain(StorageMixin):
    """A storage with only the six required verbs."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, entry: Any) -> None:
        self.data[key] = entry

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None


def test_a_storage_without_the_verbs_loops_or_refuses_clearly(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(storage=_Plain(), ttl=TTL, clock=clock)
    d.set("a", 1)
    d.set("b", 2)
    assert call(d, "delete_many", ["a", "b", "c"]) == 2
    with pytest.raises(TypeError, match="BulkVerbs"):
        call(d, "invalidate_prefix", "a")
    with pytest.raises(TypeError, match="BulkVerbs"):
        call(d, "clear")
    with pytest.raises(TypeError, match="tag index"):
        d.execute("t", lambda: 1, tags=("x",))
    with pytest.raises(TypeError, match="tag index"):
        call(d, "invalidate_tags", "x")
    # Conditional refresh without touch rewrites the entry.
    d.execute("c", lambda: {"v": 1})
    clock.now += 20
    call(d, "execute", "c", one(d, lambda entry: NotModified))
    d.settle()
    assert d.get("c").stored_at == clock.now


def test_bad_arguments_are_named(make_driver: Callable[..., Driver], clock: Clock) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    with pytest.raises(TypeError, match="single str"):
        call(d, "execute_many", "abc", many(d, Upstream()))
    with pytest.raises(TypeError, match="fetch_many"):
        call(d, "execute_many", ["a"], None)
    with pytest.raises(BatchFetchError) as caught:
        call(d, "execute_many", ["a"], many(d, lambda ks: ["a"]))
    assert isinstance(caught.value.__cause__, TypeError)
    assert "mapping" in str(caught.value.__cause__)
    with pytest.raises(ValueError, match="max_batch"):
        d.engine.loader(many(d, Upstream()), max_batch=0)
    with pytest.raises(ValueError, match="NotModified"):
        call(d, "execute", "k", one(d, lambda entry: NotModified))
    with pytest.raises(ValueError, match="NotModified"):
        call(d, "execute", "k2", one(d, lambda entry: NotModified()))  # an instance too


def test_cached_many_fetches_only_uncached_ids(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    d = make_driver(ttl=TTL, clock=clock)
    calls: list[list[int]] = []

    def load(ids: list[int]) -> dict[int, str]:
        calls.append(list(ids))
        return {i: f"user{i}" for i in ids if i != 99}

    if isinstance(d, AsyncDriver):

        async def aload(ids: list[int]) -> dict[int, str]:
            return load(ids)

        fn = d.engine.cached_many(key=lambda i: f"user:{i}")(aload)
    else:
        fn = d.engine.cached_many(key=lambda i: f"user:{i}")(load)

    def run(ids: list[int]) -> Any:
        out = fn(ids)
        if isinstance(d, AsyncDriver):

            async def wait() -> Any:
                return await out

            return d.run(wait())
        return out

    assert run([1, 2]) == {1: "user1", 2: "user2"}
    assert run([2, 3, 99]) == {2: "user2", 3: "user3"}
    assert calls == [[1, 2], [3, 99]]
    assert d.get("user:3").value == "user3"


def test_loader_batches_100_concurrent_thread_misses_into_one_call(clock: Clock) -> None:
    from swr import StaleEngine

    engine = StaleEngine(ttl=TTL, clock=clock)
    up = Upstream()
    loader = engine.loader(up, max_wait=5, max_batch=100)
    barrier = threading.Barrier(100)
    results: dict[str, Any] = {}

    def worker(i: int) -> None:
        barrier.wait()
        results[str(i)] = engine.execute(str(i), loader)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    engine.close()
    assert len(up.calls) == 1
    assert sorted(up.calls[0], key=int) == [str(i) for i in range(100)]
    assert results["42"].value == "42@1"
    assert results["42"].status is Status.MISS


def test_loader_batches_100_concurrent_task_misses_into_one_call(clock: Clock) -> None:
    from swr import AsyncStaleEngine

    async def main() -> tuple[list[list[str]], list[Any]]:
        calls: list[list[str]] = []

        async def fetch_many(keys: list[str]) -> dict[str, str]:
            calls.append(list(keys))
            return {key: key * 2 for key in keys if key != "7"}

        async with AsyncStaleEngine(ttl=TTL, clock=clock) as engine:
            loader = engine.loader(fetch_many)
            results = await asyncio.gather(
                *(engine.execute(str(i), loader) for i in range(100)), return_exceptions=True
            )
            again = await engine.execute("3", loader)
            assert again.status is Status.HIT
        return calls, results

    calls, results = asyncio.run(main())
    assert len(calls) == 1
    assert len(calls[0]) == 100
    assert results[3].value == "33"
    assert isinstance(results[7], KeyError)  # a key the batch did not return


def test_loader_shares_a_failure_with_its_batch(clock: Clock) -> None:
    from swr import StaleEngine

    def broken(keys: list[str]) -> dict[str, str]:
        raise ConnectionError("down")

    with StaleEngine(ttl=TTL, clock=clock) as engine:
        loader = engine.loader(broken, max_wait=0)
        with pytest.raises(ConnectionError):
            engine.execute("a", loader)
        with pytest.raises(TypeError, match="pass it as"):
            loader()


def test_keys_leased_by_another_process_are_waited_on_not_fetched(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    store = MemoryStorage(clock=clock)
    other = StaleEngine(store, ttl=TTL, clock=clock)  # "another process" sharing the store
    d = make_driver(storage=store, ttl=TTL, clock=clock)
    token = store.acquire_lease("held", 30)
    assert token is not None

    def deliver() -> None:
        clock_entry = other._new_entry("held", "from-other", None)
        store.set_and_release("held", clock_entry, token)

    threading.Timer(0.05, deliver).start()
    up = Upstream()
    results = call(d, "execute_many", ["held", "free"], many(d, up))
    assert up.calls == [["free"]]
    assert results["held"].value == "from-other"
    other.close()


def test_an_open_circuit_serves_fallback_and_fetches_nothing(
    make_driver: Callable[..., Driver], clock: Clock
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=60, clock=clock)
    d = make_driver(ttl=TTL, clock=clock, breaker=breaker)
    d.set("old", "kept")
    clock.now += 200
    d.set("stale", "s")
    clock.now += 20  # "old" expired, "stale" stale
    with pytest.raises(ConnectionError):
        d.execute("trip", lambda: (_ for _ in ()).throw(ConnectionError("down")))
    assert breaker.is_open()
    up = Upstream()
    with pytest.raises(BatchFetchError) as caught:
        call(d, "execute_many", ["old", "stale", "new"], many(d, up))
    assert up.calls == []
    assert isinstance(caught.value.__cause__, CircuitOpenError)
    assert caught.value.results["old"].status is Status.FALLBACK
    assert caught.value.results["stale"].status is Status.FALLBACK
    assert caught.value.failed == ["new"]
