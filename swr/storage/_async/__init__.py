"""The asyncio storages, written once; ``swr/storage/_sync`` holds their generated twins."""

from swr.storage._async.fallback import AsyncFallbackStorage
from swr.storage._async.redis import AsyncRedisStorage
from swr.storage._async.tiered import AsyncTieredStorage

__all__ = ["AsyncFallbackStorage", "AsyncRedisStorage", "AsyncTieredStorage"]
