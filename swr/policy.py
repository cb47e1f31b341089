"""The vocabulary of the engine: statuses, results and TTL windows.

The types live in the pure core: ``swr._core.windows`` (``Status``, ``Result``, and the
diagram of an entry's windows) and ``swr._core.ttl`` (``CacheTTL``, ``TTLSpec``).
"""

from swr._core.ttl import CacheTTL, TTLSpec
from swr._core.windows import Result, Status

__all__ = ["CacheTTL", "Result", "Status", "TTLSpec"]
