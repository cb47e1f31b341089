"""Leases held in this process's memory, for the storages that live there."""

from __future__ import annotations

from collections.abc import Hashable

from swr.storage._tokens import new_token

__all__ = ["LocalLeases"]


class LocalLeases:
    """Exclusive, self-expiring leases on keys, kept in a dict.

    Not locked by itself: its owner (MemoryStorage, a PoolCache) calls it under the
    lock that already guards its data. Expired leases are replaced when met, so a
    holder that never releases costs one lease period.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[Hashable, tuple[str, float]] = {}

    def acquire(self, key: Hashable, ttl: float, now: float) -> str | None:
        """Take the lease on ``key`` until ``now + ttl``; ``None`` if someone holds it."""
        held = self._held.get(key)
        if held is not None and held[1] > now:
            return None
        token = new_token().hex()
        self._held[key] = (token, now + ttl)
        return token

    def release(self, key: Hashable, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still holds it."""
        held = self._held.get(key)
        if held is not None and held[0] == token:
            del self._held[key]

    def clear(self) -> None:
        """Forget every lease."""
        self._held.clear()
