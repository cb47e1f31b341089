"""What every leaderboard shares: argument checks and Redis's rank arithmetic."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from swr.storage._validate import check_int

__all__ = [
    "AsyncCall",
    "Call",
    "Member",
    "check_max_size",
    "check_member",
    "check_members",
    "check_score",
    "check_scores",
    "rank_slice",
]

Member = tuple[str, float]
"""A ``(member, score)`` pair, as ``range`` and ``range_by_score`` return them."""

# How a Redis leaderboard sends a command: ``call(key, *command)`` (asyncio, threads).
AsyncCall = Callable[..., Awaitable[Any]]
Call = Callable[..., Any]


def check_member(member: object) -> str:
    """Return ``member`` if it is a non-empty ``str``, else raise naming the problem."""
    if not isinstance(member, str):
        raise TypeError(f"a leaderboard member must be a str, got {type(member).__name__}")
    if not member:
        raise ValueError("a leaderboard member must be a non-empty str")
    try:
        member.encode()
    except UnicodeEncodeError:
        raise ValueError(f"leaderboard member {member!r} is not valid UTF-8 text") from None
    return member


def check_score(score: object, what: str = "score") -> float:
    """Return ``score`` as a float; refuse NaN, booleans and non-numbers."""
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise TypeError(f"a leaderboard {what} must be a number, got {type(score).__name__}")
    value = float(score)
    if math.isnan(value):
        raise ValueError(f"a leaderboard {what} must not be NaN")
    return value


def check_scores(members: Mapping[str, float]) -> dict[str, float]:
    """Check every ``{member: score}`` of an ``add``."""
    if not isinstance(members, Mapping):
        raise TypeError(f"add() takes a mapping {{member: score}}, got {type(members).__name__}")
    return {check_member(m): check_score(s) for m, s in members.items()}


def check_members(members: Iterable[str]) -> list[str]:
    """Check the members of a ``remove`` (a single ``str`` is refused: it would iterate)."""
    if isinstance(members, str):
        raise TypeError("remove() takes an iterable of members; wrap a single one in a list")
    return [check_member(m) for m in members]


def check_max_size(max_size: object) -> int | None:
    """``None`` (unbounded) or a positive int."""
    return None if max_size is None else check_int("max_size", max_size, 1)


def rank_slice(start: int, stop: int, size: int) -> tuple[int, int] | None:
    """Redis's ranks: ``stop`` inclusive, negatives from the end; ``None`` when empty.

    Returns the ascending ``[first, last]`` ranks (both inclusive) within ``size``.
    """
    check_int("range() start", start)
    check_int("range() stop", stop)
    if start < 0:
        start += size
    if stop < 0:
        stop += size
    start = max(start, 0)
    stop = min(stop, size - 1)
    if start > stop:
        return None
    return start, stop
