# Generated from swr/http/_async/transport.py by tools/unasync.py:
# edit that file, not this one.
"""The httpx transport: an RFC 9111 / RFC 5861 cache for httpx over an swr engine.

The only copy written by hand: ``tools/unasync.py`` generates ``SWRTransport`` in
``swr/http/_sync/transport.py``. Every decision lives in ``swr/http/_base.py``; this
shell sends requests, reads bodies and calls the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx

from swr._sync.engine import StaleEngine
from swr.errors import SWRError
from swr.http._base import (
    _Call,
    _Fetched,
    _is_pointer,
    _OriginError,
    _Step,
    _TransportBase,
)
from swr.http._errors import as_httpx_error
from swr.http._policy import TOMBSTONE, CachePolicy, RequestCacheControl, stored_ttl
from swr.policy import Result, Status
from swr.storage.base import Entry

__all__ = ["SWRTransport"]


class SWRTransport(_TransportBase, httpx.BaseTransport):
    """An httpx transport that caches GET and HEAD responses through an engine.

    Example::

        with StaleEngine(namespace="http") as engine:
            with httpx.Client(transport=SWRTransport(engine)) as client:
                response = client.get("https://api.example.com/items")
                response.extensions["swr"].status  # Status.MISS, then HIT, STALE...

    Args:
        engine: The engine whose storage keeps the responses (shared with other uses;
            pass a ``namespace`` to keep them apart). The transport does not close it.
        transport: The transport that reaches the origin; default
            ``httpx.HTTPTransport()`` (closed with this one).
        policy: A :class:`~swr.http.CachePolicy`; the defaults suit a client's own cache.
        clock: Epoch seconds for the stale-if-error backoff, ages and ``Expires``
            without ``Date``; pass the engine's clock when you inject one.

    Requests raise the origin's own errors (``httpx.ConnectError``, ...) unchanged when
    nothing stored may be served instead, and the engine's errors as ``swr.http``
    subclasses of ``httpx.TransportError`` (``OriginUnavailableError`` for an open
    circuit breaker, ...) with the engine's exception as ``__cause__``.

    Background revalidations are the engine's (tasks, or worker threads).
    """

    _OTHER_KIND = "AsyncSWRTransport"

    def __init__(
        self,
        engine: StaleEngine,
        transport: httpx.BaseTransport | None = None,
        *,
        policy: CachePolicy | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(engine, StaleEngine):
            raise TypeError(
                f"{type(self).__name__} needs a {StaleEngine.__name__}, "
                f"got {type(engine).__name__} (use {self._OTHER_KIND} with it)"
            )
        super().__init__(engine, policy, clock)
        self._engine: StaleEngine = engine
        self._transport = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the cache or the origin (httpx calls this)."""
        method = request.method
        if method not in ("GET", "HEAD"):
            response = self._transport.handle_request(request)
            for key in self._invalidated_keys(request, response):
                with self._storage_guard(key):
                    self._engine.delete(key)
            return response
        directives = self._request_cache_control(request)
        if directives is None:
            return self._mark_passthrough(self._transport.handle_request(request))
        key = self._base_key(request)
        try:
            if method == "HEAD" and not directives.no_cache:
                answer = self._judge(self._get_key(request), request, directives, head=True)
                if answer is not None:
                    return answer
            refetch = directives.no_cache
            if directives.constrained and not refetch:
                answer = self._judge(key, request, directives)
                if answer is not None:
                    return answer
                refetch = True
            if directives.only_if_cached:
                return self._gateway_timeout(request, key)
            return self._serve(key, _Call(request), refetch)
        except SWRError as exc:
            raise as_httpx_error(exc, request) from exc

    def _judge(
        self,
        key: str,
        request: httpx.Request,
        directives: RequestCacheControl,
        head: bool = False,
    ) -> httpx.Response | None:
        """The stored response of ``key`` (or of its variant) if ``directives`` accept it.

        ``head``: a HEAD request looking at the GET response, used only when fresh
        (or within the request's ``max-stale``).
        """
        peek = self._engine.get(key)
        if peek is not None and _is_pointer(peek.value):
            key = self._variant_key(key, peek.value, request)
            peek = self._engine.get(key)
        return self._judged(key, request, directives, peek, head)

    def _serve(self, key: str, call: _Call, refetch: bool) -> httpx.Response:
        engine = self._engine
        if not refetch and self._paused(key):
            current = engine.get(key)
            if self._paused_fallback(current):
                return self._response(
                    current.value, call.request, Status.FALLBACK, current.age, key
                )
        result: Result[Any]
        try:
            result = engine.execute(
                key,
                functools.partial(self._fetch, key, call),
                ttl=stored_ttl,
                force_refresh=refetch,
            )
        except _OriginError as exc:  # the origin's 5xx, nothing stored to serve
            return self._response(exc.value, call.request, Status.MISS, 0.0, key)
        finally:
            passthrough = call.abandon()
        step, arg, stray = self._answer(key, call, result, passthrough, refetch)
        if stray is not None:
            stray.close()
        if step is _Step.SERVE:
            return arg  # type: ignore[no-any-return]  # a response
        if step is _Step.AGAIN:
            return self._serve(*arg)
        response = self._transport.handle_request(call.request)
        return self._mark_passthrough(response, key)

    def _fetch(self, key: str, call: _Call, previous: Entry | None) -> Any:
        """The engine's conditional fetch: ``previous`` is the entry being refreshed."""
        current = None if previous is None else previous.value
        request_time = self._now()
        try:
            response = self._transport.handle_request(self._origin_request(call, current))
        except Exception as exc:
            call.error = exc
            raise
        step = self._classify(call, current, response, request_time)
        if step is _Fetched.FORWARD:
            if not call.offer(response):
                response.close()
            return TOMBSTONE
        body = bytearray()
        try:
            # Read to the end even for a 304 (no body): the connection is then reused.
            for chunk in response.iter_raw():
                body += chunk
        finally:
            response.close()
        value, write = self._fetched(step, key, call, current, response, bytes(body), request_time)
        if write is not None:
            wkey, wvalue = write
            with self._storage_guard(wkey):
                if wvalue is None:
                    self._engine.delete(wkey)
                else:
                    self._engine.set(wkey, wvalue, ttl=stored_ttl(wkey, wvalue))
        return value

    def close(self) -> None:
        """Close the wrapped transport (not the engine)."""
        self._transport.close()
