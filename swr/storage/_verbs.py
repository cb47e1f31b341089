"""Argument checks shared by the storages' bulk verbs and tag index."""

from __future__ import annotations

import math

__all__ = ["checked_tags", "checked_times"]


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
