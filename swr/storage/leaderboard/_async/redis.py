"""Leaderboards on Redis sorted sets (``ZADD``, ``ZRANGE``, ``ZRANK``, ...).

One leaderboard is one sorted set under one key, so it lives on one node of a cluster
and every command on it is atomic across hosts. Adding with ``max_size`` runs ``ZADD`` and
the trim of the lowest members in one script, so the bound holds whoever adds. Redis
orders tied scores by the bytes of their members, which for UTF-8 text is code-point
order: the same order as the other leaderboards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from swr.storage.leaderboard._common import (
    Member,
    check_max_size,
    check_member,
    check_members,
    check_score,
    check_scores,
    rank_slice,
)

__all__ = ["AsyncRedisLeaderboard"]

# ARGV[1] = max size (0: unbounded), then score member pairs; returns members added.
_ADD = """
local added = redis.call('ZADD', KEYS[1], unpack(ARGV, 2))
local most = tonumber(ARGV[1])
if most > 0 then
  local size = redis.call('ZCARD', KEYS[1])
  if size > most then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, size - most - 1) end
end
return added
"""

# ARGV = max size, delta, member; returns the new score as a string.
_INCR = """
local score = redis.call('ZINCRBY', KEYS[1], ARGV[2], ARGV[3])
local most = tonumber(ARGV[1])
if most > 0 then
  local size = redis.call('ZCARD', KEYS[1])
  if size > most then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, size - most - 1) end
end
return score
"""

# Lua's unpack() is bounded by its stack: larger adds go in batches of this many members.
_ADD_BATCH = 1000


def _arg(score: float) -> str:
    if math.isinf(score):
        return "+inf" if score > 0 else "-inf"
    return repr(score)


def _members(pairs: list[tuple[bytes, float]]) -> list[Member]:
    return [(member.decode(), float(score)) for member, score in pairs]


class AsyncRedisLeaderboard:
    """A leaderboard in one Redis sorted set.

    Args:
        client: A redis-py client, single node or cluster, not decoding responses
            (an asyncio client for the asyncio class).
        key: The sorted set's full key (the storage gives one under its prefix).
        max_size: Most members kept; adding beyond it drops the lowest scores.
    """

    def __init__(self, client: Any, key: str | bytes, *, max_size: int | None = None) -> None:
        self._client = client
        self.key = key
        self.max_size = check_max_size(max_size)
        self._add_script = client.register_script(_ADD)
        self._incr_script = client.register_script(_INCR)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    async def add(self, members: Mapping[str, float]) -> int:
        """Set the scores of ``members``; return how many were new."""
        pairs = list(check_scores(members).items())
        added = 0
        if self.max_size is None:  # nothing to trim: the command itself, no script
            for at in range(0, len(pairs), _ADD_BATCH):
                batch = dict(pairs[at : at + _ADD_BATCH])
                added += int(await self._client.zadd(self.key, batch))
            return added
        for at in range(0, len(pairs), _ADD_BATCH):
            args: list[str] = [str(self.max_size or 0)]
            for member, score in pairs[at : at + _ADD_BATCH]:
                args += (_arg(score), member)
            added += int(await self._add_script(keys=[self.key], args=args))
        return added

    async def incr_by(self, member: str, delta: float) -> float:
        """Add ``delta`` to the score of ``member`` (created at 0); return the new score."""
        check_member(member)
        step = check_score(delta, "delta")
        args = [str(self.max_size or 0), _arg(step), member]
        return float(await self._incr_script(keys=[self.key], args=args))

    async def score(self, member: str) -> float | None:
        """The score of ``member``, or ``None`` if absent."""
        score = await self._client.zscore(self.key, check_member(member))
        return None if score is None else float(score)

    async def rank(self, member: str, *, desc: bool = False) -> int | None:
        """The 0-based rank of ``member`` (from the highest with ``desc``), or ``None``."""
        check_member(member)
        if desc:
            rank = await self._client.zrevrank(self.key, member)
        else:
            rank = await self._client.zrank(self.key, member)
        return None if rank is None else int(rank)

    async def range(self, start: int, stop: int, *, desc: bool = False) -> list[Member]:
        """Members ranked ``start`` to ``stop`` (inclusive, negatives from the end)."""
        rank_slice(start, stop, 0)  # type checks; Redis does the arithmetic itself
        pairs = await self._client.zrange(self.key, start, stop, desc=desc, withscores=True)
        return _members(pairs)

    async def range_by_score(
        self,
        min: float,
        max: float,
        *,
        desc: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Member]:
        """Members with ``min <= score <= max``, lowest first (highest with ``desc``)."""
        low, high = _arg(check_score(min, "min")), _arg(check_score(max, "max"))
        paging: dict[str, int] = {}
        if offset or limit is not None:
            paging = {"start": offset, "num": -1 if limit is None else limit}
        if desc:
            pairs = await self._client.zrevrangebyscore(
                self.key, high, low, withscores=True, **paging
            )
        else:
            pairs = await self._client.zrangebyscore(self.key, low, high, withscores=True, **paging)
        return _members(pairs)

    async def count(self, min: float = -math.inf, max: float = math.inf) -> int:
        """How many members have ``min <= score <= max``."""
        low, high = _arg(check_score(min, "min")), _arg(check_score(max, "max"))
        return int(await self._client.zcount(self.key, low, high))

    async def remove(self, members: Iterable[str]) -> int:
        """Remove ``members``; return how many were there."""
        names = check_members(members)
        if not names:
            return 0
        return int(await self._client.zrem(self.key, *names))

    async def remove_range_by_rank(self, start: int, stop: int) -> int:
        """Remove the members ranked ``start`` to ``stop`` (ascending, inclusive)."""
        rank_slice(start, stop, 0)
        return int(await self._client.zremrangebyrank(self.key, start, stop))

    async def remove_range_by_score(self, min: float, max: float) -> int:
        """Remove the members with ``min <= score <= max``."""
        low, high = _arg(check_score(min, "min")), _arg(check_score(max, "max"))
        return int(await self._client.zremrangebyscore(self.key, low, high))

    async def size(self) -> int:
        """How many members the leaderboard holds."""
        return int(await self._client.zcard(self.key))

    async def clear(self) -> None:
        """Remove every member."""
        await self._client.delete(self.key)
