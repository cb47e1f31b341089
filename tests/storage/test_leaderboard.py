"""Leaderboards: one contract on every implementation, checked against a plain model."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from swr.storage import LMDBStorage, MemoryPool, MemoryStorage, RedisStorage
from swr.storage.adapters import as_async
from swr.storage.leaderboard import (
    AsyncMemoryLeaderboard,
    AsyncRedisLeaderboard,
    MemoryLeaderboard,
    RedisLeaderboard,
)

KINDS = [
    "memory",
    "memory-async",
    "redis",
    "redis-async",
    # storage.leaderboard(name) on every storage (sync, and through asyncio):
    "memory-storage",
    "memory-storage-async",
    "pool",
    "lmdb-storage",
    "lmdb-storage-async",
    "redis-storage",
    "redis-storage-async",
    "redis-cluster-storage",
    "redis-cluster-storage-async",
]
_names = itertools.count()


class Blocking:
    """Calls an asyncio leaderboard as if it were synchronous (one loop per board)."""

    def __init__(self, board: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._board = board
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._board, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(method(*args, **kwargs))

        return call


@pytest.fixture
def make_board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = request.param
    loops: list[asyncio.AbstractEventLoop] = []
    closers: list[Any] = []

    def make(max_size: int | None = None) -> Any:
        name = f"board:{next(_names)}"
        if kind.endswith(("storage", "storage-async")) or kind == "pool":
            return from_storage(name, max_size)
        if kind == "memory":
            return MemoryLeaderboard(name, max_size=max_size)
        loop = asyncio.new_event_loop()
        loops.append(loop)
        if kind == "memory-async":
            return Blocking(
                AsyncMemoryLeaderboard(MemoryLeaderboard(name, max_size=max_size)), loop
            )
        server = request.getfixturevalue("redis_server")
        if kind == "redis":
            import redis

            client = redis.Redis.from_url(server.url)
            closers.append(client.close)
            return RedisLeaderboard(client, name, max_size=max_size)
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(server.url)
        closers.append(lambda: loop.run_until_complete(client.aclose()))
        return Blocking(AsyncRedisLeaderboard(client, name, max_size=max_size), loop)

    def from_storage(name: str, max_size: int | None) -> Any:
        base = kind.removesuffix("-async")
        if base == "memory-storage":
            store: Any = MemoryStorage()
        elif base == "lmdb-storage":
            store = LMDBStorage(tmp_path / f"lmdb{next(_names)}", sweep_interval=None)
        elif base == "pool":
            pool = MemoryPool(capacity=100, gc_interval=None)
            closers.append(pool.close)
            store = pool.register("boards", max=10)
        else:
            server = request.getfixturevalue(
                "redis_cluster" if "cluster" in base else "redis_server"
            )
            # A new store per example, hundreds per run: generous timeouts, so that a
            # stall of the machine is not read as a server failure (timeouts have
            # tests of their own).
            store = RedisStorage.from_url(
                server.url,
                prefix=f"t{next(_names)}:",
                cluster="cluster" in base,
                socket_timeout=5.0,
                connect_timeout=5.0,
            )
        closers.append(store.close)
        if not kind.endswith("-async"):
            return store.leaderboard(name, max_size=max_size)
        loop = asyncio.new_event_loop()
        loops.append(loop)
        view = as_async(store)
        closers.insert(0, lambda: loop.run_until_complete(view.aclose()))
        return Blocking(view.leaderboard(name, max_size=max_size), loop)

    yield make
    for close in closers:
        close()
    for loop in loops:
        loop.close()


def kinds() -> Any:
    return pytest.mark.parametrize(
        "make_board",
        [pytest.param(k, marks=[pytest.mark.redis] if "redis" in k else []) for k in KINDS],
        indirect=True,
    )


@kinds()
def test_the_readme_example(make_board):
    board = make_board()
    assert board.add({"Alice": 1250, "Bob": 980, "Charlie": 1500}) == 3
    assert board.range(0, 2, desc=True) == [
        ("Charlie", 1500.0),
        ("Alice", 1250.0),
        ("Bob", 980.0),
    ]
    assert board.rank("Alice", desc=True) == 1
    assert board.incr_by("Alice", 300) == 1550.0
    assert board.rank("Alice", desc=True) == 0
    assert board.add({"Alice": 1, "Dan": 2}) == 1  # Alice updated, Dan new


@kinds()
def test_absent_members_and_empty_boards(make_board):
    board = make_board()
    assert board.score("nobody") is None
    assert board.rank("nobody") is None
    assert board.range(0, -1) == []
    assert board.size() == 0
    assert board.remove(["nobody"]) == 0
    assert board.remove([]) == 0
    assert board.count() == 0


@kinds()
def test_ties_are_ordered_by_member_and_desc_is_the_exact_reverse(make_board):
    board = make_board()
    board.add({"b": 1, "a": 1, "é": 1, "c": 0, "z": 2, "ab": 1})
    ascending = board.range(0, -1)
    assert [m for m, _ in ascending] == ["c", "a", "ab", "b", "é", "z"]
    assert board.range(0, -1, desc=True) == ascending[::-1]
    for index, (member, _) in enumerate(ascending):
        assert board.rank(member) == index
        assert board.rank(member, desc=True) == len(ascending) - 1 - index


@kinds()
def test_ranges_by_rank_follow_redis(make_board):
    board = make_board()
    board.add({f"m{i}": i for i in range(10)})
    assert [m for m, _ in board.range(-3, -1)] == ["m7", "m8", "m9"]
    assert [m for m, _ in board.range(8, 100)] == ["m8", "m9"]
    assert board.range(5, 2) == []
    assert board.range(20, 30) == []
    assert [m for m, _ in board.range(-100, 1)] == ["m0", "m1"]
    assert [m for m, _ in board.range(0, 1, desc=True)] == ["m9", "m8"]


@kinds()
def test_ranges_and_counts_by_score(make_board):
    board = make_board()
    board.add({"a": 1, "b": 2, "c": 2, "d": 3, "e": math.inf, "f": -math.inf})
    assert board.range_by_score(2, 3) == [("b", 2.0), ("c", 2.0), ("d", 3.0)]
    assert board.range_by_score(2, 3, desc=True) == [("d", 3.0), ("c", 2.0), ("b", 2.0)]
    assert board.range_by_score(-math.inf, math.inf, offset=1, limit=2) == [
        ("a", 1.0),
        ("b", 2.0),
    ]
    assert board.range_by_score(0, 10, desc=True, limit=1) == [("d", 3.0)]
    assert board.count(2, 2) == 2
    assert board.count() == 6
    assert board.count(5, 4) == 0


@kinds()
def test_removals(make_board):
    board = make_board()
    board.add({f"m{i}": i for i in range(10)})
    assert board.remove(["m0", "m1", "zz"]) == 2
    assert board.remove_range_by_rank(0, 1) == 2  # m2, m3
    assert board.remove_range_by_score(8, 100) == 2  # m8, m9
    assert [m for m, _ in board.range(0, -1)] == ["m4", "m5", "m6", "m7"]
    board.clear()
    assert board.size() == 0


@kinds()
def test_max_size_keeps_the_highest(make_board):
    board = make_board(max_size=3)
    board.add({"a": 1, "b": 2, "c": 3, "d": 4})
    assert board.range(0, -1) == [("b", 2.0), ("c", 3.0), ("d", 4.0)]
    board.incr_by("e", 10)
    assert [m for m, _ in board.range(0, -1)] == ["c", "d", "e"]
    board.incr_by("f", -5)  # added at the bottom, trimmed at once
    assert board.score("f") is None
    assert board.size() == 3


@kinds()
def test_large_adds_go_through(make_board):
    board = make_board()
    assert board.add({f"m{i:05}": i % 7 for i in range(2500)}) == 2500
    assert board.size() == 2500
    assert board.count(0, 0) == 358


@kinds()
def test_bad_input_is_refused_with_a_clear_error(make_board):
    board = make_board()
    with pytest.raises(TypeError, match="mapping"):
        board.add([("a", 1)])
    with pytest.raises(TypeError, match="number"):
        board.add({"a": "1"})
    with pytest.raises(ValueError, match="NaN"):
        board.add({"a": math.nan})
    with pytest.raises(TypeError, match="str"):
        board.add({1: 1})
    with pytest.raises(ValueError, match="non-empty"):
        board.score("")
    with pytest.raises(TypeError, match="iterable"):
        board.remove("abc")
    with pytest.raises(TypeError, match="int"):
        board.range(0, 1.5)
    with pytest.raises(ValueError, match="max_size"):
        make_board(max_size=0)


# -- a Hypothesis state machine against a plain sorted-list model ----------------------

members = st.sampled_from(["a", "b", "c", "d", "e", "ab", "é", "zz"])
scores = st.one_of(
    st.integers(-5, 5).map(float),
    st.sampled_from([0.5, -0.5, 1e300, -1e300, math.inf, -math.inf]),
)


class Model:
    def __init__(self, max_size: int | None) -> None:
        self.scores: dict[str, float] = {}
        self.max_size = max_size

    def order(self) -> list[tuple[str, float]]:
        return [(m, s) for s, m in sorted((s, m) for m, s in self.scores.items())]

    def trim(self) -> None:
        if self.max_size is not None:
            for member, _ in self.order()[: max(0, len(self.scores) - self.max_size)]:
                del self.scores[member]


def slice_model(order: list[Any], start: int, stop: int) -> list[Any]:
    n = len(order)
    start = start + n if start < 0 else start
    stop = stop + n if stop < 0 else stop
    start, stop = max(start, 0), min(stop, n - 1)
    return order[start : stop + 1] if start <= stop else []


@kinds()
@pytest.mark.parametrize("max_size", [None, 4])
def test_leaderboards_agree_with_a_sorted_list(make_board, max_size):
    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.board = make_board(max_size=max_size)
            self.model = Model(max_size)

        @rule(pairs=st.dictionaries(members, scores, max_size=4))
        def add(self, pairs):
            new = sum(m not in self.model.scores for m in pairs)
            self.model.scores.update(pairs)
            self.model.trim()
            assert self.board.add(pairs) == new

        @rule(member=members, delta=st.integers(-3, 3).map(float))
        def incr_by(self, member, delta):
            score = self.model.scores.get(member, 0.0) + delta
            if math.isnan(score):
                return
            self.model.scores[member] = score
            self.model.trim()
            assert self.board.incr_by(member, delta) == score

        @rule(names=st.lists(members, max_size=3))
        def remove(self, names):
            gone = sum(self.model.scores.pop(m, None) is not None for m in set(names))
            assert self.board.remove(list(dict.fromkeys(names))) == gone

        @rule(start=st.integers(-6, 6), stop=st.integers(-6, 6), desc=st.booleans())
        def range(self, start, stop, desc):
            order = self.model.order()
            if desc:
                order = order[::-1]
            assert self.board.range(start, stop, desc=desc) == slice_model(order, start, stop)

        @rule(low=scores, high=scores, desc=st.booleans())
        def range_by_score(self, low, high, desc):
            picked = [(m, s) for m, s in self.model.order() if low <= s <= high]
            assert self.board.range_by_score(low, high, desc=desc) == (
                picked[::-1] if desc else picked
            )
            assert self.board.count(low, high) == len(picked)

        @rule(member=members, desc=st.booleans())
        def rank(self, member, desc):
            order = [m for m, _ in self.model.order()]
            if desc:
                order = order[::-1]
            expected = order.index(member) if member in order else None
            assert self.board.rank(member, desc=desc) == expected
            assert self.board.score(member) == self.model.scores.get(member)

        @invariant()
        def size(self):
            assert self.board.size() == len(self.model.scores)

    Machine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
    Machine.TestCase().runTest()


@pytest.mark.parametrize("kind", ["lmdb", pytest.param("redis", marks=pytest.mark.redis)])
def test_processes_share_one_leaderboard_exactly(kind, request, tmp_path):
    from tests.storage import atomic_workers
    from tests.storage.test_atomic import _race, _where

    where, prefix = _where(kind, request, tmp_path)
    _race(atomic_workers.board_adds, [(kind, where, prefix, i) for i in range(4)])
    with atomic_workers._open(kind, where, prefix) as store:
        board = store.leaderboard("shared")
        assert board.size() == 4 * 200 + 1
        assert board.score("everyone") == 800.0
        assert board.rank("everyone", desc=True) == 0


def test_lmdb_leaderboards_close_with_the_last_storage_using_them(tmp_path):
    from swr.storage.errors import StorageUnavailableError
    from swr.storage.leaderboard import lmdb as boards

    path = tmp_path / "store"
    first = LMDBStorage(path, sweep_interval=None)
    second = LMDBStorage(path, sweep_interval=None)
    board = first.leaderboard("b")
    board.add({"a": 1.0})
    also = second.leaderboard("b")
    first.close()
    assert also.score("a") == 1.0  # the other storage still uses the environment
    second.close()
    assert str(path) not in boards._envs
    with pytest.raises(StorageUnavailableError, match="closed"):
        also.add({"b": 2.0})
    with pytest.raises(StorageUnavailableError, match="closed"):
        second.leaderboard("b")
    with LMDBStorage(path, sweep_interval=None) as again:  # the data stays on disk
        assert again.leaderboard("b").score("a") == 1.0
    assert str(path) not in boards._envs


@pytest.mark.redis
@pytest.mark.parametrize("cluster", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_redis_storage_leaderboards_go_through_the_storage(request, cluster):
    import redis

    from swr.storage.errors import StorageUnavailableError

    server = request.getfixturevalue("redis_cluster" if cluster else "redis_server")
    prefix = f"t{next(_names)}:"
    store = RedisStorage.from_url(server.url, prefix=prefix, cluster=cluster)
    board = store.leaderboard("b", max_size=2)
    board.add({"a": 1.0, "b": 2.0, "c": 3.0})
    assert board.range(0, -1, desc=True) == [("c", 3.0), ("b", 2.0)]
    if not cluster:
        raw = redis.Redis.from_url(server.url)
        raw.script_flush()  # NOSCRIPT: the script's text is sent again
        raw.close()
    assert board.incr_by("b", 5.0) == 7.0
    assert board.range_by_score(0, 10, desc=True, offset=0, limit=1) == [("b", 7.0)]
    store.close()
    with pytest.raises(StorageUnavailableError, match="closed"):
        board.size()  # refused by the storage, as its entries are
