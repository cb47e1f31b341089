"""Storage layer of swr: entries, the storage protocols and their backends.

``RedisStorage`` needs the ``redis`` extra (``pip install "swr[redis]"``); importing this
package does not.

This package never imports ``swr``; it is usable on its own.
"""

from storage.adapters import AsyncAdapter
from storage.base import (
    AsyncCloseable,
    AsyncLeases,
    AsyncStorage,
    AsyncStorageMixin,
    Closeable,
    Entry,
    Leases,
    Storage,
    StorageMixin,
)
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
from storage.fallback import AsyncFallbackStorage, FallbackStorage
from storage.lmdb import LMDBStorage
from storage.memory import MemoryStorage
from storage.pool import (
    AsyncBatchLoader,
    BatchLoader,
    CacheStats,
    MemoryPool,
    PoolCache,
    PoolStats,
)
from storage.redis import AsyncRedisStorage, RedisStorage
from storage.tiered import AsyncTieredStorage, TieredStorage

__all__ = [
    "AsyncAdapter",
    "AsyncBatchLoader",
    "AsyncCloseable",
    "AsyncFallbackStorage",
    "AsyncLeases",
    "AsyncRedisStorage",
    "AsyncStorage",
    "AsyncStorageMixin",
    "AsyncTieredStorage",
    "BatchLoader",
    "CacheLimitsError",
    "CacheNameError",
    "CacheStats",
    "Closeable",
    "CorruptEntryError",
    "Entry",
    "FallbackStorage",
    "LMDBStorage",
    "Leases",
    "MemoryPool",
    "MemoryStorage",
    "PoolCache",
    "PoolCapacityError",
    "PoolConfigError",
    "PoolStats",
    "RedisStorage",
    "SerializationError",
    "Storage",
    "StorageError",
    "StorageFullError",
    "StorageMixin",
    "StorageUnavailableError",
    "TieredStorage",
]
