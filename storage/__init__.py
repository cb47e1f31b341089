"""Storage layer of swr: entries, the storage protocols and their backends.

``RedisStorage`` needs the ``redis`` extra (``pip install "swr[redis]"``); importing this
package does not.

This package never imports ``swr``; it is usable on its own.
"""

from storage.adapters import AsyncAdapter
from storage.base import AsyncLeases, AsyncStorage, Entry, Leases, Storage, StorageMixin
from storage.errors import (
    CorruptEntryError,
    SerializationError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from storage.fallback import AsyncFallbackStorage, FallbackStorage
from storage.memory import MemoryStorage
from storage.redis import AsyncRedisStorage, RedisStorage
from storage.tiered import AsyncTieredStorage, TieredStorage

__all__ = [
    "AsyncAdapter",
    "AsyncFallbackStorage",
    "AsyncLeases",
    "AsyncRedisStorage",
    "AsyncStorage",
    "AsyncTieredStorage",
    "CorruptEntryError",
    "Entry",
    "FallbackStorage",
    "Leases",
    "MemoryStorage",
    "RedisStorage",
    "SerializationError",
    "Storage",
    "StorageError",
    "StorageFullError",
    "StorageMixin",
    "StorageUnavailableError",
    "TieredStorage",
]
