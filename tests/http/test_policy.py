"""The pure HTTP decisions: directives, windows, Vary, 304 merges."""

from __future__ import annotations

import email.utils
import math

import pytest

from swr import CacheTTL, Status
from swr.http import CachePolicy
from swr.http._policy import (
    RequestCacheControl,
    acceptable,
    cache_control,
    fallback_allowed,
    freshness,
    header_getter,
    initial_age,
    merge_not_modified,
    request_cache_control,
    request_directives,
    vary_names,
)

NOW = 1_700_000_000.0


def fr(headers: dict[str, str], status: int = 200, **policy):
    raw = [[k.lower().encode(), v.encode()] for k, v in headers.items()]
    return freshness(CachePolicy(**policy), status, header_getter(raw), now=NOW)


def test_cache_control_parsing():
    parsed = cache_control(['max-age=10, No-Cache="set-cookie, x"', "private, max-age=99"])
    assert parsed == {"max-age": "10", "no-cache": "set-cookie, x", "private": None}


def test_windows_from_directives():
    got = fr({"Cache-Control": "max-age=10, stale-while-revalidate=20, stale-if-error=30"})
    assert (got.ttl, got.swr, got.sie) == (CacheTTL(fresh=10, stale=20, expired=30), 20, 30)


def test_validators_keep_an_entry_for_revalidation_only():
    got = fr(
        {"Cache-Control": "max-age=10, stale-if-error=30", "ETag": '"x"'}, keep_for_revalidation=500
    )
    assert got.ttl.expired == 500
    value = {"ttl": [10, 0, 500], "sie": 30}
    assert fallback_allowed(value, 39.9)
    assert not fallback_allowed(value, 40.1)


def test_malformed_max_age_falls_back_to_default():
    got = fr({"Cache-Control": "max-age=soon"}, default_ttl=CacheTTL(fresh=5, stale=6, expired=7))
    assert (got.ttl.fresh, got.swr, got.sie) == (5, 6, 7)


def test_stale_on_arrival_without_validators_is_not_stored():
    assert not fr({"Cache-Control": "max-age=0"}).storable
    assert fr({"Cache-Control": "max-age=0", "ETag": '"e"'}).storable


@pytest.mark.parametrize(
    ("cc", "shared", "swr", "sie"),
    [
        ("max-age=5, stale-while-revalidate=9, stale-if-error=9, must-revalidate", False, 0, 0),
        ("max-age=5, stale-while-revalidate=9, stale-if-error=9, proxy-revalidate", False, 9, 9),
        ("max-age=5, stale-while-revalidate=9, stale-if-error=9, proxy-revalidate", True, 0, 0),
        ("max-age=5, stale-while-revalidate=9, stale-if-error=9, no-cache", False, 0, 9),
    ],
)
def test_revalidation_directives_limit_stale_serving(cc, shared, swr, sie):
    got = fr({"Cache-Control": cc}, shared=shared)
    assert (got.swr, got.sie) == (swr, sie)


def test_request_directives():
    assert request_directives({}, ["no-store"]) == (True, False)
    assert request_directives({}, ["max-age=0"]) == (False, True)
    assert request_directives({"pragma": "no-cache"}, []) == (False, True)
    assert request_directives({"pragma": "no-cache"}, ["max-age=5"]) == (False, False)


def test_vary_names():
    assert vary_names(["Accept-Language, accept", "X-A"]) == ["accept", "accept-language", "x-a"]
    assert vary_names(["accept, *"]) is None


def test_304_headers_replace_stored_ones_but_not_length():
    stored = {"headers": [[b"etag", b'"1"'], [b"content-length", b"9"], [b"x-a", b"1"]]}
    merged = merge_not_modified(stored, [(b"X-A", b"2"), (b"Content-Length", b"0")])
    assert merged == [[b"etag", b'"1"'], [b"content-length", b"9"], [b"x-a", b"2"]]


def test_request_cache_control_parsing():
    parsed = request_cache_control(None, ["max-age=30, min-fresh=5", "max-stale, only-if-cached"])
    assert parsed == RequestCacheControl(
        max_age=30, min_fresh=5, max_stale=math.inf, only_if_cached=True
    )
    assert parsed.constrained
    assert request_cache_control(None, ["max-stale=7"]).max_stale == 7
    assert request_cache_control("no-cache", []).no_cache
    assert not request_cache_control("no-cache", ["max-age=5"]).no_cache  # CC wins over Pragma
    assert request_cache_control(None, ["max-age=0"]).no_cache
    assert not request_cache_control(None, ["no-cache"]).constrained


def test_initial_age_per_rfc_9111_4_2_3():
    def header(**values: str):
        return lambda name: [values[name]] if name in values else []

    date = email.utils.formatdate(NOW - 100, usegmt=True)
    assert initial_age(header(date=date), NOW, NOW) == 100  # apparent age
    assert initial_age(header(age="10"), NOW, NOW - 3) == 13  # Age plus response delay
    assert initial_age(header(age="500", date=date), NOW, NOW) == 500  # the larger
    future = email.utils.formatdate(NOW + 100, usegmt=True)
    assert initial_age(header(date=future), NOW, NOW) == 0  # a clock ahead is no age


def test_private_field_in_a_shared_cache_drops_the_field():
    got = fr({"Cache-Control": 'max-age=60, private="X-User"'}, shared=True)
    assert (got.storable, got.dropped) == (True, frozenset({b"x-user"}))
    assert not fr({"Cache-Control": "max-age=60, private"}, shared=True).storable
    qualified = fr({"Cache-Control": 'max-age=60, no-cache="Set-Cookie, X-A"'})
    assert (qualified.ttl.fresh, qualified.dropped) == (60, frozenset({b"set-cookie", b"x-a"}))


def stored(cache_control: str, fresh: float, swr: float = 0.0) -> dict:
    return {
        "headers": [[b"cache-control", cache_control.encode()]],
        "ttl": [fresh, swr, 100.0],
        "swr": swr,
        "age": 0.0,
    }


@pytest.mark.parametrize(
    ("value", "resident", "request_cc", "expected"),
    [
        (stored("max-age=60", 60), 30, "only-if-cached", Status.HIT),
        (stored("max-age=60", 60), 30, "max-age=20", None),
        (stored("max-age=60", 60), 50, "min-fresh=20", None),
        (stored("max-age=60", 60), 50, "min-fresh=5", Status.HIT),
        (stored("max-age=10", 10), 20, "only-if-cached", None),
        (stored("max-age=10", 10, swr=30), 20, "only-if-cached", Status.STALE),
        (stored("max-age=10", 10), 20, "max-stale=15", Status.STALE),
        (stored("max-age=10", 10), 20, "max-stale=5", None),
        (stored("max-age=10", 10), 20, "max-stale", Status.STALE),
        (stored("max-age=10", 10), 20, "max-stale, max-age=15", None),
        (stored("max-age=10", 10), 20, "max-age=30", None),  # stale: no max-stale
        (stored("max-age=10, must-revalidate", 10), 20, "max-stale", None),
        (stored("no-cache", 1e-3), 0, "max-stale", None),
    ],
)
def test_acceptable_judges_a_stored_response_against_the_request(
    value, resident, request_cc, expected
):
    directives = request_cache_control(None, [request_cc])
    assert acceptable(value, resident, directives, shared=False) is expected
