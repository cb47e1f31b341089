# Generated from swr/storage/leaderboard/_async/redis.py by tools/unasync.py:
# edit that file, not this one.
"""Leaderboards on Redis sorted sets (``ZADD``, ``ZRANGE``, ``ZRANK``, ...).

One leaderboard is one sorted set under one key, so it lives on one node of a cluster
and every command on it is atomic across hosts. Adding with ``max_size`` runs ``ZADD`` and
the trim of the lowest members in one script, so the bound holds whoever adds. Redis
orders tied scores by the bytes of their members, which for UTF-8 text is code-point
order: the same order as the other leaderboards.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from swr.storage.leaderboard._common import (
    Call,
    Member,
    check_max_size,
    check_member,
    check_members,
    check_score,
    check_scores,
    rank_slice,
)

__all__ = ["RedisLeaderboard"]

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


_ADD_SHA = hashlib.sha1(_ADD.encode(), usedforsecurity=False).hexdigest()
_INCR_SHA = hashlib.sha1(_INCR.encode(), usedforsecurity=False).hexdigest()


def _members(reply: list[Any]) -> list[Member]:
    """The ``(member, score)`` pairs of a ``WITHSCORES`` reply, flat (RESP2) or paired."""
    if reply and isinstance(reply[0], (list, tuple)):
        return [(member.decode(), float(score)) for member, score in reply]
    items = iter(reply)
    return [(member.decode(), float(score)) for member, score in zip(items, items, strict=True)]


class RedisLeaderboard:
    """A leaderboard in one Redis sorted set.

    Args:
        client: A redis-py client, single node or cluster, not decoding responses
            (an asyncio client for the asyncio class).
        key: The sorted set's full key (the storage gives one under its prefix).
        max_size: Most members kept; adding beyond it drops the lowest scores.
        call: How a command is sent: ``call(key, *command)``. A storage's leaderboard
            sends through the storage (its health; on a cluster straight to the node
            owning the key, refused while that node is DOWN, errors mapped to
            :class:`~swr.storage.errors.StorageError`); by default the client's own
            ``execute_command`` (redis-py's errors).
    """

    def __init__(
        self,
        client: Any,
        key: str | bytes,
        *,
        max_size: int | None = None,
        call: Call | None = None,
    ) -> None:
        import redis.exceptions  # noqa: PLC0415 - a client exists: redis is installed

        self._client = client
        self.key = key
        self.max_size = check_max_size(max_size)
        self._call = call if call is not None else self._direct
        self._no_script = redis.exceptions.NoScriptError

    def _direct(self, key: str | bytes, *args: Any) -> Any:
        return self._client.execute_command(*args)

    def _script(self, sha: str, script: str, args: list[str]) -> Any:
        """Run a script by its SHA, sending its text on ``NOSCRIPT`` (a flushed cache)."""
        key = self.key
        try:
            return self._call(key, "EVALSHA", sha, 1, key, *args)
        except self._no_script:
            return self._call(key, "EVAL", script, 1, key, *args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    def add(self, members: Mapping[str, float]) -> int:
        """Set the scores of ``members``; return how many were new."""
        pairs = list(check_scores(members).items())
        added = 0
        key = self.key
        for at in range(0, len(pairs), _ADD_BATCH):
            args: list[str] = [] if self.max_size is None else [str(self.max_size)]
            for member, score in pairs[at : at + _ADD_BATCH]:
                args += (_arg(score), member)
            if self.max_size is None:  # nothing to trim: the command itself, no script
                added += int(self._call(key, "ZADD", key, *args))
            else:
                added += int(self._script(_ADD_SHA, _ADD, args))
        return added

    def incr_by(self, member: str, delta: float) -> float:
        """Add ``delta`` to the score of ``member`` (created at 0); return the new score."""
        check_member(member)
        step = check_score(delta, "delta")
        args = [str(self.max_size or 0), _arg(step), member]
        return float(self._script(_INCR_SHA, _INCR, args))

    def score(self, member: str) -> float | None:
        """The score of ``member``, or ``None`` if absent."""
        score = self._call(self.key, "ZSCORE", self.key, check_member(member))
        return None if score is None else float(score)

    def rank(self, member: str, *, desc: bool = False) -> int | None:
        """The 0-based rank of ``member`` (from the highest with ``desc``), or ``None``."""
        check_member(member)
        command = "ZREVRANK" if desc else "ZRANK"
        rank = self._call(self.key, command, self.key, member)
        return None if rank is None else int(rank)

    def range(self, start: int, stop: int, *, desc: bool = False) -> list[Member]:
        """Members ranked ``start`` to ``stop`` (inclusive, negatives from the end)."""
        rank_slice(start, stop, 0)  # type checks; Redis does the arithmetic itself
        command = "ZREVRANGE" if desc else "ZRANGE"
        return _members(self._call(self.key, command, self.key, start, stop, "WITHSCORES"))

    def range_by_score(
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
        paging: tuple[Any, ...] = ()
        if offset or limit is not None:
            paging = ("LIMIT", offset, -1 if limit is None else limit)
        if desc:
            args: tuple[Any, ...] = ("ZREVRANGEBYSCORE", self.key, high, low)
        else:
            args = ("ZRANGEBYSCORE", self.key, low, high)
        return _members(self._call(self.key, *args, "WITHSCORES", *paging))

    def count(self, min: float = -math.inf, max: float = math.inf) -> int:
        """How many members have ``min <= score <= max``."""
        low, high = _arg(check_score(min, "min")), _arg(check_score(max, "max"))
        return int(self._call(self.key, "ZCOUNT", self.key, low, high))

    def remove(self, members: Iterable[str]) -> int:
        """Remove ``members``; return how many were there."""
        names = check_members(members)
        if not names:
            return 0
        return int(self._call(self.key, "ZREM", self.key, *names))

    def remove_range_by_rank(self, start: int, stop: int) -> int:
        """Remove the members ranked ``start`` to ``stop`` (ascending, inclusive)."""
        rank_slice(start, stop, 0)
        return int(self._call(self.key, "ZREMRANGEBYRANK", self.key, start, stop))

    def remove_range_by_score(self, min: float, max: float) -> int:
        """Remove the members with ``min <= score <= max``."""
        low, high = _arg(check_score(min, "min")), _arg(check_score(max, "max"))
        return int(self._call(self.key, "ZREMRANGEBYSCORE", self.key, low, high))

    def size(self) -> int:
        """How many members the leaderboard holds."""
        return int(self._call(self.key, "ZCARD", self.key))

    def clear(self) -> None:
        """Remove every member."""
        self._call(self.key, "DEL", self.key)
