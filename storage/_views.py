"""Helpers for wrapper storages (fallback, tiered) that hold other storages."""

from __future__ import annotations

from typing import Any, TypeGuard

from storage.adapters import AsyncAdapter
from storage.base import AsyncLeases
from storage.serializers import Serializer

__all__ = ["as_async", "has_async_leases", "with_serializer"]


def with_serializer(storage: Any, serializer: Serializer) -> Any:
    """``storage.with_serializer(serializer)``, or ``storage`` itself if it keeps objects."""
    method = getattr(storage, "with_serializer", None)
    return method(serializer) if callable(method) else storage


def as_async(storage: Any) -> Any:
    """The asyncio view of a sync storage: its ``as_async()``, or an inline adapter."""
    method = getattr(storage, "as_async", None)
    return method() if callable(method) else AsyncAdapter(storage)


def has_async_leases(storage: Any) -> TypeGuard[AsyncLeases]:
    """Whether an asyncio storage (or adapter) offers leases."""
    if isinstance(storage, AsyncAdapter):
        return storage.supports_leases
    return isinstance(storage, AsyncLeases)
