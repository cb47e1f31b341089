"""Pure HTTP caching decisions (RFC 9111, RFC 5861): no I/O, no httpx.

Both the httpx transports and the ASGI middleware call these. A stored response is a
plain dict (msgpack-friendly, so byte storages keep it with their usual serializer)::

    {"v": 1, "status": 200, "headers": [[b"name", b"value"], ...], "body": b"...",
     "ttl": [fresh, stale, expired],   # the engine windows it was stored with
     "swr": 30.0, "sie": 600.0,        # RFC 5861 allowances, seconds
     "age": 0.0,                       # the response's age when it was stored
     "vary": [["accept", "..."], ...]} # request header values it was selected with

How a response's directives map to the engine's windows (seconds from storing):

- fresh: the freshness lifetime (``s-maxage`` in a shared cache, ``max-age``,
  ``Expires - Date``) less its ``Age``; a response with none of them gets the policy's
  ``default_ttl`` when its status is cacheable by default.
- stale: ``stale-while-revalidate``; zero under ``no-cache``, ``must-revalidate`` (and,
  in a shared cache, ``proxy-revalidate`` or ``s-maxage``).
- expired: ``stale-if-error``, lengthened to ``keep_for_revalidation`` when the response
  has validators, so that a later request can still revalidate it with a conditional
  request. Only the ``stale-if-error`` part may be served as FALLBACK: the callers
  check :func:`fallback_allowed`.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swr.policy import CacheTTL, Status
from swr.storage._validate import check_seconds

__all__ = [
    "TOMBSTONE",
    "CacheInfo",
    "CachePolicy",
    "RequestCacheControl",
    "acceptable",
    "cache_control",
    "fallback_allowed",
    "freshness",
    "initial_age",
    "merge_not_modified",
    "request_cache_control",
    "request_directives",
    "revalidation_required",
    "stored_ttl",
    "vary_names",
    "vary_values",
]

FORMAT = 1

# Final statuses a cache may store with explicit freshness (RFC 9111 section 3), and
# the subset that is cacheable by default (RFC 9110 section 15.1), i.e. when the
# response says nothing about freshness.
EXPLICIT_STATUSES = frozenset({200, 203, 204, 300, 301, 302, 307, 308, 404, 405, 410, 414, 501})
DEFAULT_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

# Hop-by-hop headers are never stored (RFC 9111 section 3.1); Content-Length is set
# from the stored body instead.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)

# The windows of something not worth keeping: dead as soon as it is written.
DEAD = CacheTTL(fresh=1e-3)

TOMBSTONE: dict[str, Any] = {"v": FORMAT, "tombstone": True}
"""Returned by a fetch whose response must not be stored: the caller forwards the
response it got (or asks again) and the engine keeps nothing usable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePolicy:
    """How the HTTP layers turn responses into cache entries.

    Args:
        shared: Behave as a shared cache (RFC 9111): ``s-maxage`` wins, ``private``
            responses and responses to requests with ``Authorization`` are not stored
            unless the response allows it. ``False`` suits a client's own cache.
        default_ttl: Windows for cacheable responses that give no freshness
            (no ``max-age``, ``s-maxage`` or ``Expires``): fresh, then served stale
            while revalidating, then kept for ``stale-if-error``. ``None`` stores
            only responses with explicit freshness. Responses that forbid caching
            (``no-store``, ``private`` in a shared cache, ``Vary: *``) are never stored.
        keep_for_revalidation: Seconds a response with validators (``ETag``,
            ``Last-Modified``) is kept past its windows so that a conditional request
            can renew it with a ``304``; it is never served without revalidation.
        status_header: Name of a response header carrying the cache status
            (``HIT``, ``STALE``, ...); ``None`` adds none (the status is always in
            ``response.extensions["swr"]``).
        error_backoff: Seconds a key whose refetch failed in its ``stale-if-error``
            window is served as FALLBACK without asking the origin again; doubles with
            each further failure up to ``error_backoff_max``.
        error_backoff_max: Longest such pause, in seconds.

    Raises:
        ValueError: a duration is negative or not finite.
        TypeError: a setting has the wrong type.
    """

    shared: bool = False
    default_ttl: CacheTTL | None = field(
        default_factory=lambda: CacheTTL(fresh=60, stale=300, expired=3600)
    )
    keep_for_revalidation: float = 86400.0
    status_header: str | None = None
    error_backoff: float = 1.0
    error_backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.shared, bool):
            raise TypeError("CachePolicy.shared must be a bool")
        if self.default_ttl is not None and not isinstance(self.default_ttl, CacheTTL):
            raise TypeError(
                f"CachePolicy.default_ttl must be a CacheTTL or None, "
                f"got {type(self.default_ttl).__name__}"
            )
        for name in ("keep_for_revalidation", "error_backoff", "error_backoff_max"):
            check_seconds(f"CachePolicy.{name}", getattr(self, name), positive=False)
        header: object = self.status_header
        if header is not None and not (isinstance(header, str) and header.strip()):
            raise ValueError("CachePolicy.status_header must be a header name or None")


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """How the cache answered one request: ``response.extensions["swr"]``.

    Attributes:
        status: The engine's :class:`~swr.Status` (``MISS`` for responses that were
            not cacheable and went straight to the origin).
        age: The response's age in seconds (its ``Age`` header plus time in cache).
        key: The cache key, or ``""`` when the request bypassed the cache.
        revalidated: A ``304`` from the origin renewed the stored response.
    """

    status: Status
    age: float
    key: str
    revalidated: bool = False


def cache_control(values: Iterable[str]) -> dict[str, str | None]:
    """Parse ``Cache-Control`` field values into ``{directive: argument or None}``.

    Directive names are lower-cased; quoted arguments lose their quotes; a repeated
    directive keeps its first value (RFC 9111 section 4.2.1 leaves duplicates invalid).
    """
    out: dict[str, str | None] = {}
    for value in values:
        for part in _split_commas(value):
            name, sep, arg = part.partition("=")
            name = name.strip().lower()
            if not name or name in out:
                continue
            argument = arg.strip() if sep else None
            if argument is not None and len(argument) >= 2 and argument[0] == '"' == argument[-1]:
                argument = argument[1:-1]
            out[name] = argument
    return out


def _split_commas(value: str) -> list[str]:
    """Split a header on commas outside quoted strings."""
    parts: list[str] = []
    start = 0
    quoted = False
    for index, char in enumerate(value):
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(value[start:index])
            start = index + 1
    parts.append(value[start:])
    return [p.strip() for p in parts if p.strip()]


def _seconds(value: str | None) -> float | None:
    """A delta-seconds argument, or ``None`` when absent or malformed."""
    if value is None:
        return None
    try:
        seconds = int(value)
    except ValueError:
        return None
    return float(max(seconds, 0))


def _date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class RequestCacheControl:
    """The ``Cache-Control`` directives of a request that a cache acts on (RFC 9111 5.2.1).

    Attributes:
        no_store: Bypass the cache (neither read nor write).
        no_cache: Revalidate with the origin whatever is stored (also ``max-age=0``
            and, without ``Cache-Control``, ``Pragma: no-cache``).
        max_age: The oldest stored response (seconds of age) the client accepts;
            ``None`` when not given.
        min_fresh: Seconds a stored response must stay fresh for; ``None`` when not given.
        max_stale: Seconds past freshness the client accepts; ``math.inf`` for a bare
            ``max-stale``; ``None`` when not given.
        only_if_cached: Answer from the cache or with ``504``, never the origin.
    """

    no_store: bool = False
    no_cache: bool = False
    max_age: float | None = None
    min_fresh: float | None = None
    max_stale: float | None = None
    only_if_cached: bool = False

    @property
    def constrained(self) -> bool:
        """Whether a stored response must be checked against the request before use."""
        return (
            self.only_if_cached
            or self.max_age is not None
            or self.min_fresh is not None
            or self.max_stale is not None
        )


PLAIN_REQUEST = RequestCacheControl()


def request_cache_control(pragma: str | None, cc_values: Sequence[str]) -> RequestCacheControl:
    """The :class:`RequestCacheControl` of a request's ``Pragma`` and ``Cache-Control``.

    ``Pragma: no-cache`` counts only without ``Cache-Control`` (RFC 9111 5.4). A
    malformed ``max-age``, ``min-fresh`` or ``max-stale`` argument is ignored; a
    malformed ``max-stale`` argument reads as a bare ``max-stale``.
    """
    if not cc_values:
        no_cache = pragma is not None and "no-cache" in pragma.lower()
        return RequestCacheControl(no_cache=True) if no_cache else PLAIN_REQUEST
    directives = cache_control(cc_values)
    max_age = _seconds(directives.get("max-age"))
    max_stale: float | None = None
    if "max-stale" in directives:
        max_stale = _seconds(directives["max-stale"])
        if max_stale is None:
            max_stale = math.inf
    return RequestCacheControl(
        no_store="no-store" in directives,
        no_cache="no-cache" in directives or max_age == 0,
        max_age=max_age,
        min_fresh=_seconds(directives.get("min-fresh")),
        max_stale=max_stale,
        only_if_cached="only-if-cached" in directives,
    )


def request_directives(headers: Mapping[str, str], cc_values: Sequence[str]) -> tuple[bool, bool]:
    """Return ``(no_store, no_cache)`` for a request (see :func:`request_cache_control`)."""
    parsed = request_cache_control(headers.get("pragma"), cc_values)
    return parsed.no_store, parsed.no_cache


def vary_names(values: Iterable[str]) -> list[str] | None:
    """The sorted, lower-cased header names of ``Vary``; ``None`` for ``Vary: *``."""
    names: set[str] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name == "*":
                return None
            if name:
                names.add(name)
    return sorted(names)


def vary_values(names: Iterable[str], get_all: Any) -> list[list[str]]:
    """``[[name, value], ...]`` of a request for the varied header ``names``.

    ``get_all(name)`` returns the request's values of one header; several are joined
    with ``", "`` and surrounding blanks are dropped, so equivalent requests match.
    """
    return [[name, ", ".join(v.strip() for v in get_all(name))] for name in names]


@dataclass(frozen=True, slots=True)
class Freshness:
    """What a response allows: whether it may be stored, and its windows if so."""

    storable: bool
    ttl: CacheTTL = DEAD
    swr: float = 0.0
    sie: float = 0.0
    age: float = 0.0
    dropped: frozenset[bytes] = frozenset()  # fields stored responses must not carry


_NOT_STORABLE = Freshness(storable=False)


def freshness(
    policy: CachePolicy,
    status: int,
    header: Any,
    *,
    method: str = "GET",
    authorized: bool = False,
    now: float,
    request_time: float | None = None,
) -> Freshness:
    """Decide whether a response may be stored and with which windows.

    Args:
        policy: The cache's :class:`CachePolicy`.
        status: The response's status code.
        header: ``header(name) -> list[str]`` of the response's values of one header.
        method: The request method (only GET and HEAD are stored).
        authorized: The request carried ``Authorization``.
        now: Epoch seconds at which the response arrived (``response_time``), also for
            an ``Expires`` that comes without ``Date``.
        request_time: Epoch seconds at which the request was sent (``now`` if not
            given), for the response delay of RFC 9111 section 4.2.3.

    Qualified ``no-cache="field"`` (and ``private="field"`` in a shared cache) do not
    prevent storing: the named fields are left out of the stored response
    (``Freshness.dropped``), which is then served without revalidation (RFC 9111
    sections 5.2.2.4 and 5.2.2.7).
    """
    if method not in ("GET", "HEAD"):
        return _NOT_STORABLE
    cc = cache_control(header("cache-control"))
    if "no-store" in cc or vary_names(header("vary")) is None:
        return _NOT_STORABLE
    shared = policy.shared
    dropped = _qualified(cc, "no-cache")
    if dropped:
        del cc["no-cache"]
    if shared and "private" in cc:
        fields = _qualified(cc, "private")
        if not fields:
            return _NOT_STORABLE
        dropped |= fields
    if shared and authorized and not ({"public", "s-maxage", "must-revalidate"} & cc.keys()):
        return _NOT_STORABLE

    lifetime = _seconds(cc.get("s-maxage")) if shared else None
    if lifetime is None:
        lifetime = _seconds(cc.get("max-age"))
    if lifetime is None and header("expires"):
        expires = _date(header("expires")[0])
        date = _date(next(iter(header("date")), None))
        lifetime = 0.0 if expires is None else max(0.0, expires - (date if date else now))
    swr = _seconds(cc.get("stale-while-revalidate"))
    sie = _seconds(cc.get("stale-if-error"))
    if lifetime is None:
        default = policy.default_ttl
        if default is None or status not in DEFAULT_STATUSES:
            return _NOT_STORABLE
        lifetime = default.fresh
        swr = default.stale if swr is None else swr
        sie = default.expired if sie is None else sie
    elif status not in EXPLICIT_STATUSES:
        return _NOT_STORABLE
    swr = swr or 0.0
    sie = sie or 0.0

    age = initial_age(header, now, now if request_time is None else request_time)
    fresh = lifetime - age
    revalidate = "must-revalidate" in cc or (
        shared and ("proxy-revalidate" in cc or "s-maxage" in cc)
    )
    if "no-cache" in cc or revalidate:
        swr = 0.0
    if "no-cache" in cc:
        fresh = 0.0
    if revalidate:
        sie = 0.0
    keep = sie
    if header("etag") or header("last-modified"):
        keep = max(keep, policy.keep_for_revalidation)
    if fresh <= 0 and swr == 0 and keep == 0:
        return _NOT_STORABLE  # stale on arrival and nothing to revalidate with
    ttl = CacheTTL(fresh=max(fresh, DEAD.fresh), stale=swr, expired=keep)
    return Freshness(storable=True, ttl=ttl, swr=swr, sie=sie, age=age, dropped=dropped)


def _qualified(cc: Mapping[str, str | None], name: str) -> frozenset[bytes]:
    """The field names of a qualified directive (``no-cache="a, b"``), lower-cased."""
    argument = cc.get(name)
    if not argument:
        return frozenset()
    return frozenset(f.strip().lower().encode() for f in argument.split(",") if f.strip())


def initial_age(header: Any, response_time: float, request_time: float) -> float:
    """A response's age when it arrived (RFC 9111 section 4.2.3).

    ``corrected_initial_age = max(apparent_age, age_value + response_delay)``, with
    ``apparent_age = max(0, response_time - date_value)`` counted in whole seconds
    (``Date`` has one second of resolution, so a fraction is no evidence of age).
    """
    age_value = _seconds(next(iter(header("age")), None)) or 0.0
    delay = max(0.0, response_time - request_time)
    date = _date(next(iter(header("date")), None))
    apparent = 0.0 if date is None else float(max(0, math.floor(response_time - date)))
    return max(apparent, age_value + delay)


def revalidation_required(value: Mapping[str, Any], shared: bool) -> bool:
    """Whether a stored response may never be served stale (``must-revalidate``...).

    ``no-cache`` (unqualified) and ``must-revalidate`` forbid it; in a shared cache
    ``proxy-revalidate`` and ``s-maxage`` too (RFC 9111 sections 4.2.4 and 5.2.2).
    """
    cc = cache_control(header_getter(value["headers"])("cache-control"))
    if "must-revalidate" in cc or ("no-cache" in cc and not cc["no-cache"]):
        return True
    return shared and ("proxy-revalidate" in cc or "s-maxage" in cc)


def acceptable(
    value: Mapping[str, Any], resident: float, request: RequestCacheControl, shared: bool
) -> Status | None:
    """Whether a stored response may answer ``request`` without the origin.

    ``resident`` is the seconds since it was stored. Returns ``Status.HIT`` (fresh and
    young enough), ``Status.STALE`` (stale, but within the request's ``max-stale``, or
    within ``stale-while-revalidate`` for a request that sets no limit), or ``None``
    (the origin must be asked; ``504`` under ``only-if-cached``).
    """
    fresh = value["ttl"][0]
    remaining = fresh - resident if fresh > DEAD.fresh else 0.0  # no-cache: never fresh
    age = value["age"] + resident
    if request.max_age is not None and age > request.max_age:
        return None
    if remaining > 0:
        if request.min_fresh is not None and remaining < request.min_fresh:
            return None
        return Status.HIT
    if request.min_fresh is not None:
        return None
    staleness = -remaining
    if request.max_stale is not None:
        allowed = request.max_stale
    elif request.max_age is None:
        allowed = value.get("swr", 0.0)
    else:
        return None  # max-age without max-stale: the client wants a fresh response
    if staleness > allowed or revalidation_required(value, shared):
        return None
    return Status.STALE


def stored_ttl(key: str, value: Mapping[str, Any]) -> CacheTTL:
    """The ``ttl`` callable given to ``execute``: a stored response's own windows."""
    ttl = value.get("ttl")
    if ttl is None:
        return DEAD
    fresh, stale, expired = ttl
    return CacheTTL(fresh=fresh, stale=stale, expired=expired)


def fallback_allowed(value: Mapping[str, Any], elapsed: float) -> bool:
    """Whether a stored response may be served after a failed refetch.

    It may within its freshness, ``stale-while-revalidate`` and ``stale-if-error``
    allowances (RFC 5861 section 4), ``elapsed`` seconds after it was stored; never in
    the extra time kept only for revalidation.
    """
    fresh, stale, _ = value["ttl"]
    return bool(elapsed < fresh + stale + value.get("sie", 0.0))


def merge_not_modified(
    stored: Mapping[str, Any], headers: Sequence[tuple[bytes, bytes]]
) -> list[list[bytes]]:
    """The stored response's headers updated with those of a ``304`` (RFC 9111 3.2).

    Every header the ``304`` carries replaces the stored ones of that name, except
    hop-by-hop headers and ``Content-Length``, which describe the empty ``304``.
    """
    fresh: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower not in HOP_BY_HOP:
            fresh.setdefault(lower, []).append(value)
    merged = [[n, v] for n, v in stored["headers"] if n.lower() not in fresh]
    merged.extend([n, v] for n, values in fresh.items() for v in values)
    return merged


def storable_headers(
    headers: Iterable[tuple[bytes, bytes]],
    body_length: int | None,
    drop: frozenset[bytes] = frozenset(),
) -> list[list[bytes]]:
    """Headers as stored: lower-cased names, hop-by-hop ones and ``drop`` left out.

    ``Content-Length`` becomes the stored body's length; with ``body_length=None``
    (a HEAD response, which has no body) the origin's is kept.
    """
    dropped = HOP_BY_HOP if body_length is not None else HOP_BY_HOP - {b"content-length"}
    dropped |= drop
    kept = [[n.lower(), v] for n, v in headers if n.lower() not in dropped]
    if body_length is not None:
        kept.append([b"content-length", str(body_length).encode()])
    return kept


def make_value(
    status: int,
    headers: list[list[bytes]],
    body: bytes,
    fr: Freshness,
    vary: list[list[str]],
) -> dict[str, Any]:
    """The stored form of a response (see the module docstring)."""
    ttl = fr.ttl
    return {
        "v": FORMAT,
        "status": status,
        "headers": headers,
        "body": body,
        "ttl": [ttl.fresh, ttl.stale, ttl.expired],
        "swr": fr.swr,
        "sie": fr.sie,
        "age": fr.age,
        "vary": vary,
    }


def header_getter(headers: Sequence[Sequence[bytes]]) -> Any:
    """``header(name) -> list[str]`` over a raw header list (latin-1 decoded)."""

    def get(name: str) -> list[str]:
        wanted = name.encode()
        return [v.decode("latin-1") for n, v in headers if n.lower() == wanted]

    return get


def validators(value: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """Conditional request headers from a stored response's ``ETag`` and ``Last-Modified``."""
    out: list[tuple[bytes, bytes]] = []
    for name, conditional in (
        (b"etag", b"if-none-match"),
        (b"last-modified", b"if-modified-since"),
    ):
        for n, v in value["headers"]:
            if n == name:
                out.append((conditional, v))
                break
    return out


class Backoff:
    """Per key pauses after failed refetches in the ``stale-if-error`` window.

    Bounded: past ``limit`` keys the oldest are forgotten. Not thread-safe by itself;
    the transports guard it with a lock (sync) or use it from one loop (async).
    """

    def __init__(self, initial: float, maximum: float, limit: int = 10_000) -> None:
        self._initial = initial
        self._max = maximum
        self._limit = limit
        self._keys: dict[str, tuple[int, float]] = {}

    def paused(self, key: str, now: float) -> bool:
        """Whether ``key`` must not be refetched at ``now``."""
        state = self._keys.get(key)
        return state is not None and now < state[1]

    def failed(self, key: str, now: float) -> None:
        """Record a failed refetch of ``key``."""
        failures = self._keys.pop(key, (0, 0.0))[0] + 1
        pause = min(self._initial * 2 ** (failures - 1), self._max)
        if len(self._keys) >= self._limit:
            del self._keys[next(iter(self._keys))]
        self._keys[key] = (failures, now + pause)

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures."""
        if self._keys:
            self._keys.pop(key, None)
