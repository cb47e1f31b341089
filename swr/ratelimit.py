"""Rate limits on any storage with atomic operations, shared like the storage is.

A limiter counts hits per key in windows of ``window`` seconds with the storage's
atomic ``incr`` (:class:`~swr.storage.base.AtomicOps`): in this process (memory), across
the processes of a host (LMDB) or across hosts (Redis). Two algorithms:

- ``"fixed"``: one counter per window (``floor(now / window)``); at most ``limit`` hits
  per window, so up to ``2 * limit`` around a window boundary.
- ``"sliding"``: the two-window weighted counter. The estimate is
  ``previous * (1 - elapsed / window) + current``, where ``previous`` is the last
  window's count and ``elapsed`` the time into the current one; a hit is allowed while
  the estimate stays ``<= limit``. Two counters per key, O(1) per hit, and an
  approximation (it assumes the last window's hits were spread evenly), not an exact
  log of timestamps.

A refused hit is taken back (``decr``), so only allowed hits count: a client retrying
in a tight loop does not push its own window further. How it works per hit: ``incr``
the current window's counter (the count includes every concurrent hit, atomically),
read the previous window's (sliding), decide in :func:`decide` (pure), ``decr`` if
refused. Counters live ``2 * window`` seconds in the storage.

Example::

    limiter = RateLimiter(LMDBStorage("var/limits"), limit=100, window=60, algorithm="sliding")
    result = limiter.hit(f"user:{user_id}")
    if not result.allowed:
        return 429, {"Retry-After": str(math.ceil(result.retry_after))}
"""

from __future__ import annotations

import functools
import math
import time as _time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, ParamSpec, TypeVar

from swr.errors import SWRError
from swr.storage._validate import check_int, check_seconds
from swr.storage.base import AsyncAtomicOps, AtomicOps

__all__ = [
    "AsyncRateLimiter",
    "RateLimitExceeded",
    "RateLimitResult",
    "RateLimiter",
    "decide",
]

P = ParamSpec("P")
T = TypeVar("T")
Algorithm = Literal["fixed", "sliding"]
_ALGORITHMS: Final = ("fixed", "sliding")


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitResult:
    """What one hit got.

    Attributes:
        allowed: Whether the hit is within the limit (and was counted).
        remaining: Hits still allowed now (0 when refused).
        retry_after: Seconds until a hit of the same cost would be allowed (0 if allowed).
    """

    allowed: bool
    remaining: int
    retry_after: float


class RateLimitExceeded(SWRError):
    """Raised by a rate-limited function called over its limit.

    Attributes:
        key: The limited key.
        retry_after: Seconds until a call would be allowed.
        result: The refused :class:`RateLimitResult`.
    """

    def __init__(self, key: str, result: RateLimitResult) -> None:
        super().__init__(f"rate limit exceeded for {key!r}; retry after {result.retry_after:.3f}s")
        self.key = key
        self.result = result
        self.retry_after = result.retry_after


def decide(
    *,
    algorithm: Algorithm,
    limit: int,
    window: float,
    count: int,
    previous: int,
    now: float,
    cost: int = 1,
) -> RateLimitResult:
    """The pure decision of one hit.

    Args:
        algorithm: ``"fixed"`` or ``"sliding"``.
        limit: Most hits per window.
        window: The window in seconds.
        count: The current window's count, this hit included.
        previous: The previous window's count (sliding; ignored for fixed).
        now: Epoch seconds.
        cost: What this hit counts for.

    Returns:
        Whether it is allowed, what remains, and how long to wait if refused.
    """
    start = math.floor(now / window) * window
    elapsed = (now - start) / window
    weight = previous * (1.0 - elapsed) if algorithm == "sliding" else 0.0
    estimate = weight + count
    if estimate <= limit:
        return RateLimitResult(allowed=True, remaining=int(limit - estimate), retry_after=0.0)
    before = count - cost  # the count once this hit is taken back
    if algorithm == "fixed" or cost > limit:
        wait = start + window - now
    elif previous > 0 and before + cost <= limit:
        # Within this window, once the previous window's weight has decayed enough.
        wait = start + window * (1.0 - (limit - before - cost) / previous) - now
    else:
        # In the next window, this window's count weighs (1 - elapsed) of itself.
        fraction = max(0.0, 1.0 - (limit - cost) / before) if before > 0 else 0.0
        wait = start + window * (1.0 + fraction) - now
    return RateLimitResult(allowed=False, remaining=0, retry_after=max(wait, 0.0))


def _check(limit: object, window: object, algorithm: object, prefix: object) -> float:
    check_int("limit", limit, 1)
    seconds = check_seconds("window", window)
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be 'fixed' or 'sliding', got {algorithm!r}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    return seconds


def _check_hit(key: object, cost: object) -> None:
    if not isinstance(key, str) or not key:
        raise TypeError(f"a rate-limit key must be a non-empty str, got {key!r}")
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be an int >= 1, got {cost!r}")


class _Limits:
    """Settings, keys and clock shared by both limiters."""

    def __init__(
        self,
        limit: int,
        window: float,
        algorithm: Algorithm,
        prefix: str,
        clock: Callable[[], float] | None,
    ) -> None:
        self.window = _check(limit, window, algorithm, prefix)
        self.limit = limit
        self.algorithm: Algorithm = algorithm
        self.prefix = prefix
        self._clock = clock
        self._ttl = 2 * self.window

    def _now(self) -> float:
        clock = self._clock
        return clock() if clock is not None else _time.time()

    def _keys(self, key: str, now: float) -> tuple[str, str]:
        index = math.floor(now / self.window)
        base = f"{self.prefix}{key}:"
        return f"{base}{index}", f"{base}{index - 1}"

    def _decide(self, count: int, previous: Any, now: float, cost: int) -> RateLimitResult:
        value = previous.value if previous is not None else 0
        if isinstance(value, bool) or not isinstance(value, int):
            value = 0
        return decide(
            algorithm=self.algorithm,
            limit=self.limit,
            window=self.window,
            count=count,
            previous=value,
            now=now,
            cost=cost,
        )

    def _key_of(self, key: str | Callable[..., str], args: Any, kwargs: Any) -> str:
        return key(*args, **kwargs) if callable(key) else key


class RateLimiter(_Limits):
    """A rate limit on a sync storage with :class:`~swr.storage.base.AtomicOps`.

    Args:
        storage: Holds the counters (``MemoryStorage``, ``LMDBStorage``, ``RedisStorage``).
        limit: Most hits per window.
        window: The window in seconds.
        algorithm: ``"fixed"`` or ``"sliding"`` (see the module).
        prefix: Put in front of every counter's key.
        clock: Zero-argument callable returning epoch seconds (``time.time`` by default).

    Raises:
        TypeError: ``storage`` has no atomic operations, or a setting has the wrong type.
        ValueError: a setting is out of range.

    Thread-safe (and process- or host-safe as far as the storage is shared).
    """

    def __init__(
        self,
        storage: AtomicOps,
        *,
        limit: int,
        window: float,
        algorithm: Algorithm = "fixed",
        prefix: str = "ratelimit:",
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(storage, AtomicOps):
            raise TypeError(f"{type(storage).__name__} has no atomic operations (incr, decr)")
        super().__init__(limit, window, algorithm, prefix, clock)
        self.storage = storage

    def hit(self, key: str, cost: int = 1) -> RateLimitResult:
        """Count a hit of ``cost`` on ``key`` if the limit allows it; say what it got."""
        _check_hit(key, cost)
        now = self._now()
        current, last = self._keys(key, now)
        storage = self.storage
        count = storage.incr(current, cost, ttl=self._ttl)
        previous = storage.get(last) if self.algorithm == "sliding" else None  # type: ignore[attr-defined]
        result = self._decide(count, previous, now, cost)
        if not result.allowed:
            storage.decr(current, cost)
        return result

    def limit_calls(
        self, key: str | Callable[..., str]
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """Decorate a function: each call is a hit on ``key`` (or ``key(*args, **kwargs)``).

        Raises:
            RateLimitExceeded: from the decorated function, when over the limit.
        """

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            @functools.wraps(fn)
            def limited(*args: P.args, **kwargs: P.kwargs) -> T:
                name = self._key_of(key, args, kwargs)
                result = self.hit(name)
                if not result.allowed:
                    raise RateLimitExceeded(name, result)
                return fn(*args, **kwargs)

            return limited

        return decorate


class AsyncRateLimiter(_Limits):
    """The asyncio twin of :class:`RateLimiter`, on an asyncio storage (or its view).

    Args:
        storage: An asyncio storage with :class:`~swr.storage.base.AsyncAtomicOps`
            (``AsyncRedisStorage``, or ``MemoryStorage(...).as_async()``,
            ``LMDBStorage(...).as_async()``).
        limit: See :class:`RateLimiter`.
        window: See :class:`RateLimiter`.
        algorithm: See :class:`RateLimiter`.
        prefix: See :class:`RateLimiter`.
        clock: See :class:`RateLimiter`.
    """

    def __init__(
        self,
        storage: AsyncAtomicOps,
        *,
        limit: int,
        window: float,
        algorithm: Algorithm = "fixed",
        prefix: str = "ratelimit:",
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(storage, AsyncAtomicOps):
            raise TypeError(f"{type(storage).__name__} has no atomic operations (incr, decr)")
        super().__init__(limit, window, algorithm, prefix, clock)
        self.storage = storage

    async def hit(self, key: str, cost: int = 1) -> RateLimitResult:
        """Count a hit of ``cost`` on ``key`` if the limit allows it; say what it got."""
        _check_hit(key, cost)
        now = self._now()
        current, last = self._keys(key, now)
        storage = self.storage
        count = await storage.incr(current, cost, ttl=self._ttl)
        previous = None
        if self.algorithm == "sliding":
            previous = await storage.get(last)  # type: ignore[attr-defined]
        result = self._decide(count, previous, now, cost)
        if not result.allowed:
            await storage.decr(current, cost)
        return result

    def limit_calls(
        self, key: str | Callable[..., str]
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """Decorate a coroutine function: each call is a hit on ``key`` (or ``key(...)``).

        Raises:
            RateLimitExceeded: from the decorated function, when over the limit.
        """

        def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            @functools.wraps(fn)
            async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
                name = self._key_of(key, args, kwargs)
                result = await self.hit(name)
                if not result.allowed:
                    raise RateLimitExceeded(name, result)
                return await fn(*args, **kwargs)

            return limited

        return decorate
