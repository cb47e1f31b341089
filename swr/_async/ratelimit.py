"""The rate limiter, written once as asyncio code.

``tools/unasync.py`` generates its thread twin in ``swr/_sync/ratelimit.py``; both are
public in :mod:`swr.ratelimit`, which says how they count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from swr._ratelimit import (
    Algorithm,
    AsyncLimited,
    P,
    RateLimitExceeded,
    RateLimitResult,
    T,
    _check_hit,
    _Limits,
)
from swr.storage.base import AsyncAtomicOps

__all__ = ["AsyncRateLimiter"]


class AsyncRateLimiter(_Limits):
    """A rate limit on a storage with :class:`~swr.storage.base.AsyncAtomicOps`.

    A memory, LMDB or Redis storage; in asyncio code an asyncio storage or a storage's
    ``as_async()`` view. The thread and asyncio limiters are twins of one source (see
    :mod:`swr.ratelimit`).

    Args:
        storage: Holds the counters.
        limit: Most hits per window.
        window: The window in seconds.
        algorithm: ``"fixed"`` or ``"sliding"`` (see :mod:`swr.ratelimit`).
        prefix: Put in front of every counter's key.
        clock: Zero-argument callable returning epoch seconds (``time.time`` by default).

    Raises:
        TypeError: ``storage`` has no atomic operations, or a setting has the wrong type.
        ValueError: a setting is out of range.

    Safe to share (threads for the sync one, tasks of one loop for the asyncio one),
    and across processes or hosts as far as the storage is shared.
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
    ) -> Callable[[AsyncLimited[P, T]], AsyncLimited[P, T]]:
        """Decorate a function: each call is a hit on ``key`` (or ``key(*args, **kwargs)``).

        Raises:
            RateLimitExceeded: from the decorated function, when over the limit.
        """

        def decorate(fn: AsyncLimited[P, T]) -> AsyncLimited[P, T]:
            @functools.wraps(fn)
            async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
                name = self._key_of(key, args, kwargs)
                result = await self.hit(name)
                if not result.allowed:
                    raise RateLimitExceeded(name, result)
                return await fn(*args, **kwargs)

            return limited

        return decorate
