"""Storage layer of swr: entries, the storage protocols and their backends.

``RedisStorage`` needs the ``redis`` extra (``pip install "swr[redis]"``); importing this
package does not.

This package never imports ``swr``; it is usable on its own.
"""

from swr.storage.adapters import AsyncAdapter
from swr.storage.base import (
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
from swr.storage.errors import (
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
from swr.storage.fallback import AsyncFallbackStorage, FallbackStorage
from swr.storage.lmdb import LMDBStorage
from swr.storage.memory import MemoryStorage
from swr.storage.pool import (
    AsyncBatchLoader,
    BatchLoader,
    CacheStats,
    MemoryPool,
    PoolCache,
    PoolStats,
)
from swr.storage.redis import AsyncRedisStorage, RedisStorage
from swr.storage.tiered import AsyncTieredStorage, TieredStorage

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
