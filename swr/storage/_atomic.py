"""The pure rules of the atomic operations (:class:`~swr.storage.base.AtomicOps`).

Every storage applies the same rules inside its own atomic step (a lock, an LMDB write
transaction, a Redis script or compare-and-set): these functions take the entry found
(or ``None``), the time and the arguments, and return the entry to store, so that
memory, LMDB and Redis agree exactly.

What always holds:

- a dead entry (``expires_at <= now``) counts as absent;
- an operation that creates the key stores ``Entry(value, now, until, until, until)``
  with ``until = now + ttl`` (``ttl=None``: never, written ``forever``);
- an operation on a live key keeps its four instants (its windows) and changes only
  the value.
"""

from __future__ import annotations

import math
from typing import Any

from swr.storage._validate import check_int, check_seconds
from swr.storage.base import Entry

__all__ = [
    "appended",
    "check_data",
    "check_delta",
    "check_ttl",
    "created",
    "incremented",
    "is_live",
    "replaced",
]


def check_delta(delta: object) -> int:
    """Return ``delta`` if it is an ``int`` (not a ``bool``), else raise ``TypeError``."""
    return check_int("delta", delta)


def check_ttl(ttl: object) -> float | None:
    """``None`` (never expires) or a finite number of seconds > 0 as a float.

    Raises:
        TypeError: not a number.
        ValueError: not finite, or not above 0.
    """
    return None if ttl is None else check_seconds("ttl", ttl)


def check_data(data: object) -> bytes | str:
    """Return ``data`` if it is ``bytes`` or ``str`` (what ``append`` takes)."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data
    raise TypeError(f"append() takes bytes or str, got {type(data).__name__}")


def is_live(entry: Entry | None, now: float) -> bool:
    """Whether ``entry`` exists and is not past ``expires_at`` at ``now``."""
    return entry is not None and entry.expires_at > now


def created(value: Any, now: float, ttl: float | None, forever: float = math.inf) -> Entry:
    """The entry an operation creates: fresh for its whole life, dead at ``now + ttl``."""
    until = forever if ttl is None else min(now + ttl, forever)
    return Entry(value, now, until, until, until)


def _with_value(entry: Entry, value: Any) -> Entry:
    return Entry(value, entry.stored_at, entry.fresh_until, entry.stale_until, entry.expires_at)


def incremented(
    entry: Entry | None, delta: int, now: float, ttl: float | None, forever: float = math.inf
) -> Entry:
    """The entry after adding ``delta``: a dead or absent key starts at 0 with ``ttl``.

    Raises:
        TypeError: the live value is not an ``int`` (a ``bool`` is not one).
    """
    if entry is None or entry.expires_at <= now:
        return created(delta, now, ttl, forever)
    value = entry.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"cannot increment a value of type {type(value).__name__}: not an int")
    return _with_value(entry, value + delta)


def appended(
    entry: Entry | None,
    data: bytes | str,
    now: float,
    ttl: float | None,
    forever: float = math.inf,
) -> Entry:
    """The entry after appending ``data``: a dead or absent key starts as ``data``.

    Raises:
        TypeError: the live value is not of ``data``'s type (``bytes`` or ``str``).
    """
    if entry is None or entry.expires_at <= now:
        return created(data, now, ttl, forever)
    value = entry.value
    if isinstance(value, bytes) and isinstance(data, bytes):
        return _with_value(entry, value + data)
    if isinstance(value, str) and isinstance(data, str):
        return _with_value(entry, value + data)
    raise TypeError(
        f"cannot append {type(data).__name__} to a value of type {type(value).__name__}"
    )


def replaced(entry: Entry, value: Any) -> Entry:
    """``entry`` holding ``value`` instead, with the same four instants."""
    return _with_value(entry, value)
