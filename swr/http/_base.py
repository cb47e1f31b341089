"""What the HTTP transports share: keys, what a response allows, what to serve.

``_TransportBase`` holds every decision and does no I/O; the transports themselves
(``swr/http/_async/transport.py``, and its generated twin in ``swr/http/_sync/``) only
send requests, read bodies and call the engine.

One GET or HEAD goes through ``engine.execute(key, fetch, ttl=stored_ttl)``:

- HIT and STALE answers are built from the stored response; STALE starts the engine's
  one background revalidation, which the caller never waits for.
- ``fetch`` is a conditional fetch (issue 15): the engine hands it the stored entry, it
  sends that response's validators, and a ``304`` that confirms the stored headers
  returns :class:`~swr.NotModified`: the engine renews the entry's windows with the
  storage's ``touch``, without writing the body again. A ``304`` that changes stored
  header fields (other than ``Date`` and ``Age``) or the response's freshness rewrites
  the record with the merged headers (RFC 9111 section 4.3.4): headers and body are
  one record.
- A failing origin or a 5xx raises inside ``fetch``; the engine then serves the stored
  response as FALLBACK, which this layer keeps only within ``stale-if-error``
  (entries kept longer just for revalidation are never served after an error).
- Responses that must not be stored are passed through, stream unread; the engine
  stores a tombstone that is dead at once.
- A response with ``Vary`` leaves a pointer under the URL's key; each variant lives
  under a key made of the pointer's generation and the request's varied header values,
  so deleting the URL's key (an unsafe method) invalidates every variant at once.
- Requests with ``only-if-cached``, ``max-age``, ``min-fresh`` or ``max-stale`` are
  judged against the stored response first (:func:`~swr.http._policy.acceptable`); a
  HEAD is answered from a fresh stored GET response when there is one.
- Errors of the engine itself (an open circuit breaker, a fetch timeout) reach the
  caller as ``httpx.TransportError`` subclasses (:mod:`swr.http._errors`).
"""

from __future__ import annotations

import threading
import time as _time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, TypeGuard

import httpx

from swr._bulk import NotModified
from swr._log import get_logger
from swr.http._policy import (
    DEAD,
    PLAIN_REQUEST,
    Backoff,
    CacheInfo,
    CachePolicy,
    Freshness,
    RequestCacheControl,
    acceptable,
    fallback_allowed,
    freshness,
    header_getter,
    make_value,
    merge_not_modified,
    request_cache_control,
    storable_headers,
    validators,
    vary_names,
    vary_values,
)
from swr.policy import Result, Status

__all__ = ["_TransportBase"]

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
        "origin_headers",
        "passthrough",
        "request",
        "revalidated",
    )

    def __init__(self, request: httpx.Request, names: list[str] | None = None) -> None:
        self.request = request
        self.names = names  # the Vary names of the pointer that led to this variant key
        self.fetched: dict[str, Any] | None = None
        # The fetched response's headers when the stored ones leave fields out
        # (no-cache="field"): this request's own answer still carries them.
        self.origin_headers: list[list[bytes]] | None = None
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


_UNSEEN_ON_RENEWAL = frozenset({b"date", b"age"})


def _same_record(stored: dict[str, Any], merged: list[list[bytes]], fr: Freshness) -> bool:
    """Whether a ``304``'s merged headers and windows leave the stored record as it is.

    ``Date`` and ``Age`` are left out: the served ``Age`` counts from the renewal.
    """

    def seen(headers: Any) -> list[tuple[bytes, bytes]]:
        return sorted(
            (bytes(n), bytes(v)) for n, v in headers if bytes(n) not in _UNSEEN_ON_RENEWAL
        )

    if fr.dropped or seen(stored["headers"]) != seen(merged):
        return False
    fresh, stale, expired = stored["ttl"]
    ttl = fr.ttl
    return bool(
        abs(ttl.fresh - fresh) < 1.0
        and ttl.stale == stale
        and ttl.expired == expired
        and fr.sie == stored.get("sie", 0.0)
        and abs(fr.age - stored["age"]) < 1.0
    )


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
    def _request_cache_control(request: httpx.Request) -> RequestCacheControl | None:
        """A request's cache directives, in one pass over its headers; ``None``: bypass.

        Conditional and range requests, and ``no-store``, bypass the cache (the caller's
        own validators go to the origin).
        """
        cache_control: list[str] = []
        pragma: str | None = None
        for name, value in request.headers.multi_items():
            if name in _CONDITIONAL_NAMES:
                return None
            if name == "cache-control":
                cache_control.append(value)
            elif name == "pragma":
                pragma = value
        if not cache_control and pragma is None:
            return PLAIN_REQUEST
        directives = request_cache_control(pragma, cache_control)
        return None if directives.no_store else directives

    @staticmethod
    def _base_key(request: httpx.Request) -> str:
        return f"{request.method} {request.url}"

    @staticmethod
    def _variant_key(base: str, pointer: dict[str, Any], request: httpx.Request) -> str:
        values = vary_values(pointer["names"], request.headers.get_list)
        varied = "&".join(f"{name}={value}" for name, value in values)
        return f"{base}|{pointer['gen']}|{varied}"

    def _origin_request(self, call: _Call, current: Any) -> httpx.Request:
        """The request sent upstream: the caller's, with the stored response's validators."""
        request = call.request
        headers = [(n, v) for n, v in request.headers.raw if n.lower() not in _CONDITIONAL_BYTES]
        if _is_response(current):
            headers.extend(validators(current))
        return httpx.Request(
            request.method, request.url, headers=headers, extensions=request.extensions
        )

    # -- responses -----------------------------------------------------------------

    def _freshness(self, call: _Call, status: int, raw: Any, request_time: float) -> Freshness:
        request = call.request
        return freshness(
            self.policy,
            status,
            header_getter(raw),
            method=request.method,
            authorized="authorization" in request.headers,
            now=self._now(),
            request_time=request_time,
        )

    def _renewed(
        self, call: _Call, stored: dict[str, Any], response: httpx.Response, request_time: float
    ) -> Any:
        """What a fetch returns for a ``304``: :class:`~swr.NotModified` or a new record.

        The ``304``'s headers update the stored ones (RFC 9111 section 4.3.4). When
        that changes nothing a client would see (only ``Date`` and ``Age`` differ) and
        the windows come out the same (within a second, the resolution of HTTP ages),
        the entry is renewed with ``touch`` and keeps its body without a rewrite.
        Otherwise the merged record is written whole.
        """
        merged = merge_not_modified(stored, response.headers.raw)
        fr = self._freshness(call, stored["status"], merged, request_time)
        call.revalidated = True
        if fr.storable and _same_record(stored, merged, fr):
            call.fetched = stored
            return NotModified
        if fr.dropped:
            merged = [[n, v] for n, v in merged if n not in fr.dropped]
        value = make_value(stored["status"], merged, stored["body"], fr, stored["vary"])
        if not fr.storable:
            value["ttl"] = [DEAD.fresh, 0.0, 0.0]
        call.fetched = value
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
            storable_headers(raw, length, fr.dropped),
            body,
            fr,
            vary_values(names, request.headers.get_list),
        )
        call.fetched = value
        if fr.dropped:
            call.origin_headers = storable_headers(raw, length)
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
        """An httpx response built from a stored one, with ``Age`` and the swr status.

        A HEAD request gets the headers only (a stored GET response answers it).
        """
        age = value["age"] + elapsed
        headers = [(n, v) for n, v in value["headers"] if n != b"age"]
        headers.append((b"age", str(int(age)).encode()))
        if self._status_header is not None:
            headers.append((self._status_header.encode(), status.name.encode()))
        return httpx.Response(
            value["status"],
            headers=headers,
            stream=httpx.ByteStream(b"" if request.method == "HEAD" else value["body"]),
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
        self, call: _Call, current: Any, response: httpx.Response, request_time: float
    ) -> _Fetched:
        """What a fetch does with the origin's response (before reading its body)."""
        status = response.status_code
        if status == 304 and _is_response(current):
            return _Fetched.RENEW
        if status >= 500 and status != 501:
            return _Fetched.ERROR
        call.freshness = self._freshness(call, status, response.headers.raw, request_time)
        return _Fetched.STORE if call.freshness.storable else _Fetched.FORWARD

    def _fetched(
        self,
        step: _Fetched,
        key: str,
        call: _Call,
        current: Any,
        response: httpx.Response,
        body: bytes,
        request_time: float,
    ) -> tuple[Any, tuple[str, dict[str, Any] | None] | None]:
        """The value a fetch returns, and one more engine write or ``None``.

        The write is ``(key, value)`` to set or ``(key, None)`` to delete.

        Raises:
            _OriginError: the origin answered 5xx (the engine's failure signal).
        """
        if step is _Fetched.RENEW:
            return self._renewed(call, current, response, request_time), None
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
        if call.origin_headers is not None and value is call.fetched:
            value = {**result.value, "headers": call.origin_headers}
        response = self._response(value, request, status, elapsed, key, revalidated)
        return _Step.SERVE, response, stray

    def _judged(
        self,
        key: str,
        request: httpx.Request,
        directives: RequestCacheControl,
        peek: Result[Any] | None,
        head: bool = False,
    ) -> httpx.Response | None:
        """A response from the stored ``peek`` if ``directives`` accept it, else ``None``.

        Serves without the origin and without a background revalidation: what the
        request's ``max-stale`` accepts is served as is (RFC 9111 section 5.2.1).
        ``head``: only a fresh response (or one within ``max-stale``) answers.
        """
        if peek is None or not _is_response(peek.value):
            return None
        resident = peek.age
        status = acceptable(peek.value, resident, directives, self.policy.shared)
        if status is None or (head and status is Status.STALE and directives.max_stale is None):
            return None
        return self._response(peek.value, request, status, resident, key)

    @staticmethod
    def _gateway_timeout(request: httpx.Request, key: str) -> httpx.Response:
        """The ``504`` of ``only-if-cached`` with nothing acceptable stored (RFC 9111 5.2.1.7)."""
        return httpx.Response(
            504,
            headers=[(b"content-length", b"0")],
            request=request,
            extensions={"swr": CacheInfo(Status.MISS, 0.0, key)},
        )

    @staticmethod
    def _get_key(request: httpx.Request) -> str:
        """The key of the GET response that may answer a HEAD request."""
        return f"GET {request.url}"

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
