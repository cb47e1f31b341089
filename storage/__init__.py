"""Storage layer of swr: entries, the storage protocols and their backends.

This package never imports ``swr``; it is usable on its own.
"""

from storage.adapters import AsyncAdapter
from storage.base import AsyncLeases, AsyncStorage, Entry, Leases, Storage, StorageMixin
from storage.errors import (
    CacheLimitsError,
    CacheNameError,
    CorruptEntryError,
    PoolCapacityError,
    PoolConfigError,
    SerializationError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from storage.memory import MemoryStorage
from storage.pool import (
    AsyncBatchLoader,
    BatchLoader,
    CacheStats,
    MemoryPool,
    PoolCache,
    PoolStats,
)

__all__ = [
    "AsyncAdapter",
    "AsyncBatchLoader",
    "AsyncLeases",
    "AsyncStorage",
    "BatchLoader",
    "CacheLimitsError",
    "CacheNameError",
    "CacheStats",
    "CorruptEntryError",
    "Entry",
    "Leases",
    "MemoryPool",
    "MemoryStorage",
    "PoolCache",
    "PoolCapacityError",
    "PoolConfigError",
    "PoolStats",
    "SerializationError",
    "Storage",
    "StorageError",
    "StorageFullError",
    "StorageMixin",
    "StorageUnavailableError",
]
