"""Leaderboards in this process: a sorted list of ``(score, member)`` and a score map.

``sortedcontainers.SortedList`` keeps the order in O(log N) per change; a rank is a
bisection, a range a slice. Ties are ordered by member (code-point order, which is the
byte order of their UTF-8, so Redis agrees), and ``desc=True`` is the exact reverse.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping

from sortedcontainers import SortedList

from swr.storage.leaderboard._common import (
    Member,
    check_max_size,
    check_member,
    check_members,
    check_score,
    check_scores,
    rank_slice,
)

__all__ = ["AsyncMemoryLeaderboard", "MemoryLeaderboard"]


class MemoryLeaderboard:
    """A leaderboard held in memory; thread-safe (one lock per leaderboard).

    Example::

        board = MemoryLeaderboard("game:scores")
        board.add({"alice": 1250, "bob": 980, "carol": 1500})
        board.range(0, 2, desc=True)  # [("carol", 1500.0), ("alice", 1250.0), ("bob", 980.0)]
        board.rank("alice", desc=True)  # 1

    Args:
        name: The leaderboard's name (shown in reprs).
        max_size: Most members kept; adding beyond it drops the lowest scores.
    """

    def __init__(self, name: str, *, max_size: int | None = None) -> None:
        self.name = name
        self.max_size = check_max_size(max_size)
        self._order: SortedList = SortedList()
        self._scores: dict[str, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryLeaderboard({self.name!r}, size={len(self._scores)})"

    def _put_locked(self, member: str, score: float) -> bool:
        old = self._scores.get(member)
        if old is not None:
            if old == score:
                return False
            self._order.remove((old, member))
        self._scores[member] = score
        self._order.add((score, member))
        return old is None

    def _trim_locked(self) -> None:
        if self.max_size is not None:
            while len(self._order) > self.max_size:
                _, member = self._order.pop(0)
                del self._scores[member]

    def add(self, members: Mapping[str, float]) -> int:
        """Set the scores of ``members``; return how many were new."""
        scores = check_scores(members)
        with self._lock:
            added = sum(self._put_locked(m, s) for m, s in scores.items())
            self._trim_locked()
        return added

    def incr_by(self, member: str, delta: float) -> float:
        """Add ``delta`` to the score of ``member`` (created at 0); return the new score."""
        check_member(member)
        step = check_score(delta, "delta")
        with self._lock:
            score = self._scores.get(member, 0.0) + step
            if math.isnan(score):
                raise ValueError(f"incr_by({member!r}, {delta}) would make the score NaN")
            self._put_locked(member, score)
            self._trim_locked()
        return score

    def score(self, member: str) -> float | None:
        """The score of ``member``, or ``None`` if absent."""
        return self._scores.get(check_member(member))

    def rank(self, member: str, *, desc: bool = False) -> int | None:
        """The 0-based rank of ``member`` (from the highest with ``desc``), or ``None``."""
        check_member(member)
        with self._lock:
            score = self._scores.get(member)
            if score is None:
                return None
            rank: int = self._order.index((score, member))
            return len(self._order) - 1 - rank if desc else rank

    def range(self, start: int, stop: int, *, desc: bool = False) -> list[Member]:
        """Members ranked ``start`` to ``stop`` (inclusive, negatives from the end)."""
        with self._lock:
            size = len(self._order)
            bounds = rank_slice(start, stop, size)
            if bounds is None:
                return []
            first, last = bounds
            if desc:
                picked = self._order[size - 1 - last : size - first]
                picked.reverse()
            else:
                picked = self._order[first : last + 1]
        return [(member, score) for score, member in picked]

    def range_by_score(
        self,
        min: float,
        max: float,
        *,
        desc: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Member]:
        """Members with ``min <= score <= max``, lowest first (highest with ``desc``).

        ``offset`` and ``limit`` page through the result, as Redis's ``LIMIT``.
        """
        low, high = check_score(min, "min"), check_score(max, "max")
        with self._lock:
            picked = list(self._order.irange((low, ""), (high, _AFTER_EVERY_MEMBER), reverse=desc))
        end = None if limit is None else offset + limit
        return [(member, score) for score, member in picked[offset:end]]

    def count(self, min: float = -math.inf, max: float = math.inf) -> int:
        """How many members have ``min <= score <= max``."""
        low, high = check_score(min, "min"), check_score(max, "max")
        with self._lock:
            first = self._order.bisect_left((low, ""))
            last = self._order.bisect_right((high, _AFTER_EVERY_MEMBER))
        return last - first if last > first else 0

    def remove(self, members: Iterable[str]) -> int:
        """Remove ``members``; return how many were there."""
        names = check_members(members)
        removed = 0
        with self._lock:
            for member in names:
                score = self._scores.pop(member, None)
                if score is not None:
                    self._order.remove((score, member))
                    removed += 1
        return removed

    def remove_range_by_rank(self, start: int, stop: int) -> int:
        """Remove the members ranked ``start`` to ``stop`` (ascending, inclusive)."""
        with self._lock:
            bounds = rank_slice(start, stop, len(self._order))
            if bounds is None:
                return 0
            first, last = bounds
            doomed = self._order[first : last + 1]
            del self._order[first : last + 1]
            for _, member in doomed:
                del self._scores[member]
        return len(doomed)

    def remove_range_by_score(self, min: float, max: float) -> int:
        """Remove the members with ``min <= score <= max``."""
        low, high = check_score(min, "min"), check_score(max, "max")
        with self._lock:
            first = self._order.bisect_left((low, ""))
            last = self._order.bisect_right((high, _AFTER_EVERY_MEMBER))
            if last <= first:
                return 0
            doomed = self._order[first:last]
            del self._order[first:last]
            for _, member in doomed:
                del self._scores[member]
        return len(doomed)

    def size(self) -> int:
        """How many members the leaderboard holds."""
        return len(self._scores)

    def clear(self) -> None:
        """Remove every member."""
        with self._lock:
            self._order.clear()
            self._scores.clear()


class _AfterEveryMember:
    """Compares greater than every str: ``(s, "") <= (s, member) < (s, this)``."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __le__(self, other: object) -> bool:
        return other is self

    def __ge__(self, other: object) -> bool:
        return True


_AFTER_EVERY_MEMBER = _AfterEveryMember()


class AsyncMemoryLeaderboard:
    """The asyncio face of a :class:`MemoryLeaderboard` (the same members, no I/O)."""

    def __init__(self, board: MemoryLeaderboard) -> None:
        self.board = board

    def __repr__(self) -> str:
        return f"Async{self.board!r}"

    async def add(self, members: Mapping[str, float]) -> int:
        """See :meth:`MemoryLeaderboard.add`."""
        return self.board.add(members)

    async def incr_by(self, member: str, delta: float) -> float:
        """See :meth:`MemoryLeaderboard.incr_by`."""
        return self.board.incr_by(member, delta)

    async def score(self, member: str) -> float | None:
        """See :meth:`MemoryLeaderboard.score`."""
        return self.board.score(member)

    async def rank(self, member: str, *, desc: bool = False) -> int | None:
        """See :meth:`MemoryLeaderboard.rank`."""
        return self.board.rank(member, desc=desc)

    async def range(self, start: int, stop: int, *, desc: bool = False) -> list[Member]:
        """See :meth:`MemoryLeaderboard.range`."""
        return self.board.range(start, stop, desc=desc)

    async def range_by_score(
        self,
        min: float,
        max: float,
        *,
        desc: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Member]:
        """See :meth:`MemoryLeaderboard.range_by_score`."""
        return self.board.range_by_score(min, max, desc=desc, offset=offset, limit=limit)

    async def count(self, min: float = -math.inf, max: float = math.inf) -> int:
        """See :meth:`MemoryLeaderboard.count`."""
        return self.board.count(min, max)

    async def remove(self, members: Iterable[str]) -> int:
        """See :meth:`MemoryLeaderboard.remove`."""
        return self.board.remove(members)

    async def remove_range_by_rank(self, start: int, stop: int) -> int:
        """See :meth:`MemoryLeaderboard.remove_range_by_rank`."""
        return self.board.remove_range_by_rank(start, stop)

    async def remove_range_by_score(self, min: float, max: float) -> int:
        """See :meth:`MemoryLeaderboard.remove_range_by_score`."""
        return self.board.remove_range_by_score(min, max)

    async def size(self) -> int:
        """See :meth:`MemoryLeaderboard.size`."""
        return self.board.size()

    async def clear(self) -> None:
        """See :meth:`MemoryLeaderboard.clear`."""
        self.board.clear()
