# Generated from swr/storage/_async/__init__.py by tools/unasync.py:
# edit that file, not this one.
"""The asyncio storages, written once; ``swr/storage/_sync`` holds their generated twins."""

from swr.storage._sync.fallback import FallbackStorage
from swr.storage._sync.redis import RedisStorage
from swr.storage._sync.tiered import TieredStorage

__all__ = ["FallbackStorage", "RedisStorage", "TieredStorage"]
