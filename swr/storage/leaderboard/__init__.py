"""Leaderboards: sorted sets of ``member -> score`` with ranks, ranges and bounds.

The same API on every storage, with Redis's rules (plumego's leaderboards follow them
too): ``add({member: score})`` returns how many members were new; ``range(start, stop)``
takes 0-based ranks with ``stop`` inclusive and negatives counted from the end, so
``range(0, 2, desc=True)`` is the top three; ``rank`` and ``score`` return ``None`` for an
absent member; ``remove`` returns how many were removed; tied scores are ordered by
member (code-point order) and ``desc=True`` is the exact reverse of the ascending order.

- :class:`MemoryLeaderboard`: in this process, O(log N) per change (``sortedcontainers``).
- :class:`RedisLeaderboard` / :class:`AsyncRedisLeaderboard`: a Redis sorted set, shared
  by every host; one key, so cluster-safe.

Storages hand them out with ``storage.leaderboard(name, max_size=...)``.
"""

from __future__ import annotations

from swr.storage.leaderboard._async.redis import AsyncRedisLeaderboard
from swr.storage.leaderboard._common import Member
from swr.storage.leaderboard._sync.redis import RedisLeaderboard
from swr.storage.leaderboard.memory import AsyncMemoryLeaderboard, MemoryLeaderboard

__all__ = [
    "AsyncMemoryLeaderboard",
    "AsyncRedisLeaderboard",
    "Member",
    "MemoryLeaderboard",
    "RedisLeaderboard",
]
