"""Rate limiters: the pure decision, both algorithms on a FakeClock, sync and asyncio."""

from __future__ import annotations

import asyncio

import pytest

from swr.ratelimit import (
    AsyncRateLimiter,
    RateLimiter,
    RateLimitExceeded,
    RateLimitResult,
    decide,
)
from swr.storage import LMDBStorage, MemoryStorage
from swr.testing import FakeClock
from tests.storage import atomic_workers
from tests.storage.test_atomic import _race, _where


@pytest.fixture
def clock() -> FakeClock:
    clock = FakeClock()
    clock.set(1_200_000.0)  # a window boundary for windows of 10 s and 60 s
    return clock


def test_fixed_window_allows_the_limit_then_says_when_the_window_ends(clock):
    limiter = RateLimiter(MemoryStorage(clock=clock), limit=3, window=10, clock=clock)
    clock.advance(4)
    results = [limiter.hit("k") for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert results[3].retry_after == pytest.approx(6)
    assert limiter.hit("other").allowed  # keys are counted apart
    clock.advance(6)
    assert limiter.hit("k") == RateLimitResult(allowed=True, remaining=2, retry_after=0.0)


def test_refused_hits_are_not_counted(clock):
    store = MemoryStorage(clock=clock)
    limiter = RateLimiter(store, limit=2, window=10, clock=clock)
    for _ in range(50):
        limiter.hit("k")
    assert store.get("ratelimit:k:120000").value == 2


def test_sliding_window_weighs_the_previous_window(clock):
    limiter = RateLimiter(
        MemoryStorage(clock=clock), limit=10, window=60, algorithm="sliding", clock=clock
    )
    assert sum(limiter.hit("k").allowed for _ in range(10)) == 10
    clock.advance(60 + 15)  # a quarter into the next window: 10 * 0.75 = 7.5 still weigh
    allowed = [limiter.hit("k") for _ in range(3)]
    assert [r.allowed for r in allowed] == [True, True, False]
    # 2 + 10 * (1 - f) + 1 <= 10 once f >= 0.3: at 18 s into the window, 3 s from now.
    assert allowed[2].retry_after == pytest.approx(3)
    clock.advance(3)
    assert limiter.hit("k").allowed
    assert not limiter.hit("k").allowed


def test_a_cost_above_the_limit_waits_for_the_next_window():
    result = decide(algorithm="sliding", limit=5, window=10, count=6, previous=0, now=3, cost=6)
    assert not result.allowed
    assert result.retry_after == pytest.approx(7)


@pytest.mark.parametrize("count", range(1, 30))
def test_the_sliding_retry_after_is_when_the_hit_would_pass(count):
    # Waiting retry_after then hitting again is allowed; a bit less is not.
    limit, window, previous, now = 10, 60.0, 8, 60.0 * 1000 + 12
    refused = decide(
        algorithm="sliding", limit=limit, window=window, count=count + 1, previous=previous, now=now
    )
    if refused.allowed:
        return
    later = now + refused.retry_after
    same_window = int(later // window) == int(now // window)
    again = decide(
        algorithm="sliding",
        limit=limit,
        window=window,
        count=(count + 1) if same_window else 1,
        previous=previous if same_window else count,
        now=later + 1e-6,
    )
    assert again.allowed


def test_the_decorator_raises_with_retry_after_and_keys_by_arguments(clock):
    limiter = RateLimiter(MemoryStorage(clock=clock), limit=1, window=10, clock=clock)

    @limiter.limit_calls(lambda user: f"user:{user}")
    def greet(user: str) -> str:
        return f"hello {user}"

    assert greet("ann") == "hello ann"
    assert greet("bob") == "hello bob"
    with pytest.raises(RateLimitExceeded) as caught:
        greet("ann")
    assert caught.value.retry_after == pytest.approx(10)
    assert caught.value.key == "user:ann"


def test_the_async_limiter_and_decorator(clock):
    store = MemoryStorage(clock=clock).as_async()
    limiter = AsyncRateLimiter(store, limit=2, window=10, algorithm="sliding", clock=clock)

    @limiter.limit_calls("api")
    async def call() -> int:
        return 1

    async def main() -> list[object]:
        out: list[object] = [await call(), await call()]
        try:
            await call()
        except RateLimitExceeded as exc:
            out.append(exc.retry_after)
        return out

    # Sliding: next window, 2 * (1 - f) + 1 <= 2 once f >= 0.5, so 15 s from now.
    assert asyncio.run(main()) == [1, 1, pytest.approx(15)]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": 0, "window": 1}, ValueError),
        ({"limit": 1.5, "window": 1}, TypeError),
        ({"limit": 1, "window": 0}, ValueError),
        ({"limit": 1, "window": float("inf")}, ValueError),
        ({"limit": 1, "window": 1, "algorithm": "leaky"}, ValueError),
    ],
)
def test_bad_settings_are_refused(kwargs, error):
    with pytest.raises(error):
        RateLimiter(MemoryStorage(), **kwargs)


def test_a_storage_without_atomic_operations_is_refused():
    with pytest.raises(TypeError, match="atomic"):
        RateLimiter(object(), limit=1, window=1)  # type: ignore[arg-type]


def test_bad_hits_are_refused(clock):
    limiter = RateLimiter(MemoryStorage(clock=clock), limit=1, window=10, clock=clock)
    with pytest.raises(TypeError, match="key"):
        limiter.hit("")
    with pytest.raises(ValueError, match="cost"):
        limiter.hit("k", cost=0)


@pytest.mark.parametrize("kind", ["lmdb", pytest.param("redis", marks=pytest.mark.redis)])
def test_processes_share_one_limit_exactly(kind, request, tmp_path):
    where, prefix = _where(kind, request, tmp_path)
    allowed = _race(atomic_workers.hit_many, [(kind, where, prefix, 8)] * 4)
    assert sum(allowed) == 10


def test_lmdb_limits_survive_reopening(tmp_path, clock):
    with LMDBStorage(tmp_path / "db", sweep_interval=None, clock=clock) as store:
        assert RateLimiter(store, limit=1, window=60, clock=clock).hit("k").allowed
    with LMDBStorage(tmp_path / "db", sweep_interval=None, clock=clock) as store:
        assert not RateLimiter(store, limit=1, window=60, clock=clock).hit("k").allowed
