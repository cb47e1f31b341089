"""The pure rules: CacheTTL validation, windows, entries, backoff, breaker, plans."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest

from swr import CacheTTL, ConfigError, StaleEngine, Status
from swr._core import (
    Backoff,
    BreakerEvent,
    BreakerRules,
    BreakerState,
    CachedEntry,
    Plan,
    check_callable,
    check_int,
    check_key,
    check_seconds,
    classify,
    classify_inline,
    live,
    make_entry,
    now,
    plan_failure,
    plan_stale,
    resolve_ttl,
    transition,
)
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


@pytest.mark.parametrize(
    "ttl",
    [
        CacheTTL(fresh=10, stale=20, expired=30),
        CacheTTL(fresh=0.1, stale=0, expired=0),
        CacheTTL(fresh=1e9, stale=1e-3, expired=7),
    ],
)
def test_the_engines_entries_are_make_entrys(ttl):
    # The engine builds an entry without jitter inline; make_entry is the rule.
    engine = StaleEngine(ttl=ttl, clock=lambda: 1_234.5)
    built = engine._new_entry("k", "v", None)
    assert type(built) is CachedEntry
    assert built == make_entry("v", ttl, 1_234.5)
    engine.close()


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


# -- windows: the hot path's inline form ----------------------------------------------------

WINDOW_SHAPES = [
    (0.0, 10.0, 30.0, 60.0),  # every window
    (0.0, 10.0, 10.0, 60.0),  # no stale window
    (0.0, 10.0, 30.0, 30.0),  # no expired window
    (0.0, 10.0, 10.0, 10.0),  # fresh only
]


def boundaries(stored: float, fresh: float, stale: float, expires: float) -> list[float]:
    """Every boundary, and the floats just before and after it."""
    points = []
    for b in (stored, fresh, stale, expires):
        points += [math.nextafter(b, -math.inf), b, math.nextafter(b, math.inf)]
    return points


@pytest.mark.parametrize("shape", WINDOW_SHAPES)
def test_the_inline_form_agrees_with_classify_at_every_boundary(shape):
    e = Entry(1, *shape)
    for t in boundaries(*shape):
        assert classify_inline(e, t) is classify(e, t), t


# -- plans ---------------------------------------------------------------------------------


def test_plan_stale_orders_circuit_then_pending_then_backoff():
    quiet = Backoff()
    failing = Backoff(initial=10, maximum=10)
    failing.failed("k", 100)
    assert plan_stale(True, False, quiet, "k", 0) is Plan.FALLBACK
    assert plan_stale(True, True, failing, "k", 100) is Plan.FALLBACK
    assert plan_stale(False, True, failing, "k", 100) is Plan.SERVE
    assert plan_stale(False, False, failing, "k", 105) is Plan.BACKING_OFF
    assert plan_stale(False, False, failing, "k", 110) is Plan.REFRESH
    assert plan_stale(False, False, quiet, "k", 0) is Plan.REFRESH


def test_plan_failure_and_live_fallbacks():
    e = Entry(1, 0, 10, 20, 30)
    assert plan_failure(e) is Plan.FALLBACK
    assert plan_failure(None) is Plan.RAISE
    assert live(e, 29.9) is e
    assert live(e, 30) is None
    assert live(None, 0) is None


# -- breaker transitions -------------------------------------------------------------------

RULES = BreakerRules(
    failure_threshold=2, success_threshold=2, reset_timeout=5, half_open_max_calls=1
)


def run(events: list[tuple[BreakerEvent, float]]) -> BreakerState:
    s = BreakerState(RULES)
    for event, at in events:
        s = transition(s, event, at)
    return s


def test_breaker_opens_after_consecutive_failures_only():
    f, ok = BreakerEvent.FAILURE, BreakerEvent.SUCCESS
    assert run([(f, 0), (ok, 0), (f, 0)]).state == "closed"  # a success resets the count
    s = run([(f, 0), (f, 1)])
    assert (s.state, s.generation, s.failures, s.open_until) == ("open", 1, 2, 6)


def test_breaker_half_opens_when_due_and_closes_after_trial_successes():
    s = run([(BreakerEvent.FAILURE, 0), (BreakerEvent.FAILURE, 0)])
    assert transition(s, BreakerEvent.TICK, 4.9) is s  # not due: unchanged
    s = transition(s, BreakerEvent.TICK, 5)
    assert (s.state, s.generation, s.trials) == ("half_open", 2, 0)
    assert s.allows_trial()
    s = transition(s, BreakerEvent.TRIAL, 5)
    assert not s.allows_trial()
    assert transition(s, BreakerEvent.TRIAL, 5) is s  # no second slot
    s = transition(s, BreakerEvent.SUCCESS, 6)
    assert (s.state, s.successes, s.trials) == ("half_open", 1, 0)
    s = transition(transition(s, BreakerEvent.TRIAL, 6), BreakerEvent.SUCCESS, 7)
    assert (s.state, s.generation, s.failures) == ("closed", 3, 0)


def test_breaker_trial_failure_reopens_and_release_frees_the_slot():
    s = run([(BreakerEvent.FAILURE, 0), (BreakerEvent.FAILURE, 0), (BreakerEvent.TICK, 5)])
    s = transition(s, BreakerEvent.TRIAL, 5)
    released = transition(s, BreakerEvent.RELEASE, 5)
    assert (released.state, released.trials) == ("half_open", 0)
    reopened = transition(s, BreakerEvent.FAILURE, 8)
    assert (reopened.state, reopened.open_until, reopened.trials) == ("open", 13, 0)


def test_breaker_reset_closes_and_forgets():
    s = run([(BreakerEvent.FAILURE, 0), (BreakerEvent.FAILURE, 0)])
    s = transition(s, BreakerEvent.RESET, 1)
    assert (s.state, s.failures) == ("closed", 0)
    one = run([(BreakerEvent.FAILURE, 0)])
    assert transition(one, BreakerEvent.RESET, 1).failures == 0
    assert transition(BreakerState(RULES), BreakerEvent.RESET, 1) == BreakerState(RULES)


def test_breaker_rules_name_the_bad_field():
    with pytest.raises(ConfigError, match="failure_threshold"):
        BreakerRules(failure_threshold=0)
    with pytest.raises(TypeError, match="reset_timeout"):
        BreakerRules(reset_timeout="1")


# -- validators and the clock --------------------------------------------------------------


def test_validators_name_the_setting():
    assert check_int("n", 3, 1) == 3
    with pytest.raises(TypeError, match="n must be an int"):
        check_int("n", True, 0)
    with pytest.raises(ConfigError, match="n must be >= 1, got 0"):
        check_int("n", 0, 1)
    assert check_seconds("t", 2) == 2.0
    assert check_seconds("t", 0, positive=False) == 0.0
    assert check_seconds("t", timedelta(seconds=3), timedeltas=True) == 3.0
    with pytest.raises(TypeError, match="t must be seconds"):
        check_seconds("t", timedelta(seconds=3))
    with pytest.raises(ConfigError, match="t must be a finite number of seconds > 0, got 0"):
        check_seconds("t", 0)
    with pytest.raises(ConfigError, match="finite"):
        check_seconds("t", math.nan)
    check_callable("clock", None, "a callable")
    with pytest.raises(TypeError, match="clock must be a callable, got int"):
        check_callable("clock", 3, "a callable")


def test_now_reads_the_given_clock_or_time_time():
    assert now(lambda: 42.0) == 42.0
    assert abs(now(None) - time.time()) < 60
