"""The vocabulary of the engine: statuses, results and TTL windows.

An entry lives through consecutive windows measured from the moment it was stored::

    stored_at      fresh_until       stale_until            expires_at
        |---- fresh ----|---- stale ------|------ expired ------|---- dead
          HIT             STALE             EXPIRED               MISS
                          (served, one      (caller waits for a   (fetched)
                          background        fetch; the old value
                          refresh)          is the fallback)

A fetch that fails or times out while an old value exists serves that value as
FALLBACK (stale-if-error). The types live in the pure core (``swr._core``).
"""

from swr._core.ttl import CacheTTL, TTLSpec
from swr._core.windows import Result, Status

__all__ = ["CacheTTL", "Result", "Status", "TTLSpec"]
