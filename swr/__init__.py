"""swr: a persistent stale-while-revalidate cache engine.

``engine.execute(key, fetch)`` answers from the cache and keeps it warm: fresh entries
are served as they are, stale ones at once while one background refresh runs, expired
ones are kept as a last resort when the upstream fails.
"""

from swr._bulk import AsyncLoader, BatchFetchError, Loader, NotModified
from swr.breaker import CircuitBreaker
from swr.engine import AsyncStaleEngine, StaleEngine
from swr.errors import (
    CircuitOpenError,
    ConfigError,
    FetchAbortedError,
    FetchTimeoutError,
    ReentrantFetchError,
    SWRError,
)
from swr.metrics import MetricsHook
from swr.policy import CacheTTL, Result, Status, TTLSpec
from swr.refresh import RefreshOptions
from swr.stats import EngineStats

__all__ = [
    "AsyncLoader",
    "AsyncStaleEngine",
    "BatchFetchError",
    "CacheTTL",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigError",
    "EngineStats",
    "FetchAbortedError",
    "FetchTimeoutError",
    "Loader",
    "MetricsHook",
    "NotModified",
    "ReentrantFetchError",
    "RefreshOptions",
    "Result",
    "SWRError",
    "StaleEngine",
    "Status",
    "TTLSpec",
]

__version__ = "0.1.0"
