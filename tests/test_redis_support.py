"""The Redis test fixtures skip without redis-server, except in CI where that fails."""

from __future__ import annotations

import pytest

from tests import redis_support


def test_missing_redis_skips_outside_ci(monkeypatch):
    monkeypatch.setattr(redis_support, "REDIS_SERVER", None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server"):
        redis_support.require_redis()


def test_missing_redis_fails_in_ci(monkeypatch):
    monkeypatch.setattr(redis_support, "REDIS_CLI", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the Redis tests"):
        redis_support.require_redis()
