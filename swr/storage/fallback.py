"""FallbackStorage and AsyncFallbackStorage: a primary (Redis) with a local fallback.

How it works: while the primary is healthy, reads go to it alone and writes go to both,
so the fallback is warm when the primary fails. While the primary is unavailable (it
raises :class:`~storage.errors.StorageUnavailableError`, or reports
``available == False`` as :class:`~storage.redis.RedisStorage` does), reads and writes go
to the fallback alone, and ``stats()`` counts which tier served each read.

Writes and deletes made during an outage never reach the primary, so the primary may
hold an older value, or a value the application deleted. The keys changed meanwhile are
remembered (a bounded, oldest-first map: ``key -> None`` for a write, ``key -> instant``
for a delete). When the primary is back, the first read of such a key reconciles it:

- written during the outage: the fallback's entry is copied to the primary unless the
  primary holds a newer one (later ``stored_at``, e.g. written by another host);
- deleted during the outage: the primary's entry is deleted unless it was stored after
  the delete.

Nothing cached in the fallback is dropped when the primary fails or returns. Every
decision lives in :mod:`swr.storage._fallback`; the asyncio class is written once in
:mod:`swr.storage._async.fallback` and the thread class generated from it.
"""

from __future__ import annotations

from swr.storage._async.fallback import AsyncFallbackStorage
from swr.storage._fallback import reconcile
from swr.storage._sync.fallback import FallbackStorage

__all__ = ["AsyncFallbackStorage", "FallbackStorage", "reconcile"]
