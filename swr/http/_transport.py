"""SWRTransport and AsyncSWRTransport: an RFC 9111 / RFC 5861 cache for httpx.

Both wrap another httpx transport. ``_TransportBase`` holds every decision (keys, what a
response allows, what to serve after the engine answered); the two shells only do I/O:
the origin request, reading a body, and the engine calls.

One GET or HEAD goes through ``engine.execute(key, fetch, ttl=stored_ttl)``:

- HIT and STALE answers are built from the stored response; STALE starts the engine's
  one background revalidation, which the caller never waits for.
- ``fetch`` reads the stored response of the key first (``engine.get``) and sends its
  validators; a ``304`` renews the stored response with the ``304``'s headers and new
  windows (conditional refresh, done here because the engine has no conditional
  refresh of its own yet: the renewed response is written whole).
- A failing origin or a 5xx raises inside ``fetch``; the engine then serves the stored
  response as FALLBACK, which this layer keeps only within ``stale-if-error``
  (entries kept longer just for revalidation are never served after an error).
- Responses that must not be stored are passed through, stream unread; the engine
  stores a tombstone that is dead at once.
- A response with ``Vary`` leaves a pointer under the URL's key; each variant lives
  under a key made of the pointer's generation and the request's varied header values,
  so deleting the URL's key (an unsafe method) invalidates every variant at once.
"""

from __future__ import annotations

import threading
import time as _time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, TypeGuard

import httpx

from swr._log import get_logger
from swr.engine import AsyncStaleEngine, StaleEngine
from swr.http._policy import (
    DEAD,
    TOMBSTONE,
    Backoff,
    CacheInfo,
    CachePolicy,
    Freshness,
    fallback_allowed,
    freshness,
    header_getter,
    make_value,
    merge_not_modified,
    request_directives,
    storable_headers,
    stored_ttl,
    validators,
    vary_names,
    vary_values,
)
from swr.policy import Result, Status

__all__ = ["AsyncSWRTransport", "SWRTransport"]

logger = get_logger("swr.http")

_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_CONDITIONAL = (
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
)
_CONDITIONAL_NAMES = frozenset(_CONDITIONAL)
_CONDITIONAL_BYTES = frozenset(h.encode() for h in _CONDITIONAL)
_SERVED_FROM_CACHE = frozenset({Status.HIT, Status.STALE, Status.FALLBACK})
_MISS = Status.MISS
_FALLBACK = Status.FALLBACK


class _Step(Enum):
    """What a transport does after the engine answered."""

    SERVE = "serve"
    AGAIN = "again"
    ORIGIN = "origin"


class _Fetched(Enum):
    """What a fetch does with the origin's response."""

    RENEW = "renew"  # 304: the stored response, renewed
    ERROR = "error"  # 5xx: a failure the engine may answer with the stored response
    FORWARD = "forward"  # not storable: handed to the caller unread
    STORE = "store"  # read and stored


class _OriginError(Exception):
    """The origin answered 5xx: a failure for the engine, carrying the response."""

    def __init__(self, value: dict[str, Any]) -> None:
        super().__init__(f"origin answered {value['status']}")
        self.value = value


class _Call:
    """What one request's fetch learned, for the caller that waits on it.

    A fetch may also run later, in the background; a response it could only pass
    through then has nobody to read it, so ``offer`` closes it once the caller left.
    """

    __slots__ = (
        "_lock",
        "abandoned",
        "error",
        "fetched",
        "freshness",
        "names",
        "passthrough",
        "request",
        "revalidated",
    )

    def __init__(self, request: httpx.Request, names: list[str] | None = None) -> None:
        self.request = request
        self.names = names  # the Vary names of the pointer that led to this variant key
        self.fetched: dict[str, Any] | None = None
        self.revalidated = False
        self.freshness: Freshness | None = None
        self.error: BaseException | None = None
        self.passthrough: httpx.Response | None = None
        self.abandoned = False
        self._lock = threading.Lock()

    def offer(self, response: httpx.Response) -> bool:
        """Hand a pass-through response to the caller; ``False`` if it already left."""
        with self._lock:
            if self.abandoned:
                return False
            self.passthrough = response
            return True

    def abandon(self) -> httpx.Response | None:
        """The caller stops listening: take the pass-through response, if any."""
        with self._lock:
            self.abandoned = True
            response, self.passthrough = self.passthrough, None
            return response


def _is_response(value: object) -> bool:
    return isinstance(value, dict) and "status" in value


def _must_revalidate(value: Any) -> bool:
    """A stored response that is stale from the start (``no-cache``, ``max-age=0``)."""
    return _is_response(value) and value["ttl"][0] <= DEAD.fresh


def _is_pointer(value: object) -> bool:
    return isinstance(value, dict) and "pointer" in value


class _TransportBase:
    """Decisions shared by both transports; no I/O here."""

    def __init__(self, engine: Any, policy: CachePolicy | None, clock: Any) -> None:
        if policy is None:
            policy = CachePolicy()
        elif not isinstance(policy, CachePolicy):
            raise TypeError(f"policy must be a CachePolicy, got {type(policy).__name__}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        self._engine = engine
        self.policy = policy
        self._clock = clock
        self._status_header = policy.status_header
        self._backoff = Backoff(policy.error_backoff, policy.error_backoff_max)
        self._backoff_lock = threading.Lock()

    @staticmethod
    @contextmanager
    def _storage_guard(key: str) -> Iterator[None]:
        """A failing storage never fails a request: the write is logged and skipped."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the cache being down is not an error
            logger.warning("storage_write_failed", engine="http", key=key, error=repr(exc))

    def _now(self) -> float:
        clock = self._clock
        return float(clock()) if clock is not None else _time.time()

    # -- requests ------------------------------------------------------------------

    @staticmethod
    def _request_flags(request: httpx.Request) -> tuple[bool, bool]:
        """``(bypass, refetch)`` of a request, in one pass over its headers.

        Conditional and range requests, and ``no-store``, bypass the cache;
        ``no-cache``, ``max-age=0`` and ``Pragma: no-cache`` refetch.
        """
        cache_control: list[str] = []
        pragma: dict[str, str] = {}
        for name, value in request.headers.multi_items():
            if name in _CONDITIONAL_NAMES:
                return True, False
            if name == "cache-control":
                cache_control.append(value)
            elif name == "pragma":
                pragma["pragma"] = value
        if not cache_control and not pragma:
            return False, False
        return request_directives(pragma, cache_control)

    @staticmethod
    def _base_key(request: httpx.Request) -> str:
        return f"{request.method} {request.url}"

    @staticmethod
    def _variant_key(base: str, pointer: dict[str, Any], request: httpx.Request) -> str:
        values = vary_values(pointer["names"], request.headers.get_list)
        varied = "&".join(f"{name}={value}" for name, value in values)
        return f"{base}|{pointer['gen']}|{varied}"

    def _origin_request(self, call: _Call, current: Result[Any] | None) -> httpx.Request:
        """The request sent upstream: the caller's, with the stored validators."""
        request = call.request
        headers = [(n, v) for n, v in request.headers.raw if n.lower() not in _CONDITIONAL_BYTES]
        if current is not None and _is_response(current.value):
            headers.extend(validators(current.value))
        return httpx.Request(
            request.method, request.url, headers=headers, extensions=request.extensions
        )

    # -- responses -----------------------------------------------------------------

    def _freshness(self, call: _Call, status: int, raw: Any) -> Freshness:
        request = call.request
        return freshness(
            self.policy,
            status,
            header_getter(raw),
            method=request.method,
            authorized="authorization" in request.headers,
            now=self._now(),
        )

    def _renewed(self, call: _Call, stored: dict[str, Any], response: httpx.Response) -> Any:
        """The stored response renewed by a ``304`` (what the fetch returns)."""
        headers = merge_not_modified(stored, response.headers.raw)
        fr = self._freshness(call, stored["status"], headers)
        value = make_value(stored["status"], headers, stored["body"], fr, stored["vary"])
        if not fr.storable:
            value["ttl"] = [1e-3, 0.0, 0.0]
        call.fetched = value
        call.revalidated = True
        return value

    def _error_value(self, response: httpx.Response, body: bytes) -> dict[str, Any]:
        headers = storable_headers(response.headers.raw, len(body))
        return make_value(response.status_code, headers, body, Freshness(False), [])

    def _stored(
        self, key: str, call: _Call, response: httpx.Response, fr: Freshness, body: bytes
    ) -> tuple[dict[str, Any], tuple[str, dict[str, Any]] | None]:
        """The value the fetch returns, and a variant to store beside it (key, value).

        A varied response fetched under the URL's key is stored under a variant key and
        the URL's key gets a pointer to the variants.
        """
        request = call.request
        raw = response.headers.raw
        length = len(body) if request.method == "GET" else None
        names = vary_names(response.headers.get_list("vary")) or []
        value = make_value(
            response.status_code,
            storable_headers(raw, length),
            body,
            fr,
            vary_values(names, request.headers.get_list),
        )
        call.fetched = value
        if not names or call.names is not None:
            return value, None
        # The pointer outlives its variants, so that they stay reachable.
        lifetime = max(fr.ttl.lifetime, self.policy.keep_for_revalidation)
        pointer = {
            "v": 1,
            "pointer": True,
            "names": names,
            "gen": uuid.uuid4().hex[:12],
            "ttl": [lifetime, 0.0, 0.0],
        }
        return pointer, (self._variant_key(key, pointer, request), value)

    def _response(
        self,
        value: dict[str, Any],
        request: httpx.Request,
        status: Status,
        elapsed: float,
        key: str,
        revalidated: bool = False,
    ) -> httpx.Response:
        """An httpx response built from a stored one, with ``Age`` and the swr status."""
        age = value["age"] + elapsed
        headers = [(n, v) for n, v in value["headers"] if n != b"age"]
        headers.append((b"age", str(int(age)).encode()))
        if self._status_header is not None:
            headers.append((self._status_header.encode(), status.name.encode()))
        return httpx.Response(
            value["status"],
            headers=headers,
            stream=httpx.ByteStream(value["body"]),
            request=request,
            extensions={"swr": CacheInfo(status, age, key, revalidated)},
        )

    def _mark_passthrough(self, response: httpx.Response, key: str = "") -> httpx.Response:
        """Label a response that went straight to the origin."""
        response.extensions["swr"] = CacheInfo(Status.MISS, 0.0, key)
        if self._status_header is not None:
            response.headers[self._status_header] = Status.MISS.name
        return response

    def _classify(
        self, call: _Call, current: Result[Any] | None, response: httpx.Response
    ) -> _Fetched:
        """What a fetch does with the origin's response (before reading its body)."""
        status = response.status_code
        if status == 304 and current is not None and _is_response(current.value):
            return _Fetched.RENEW
        if status >= 500 and status != 501:
            return _Fetched.ERROR
        call.freshness = self._freshness(call, status, response.headers.raw)
        return _Fetched.STORE if call.freshness.storable else _Fetched.FORWARD

    def _fetched(
        self,
        step: _Fetched,
        key: str,
        call: _Call,
        current: Result[Any] | None,
        response: httpx.Response,
        body: bytes,
    ) -> tuple[Any, tuple[str, dict[str, Any] | None] | None]:
        """The value a fetch returns, and one more engine write or ``None``.

        The write is ``(key, value)`` to set or ``(key, None)`` to delete.

        Raises:
            _OriginError: the origin answered 5xx (the engine's failure signal).
        """
        if step is _Fetched.RENEW:
            assert current is not None  # noqa: S101 - RENEW needs a stored response
            return self._renewed(call, current.value, response), None
        if step is _Fetched.ERROR:
            call.error = _OriginError(self._error_value(response, body))
            raise call.error
        assert call.freshness is not None  # noqa: S101 - set by _classify for STORE
        value, variant = self._stored(key, call, response, call.freshness, body)
        if variant is not None:
            return value, variant
        if call.names is not None and call.names != (
            vary_names(response.headers.get_list("vary")) or []
        ):
            # A variant that varies on other headers now: drop the URL's pointer.
            return value, (key.split("|", 1)[0], None)
        return value, None

    # -- after the engine answered --------------------------------------------------

    @staticmethod
    def _paused_fallback(current: Result[Any] | None) -> TypeGuard[Result[Any]]:
        """Whether ``current`` may be served without asking a failing origin again."""
        return (
            current is not None
            and _is_response(current.value)
            and fallback_allowed(current.value, current.age)
        )

    def _paused(self, key: str) -> bool:
        with self._backoff_lock:
            return self._backoff.paused(key, self._now())

    def _record(self, key: str, result: Result[Any]) -> None:
        """Feed the stale-if-error backoff with the outcome of a foreground fetch."""
        status = result.status
        if status is Status.FALLBACK:
            with self._backoff_lock:
                self._backoff.failed(key, self._now())
        elif status is not Status.HIT and status is not Status.STALE:
            with self._backoff_lock:
                self._backoff.succeeded(key)

    def _answer(
        self,
        key: str,
        call: _Call,
        result: Result[Any],
        passthrough: httpx.Response | None,
        refetch: bool,
    ) -> tuple[_Step, Any, httpx.Response | None]:
        """What to do once the engine answered: ``(step, argument, response to close)``.

        ``SERVE`` a response; ask ``AGAIN`` with ``(key, call, refetch)`` (a variant, or
        a forced revalidation); or go to the ``ORIGIN`` directly.

        Raises:
            Exception: the fetch's own transport error, when the stored response may
                not be served in its place.
        """
        value = result.value
        status = result.status
        request = call.request
        stray = None
        if passthrough is not None and (_is_response(value) or _is_pointer(value)):
            stray, passthrough = passthrough, None  # a background fetch's, or superseded
        self._record(key, result)
        if (
            status is Status.FALLBACK
            and _is_response(value)
            and not fallback_allowed(value, result.age)
        ):
            error = call.error
            if isinstance(error, _OriginError):
                return _Step.SERVE, self._response(error.value, request, _MISS, 0.0, key), stray
            if error is not None:
                raise error
            return _Step.ORIGIN, None, stray
        if status is Status.HIT and not refetch and _must_revalidate(value):
            return _Step.AGAIN, (key, _Call(request, call.names), True), stray
        if _is_pointer(value):
            if call.fetched is not None:
                return _Step.SERVE, self._response(call.fetched, request, status, 0.0, key), stray
            variant = self._variant_key(key, value, request)
            return _Step.AGAIN, (variant, _Call(request, value["names"]), refetch), stray
        if not _is_response(value):
            if passthrough is None:
                return _Step.ORIGIN, None, stray
            return _Step.SERVE, self._mark_passthrough(passthrough, key), stray
        elapsed = result.age if status in _SERVED_FROM_CACHE else 0.0
        revalidated = call.revalidated and value is call.fetched
        response = self._response(value, request, status, elapsed, key, revalidated)
        return _Step.SERVE, response, stray

    def _invalidated_keys(self, request: httpx.Request, response: httpx.Response) -> list[str]:
        """Keys an unsafe request invalidates (RFC 9111 section 4.4).

        Its URL's, and those of ``Location`` and ``Content-Location`` on the same origin.
        """
        if request.method in _SAFE or not 200 <= response.status_code < 400:
            return []
        urls = [request.url]
        for name in ("location", "content-location"):
            target = response.headers.get(name)
            if target:
                url = request.url.join(target)
                if (url.scheme, url.host, url.port) == (
                    request.url.scheme,
                    request.url.host,
                    request.url.port,
                ):
                    urls.append(url)
        return [f"{method} {url}" for url in urls for method in ("GET", "HEAD")]


class SWRTransport(_TransportBase, httpx.BaseTransport):
    """An httpx transport that caches GET and HEAD responses through a :class:`~swr.StaleEngine`.

    Example::

        engine = StaleEngine(LMDBStorage("/var/cache/api"), namespace="http")
        client = httpx.Client(transport=SWRTransport(engine))
        response = client.get("https://api.example.com/items")
        response.extensions["swr"].status    # Status.MISS, then HIT, STALE, ...

    Args:
        engine: The engine whose storage keeps the responses (shared with other uses;
            pass a ``namespace`` to keep them apart). The transport does not close it.
        transport: The transport that reaches the origin; default
            ``httpx.HTTPTransport()`` (closed with this one).
        policy: A :class:`~swr.http.CachePolicy`; the defaults suit a client's own cache.
        clock: Epoch seconds for the stale-if-error backoff and ``Expires`` without
            ``Date``; pass the engine's clock when you inject one.

    Thread-safe; background revalidations run on the engine's worker threads.
    """

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
                f"SWRTransport needs a StaleEngine, got {type(engine).__name__}"
                + (" (use AsyncSWRTransport)" if isinstance(engine, AsyncStaleEngine) else "")
            )
        super().__init__(engine, policy, clock)
        self._engine: StaleEngine = engine
        self._transport = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the cache or the origin (httpx calls this)."""
        if request.method not in ("GET", "HEAD"):
            response = self._transport.handle_request(request)
            for key in self._invalidated_keys(request, response):
                with self._storage_guard(key):
                    self._engine.delete(key)
            return response
        bypass, refetch = self._request_flags(request)
        if bypass:
            return self._mark_passthrough(self._transport.handle_request(request))
        return self._serve(self._base_key(request), _Call(request), refetch)

    def _serve(self, key: str, call: _Call, refetch: bool) -> httpx.Response:
        engine = self._engine
        if not refetch and self._paused(key):
            current = engine.get(key)
            if self._paused_fallback(current):
                return self._response(
                    current.value, call.request, Status.FALLBACK, current.age, key
                )
        try:
            result = engine.execute(
                key, lambda: self._fetch(key, call), ttl=stored_ttl, force_refresh=refetch
            )
        except _OriginError as exc:
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

    def _fetch(self, key: str, call: _Call) -> Any:
        current = self._engine.get(key)
        try:
            response = self._transport.handle_request(self._origin_request(call, current))
        except Exception as exc:
            call.error = exc
            raise
        step = self._classify(call, current, response)
        if step is _Fetched.FORWARD:
            if not call.offer(response):
                response.close()
            return TOMBSTONE
        try:
            body = b"" if step is _Fetched.RENEW else b"".join(response.iter_raw())
        finally:
            response.close()
        value, write = self._fetched(step, key, call, current, response, body)
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


class AsyncSWRTransport(_TransportBase, httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`SWRTransport`, over an :class:`~swr.AsyncStaleEngine`.

    Example::

        async with AsyncStaleEngine(namespace="http") as engine:
            async with httpx.AsyncClient(transport=AsyncSWRTransport(engine)) as client:
                response = await client.get("https://api.example.com/items")

    Same arguments as :class:`SWRTransport`; ``transport`` defaults to
    ``httpx.AsyncHTTPTransport()``. Background revalidations are the engine's tasks.
    Use from one event loop.
    """

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
                f"AsyncSWRTransport needs an AsyncStaleEngine, got {type(engine).__name__}"
                + (" (use SWRTransport)" if isinstance(engine, StaleEngine) else "")
            )
        super().__init__(engine, policy, clock)
        self._engine: AsyncStaleEngine = engine
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the cache or the origin (httpx calls this)."""
        if request.method not in ("GET", "HEAD"):
            response = await self._transport.handle_async_request(request)
            for key in self._invalidated_keys(request, response):
                with self._storage_guard(key):
                    await self._engine.delete(key)
            return response
        bypass, refetch = self._request_flags(request)
        if bypass:
            return self._mark_passthrough(await self._transport.handle_async_request(request))
        return await self._serve(self._base_key(request), _Call(request), refetch)

    async def _serve(self, key: str, call: _Call, refetch: bool) -> httpx.Response:
        engine = self._engine
        if not refetch and self._paused(key):
            current = await engine.get(key)
            if self._paused_fallback(current):
                return self._response(
                    current.value, call.request, Status.FALLBACK, current.age, key
                )
        try:
            result = await engine.execute(
                key, lambda: self._fetch(key, call), ttl=stored_ttl, force_refresh=refetch
            )
        except _OriginError as exc:
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

    async def _fetch(self, key: str, call: _Call) -> Any:
        current = await self._engine.get(key)
        try:
            response = await self._transport.handle_async_request(
                self._origin_request(call, current)
            )
        except Exception as exc:
            call.error = exc
            raise
        step = self._classify(call, current, response)
        if step is _Fetched.FORWARD:
            if not call.offer(response):
                await response.aclose()
            return TOMBSTONE
        try:
            chunks = [] if step is _Fetched.RENEW else [c async for c in response.aiter_raw()]
        finally:
            await response.aclose()
        value, write = self._fetched(step, key, call, current, response, b"".join(chunks))
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
