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

from swr._async.engine import AsyncStaleEngine
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

__all__ = ["AsyncSWRTransport"]


class AsyncSWRTransport(_TransportBase, httpx.AsyncBaseTransport):
    """An httpx transport that caches GET and HEAD responses through an engine.

    Example::

        async with AsyncStaleEngine(namespace="http") as engine:
            async with httpx.AsyncClient(transport=AsyncSWRTransport(engine)) as client:
                response = await client.get("https://api.example.com/items")
                response.extensions["swr"].status  # Status.MISS, then HIT, STALE...

    Args:
        engine: The engine whose storage keeps the responses (shared with other uses;
            pass a ``namespace`` to keep them apart). The transport does not close it.
        transport: The transport that reaches the origin; default
            ``httpx.AsyncHTTPTransport()`` (closed with this one).
        policy: A :class:`~swr.http.CachePolicy`; the defaults suit a client's own cache.
        clock: Epoch seconds for the stale-if-error backoff, ages and ``Expires``
            without ``Date``; pass the engine's clock when you inject one.

    Requests raise the origin's own errors (``httpx.ConnectError``, ...) unchanged when
    nothing stored may be served instead, and the engine's errors as ``swr.http``
    subclasses of ``httpx.TransportError`` (``OriginUnavailableError`` for an open
    circuit breaker, ...) with the engine's exception as ``__cause__``.

    Background revalidations are the engine's (tasks, or worker threads).
    """

    _OTHER_KIND = "SWRTransport"  # unasync: sync=_OTHER_KIND = "AsyncSWRTransport"

    def __init__(
        self,
        engine: AsyncStaleEngine,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        policy: CachePolicy | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(engine, AsyncStaleEngine):
            raise TypeError(
                f"{type(self).__name__} needs a {AsyncStaleEngine.__name__}, "
                f"got {type(engine).__name__} (use {self._OTHER_KIND} with it)"
            )
        super().__init__(engine, policy, clock)
        self._engine: AsyncStaleEngine = engine
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the cache or the origin (httpx calls this)."""
        method = request.method
        if method not in ("GET", "HEAD"):
            response = await self._transport.handle_async_request(request)
            for key in self._invalidated_keys(request, response):
                with self._storage_guard(key):
                    await self._engine.delete(key)
            return response
        directives = self._request_cache_control(request)
        if directives is None:
            return self._mark_passthrough(await self._transport.handle_async_request(request))
        key = self._base_key(request)
        try:
            if method == "HEAD" and not directives.no_cache:
                answer = await self._judge(self._get_key(request), request, directives, head=True)
                if answer is not None:
                    return answer
            refetch = directives.no_cache
            if directives.constrained and not refetch:
                answer = await self._judge(key, request, directives)
                if answer is not None:
                    return answer
                refetch = True
            if directives.only_if_cached:
                return self._gateway_timeout(request, key)
            return await self._serve(key, _Call(request), refetch)
        except SWRError as exc:
            raise as_httpx_error(exc, request) from exc

    async def _judge(
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
        peek = await self._engine.get(key)
        if peek is not None and _is_pointer(peek.value):
            key = self._variant_key(key, peek.value, request)
            peek = await self._engine.get(key)
        return self._judged(key, request, directives, peek, head)

    async def _serve(self, key: str, call: _Call, refetch: bool) -> httpx.Response:
        engine = self._engine
        if not refetch and self._paused(key):
            current = await engine.get(key)
            if self._paused_fallback(current):
                return self._response(
                    current.value, call.request, Status.FALLBACK, current.age, key
                )
        result: Result[Any]
        try:
            result = await engine.execute(
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
            await stray.aclose()
        if step is _Step.SERVE:
            return arg  # type: ignore[no-any-return]  # a response
        if step is _Step.AGAIN:
            return await self._serve(*arg)
        response = await self._transport.handle_async_request(call.request)
        return self._mark_passthrough(response, key)

    async def _fetch(self, key: str, call: _Call, previous: Entry | None) -> Any:
        """The engine's conditional fetch: ``previous`` is the entry being refreshed."""
        current = None if previous is None else previous.value
        request_time = self._now()
        try:
            response = await self._transport.handle_async_request(
                self._origin_request(call, current)
            )
        except Exception as exc:
            call.error = exc
            raise
        step = self._classify(call, current, response, request_time)
        if step is _Fetched.FORWARD:
            if not call.offer(response):
                await response.aclose()
            return TOMBSTONE
        body = bytearray()
        try:
            # Read to the end even for a 304 (no body): the connection is then reused.
            async for chunk in response.aiter_raw():
                body += chunk
        finally:
            await response.aclose()
        value, write = self._fetched(step, key, call, current, response, bytes(body), request_time)
        if write is not None:
            wkey, wvalue = write
            with self._storage_guard(wkey):
                if wvalue is None:
                    await self._engine.delete(wkey)
                else:
                    await self._engine.set(wkey, wvalue, ttl=stored_ttl(wkey, wvalue))
        return value

    async def aclose(self) -> None:
        """Close the wrapped transport (not the engine)."""
        await self._transport.aclose()
