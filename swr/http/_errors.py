"""Engine errors as httpx errors, so that httpx users handle them as usual.

The transports raise the origin's own errors (``httpx.ConnectError``, ...) unchanged.
What the engine raises on its own, with nothing cached to serve instead, becomes one of
these ``httpx.TransportError`` subclasses, with the engine's exception as ``__cause__``:

- :class:`OriginUnavailableError` (an ``httpx.ConnectError``): the request was not
  sent, because the engine's circuit breaker is open (``swr.CircuitOpenError``);
- :class:`OriginTimeoutError` (an ``httpx.TimeoutException``): the fetch outlived the
  engine's ``RefreshOptions.timeout`` (``swr.FetchTimeoutError``);
- :class:`CacheTransportError` (an ``httpx.TransportError``): any other ``SWRError``.
"""

from __future__ import annotations

import httpx

from swr.errors import CircuitOpenError, FetchTimeoutError, SWRError

__all__ = ["CacheTransportError", "OriginTimeoutError", "OriginUnavailableError"]


class CacheTransportError(httpx.TransportError):
    """An swr engine error on the transport's path; ``__cause__`` is the engine's error."""


class OriginUnavailableError(CacheTransportError, httpx.ConnectError):
    """The request was not sent: the engine's circuit breaker is open.

    ``__cause__`` is the :class:`~swr.CircuitOpenError` (its ``retry_in`` says when
    the breaker lets a trial call through).
    """


class OriginTimeoutError(CacheTransportError, httpx.TimeoutException):
    """The fetch outlived the engine's timeout; ``__cause__`` is the ``FetchTimeoutError``."""


def as_httpx_error(exc: SWRError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error standing for the engine error ``exc`` (raise it ``from exc``)."""
    if isinstance(exc, CircuitOpenError):
        return OriginUnavailableError(f"swr circuit breaker open: {exc}", request=request)
    if isinstance(exc, FetchTimeoutError):
        return OriginTimeoutError(f"swr fetch timed out: {exc}", request=request)
    return CacheTransportError(f"swr engine error: {exc!r}", request=request)
