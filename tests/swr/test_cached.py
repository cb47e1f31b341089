"""@engine.cached for plain and coroutine functions."""

from __future__ import annotations

import enum

import pytest

from swr import AsyncStaleEngine, CacheTTL, StaleEngine, Status

TTL = CacheTTL(fresh=10, stale=20, expired=30)


def test_cached_function_calls_through_once_per_key(clock):
    engine = StaleEngine(ttl=TTL, clock=clock)
    calls = []

    @engine.cached(key=lambda user_id: f"user:{user_id}")
    def load_user(user_id: int) -> dict:
        calls.append(user_id)
        return {"id": user_id}

    assert load_user(1) == {"id": 1}
    assert load_user(1) == {"id": 1}
    assert load_user(2) == {"id": 2}
    assert calls == [1, 2]
    assert load_user.key_for(1) == "user:1"
    assert engine.get("user:1").value == {"id": 1}
    assert load_user.result(1).status is Status.HIT
    assert load_user.__name__ == "load_user"
    assert load_user.invalidate(1) is True
    load_user(1)
    assert calls == [1, 2, 1]
    engine.close()


def test_cached_ttl_applies_to_its_values(clock):
    engine = StaleEngine(ttl=TTL, clock=clock)

    @engine.cached(ttl=CacheTTL(fresh=1000))
    def answer() -> int:
        return 42

    answer()
    clock.advance(500)
    assert answer.result().status is Status.HIT
    engine.close()


class Color(enum.Enum):
    RED = "red"


def test_default_key_uses_simple_arguments_and_refuses_objects(clock):
    engine = StaleEngine(ttl=TTL, clock=clock)

    @engine.cached()
    def f(a, b=None, *, c=None):
        return (a, b, c)

    assert f.key_for(1, "x", c=Color.RED) != f.key_for(1, "x", c=None)
    assert f.key_for(1, "x") == f.key_for(1, "x")
    assert f.key_for(1, "x").startswith("tests.swr.test_cached.test_default_key")
    assert f(1, (2, 3)) == (1, (2, 3), None)
    with pytest.raises(TypeError, match="pass key="):
        f(object())
    engine.close()


def test_cached_method_with_key_binds_self(clock):
    engine = StaleEngine(ttl=TTL, clock=clock)

    class Repo:
        def __init__(self) -> None:
            self.calls = 0

        @engine.cached(key=lambda self, uid: f"repo:{uid}")
        def get(self, uid: int) -> int:
            self.calls += 1
            return uid * 10

    repo = Repo()
    assert repo.get(3) == 30
    assert repo.get(3) == 30
    assert repo.calls == 1
    engine.close()


def test_sync_engine_refuses_coroutine_functions():
    engine = StaleEngine()
    with pytest.raises(TypeError, match="AsyncStaleEngine.cached"):

        @engine.cached()
        async def f() -> int:
            return 1

    engine.close()


async def test_async_cached(clock):
    engine = AsyncStaleEngine(ttl=TTL, clock=clock)
    calls = 0

    @engine.cached(key=lambda uid: f"user:{uid}")
    async def load_user(uid: int) -> dict:
        nonlocal calls
        calls += 1
        return {"id": uid}

    assert await load_user(1) == {"id": 1}
    assert await load_user(1) == {"id": 1}
    assert calls == 1
    assert (await load_user.result(1)).status is Status.HIT
    assert await load_user.invalidate(1) is True
    await load_user(1)
    assert calls == 2
    with pytest.raises(TypeError, match="StaleEngine.cached"):

        @engine.cached()
        def g() -> int:
            return 1

    await engine.aclose()


def test_default_key_names_the_argument_it_refuses(clock):
    engine = StaleEngine(ttl=TTL, clock=clock)

    @engine.cached()
    def f(*args, **kwargs):
        return len(args)

    assert f(1, "x", Color.RED, (2, ("y", None))) == 4  # enums and nested tuples pass
    with pytest.raises(TypeError, match="positional argument 2 of type object"):
        f(1, "x", object())
    with pytest.raises(TypeError, match="positional argument 1 of type object"):
        f(1, (2, object()))
    with pytest.raises(TypeError, match="argument 'user' of type object"):
        f(1, user=object())
    engine.close()
