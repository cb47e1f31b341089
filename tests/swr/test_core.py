"""The pure rules: CacheTTL validation, windows, entries, backoff."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from swr import CacheTTL, ConfigError, Status
from swr._core import Backoff, check_key, classify, make_entry, resolve_ttl
from swr.storage import Entry


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"fresh": 0}, ValueError, "fresh"),
        ({"fresh": -1}, ValueError, "fresh"),
        ({"fresh": 1, "stale": -1}, ValueError, "stale"),
        ({"fresh": 1, "expired": -0.5}, ValueError, "expired"),
        ({"fresh": 1, "jitter": 1.0}, ValueError, "jitter"),
        ({"fresh": 1, "jitter": -0.1}, ValueError, "jitter"),
        ({"fresh": math.nan}, ValueError, "fresh"),
        ({"fresh": math.inf}, ValueError, "fresh"),
        ({"fresh": "60"}, TypeError, "fresh"),
        ({"fresh": True}, TypeError, "fresh"),
        ({"fresh": 1, "jitter": "x"}, TypeError, "jitter"),
    ],
)
def test_cache_ttl_rejects_bad_windows_naming_the_field(kwargs, error, field):
    with pytest.raises(error, match=f"CacheTTL.{field}"):
        CacheTTL(**kwargs)


def test_cache_ttl_accepts_timedelta_and_numbers():
    ttl = CacheTTL(fresh=timedelta(minutes=1), stale=30, expired=timedelta(hours=1))
    assert (ttl.fresh, ttl.stale, ttl.expired, ttl.lifetime) == (60.0, 30.0, 3600.0, 3690.0)
    assert ttl == CacheTTL(60, 30, 3600)


def test_classify_boundaries():
    e = Entry(value=1, stored_at=0, fresh_until=10, stale_until=30, expires_at=60)
    assert [classify(e, t) for t in (0, 9.99, 10, 29.99, 30, 59.99, 60)] == [
        Status.HIT,
        Status.HIT,
        Status.STALE,
        Status.STALE,
        Status.EXPIRED,
        Status.EXPIRED,
        Status.MISS,
    ]
    assert classify(None, 0) is Status.MISS


def test_make_entry_sets_absolute_boundaries():
    e = make_entry("v", CacheTTL(fresh=10, stale=20, expired=30), now=100.0)
    assert (e.value, e.stored_at, e.fresh_until, e.stale_until, e.expires_at) == (
        "v",
        100,
        110,
        130,
        160,
    )
    assert (e.hit, e.stale) == (None, None)  # built by the engine on first use


def test_make_entry_jitter_uses_the_random_source():
    ttl = CacheTTL(fresh=100, stale=10, jitter=0.5)
    assert make_entry(1, ttl, 0.0, rand=lambda: 1.0).fresh_until == 50
    assert make_entry(1, ttl, 0.0, rand=lambda: 0.0).fresh_until == 100


def test_resolve_ttl_checks_callable_results():
    assert resolve_ttl(lambda k, v: CacheTTL(fresh=v), "k", 5).fresh == 5
    with pytest.raises(TypeError, match="must return a CacheTTL"):
        resolve_ttl(lambda k, v: None, "k", 5)


def test_check_key():
    assert check_key("a") == "a"
    with pytest.raises(TypeError, match="must be a str"):
        check_key(b"a")
    with pytest.raises(ValueError, match="empty"):
        check_key("")


def test_backoff_grows_caps_and_forgets():
    b = Backoff(initial=1, maximum=5, max_keys=2)
    assert [b.delay(n) for n in range(6)] == [0, 1, 2, 4, 5, 5]
    assert b.delay(10_000) == 5  # no overflow
    assert b.failed("a", 100) == 101
    assert not b.allows("a", 100.5)
    assert b.allows("a", 101)
    assert b.failed("a", 101) == 103
    b.failed("b", 0)
    b.failed("c", 0)  # over max_keys: "a" is forgotten first
    assert b.failures("a") == 0 and len(b) == 2
    b.succeeded("b")
    assert b.allows("b", 0)
    with pytest.raises(ConfigError):
        Backoff(initial=0)
