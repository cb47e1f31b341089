"""HTTP caching with stale-while-revalidate: httpx transports over an swr engine.

``SWRTransport`` and ``AsyncSWRTransport`` (``pip install "swr[http]"``) cache GET and
HEAD responses by their ``Cache-Control`` (RFC 9111), serve stale responses while one
background revalidation runs (``stale-while-revalidate``) and fall back to them when the
origin fails (``stale-if-error``, RFC 5861). See ``docs/http.md``.
"""

from swr.http._async.transport import AsyncSWRTransport
from swr.http._errors import CacheTransportError, OriginTimeoutError, OriginUnavailableError
from swr.http._policy import CacheInfo, CachePolicy
from swr.http._sync.transport import SWRTransport

__all__ = [
    "AsyncSWRTransport",
    "CacheInfo",
    "CachePolicy",
    "CacheTransportError",
    "OriginTimeoutError",
    "OriginUnavailableError",
    "SWRTransport",
]
