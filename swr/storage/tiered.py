"""TieredStorage and AsyncTieredStorage: a small local L1 in front of a shared L2.

How it works: a read tries L1 (memory, this process) and then L2 (Redis, every host);
an L2 hit is copied into L1 as the very same :class:`~storage.base.Entry`, so the copy
keeps L2's ``fresh_until``, ``stale_until`` and ``expires_at`` and can never outlive the
L2 entry's windows. Writes and deletes go to L2 and then to L1 (L1 is written even when
L2 fails, so this process keeps the value). Leases come from L2, the tier every host
shares (from L1 when L2 has none).

An L1 copy is not told when another host replaces or deletes the L2 entry: it serves
its own windows until they end. Keep L1 small or its windows short when other hosts
write the same keys. Every decision lives in :mod:`swr.storage._tiered`; the asyncio
class is written once in :mod:`swr.storage._async.tiered` and the thread class generated
from it.
"""

from __future__ import annotations

from swr.storage._async.tiered import AsyncTieredStorage
from swr.storage._sync.tiered import TieredStorage

__all__ = ["AsyncTieredStorage", "TieredStorage"]
