"""Argument checks of the storage contract, shared by every backend and the engine.

Keys, entry times, the bulk verbs' times and the tag index's tags are refused the same
way on every storage (the contract suite checks it), so each check is written here once.
"""

from __future__ import annotations

import math

from swr.storage.base import Entry

__all__ = ["check_key", "check_times", "checked_tags", "checked_times"]

_INF = math.inf
_NEG_INF = -math.inf


def check_key(key: object) -> str:
    """Return ``key``, refused as every storage refuses it (the storage contract).

    Raises:
        TypeError: ``key`` is not a str.
        ValueError: ``key`` is empty.
    """
    if not isinstance(key, str):
        raise TypeError(f"cache key must be a str, got {type(key).__name__}: {key!r}")
    if not key:
        raise ValueError("cache key must not be empty")
    return key


def check_times(entry: Entry) -> None:
    """Refuse an entry whose times are NaN, ``-inf`` or out of order.

    Raises:
        TypeError: ``entry`` is not an :class:`~swr.storage.base.Entry`.
        ValueError: the times are not ordered ``stored_at <= fresh_until <= stale_until
            <= expires_at`` (NaN fails every comparison), or ``stored_at`` is infinite.
    """
    if not isinstance(entry, Entry):
        raise TypeError(f"expected an Entry, got {type(entry).__name__}")
    stored = entry.stored_at
    if not (
        _NEG_INF < stored <= entry.fresh_until <= entry.stale_until <= entry.expires_at
        and stored < _INF
    ):
        times = (entry.stored_at, entry.fresh_until, entry.stale_until, entry.expires_at)
        raise ValueError(
            "entry times must be ordered stored_at <= fresh_until <= stale_until <= "
            f"expires_at, with no NaN and a finite stored_at; got {times}"
        )


def checked_times(times: object) -> tuple[float, float, float, float]:
    """``times`` (an :class:`~swr.storage.base.EntryTimes`) as four floats.

    Raises:
        TypeError: ``times`` is not a tuple of four numbers.
        ValueError: they are not finite (``expires_at`` may be infinite) and ordered
            ``stored_at <= fresh_until <= stale_until <= expires_at``.
    """
    if not isinstance(times, tuple) or len(times) != 4:
        raise TypeError(f"times must be an EntryTimes, got {type(times).__name__}: {times!r}")
    try:
        stored, fresh, stale, expires = (float(t) for t in times)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"times must be four numbers of epoch seconds, got {times!r}") from exc
    if not (-math.inf < stored <= fresh <= stale <= expires):
        raise ValueError(
            "entry times must be ordered stored_at <= fresh_until <= stale_until <= "
            f"expires_at, got {stored}, {fresh}, {stale}, {expires}"
        )
    return stored, fresh, stale, expires


def checked_tags(tags: object) -> list[str]:
    """``tags`` as a list of non-empty str; a bare str (a slip for ``[tag]``) is refused.

    Raises:
        TypeError: ``tags`` is not a list, tuple or set of non-empty str.
    """
    if isinstance(tags, (str, bytes)) or not isinstance(tags, (list, tuple, set, frozenset)):
        raise TypeError(f"tags must be a sequence of str, got {type(tags).__name__}: {tags!r}")
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"each tag must be a non-empty str, got {tag!r}")
    return list(tags)
