"""A failing storage never fails a caller of execute; it is counted and logged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from structlog.testing import capture_logs

from swr import CacheTTL, ConfigError, RefreshOptions, StaleEngine, Status
from swr.serializers import JSONSerializer
from swr.storage import Entry, MemoryStorage, StorageMixin, StorageUnavailableError
from swr.testing import RecordingMetrics
from tests.swr.upstream import Upstream

TTL = CacheTTL(fresh=10, stale=20, expired=30)


class FlakyStorage(StorageMixin):
    """A MemoryStorage whose reads and writes can be made to raise."""

    def __init__(self, clock) -> None:
        self.inner = MemoryStorage(clock=clock)
        self.fail_reads = False
        self.fail_writes = False

    def get(self, key: str) -> Entry | None:
        if self.fail_reads:
            raise StorageUnavailableError("read refused")
        return self.inner.get(key)

    def set(self, key: str, entry: Entry) -> None:
        if self.fail_writes:
            raise StorageUnavailableError("write refused")
        self.inner.set(key, entry)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self.get(k) for k in keys]

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        for k, e in entries.items():
            self.set(k, e)


def test_failing_read_is_a_miss_and_the_fetch_runs(make_driver, clock):
    storage = FlakyStorage(clock)
    metrics = RecordingMetrics()
    d = make_driver(storage=storage, ttl=TTL, clock=clock, metrics=metrics, name="api")
    up = Upstream()
    d.execute("k", up)
    storage.fail_reads = True
    with capture_logs() as logs:
        r = d.execute("k", up)
    assert (r.value, r.status) == ("v2", Status.MISS)
    assert d.stats().storage_read_errors >= 1
    assert "storage_read_failed" in [e["event"] for e in logs]
    assert metrics.errors["api", "storage_read"] >= 1


def test_failing_write_still_returns_the_value(make_driver, clock):
    storage = FlakyStorage(clock)
    d = make_driver(storage=storage, ttl=TTL, clock=clock)
    storage.fail_writes = True
    up = Upstream()
    with capture_logs() as logs:
        r = d.execute("k", up)
    assert (r.value, r.status) == ("v1", Status.MISS)
    assert d.stats().storage_write_errors == 1
    assert "storage_write_failed" in [e["event"] for e in logs]
    storage.fail_writes = False
    assert d.execute("k", up).value == "v2"  # nothing had been cached


def test_failing_write_during_refresh_keeps_the_old_entry(make_driver, clock):
    storage = FlakyStorage(clock)
    d = make_driver(storage=storage, ttl=TTL, clock=clock)
    up = Upstream()
    d.execute("k", up)
    clock.advance(15)
    storage.fail_writes = True
    assert d.execute("k", up).status is Status.STALE
    d.settle()
    storage.fail_writes = False
    r = d.execute("k", up)
    assert (r.value, r.status) == ("v1", Status.STALE)


def test_explicit_set_reports_storage_errors(clock):
    storage = FlakyStorage(clock)
    engine = StaleEngine(storage, ttl=TTL, clock=clock)
    storage.fail_writes = True
    with pytest.raises(StorageUnavailableError):
        engine.set("k", 1)
    engine.close()


def test_memory_storage_refuses_a_serializer():
    with pytest.raises(ConfigError, match="takes no serializer"):
        StaleEngine(serializer=JSONSerializer())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"refresh": {"max_concurrent": 0}}, "max_concurrent"),
        ({"refresh": {"timeout": 0}}, "timeout"),
        ({"refresh": {"timeout": float("inf")}}, "timeout"),
        ({"refresh": {"queue_size": -1}}, "queue_size"),
        ({"refresh": {"backoff_initial": 0}}, "backoff_initial"),
        ({"refresh": {"backoff_initial": 5, "backoff_max": 1}}, "backoff_max"),
        ({"refresh": {"close_timeout": -1}}, "close_timeout"),
        ({"ttl": 30}, "ttl"),
    ],
)
def test_bad_engine_settings_name_the_field(kwargs, message):
    def build() -> None:
        if "refresh" in kwargs:
            StaleEngine(refresh=RefreshOptions(**kwargs["refresh"]))
        else:
            StaleEngine(**kwargs)

    with pytest.raises(ConfigError, match=message):
        build()


def test_wrong_types_are_type_errors():
    with pytest.raises(TypeError, match="namespace"):
        StaleEngine(namespace=3)
    with pytest.raises(TypeError, match="max_concurrent"):
        StaleEngine(refresh=RefreshOptions(max_concurrent=1.5))
    with pytest.raises(TypeError, match="refresh must be a RefreshOptions"):
        StaleEngine(refresh={"timeout": 1})
    with pytest.raises(TypeError, match="positional"):
        StaleEngine(None, CacheTTL(fresh=1))  # settings are keyword-only
    with pytest.raises(TypeError, match="clock"):
        StaleEngine(clock=5)
