"""Leases held in this process's memory, for the storages that live there."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from swr.storage import _tokens
from swr.storage._lock import take
from swr.storage._tokens import new_token

if TYPE_CHECKING:
    from threading import Lock

__all__ = ["LocalLeases"]


class LocalLeases:
    """Exclusive, self-expiring leases on keys, kept in a dict.

    Not locked by itself: its owner (MemoryStorage, a PoolCache) calls it under the
    lock that already guards its data (:meth:`take` takes that lock itself, and only
    when the key is already in the dict). Expired leases are replaced when met, so a
    holder that never releases costs one lease period.

    Attributes:
        held: Key -> ``(token, until)`` of each lease, the dict itself: owners inline
            :meth:`take`'s free key and :meth:`release` on their miss path (each copy
            checked against these methods by tests/storage/test_local_leases.py).
    """

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: dict[Hashable, tuple[str, float]] = {}

    def acquire(self, key: Hashable, ttl: float, now: float) -> str | None:
        """Take the lease on ``key`` until ``now + ttl``; ``None`` if someone holds it."""
        held = self.held.get(key)
        if held is not None and held[1] > now:
            return None
        token = new_token().hex()
        self.held[key] = (token, now + ttl)
        return token

    def take(self, key: Hashable, ttl: float, now: float, lock: Lock) -> str | None:
        """:meth:`acquire` for an owner not holding ``lock``, its data's lock.

        A key nobody leases (every miss) is taken without the lock: ``dict.setdefault``
        inserts only where nothing is, in one step no other thread can split. A lease
        met (held, or expired and to be replaced) is judged under ``lock``, as every
        change of a lease already in the dict is: the owner releases under it too.
        """
        token = _tokens._TOKEN(_tokens._prefix, next(_tokens._serial)).hex()  # new_token, inline
        mine = (token, now + ttl)
        if self.held.setdefault(key, mine) is mine:
            return token
        return self.take_met(key, ttl, now, lock)

    def take_met(self, key: Hashable, ttl: float, now: float, lock: Lock) -> str | None:
        """:meth:`take` of a key whose lease is in the dict (held, or expired): under ``lock``."""
        if not lock.acquire(False):
            take(lock)
        try:
            return self.acquire(key, ttl, now)
        finally:
            lock.release()

    def release(self, key: Hashable, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still holds it."""
        held = self.held.get(key)
        if held is not None and held[0] == token:
            del self.held[key]

    def clear(self) -> None:
        """Forget every lease."""
        self.held.clear()
