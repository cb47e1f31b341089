"""The pure HTTP decisions: directives, windows, Vary, 304 merges."""

from __future__ import annotations

import pytest

from swr import CacheTTL
from swr.http import CachePolicy
from swr.http._policy import (
    cache_control,
    fallback_allowed,
    freshness,
    header_getter,
    merge_not_modified,
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
