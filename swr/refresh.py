"""Background refresh settings, and the executors that run the refreshes.

:class:`RefreshOptions` groups every setting of an engine's background refreshes (as
httpx groups its ``Timeout`` and ``Limits``)::

    StaleEngine(ttl=CacheTTL(fresh=60, stale=600),
                refresh=RefreshOptions(max_concurrent=4, timeout=2.0))

The executors (:class:`ThreadRefresher`, :class:`TaskRefresher`) live with the other
primitives that differ between threads and tasks, in ``swr._primitives``.
"""

from __future__ import annotations

from dataclasses import dataclass

from swr._core import check_int, check_seconds
from swr._primitives import Submit, TaskRefresher, ThreadRefresher
from swr.errors import ConfigError

__all__ = ["RefreshOptions", "Submit", "TaskRefresher", "ThreadRefresher"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshOptions:
    """How an engine refreshes stale entries in the background.

    Args:
        max_concurrent: Most background refreshes running at once (>= 1).
        queue_size: Most refreshes waiting for a worker (>= 0); more are dropped and
            counted (``refreshes_dropped``), the caller never waits.
        timeout: Seconds after which a fetch counts as failed: a background refresh's
            late result is dropped (asyncio: the fetch is cancelled), and callers
            waiting on another caller's fetch stop waiting (serving the fallback or
            raising ``FetchTimeoutError``). Also the lease period on shared storages.
        backoff_initial: Seconds a key waits before its next refresh after one
            failure; doubles with each further failure, up to ``backoff_max``.
        backoff_max: Largest wait between refreshes of a failing key, in seconds.
        close_timeout: Seconds closing the engine waits for running refreshes.

    Raises:
        ConfigError: a setting is out of range (a ``ValueError``); the message names it.
        TypeError: a setting has the wrong type.
    """

    max_concurrent: int = 16
    queue_size: int = 1024
    timeout: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        check_int("RefreshOptions.max_concurrent", self.max_concurrent, 1)
        check_int("RefreshOptions.queue_size", self.queue_size, 0)
        for name in ("timeout", "backoff_initial", "backoff_max", "close_timeout"):
            seconds = check_seconds(f"RefreshOptions.{name}", getattr(self, name))
            object.__setattr__(self, name, seconds)
        if self.backoff_max < self.backoff_initial:
            raise ConfigError(
                f"RefreshOptions.backoff_max ({self.backoff_max}) must be >= "
                f"backoff_initial ({self.backoff_initial})"
            )
