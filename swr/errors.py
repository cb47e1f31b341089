"""Errors raised by the engine.

The tree::

    SWRError                          any error raised by swr itself
    ├── ConfigError (also ValueError)  invalid settings, raised by constructors
    ├── FetchTimeoutError (also TimeoutError)
    │                                 a fetch outlived ``RefreshOptions.timeout``
    ├── FetchAbortedError             the shared fetch a caller waited on was interrupted
    ├── ReentrantFetchError (also RuntimeError)
    │                                 a fetch called ``execute`` on its own key
    └── CircuitOpenError              the circuit breaker refuses calls and nothing cached
                                      can be served instead
    SerializationError                re-exported from ``storage.errors`` (a TypeError)

A fetch's own exception reaches the caller unchanged when nothing cached can be served
instead; storage errors never reach callers of ``execute``.
"""

from __future__ import annotations

from swr.storage.errors import SerializationError

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "FetchAbortedError",
    "FetchTimeoutError",
    "ReentrantFetchError",
    "SWRError",
    "SerializationError",
]


class SWRError(Exception):
    """Base of the errors raised by swr itself."""


class ConfigError(SWRError, ValueError):
    """A setting is invalid; the message names the setting and the value."""


class FetchTimeoutError(SWRError, TimeoutError):
    """A fetch did not finish within ``RefreshOptions.timeout`` seconds."""


class FetchAbortedError(SWRError):
    """The shared fetch this caller waited on ended by an interruption, not a result."""


class ReentrantFetchError(SWRError, RuntimeError):
    """A fetch called ``execute`` on its own key, in its own thread or task.

    It would wait for itself forever: it is refused at once instead. Fetch the value
    directly inside the fetch (for example the undecorated function).
    """


class CircuitOpenError(SWRError):
    """The circuit breaker refuses calls to the upstream for now.

    Attributes:
        retry_at: Epoch seconds from which a trial call may go through.
        retry_in: Seconds from when the error was raised until ``retry_at``.
    """

    def __init__(self, message: str, *, retry_at: float, retry_in: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at
        self.retry_in = retry_in
