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

from swr._async.ratelimit import AsyncRateLimiter
from swr._ratelimit import RateLimitExceeded, RateLimitResult, decide
from swr._sync.ratelimit import RateLimiter

__all__ = [
    "AsyncRateLimiter",
    "RateLimitExceeded",
    "RateLimitResult",
    "RateLimiter",
    "decide",
]
