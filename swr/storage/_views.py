"""Helpers for wrapper storages (fallback, tiered) that hold other storages."""

from __future__ import annotations

from typing import Any

from swr.storage.adapters import as_async, has_async_leases
from swr.storage.base import SerializerBinding, Stats
from swr.storage.serializers import Serializer

__all__ = ["add_tier_stats", "as_async", "has_async_leases", "with_serializer"]


def with_serializer(storage: Any, serializer: Serializer) -> Any:
    """``storage.with_serializer(serializer)``, or ``storage`` itself if it keeps objects."""
    return (
        storage.with_serializer(serializer) if isinstance(storage, SerializerBinding) else storage
    )


def add_tier_stats(stats: dict[str, int], tiers: dict[str, Any]) -> dict[str, int]:
    """Add each tier's own ``stats()`` to ``stats``, prefixed by the tier's name."""
    for name, tier in tiers.items():
        if isinstance(tier, Stats):
            for counter, value in tier.stats().items():
                stats[f"{name}_{counter}"] = value
    return stats
