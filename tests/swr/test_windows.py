"""Every row of the windows table and every transition between rows, for both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from structlog.testing import capture_logs

from swr import CacheTTL, FetchTimeoutError, RefreshOptions, StaleEngine, Status
from swr._core import CachedEntry, classify
from swr.storage import Entry, MemoryStorage
from tests.swr.test_core import WINDOW_SHAPES, boundaries
from tests.swr.upstream import Upstream, UpstreamError

# fresh [0, 10), stale [10, 30), expired [30, 60), dead from 60.
TTL = CacheTTL(fresh=10, stale=20, expired=30)


@pytest.fixture
def up() -> Upstream:
    return Upstream()


def test_miss_fetches_stores_and_counts(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    r = d.execute("k", up)
    assert (r.value, r.status, r.age) == ("v1", Status.MISS, 0.0)
    assert up.calls == 1
    assert d.get("k").status is Status.HIT
    assert d.stats().misses == 1


def test_hit_serves_without_fetch_until_fresh_ends(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    clock.advance(9.999)
    r = d.execute("k", up)
    assert (r.value, r.status) == ("v1", Status.HIT)
    assert r.age == pytest.approx(9.999)
    assert up.calls == 1
    assert d.stats().hits == 1


def test_stale_serves_old_value_at_once_and_refreshes_once(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    clock.advance(10)  # the first instant of the stale window
    gate = up.hold()
    results = [d.execute("k", up) for _ in range(5)]
    assert [(r.value, r.status) for r in results] == [("v1", Status.STALE)] * 5
    assert up.entered.wait(5)
    gate.set()
    d.settle()
    assert up.calls == 2  # one refresh for five stale reads
    r = d.execute("k", up)
    assert (r.value, r.status, r.age) == ("v2", Status.HIT, 0.0)
    s = d.stats()
    assert (s.stale, s.refreshes_started, s.refreshes_succeeded) == (5, 1, 1)


def test_expired_waits_for_fetch_and_returns_new_value(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    clock.advance(30)
    r = d.execute("k", up)
    assert (r.value, r.status, r.age) == ("v2", Status.EXPIRED, 0.0)
    assert up.calls == 2
    assert d.execute("k", up).status is Status.HIT


def test_expired_fetch_failure_serves_fallback(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    clock.advance(59.5)
    up.fail_with()
    with capture_logs() as logs:
        r = d.execute("k", up)
    assert (r.value, r.status) == ("v1", Status.FALLBACK)
    assert r.age == pytest.approx(59.5)
    s = d.stats()
    assert (s.fallbacks, s.fetch_errors) == (1, 1)
    assert [e["event"] for e in logs] == ["fetch_failed"]
    assert logs[0]["key"] == "k"


def test_dead_entry_is_a_miss(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    clock.advance(60)
    assert d.get("k") is None
    r = d.execute("k", up)
    assert (r.value, r.status) == ("v2", Status.MISS)


def test_miss_fetch_error_reaches_caller_unchanged_and_nothing_is_stored(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    error = up.fail_with()
    with pytest.raises(UpstreamError) as caught:
        d.execute("k", up)
    assert caught.value is error
    assert d.get("k") is None
    up.recover()
    assert d.execute("k", up).status is Status.MISS


def test_dead_entry_fetch_error_raises_instead_of_serving_dead_value(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    clock.advance(60)
    up.fail_with()
    with pytest.raises(UpstreamError):
        d.execute("k", up)


def test_failed_stale_refresh_keeps_serving_stale(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    clock.advance(15)
    up.fail_with()
    with capture_logs() as logs:
        r = d.execute("k", up)
        d.settle()
    assert (r.value, r.status) == ("v1", Status.STALE)
    assert "refresh_failed" in [e["event"] for e in logs]
    s = d.stats()
    assert (s.refreshes_started, s.refreshes_failed, s.refreshes_succeeded) == (1, 1, 0)
    assert d.execute("k", up).status is Status.STALE  # still served


def test_full_life_of_an_entry(make_driver, clock, up):
    """miss -> hit -> stale (refresh) -> hit -> expired -> fallback -> dead miss."""
    d = make_driver(ttl=TTL, clock=clock)
    seen = [d.execute("k", up).status]
    clock.advance(5)
    seen.append(d.execute("k", up).status)
    clock.advance(10)  # age 15: stale
    seen.append(d.execute("k", up).status)
    d.settle()  # refreshed at t=15
    seen.append(d.execute("k", up).status)
    clock.advance(31)  # age 31 since the refresh: expired
    seen.append(d.execute("k", up).status)  # fetched at t=46
    clock.advance(35)  # age 35: expired again, and the upstream is down
    up.fail_with()
    seen.append(d.execute("k", up).status)
    clock.advance(25)  # age 60: dead
    up.recover()
    seen.append(d.execute("k", up).status)
    assert seen == [
        Status.MISS,
        Status.HIT,
        Status.STALE,
        Status.HIT,
        Status.EXPIRED,
        Status.FALLBACK,
        Status.MISS,
    ]
    assert up.calls == 5


def test_windows_of_zero_length_are_skipped(make_driver, clock, up):
    d = make_driver(ttl=CacheTTL(fresh=10), clock=clock)
    d.execute("k", up)
    clock.advance(10)
    assert d.execute("k", up).status is Status.MISS


def test_force_refresh_fetches_through_a_fresh_entry(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    r = d.execute("k", up, force_refresh=True)
    assert (r.value, r.status) == ("v2", Status.MISS)
    up.fail_with()
    r = d.execute("k", up, force_refresh=True)
    assert (r.value, r.status) == ("v2", Status.FALLBACK)


def test_per_call_ttl_overrides_engine_default(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up, ttl=CacheTTL(fresh=100))
    clock.advance(50)
    assert d.execute("k", up).status is Status.HIT


def test_ttl_callable_chooses_windows_from_the_value(make_driver, clock):
    def ttl_for(key: str, value: object) -> CacheTTL:
        return CacheTTL(fresh=100) if value == "long" else CacheTTL(fresh=1)

    d = make_driver(ttl=ttl_for, clock=clock)
    d.execute("a", lambda: "long")
    d.execute("b", lambda: "short")
    clock.advance(2)
    assert d.get("a").status is Status.HIT
    assert d.get("b") is None


def test_ttl_callable_returning_garbage_is_a_fetch_failure(make_driver, clock):
    d = make_driver(ttl=lambda key, value: 5, clock=clock)
    with pytest.raises(TypeError, match="must return a CacheTTL"):
        d.execute("k", lambda: 1)


def test_timedelta_windows(make_driver, clock, up):
    ttl = CacheTTL(fresh=timedelta(minutes=1), stale=timedelta(minutes=1))
    d = make_driver(ttl=ttl, clock=clock)
    d.execute("k", up)
    clock.advance(61)
    assert d.execute("k", up).status is Status.STALE


def test_set_get_delete(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    assert d.get("k") is None
    d.set("k", {"a": 1})
    clock.advance(12)
    r = d.get("k")
    assert (r.value, r.status) == ({"a": 1}, Status.STALE)
    assert r.age == pytest.approx(12)
    clock.advance(20)
    assert d.get("k").status is Status.EXPIRED
    assert d.delete("k") is True
    assert d.delete("k") is False
    assert d.execute("k", up).status is Status.MISS


def test_namespace_prefixes_storage_keys(make_driver, clock, up):
    storage = MemoryStorage(clock=clock)
    d = make_driver(storage=storage, namespace="users", ttl=TTL, clock=clock)
    d.execute("1", up)
    assert storage.get("users:1") is not None
    assert storage.get("1") is None


@pytest.mark.parametrize(
    ("key", "error", "message"),
    [
        (None, TypeError, "must be a str"),
        (1, TypeError, "must be a str"),
        (b"k", TypeError, "must be a str"),
        ("", ValueError, "empty"),
    ],
)
@pytest.mark.parametrize("namespace", ["", "ns"])
@pytest.mark.parametrize(
    "options", [{}, {"force_refresh": True}, {"bypass": True}, {"ttl": TTL}, {"tags": ["t"]}]
)
def test_bad_keys_are_refused(make_driver, key, error, message, namespace, options):
    # The hit path leaves the key check to where a call leaves it: whatever path a
    # call takes, a bad key is refused with the same clear error, and never fetched.
    d = make_driver(namespace=namespace)
    d.execute("warm", lambda: 1)
    calls = []
    with pytest.raises(error, match=message):
        d.execute(key, lambda: calls.append(1), **options)
    assert calls == []
    with pytest.raises(error, match=message):
        d.get(key)


def test_windows_are_absolute_and_survive_a_new_engine(clock, up):
    storage = MemoryStorage(clock=clock)
    first = StaleEngine(storage, ttl=TTL, clock=clock)
    first.execute("k", up)
    first.close()
    entry = storage.get("k")
    assert (entry.stored_at, entry.fresh_until, entry.stale_until, entry.expires_at) == (
        clock(),
        clock() + 10,
        clock() + 30,
        clock() + 60,
    )
    clock.advance(12)
    # A new engine with another default TTL keeps the stored windows.
    second = StaleEngine(storage, ttl=CacheTTL(fresh=1000), clock=clock)
    assert second.execute("k", up).status is Status.STALE
    second.close()


def test_jitter_shortens_fresh_within_its_fraction(clock):
    engine = StaleEngine(ttl=CacheTTL(fresh=100, stale=50, jitter=0.2), clock=clock)
    freshes = set()
    for i in range(200):
        engine.set(f"k{i}", i)
        entry = engine.storage.get(f"k{i}")
        fresh = entry.fresh_until - entry.stored_at
        assert 80 <= fresh <= 100
        assert entry.stale_until - entry.fresh_until == pytest.approx(50)
        freshes.add(round(fresh, 6))
    assert len(freshes) > 100  # spread out, not one value
    engine.close()


def test_default_clock_follows_freezegun(up):
    with freeze_time("2030-01-01 00:00:00") as frozen:
        engine = StaleEngine(ttl=TTL)
        engine.execute("k", up)
        frozen.tick(timedelta(seconds=11))
        r = engine.execute("k", up)
        assert r.status is Status.STALE
        assert r.age == pytest.approx(11)
        engine.close()


def test_result_age_is_measured_when_read(clock, up):
    engine = StaleEngine(ttl=TTL, clock=clock)
    engine.execute("k", up)
    clock.advance(3)
    r = engine.execute("k", up)
    assert r.age == 3
    clock.advance(2)
    assert r.age == 5
    assert r.stored_at == clock() - 5
    engine.close()


def test_sync_waiter_gives_up_after_refresh_timeout(clock, up):
    """A thread waiting on another thread's fetch stops after refresh_timeout."""
    import threading

    engine = StaleEngine(ttl=TTL, clock=clock, refresh=RefreshOptions(timeout=0.05))
    gate = up.hold()
    leader = threading.Thread(target=engine.execute, args=("k", up))
    leader.start()
    assert up.entered.wait(5)
    with pytest.raises(FetchTimeoutError):
        engine.execute("k", up)
    gate.set()
    leader.join(5)
    assert engine.execute("k", up).status is Status.HIT
    engine.close()


def test_hits_of_one_entry_share_one_result(make_driver, clock, up):
    d = make_driver(ttl=TTL, clock=clock)
    d.execute("k", up)
    first = d.execute("k", up)
    clock.advance(1)
    second = d.execute("k", up)
    assert second is first  # no allocation per hit
    assert second.age == 1  # measured when read
    clock.advance(10)
    stale = d.execute("k", up)
    d.settle()
    assert stale.status is Status.STALE
    assert stale is not first


@pytest.mark.parametrize("shape", WINDOW_SHAPES)
@pytest.mark.parametrize("entry_type", [Entry, CachedEntry])
def test_the_hot_path_answers_as_classify_at_every_boundary(make_driver, clock, shape, entry_type):
    # The engines inline the window comparisons; this pins them to the core's rule at
    # every boundary, and the floats either side of it.
    storage = MemoryStorage(clock=clock)
    d = make_driver(storage=storage, ttl=TTL, clock=clock)
    base = 1_000.0
    for i, t in enumerate(boundaries(*(base + b for b in shape))):
        key = f"k{i}"
        entry = entry_type("old", *(base + b for b in shape))
        clock.set(base)  # written alive: an entry written dead is not kept
        storage.set(key, entry)
        clock.set(t)
        expected = classify(entry, t)
        assert d.execute(key, Upstream()).status is expected, (t, expected)
        d.settle()
