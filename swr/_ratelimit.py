"""What both rate limiters share: results, the pure decision, settings and keys.

The limiters themselves are written once, as asyncio code, in
:mod:`swr._async.ratelimit`; ``tools/unasync.py`` generates the thread twin in
:mod:`swr._sync.ratelimit`. See :mod:`swr.ratelimit` for how they count.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, ParamSpec, TypeVar

from swr.errors import SWRError
from swr.storage._validate import check_int, check_seconds

__all__ = [
    "Algorithm",
    "AsyncLimited",
    "Limited",
    "P",
    "RateLimitExceeded",
    "RateLimitResult",
    "T",
    "_Limits",
    "_check_hit",
    "decide",
]

P = ParamSpec("P")
T = TypeVar("T")
# What limit_calls decorates: a coroutine function (asyncio), a function (threads).
AsyncLimited = Callable[P, Awaitable[T]]
Limited = Callable[P, T]
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
