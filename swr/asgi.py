"""A stale-while-revalidate response cache for ASGI apps (Starlette, FastAPI).

``CacheMiddleware`` caches a service's own GET responses through an
:class:`~swr.AsyncStaleEngine`; :func:`cache_route` does the same for one FastAPI or
Starlette endpoint's return value. Needs the ``asgi`` extra (``pip install "swr[asgi]"``).

Windows come from the response's own ``Cache-Control`` when the handler sets one
(``max-age``, ``stale-while-revalidate``, ``stale-if-error``, as for
:class:`~swr.http.SWRTransport` in a shared cache), else from the middleware's ``ttl``:
fresh responses are served as they are, stale ones at once while one background call
of the handler refreshes them, and within ``stale-if-error`` a handler that raises or
answers 5xx is answered with the stored response as FALLBACK.

Requests say ``Cache-Control: no-cache`` to get a response the handler just made (it is
stored), and ``no-store`` to bypass the cache. Responses carry ``Age``, the status
header (``X-Cache: HIT`` by default), ``Cache-Control`` (when the handler set none) and
``Vary`` for the headers the cache varies on.
"""

from __future__ import annotations

import functools
import inspect
import time as _time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from swr.engine import AsyncStaleEngine
from swr.http._policy import (
    TOMBSTONE,
    Backoff,
    CachePolicy,
    acceptable,
    fallback_allowed,
    freshness,
    header_getter,
    make_value,
    request_cache_control,
    request_directives,
    storable_headers,
    stored_ttl,
)
from swr.policy import CacheTTL, Result, Status

__all__ = ["CacheMiddleware", "cache_route"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TTL = CacheTTL(fresh=60, stale=300, expired=3600)


def _check_engine(engine: object, what: str) -> None:
    if not isinstance(engine, AsyncStaleEngine):
        raise TypeError(f"{what} needs an AsyncStaleEngine, got {type(engine).__name__}")


def _check_vary(vary: Iterable[str]) -> tuple[str, ...]:
    if isinstance(vary, str):
        raise TypeError("vary must be a sequence of header names, not one str")
    names = tuple(sorted({str(name).strip().lower() for name in vary}))
    if any(not name for name in names):
        raise ValueError("vary holds an empty header name")
    return names


def request_key(path: str, query: str, vary: Sequence[str], header: Callable[[str], str]) -> str:
    """The cache key of a request: its path, its sorted query, the varied header values."""
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    key = f"{path}?{urlencode(pairs)}" if pairs else path
    if vary:
        key += "|" + "&".join(f"{name}={header(name)}" for name in vary)
    return key


def _outgoing_headers(
    value: dict[str, Any],
    status: Status,
    age: float,
    vary: Sequence[str],
    status_header: str | None,
) -> list[tuple[bytes, bytes]]:
    """The stored headers plus ``Age``, ``Cache-Control``, ``Vary`` and the status."""
    headers = [(n, v) for n, v in value["headers"] if n not in (b"age", b"vary")]
    app_vary = [v for n, v in value["headers"] if n == b"vary"]
    if not any(n == b"cache-control" for n, _ in headers):
        fresh, stale, _ = value["ttl"]
        directives = [f"max-age={int(fresh + value['age'])}"]
        if stale:
            directives.append(f"stale-while-revalidate={int(stale)}")
        if value.get("sie"):
            directives.append(f"stale-if-error={int(value['sie'])}")
        headers.append((b"cache-control", ", ".join(directives).encode()))
    headers.append((b"age", str(int(age)).encode()))
    if vary or app_vary:
        names = [v.decode("latin-1") for v in app_vary] + list(vary)
        headers.append((b"vary", ", ".join(names).encode("latin-1")))
    if status_header is not None:
        headers.append((status_header.lower().encode(), status.name.encode()))
    return headers


class _HandlerFailed(Exception):
    """The handler answered 5xx: a failure for the engine, carrying the response."""

    def __init__(self, value: dict[str, Any]) -> None:
        super().__init__(f"handler answered {value['status']}")
        self.value = value


class _Collected:
    """What one request's handler call produced, for the caller waiting on it."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: dict[str, Any] | None = None


class CacheMiddleware:
    """Cache an ASGI app's GET responses with stale-while-revalidate windows.

    Example::

        engine = AsyncStaleEngine(LMDBStorage("/var/cache/svc"), namespace="pages")
        app.add_middleware(CacheMiddleware, engine=engine, vary=["accept-language"])

    Args:
        app: The ASGI app to wrap.
        engine: The engine keeping the responses; closed by its owner, not here.
        ttl: Windows for responses whose handler sets no ``Cache-Control`` freshness:
            fresh, then served stale while one background call refreshes, then kept
            for ``stale-if-error``.
        vary: Request header names that select different responses; each response
            gets ``Vary`` with them and their values are part of the key.
        paths: Path prefixes to cache; ``None`` caches every GET.
        status_header: Header carrying the cache status (``HIT``, ``STALE``, ...);
            ``None`` for none.
        error_backoff: Seconds a key whose handler failed in its ``stale-if-error``
            window is answered as FALLBACK without calling the handler; doubles with
            each further failure up to 60 s.
        clock: Epoch seconds for that backoff; pass the engine's clock when you
            inject one (default ``time.time``).

    Raises:
        TypeError: ``engine`` is not an :class:`~swr.AsyncStaleEngine`, or ``vary``
            is a single string.

    Only successful responses with a status cacheable by default (200, 203, 204, 300,
    301, 308, 404, 405, 410, 414, 501) or explicit freshness are stored, whole (a
    streaming response is read to its end first); ``private`` and ``no-store``
    responses, and requests with ``Authorization``, go through untouched unless the
    response is ``public``.
    """

    def __init__(
        self,
        app: ASGIApp,
        engine: AsyncStaleEngine,
        *,
        ttl: CacheTTL = DEFAULT_TTL,
        vary: Iterable[str] = (),
        paths: Sequence[str] | None = None,
        status_header: str | None = "X-Cache",
        error_backoff: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        _check_engine(engine, "CacheMiddleware")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        self._clock = clock
        if not isinstance(ttl, CacheTTL):
            raise TypeError(f"ttl must be a CacheTTL, got {type(ttl).__name__}")
        if paths is not None and (
            isinstance(paths, str) or not all(isinstance(p, str) for p in paths)
        ):
            raise TypeError("paths must be a sequence of path prefixes (str)")
        self.app = app
        self.engine = engine
        self.vary = _check_vary(vary)
        self.paths = tuple(paths) if paths is not None else None
        self.policy = CachePolicy(
            shared=True,
            default_ttl=ttl,
            keep_for_revalidation=0.0,
            status_header=status_header,
            error_backoff=error_backoff,
        )
        self._backoff = Backoff(error_backoff, self.policy.error_backoff_max)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI call: from the cache for cacheable GETs, else from the app."""
        if scope["type"] != "http" or scope["method"] != "GET" or not self._covers(scope):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        directives = request_cache_control(
            request.headers.get("pragma"), request.headers.getlist("cache-control")
        )
        if directives.no_store:
            await self.app(scope, receive, send)
            return
        key = request_key(
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            self.vary,
            lambda name: ", ".join(request.headers.getlist(name)),
        )
        engine = self.engine
        refetch = directives.no_cache
        if directives.constrained and not refetch:
            # only-if-cached, max-age, min-fresh, max-stale: judged against the stored
            # response; served as is (no refresh), else refetched or 504.
            current = await engine.get(key)
            if current is not None and "status" in current.value:
                judged = acceptable(current.value, current.age, directives, shared=True)
                if judged is not None:
                    await self._send(send, current.value, judged, current.age)
                    return
            refetch = True
        if directives.only_if_cached:
            await send({"type": "http.response.start", "status": 504, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if not refetch and self._backoff.paused(key, self._now()):
            current = await engine.get(key)
            if current is not None and _servable(current):
                await self._send(send, current.value, Status.FALLBACK, current.age)
                return
        collected = _Collected()
        try:
            result = await engine.execute(
                key,
                lambda: self._fetch(scope, collected),
                ttl=stored_ttl,
                force_refresh=refetch,
            )
        except _HandlerFailed as exc:
            await self._send(send, exc.value, Status.MISS, 0.0)
            return
        value = result.value
        status = result.status
        if status is Status.FALLBACK:
            self._backoff.failed(key, self._now())
        elif status is not Status.HIT and status is not Status.STALE:
            self._backoff.succeeded(key)
        if "status" not in value:  # a tombstone: the response was not storable
            if collected.value is None:
                await self.app(scope, receive, send)
                return
            value = collected.value
        elif status is Status.FALLBACK and not fallback_allowed(value, result.age):
            await self.app(scope, receive, send)
            return
        fetched = status is Status.MISS or status is Status.EXPIRED
        await self._send(send, value, status, 0.0 if fetched else result.age)

    def _now(self) -> float:
        clock = self._clock
        return float(clock()) if clock is not None else _time.time()

    def _covers(self, scope: Scope) -> bool:
        paths = self.paths
        return paths is None or any(scope["path"].startswith(p) for p in paths)

    async def _fetch(self, scope: Scope, collected: _Collected) -> dict[str, Any]:
        """Call the app once and return what to store (also on background refreshes)."""
        status = 500
        raw: list[tuple[bytes, bytes]] = []
        body: list[bytes] = []
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw.extend((bytes(n), bytes(v)) for n, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        call_scope = dict(scope)
        call_scope["state"] = dict(scope.get("state") or {})
        await self.app(call_scope, receive, send)
        content = b"".join(body)
        headers = storable_headers(raw, len(content))
        fr = freshness(
            self.policy,
            status,
            header_getter(headers),
            authorized="authorization" in Request(scope).headers,
            now=self._now(),
        )
        value = make_value(status, headers, content, fr, [])
        if status >= 500 and status != 501:
            raise _HandlerFailed(value)
        if not fr.storable:
            collected.value = value
            return TOMBSTONE
        return value

    async def _send(self, send: Send, value: dict[str, Any], status: Status, age: float) -> None:
        age += value["age"]
        headers = _outgoing_headers(value, status, age, self.vary, self.policy.status_header)
        await send({"type": "http.response.start", "status": value["status"], "headers": headers})
        await send({"type": "http.response.body", "body": value["body"]})


def _servable(result: Result[Any]) -> bool:
    value = result.value
    return isinstance(value, dict) and "status" in value and fallback_allowed(value, result.age)


def cache_route(
    engine: AsyncStaleEngine,
    *,
    ttl: CacheTTL = DEFAULT_TTL,
    vary: Iterable[str] = (),
    status_header: str | None = "X-Cache",
) -> Callable[[F], F]:
    """Cache one FastAPI (or Starlette) endpoint's return value through ``engine``.

    Example::

        @app.get("/items/{item_id}")
        @cache_route(engine, ttl=CacheTTL(fresh=10, stale=60, expired=600))
        async def read_item(item_id: int) -> dict: ...

    The key is the endpoint's qualified name, the request path, its sorted query and
    the ``vary`` header values. The value cached is what the endpoint returns (with a
    byte storage: plain data such as dicts and lists, which msgpack keeps). Requests
    may send ``Cache-Control: no-cache`` (refetch) and ``no-store`` (bypass); the
    response gets ``Age``, ``Cache-Control``, ``Vary`` and the status header. An
    ``HTTPException`` below 500 is raised to the client and nothing is cached; any
    other exception, or one of 500 and above, serves the cached value as FALLBACK
    within the expired window.

    Raises:
        TypeError: the endpoint takes ``**kwargs``, or ``engine`` is not async.
    """
    _check_engine(engine, "cache_route")
    names = _check_vary(vary)
    if not isinstance(ttl, CacheTTL):
        raise TypeError(f"ttl must be a CacheTTL, got {type(ttl).__name__}")
    directives = f"max-age={int(ttl.fresh)}"
    if ttl.stale:
        directives += f", stale-while-revalidate={int(ttl.stale)}"
    if ttl.expired:
        directives += f", stale-if-error={int(ttl.expired)}"

    def route_ttl(key: str, value: object) -> CacheTTL:
        return stored_ttl(key, TOMBSTONE) if value == TOMBSTONE else ttl

    def decorate(endpoint: F) -> F:
        signature = inspect.signature(endpoint, eval_str=True)
        if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            raise TypeError(f"{endpoint.__qualname__} takes **kwargs; cache_route cannot wrap it")
        extra = [
            inspect.Parameter("swr_request__", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
            inspect.Parameter(
                "swr_response__", inspect.Parameter.KEYWORD_ONLY, annotation=Response
            ),
        ]
        prefix = f"route:{endpoint.__module__}.{endpoint.__qualname__}:"
        is_async = inspect.iscoroutinefunction(endpoint)

        async def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if is_async:
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        @functools.wraps(endpoint)
        async def wrapper(
            *args: Any, swr_request__: Request, swr_response__: Response, **kwargs: Any
        ) -> Any:
            headers = swr_request__.headers
            no_store, refetch = request_directives(headers, headers.getlist("cache-control"))
            out = swr_response__.headers
            if names:
                out["vary"] = ", ".join(names)
            if no_store:
                return await call(args, kwargs)
            key = prefix + request_key(
                swr_request__.url.path,
                swr_request__.url.query,
                names,
                lambda name: ", ".join(headers.getlist(name)),
            )
            refused: list[HTTPException] = []

            async def fetch() -> Any:
                try:
                    return await call(args, kwargs)
                except HTTPException as exc:
                    if exc.status_code >= 500:
                        raise
                    refused.append(exc)
                    return TOMBSTONE

            result = await engine.execute(key, fetch, ttl=route_ttl, force_refresh=refetch)
            if refused:
                raise refused[0]
            if result.value == TOMBSTONE:
                return await call(args, kwargs)
            out["age"] = str(int(result.age))
            out["cache-control"] = directives
            if status_header is not None:
                out[status_header] = result.status.name
            return result.value

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), *extra]
        )
        return wrapper  # type: ignore[return-value]

    return decorate
