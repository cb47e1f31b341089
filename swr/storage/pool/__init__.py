"""MemoryPool: several typed in-process caches sharing one capacity, by priority.

A :class:`MemoryPool` holds at most ``capacity`` entries in total, spread over the
caches registered with it. Each :class:`PoolCache` has a guaranteed ``min``, a ``max``
it never exceeds, an optional ``ttl`` and a ``priority``. Hits take no lock; writes,
deletes, evictions and expiry take the pool's one lock. A background thread (every
``gc_interval`` seconds) drops expired entries a few hundred at a time, releasing the
lock in between.

One job per module:

- ``_pool.py``: :class:`MemoryPool`, registration (mins and maxes that fit the
  capacity), ``collect`` and its background thread;
- ``_eviction.py``: each cache's LRU and expiry order, and which entry goes when a
  write needs room (the rules and what always holds are in its docstring);
- ``_cache.py``: :class:`PoolCache`, reads, writes, leases, stats, lifecycle;
- ``_loading.py``: ``get_or_load``/``aget_or_load`` (one load per missing key);
- ``_batch.py``: :class:`BatchLoader` and :class:`AsyncBatchLoader` (DataLoader);
- ``_stats.py``, ``_settings.py``: the snapshots and the validation of settings.
"""

from swr.storage.pool._batch import AsyncBatchLoader, BatchLoader
from swr.storage.pool._cache import PoolCache
from swr.storage.pool._pool import MemoryPool
from swr.storage.pool._stats import CacheStats, PoolStats

__all__ = [
    "AsyncBatchLoader",
    "BatchLoader",
    "CacheStats",
    "MemoryPool",
    "PoolCache",
    "PoolStats",
]
