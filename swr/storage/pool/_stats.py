"""Snapshots of a pool's counters: :class:`CacheStats` and :class:`PoolStats`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["CacheStats", "PoolStats"]


@dataclass(frozen=True, slots=True)
class CacheStats(Mapping[str, Any]):
    """A snapshot of one cache's counters (since it was registered).

    Also a read-only mapping of the same names, so it can be logged as it is or merged
    into other dictionaries (``StaleEngine.stats().storage`` shows it that way).

    Attributes:
        size: Entries held now (expired ones not yet dropped included).
        hits: Reads that found a live value.
        misses: Reads that found nothing, or an expired value.
        evictions: Live entries removed to make room.
        expirations: Expired entries dropped (on read, to make room, or by the GC).
    """

    size: int
    hits: int
    misses: int
    evictions: int
    expirations: int

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``, a fraction in [0, 1]; 0.0 before any read."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else 0.0

    def __getitem__(self, name: str) -> Any:
        if name in _STATS_NAMES:
            return getattr(self, name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(_STATS_NAMES)

    def __len__(self) -> int:
        return len(_STATS_NAMES)


_STATS_NAMES = (*(f.name for f in fields(CacheStats)), "hit_rate")


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool, taken atomically (``used`` is the sum of the sizes).

    Attributes:
        used: Entries held by all caches together.
        capacity: Most entries the pool holds.
        caches: Each registered cache's :class:`CacheStats`, by name.
    """

    used: int
    capacity: int
    caches: dict[str, CacheStats]
