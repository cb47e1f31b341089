"""Leaderboards in LMDB: an ordered index of score-encoded keys, shared by processes.

The leaderboards of an :class:`~swr.storage.LMDBStorage` live in their own LMDB
environment, in the ``leaderboards`` subdirectory of the store (the store's own file
format is left alone). Two named databases:

- ``members``: ``board + member -> score`` (8 sortable bytes), and ``board -> size``;
- ``order``: ``board + score + member -> ""``, so LMDB's B-tree keeps every board sorted
  by score, then by member bytes (UTF-8 order is code-point order, as Redis and the
  memory leaderboard order ties).

``board`` is the name's UTF-8 length (2 bytes) then the name, so boards never share a
key. Every change is one write transaction (atomic across the processes of the host);
reads are read transactions.

Costs (N members, M returned): ``add``, ``incr_by``, ``remove``, ``score``, ``size`` are
O(log N) per member. ``range(start, stop)`` walks from the end it counts from: O(log N +
start + M), so a top-k (``range(0, k - 1, desc=True)``) is O(log N + k).
``range_by_score`` is O(log N + offset + M); ``count`` O(log N + the members counted).
``rank`` counts the members before it, walking from the end nearer to its score (judged
from the lowest and highest scores): O(log N + min(rank, N - rank)) when scores are
spread evenly, O(N) at worst. LMDB's B-tree keeps no subtree counts; a counted block
index would make rank O(log N) at the cost of a write per block on every change.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, TypeVar

import lmdb

from swr.storage.errors import StorageFullError, StorageUnavailableError
from swr.storage.leaderboard._common import (
    Member,
    check_max_size,
    check_member,
    check_members,
    check_score,
    check_scores,
    rank_slice,
)

__all__ = ["LMDBLeaderboard", "LeaderboardEnv", "leaderboard_env"]

T = TypeVar("T")
_F64: Final = struct.Struct(">d")
_U64: Final = struct.Struct(">Q")
_SIZE: Final = struct.Struct("<q")
_SIGN: Final = 1 << 63
_ALL: Final = (1 << 64) - 1
_ATTEMPTS: Final = 12
_kept_after_fork: list[lmdb.Environment] = []  # never closed in a child: see env()


def _encode(score: float) -> bytes:
    """8 bytes whose byte order is the numeric order of ``score`` (-0.0 is 0.0)."""
    (bits,) = _U64.unpack(_F64.pack(score + 0.0))
    return _U64.pack(bits ^ _ALL if bits & _SIGN else bits | _SIGN)


def _decode(raw: bytes) -> float:
    (bits,) = _U64.unpack(raw)
    bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL
    (score,) = _F64.unpack(_U64.pack(bits))
    return float(score)


def _position(keys: Iterator[bytes], target: bytes) -> int:
    """How many of ``keys`` come before ``target``."""
    for index, key in enumerate(keys):
        if key == target:
            return index
    return 0  # pragma: no cover - the target is in the index (same transaction)


class LeaderboardEnv:
    """The leaderboards' LMDB environment of one store directory, in this process.

    Opened on first use and reopened after ``fork()`` (the inherited one is left alone).
    Thread-safe; writes take one lock (LMDB orders the processes).
    """

    def __init__(self, path: str, *, sync: bool) -> None:
        self.path = path
        self.sync = sync
        self._lock = threading.RLock()  # write() holds it while env() may open
        self._env: lmdb.Environment | None = None
        self._pid = 0
        self.closed = False
        self.users: set[object] = set()  # the storages using it (see leaderboard_env)

    def env(self) -> tuple[lmdb.Environment, Any, Any]:
        """``(environment, members db, order db)`` for this process."""
        if self.closed:
            raise StorageUnavailableError(f"the leaderboards of {self.path} are closed")
        env = self._env
        if env is None or self._pid != os.getpid():
            with self._lock:
                if self._env is not None and self._pid != os.getpid():
                    _kept_after_fork.append(self._env)  # the parent's: never close it here
                    self._env = None
                if self._env is None:
                    os.makedirs(self.path, exist_ok=True)
                    self._env = lmdb.open(
                        self.path,
                        map_size=1 << 24,
                        max_dbs=2,
                        sync=self.sync,
                        metasync=self.sync,
                        lock=True,
                    )
                    self._members = self._env.open_db(b"members")
                    self._order = self._env.open_db(b"order")
                    self._pid = os.getpid()
                env = self._env
        return env, self._members, self._order

    def read(self, fn: Callable[[lmdb.Transaction[bytes], Any, Any], T]) -> T:
        """Run ``fn(txn, members, order)`` in a read transaction."""
        for _ in range(_ATTEMPTS):
            env, members, order = self.env()
            try:
                with env.begin() as txn:
                    return fn(txn, members, order)
            except lmdb.MapResizedError:
                with self._lock:
                    env.set_mapsize(0)  # another process grew the map: adopt it
        raise StorageUnavailableError(f"the leaderboards of {self.path} kept resizing")

    def write(self, fn: Callable[[lmdb.Transaction[bytes], Any, Any], T]) -> T:
        """Run ``fn(txn, members, order)`` in one write transaction; grow the map if full."""
        with self._lock:
            for _ in range(_ATTEMPTS):
                env, members, order = self.env()
                try:
                    with env.begin(write=True) as txn:
                        return fn(txn, members, order)
                except lmdb.MapFullError:
                    env.set_mapsize(env.info()["map_size"] * 2)
                except lmdb.MapResizedError:
                    env.set_mapsize(0)
        raise StorageFullError(f"the leaderboards of {self.path} could not grow their map")

    def close(self) -> None:
        """Close the environment (if this process opened it). Idempotent."""
        with self._lock:
            self.closed = True
            if self._env is not None and self._pid == os.getpid():
                self._env.close()
            self._env = None


_envs: dict[str, LeaderboardEnv] = {}
_envs_lock = threading.Lock()


def leaderboard_env(store_path: str, *, sync: bool, user: object) -> LeaderboardEnv:
    """The leaderboards' environment of the store at ``store_path``, one per process.

    It lives in ``<store_path>/leaderboards`` (two file descriptors and a map), shared by
    every storage of this process opening that store, and stays open until the last
    ``user`` (a storage) gives it back with :func:`release_leaderboards`.
    """
    with _envs_lock:
        env = _envs.get(store_path)
        if env is None or env.closed:
            env = _envs[store_path] = LeaderboardEnv(
                os.path.join(store_path, "leaderboards"), sync=sync
            )
        env.users.add(user)
        return env


def release_leaderboards(store_path: str, user: object) -> None:
    """``user`` (a closing storage) is done with the leaderboards of ``store_path``.

    The environment closes with its last user; leaderboards taken from it then raise
    :class:`~swr.storage.errors.StorageUnavailableError`. Idempotent.
    """
    with _envs_lock:
        env = _envs.get(store_path)
        if env is None or user not in env.users:
            return
        env.users.discard(user)
        if not env.users:
            del _envs[store_path]
            env.close()


class LMDBLeaderboard:
    """A leaderboard in an LMDB store, shared by the processes opening its directory.

    Made by :meth:`LMDBStorage.leaderboard <swr.storage.LMDBStorage.leaderboard>`. The
    API and its Redis semantics are those of :mod:`swr.storage.leaderboard`; the costs
    are in this module's docstring.

    Args:
        env: The store's leaderboard environment.
        name: The leaderboard's name.
        max_size: Most members kept; adding beyond it drops the lowest scores.
    """

    def __init__(self, env: LeaderboardEnv, name: str, *, max_size: int | None = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a leaderboard name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError("a leaderboard name must not be empty")
        raw = name.encode()
        if len(raw) > 200:
            raise ValueError(f"leaderboard name {name!r} is longer than 200 UTF-8 bytes")
        self.name = name
        self.max_size = check_max_size(max_size)
        self._env = env
        self._prefix = len(raw).to_bytes(2, "big") + raw
        self._end = self._prefix + b"\xff" * 9  # after every order key of this board

    def _after(self, score: float) -> bytes:
        """The smallest order key after every member scoring ``score``."""
        (bits,) = _U64.unpack(_encode(score))
        return self._prefix + (_U64.pack(bits + 1) if bits < _ALL else b"\xff" * 9)

    def __repr__(self) -> str:
        return f"LMDBLeaderboard({self.name!r})"

    def _member_key(self, member: str) -> bytes:
        key = self._prefix + member.encode()
        if len(key) + 8 > 511:
            raise ValueError(f"leaderboard member {member!r} is too long for LMDB's keys")
        return key

    # -- writes ---------------------------------------------------------------------

    def _size(self, txn: lmdb.Transaction[bytes], members: Any) -> int:
        raw = txn.get(self._prefix, db=members)
        return _SIZE.unpack(raw)[0] if raw is not None else 0

    def _put(
        self, txn: lmdb.Transaction[bytes], members: Any, order: Any, member: str, score: float
    ) -> bool:
        """Set one member's score; return whether it was new."""
        mkey = self._member_key(member)
        encoded = _encode(score)
        old = txn.get(mkey, db=members)
        if old == encoded:
            return False
        if old is not None:
            txn.delete(self._prefix + old + member.encode(), db=order)
        txn.put(mkey, encoded, db=members)
        txn.put(self._prefix + encoded + member.encode(), b"", db=order)
        return old is None

    def _drop(self, txn: lmdb.Transaction[bytes], members: Any, order: Any, okey: bytes) -> None:
        """Remove the member of the order key ``okey``."""
        txn.delete(okey, db=order)
        txn.delete(self._prefix + okey[len(self._prefix) + 8 :], db=members)

    def _resize(self, txn: lmdb.Transaction[bytes], members: Any, order: Any, size: int) -> None:
        """Store ``size``, first trimming the lowest members beyond ``max_size``."""
        most = self.max_size
        if most is not None and size > most:
            cursor = txn.cursor(db=order)
            while size > most and cursor.set_range(self._prefix):
                self._drop(txn, members, order, cursor.key())
                size -= 1
        txn.put(self._prefix, _SIZE.pack(size), db=members)

    def add(self, members: Mapping[str, float]) -> int:
        """Set the scores of ``members`` (one transaction); return how many were new."""
        scores = check_scores(members)

        def body(txn: lmdb.Transaction[bytes], mdb: Any, odb: Any) -> int:
            added = sum(self._put(txn, mdb, odb, m, s) for m, s in scores.items())
            self._resize(txn, mdb, odb, self._size(txn, mdb) + added)
            return added

        return self._env.write(body)

    def incr_by(self, member: str, delta: float) -> float:
        """Add ``delta`` to the score of ``member`` (created at 0); return the new score."""
        check_member(member)
        step = check_score(delta, "delta")

        def body(txn: lmdb.Transaction[bytes], mdb: Any, odb: Any) -> float:
            old = txn.get(self._member_key(member), db=mdb)
            score = (0.0 if old is None else _decode(old)) + step
            if math.isnan(score):
                raise ValueError(f"incr_by({member!r}, {delta}) would make the score NaN")
            added = self._put(txn, mdb, odb, member, score)
            self._resize(txn, mdb, odb, self._size(txn, mdb) + added)
            return score

        return self._env.write(body)

    def remove(self, members: Iterable[str]) -> int:
        """Remove ``members``; return how many were there."""
        names = check_members(members)

        def body(txn: lmdb.Transaction[bytes], mdb: Any, odb: Any) -> int:
            removed = 0
            for member in names:
                old = txn.pop(self._member_key(member), db=mdb)
                if old is not None:
                    txn.delete(self._prefix + old + member.encode(), db=odb)
                    removed += 1
            if removed:
                txn.put(self._prefix, _SIZE.pack(self._size(txn, mdb) - removed), db=mdb)
            return removed

        return self._env.write(body)

    def _remove_keys(self, pick: Callable[[lmdb.Transaction[bytes], Any, Any], list[bytes]]) -> int:
        def body(txn: lmdb.Transaction[bytes], mdb: Any, odb: Any) -> int:
            doomed = pick(txn, mdb, odb)
            for okey in doomed:
                self._drop(txn, mdb, odb, okey)
            if doomed:
                txn.put(self._prefix, _SIZE.pack(self._size(txn, mdb) - len(doomed)), db=mdb)
            return len(doomed)

        return self._env.write(body)

    def remove_range_by_rank(self, start: int, stop: int) -> int:
        """Remove the members ranked ``start`` to ``stop`` (ascending, inclusive)."""
        rank_slice(start, stop, 0)  # type checks
        return self._remove_keys(
            lambda txn, mdb, odb: [
                k for k, _ in self._ranked(txn, mdb, odb, start, stop, desc=False)
            ]
        )

    def remove_range_by_score(self, min: float, max: float) -> int:
        """Remove the members with ``min <= score <= max``."""
        low, high = check_score(min, "min"), check_score(max, "max")
        return self._remove_keys(lambda txn, mdb, odb: list(self._by_score(txn, odb, low, high)))

    def clear(self) -> None:
        """Remove every member."""
        self._remove_keys(lambda txn, mdb, odb: list(self._by_score(txn, odb, -math.inf, math.inf)))

    # -- reads ----------------------------------------------------------------------

    def score(self, member: str) -> float | None:
        """The score of ``member``, or ``None`` if absent."""
        key = self._member_key(check_member(member))

        def body(txn: lmdb.Transaction[bytes], mdb: Any, odb: Any) -> float | None:
            raw = txn.get(key, db=mdb)
            return None if raw is None else _decode(raw)

        return self._env.read(body)

    def size(self) -> int:
        """How many members the leaderboard holds."""
        return self._env.read(lambda txn, mdb, odb: self._size(txn, mdb))

    def _keys_from_start(self, cursor: Any) -> Iterator[bytes]:
        prefix = self._prefix
        if cursor.set_range(prefix):
            for key in cursor.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    return
                yield key

    def _keys_from_end(self, cursor: Any) -> Iterator[bytes]:
        prefix = self._prefix
        found = cursor.set_range(self._end)
        if not (cursor.prev() if found else cursor.last()):
            return
        for key in cursor.iterprev(keys=True, values=False):
            if not key.startswith(prefix):
                return
            yield key

    def rank(self, member: str, *, desc: bool = False) -> int | None:
        """The 0-based rank of ``member`` (from the highest with ``desc``), or ``None``."""
        check_member(member)
        key = self._member_key(member)

        def body(txn: lmdb.Transaction[bytes], mdb: Any, odb: Any) -> int | None:
            encoded = txn.get(key, db=mdb)
            if encoded is None:
                return None
            target = self._prefix + encoded + member.encode()
            size = self._size(txn, mdb)
            cursor = txn.cursor(db=odb)
            low = next(self._keys_from_start(cursor), target)
            high = next(self._keys_from_end(cursor), target)
            at = len(self._prefix)
            mid = (_decode(low[at : at + 8]) + _decode(high[at : at + 8])) / 2
            if _decode(encoded) <= mid or math.isnan(mid):
                below = _position(self._keys_from_start(cursor), target)
            else:
                below = size - 1 - _position(self._keys_from_end(cursor), target)
            return size - 1 - below if desc else below

        return self._env.read(body)

    def _ranked(
        self,
        txn: lmdb.Transaction[bytes],
        mdb: Any,
        odb: Any,
        start: int,
        stop: int,
        *,
        desc: bool,
    ) -> list[tuple[bytes, int]]:
        bounds = rank_slice(start, stop, self._size(txn, mdb))
        if bounds is None:
            return []
        first, last = bounds
        cursor = txn.cursor(db=odb)
        keys = self._keys_from_end(cursor) if desc else self._keys_from_start(cursor)
        picked = []
        for index, okey in enumerate(keys):
            if index > last:
                break
            if index >= first:
                picked.append((okey, index))
        return picked

    def _member(self, okey: bytes) -> Member:
        at = len(self._prefix)
        return okey[at + 8 :].decode(), _decode(okey[at : at + 8])

    def range(self, start: int, stop: int, *, desc: bool = False) -> list[Member]:
        """Members ranked ``start`` to ``stop`` (inclusive, negatives from the end)."""
        rank_slice(start, stop, 0)  # type checks
        return self._env.read(
            lambda txn, mdb, odb: [
                self._member(k) for k, _ in self._ranked(txn, mdb, odb, start, stop, desc=desc)
            ]
        )

    def _by_score(
        self, txn: lmdb.Transaction[bytes], odb: Any, low: float, high: float, *, desc: bool = False
    ) -> Iterator[bytes]:
        prefix = self._prefix
        first, after = prefix + _encode(low), self._after(high)
        if first >= after:
            return
        cursor = txn.cursor(db=odb)
        if desc:
            found = cursor.set_range(after)
            if not (cursor.prev() if found else cursor.last()):
                return
            for key in cursor.iterprev(keys=True, values=False):
                if key < first or not key.startswith(prefix):
                    return
                yield key
        elif cursor.set_range(first):
            for key in cursor.iternext(keys=True, values=False):
                if key >= after:
                    return
                yield key

    def range_by_score(
        self,
        min: float,
        max: float,
        *,
        desc: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Member]:
        """Members with ``min <= score <= max``, lowest first (highest with ``desc``)."""
        low, high = check_score(min, "min"), check_score(max, "max")

        def body(txn: lmdb.Transaction[bytes], mdb: Any, odb: Any) -> list[Member]:
            out: list[Member] = []
            for index, okey in enumerate(self._by_score(txn, odb, low, high, desc=desc)):
                if limit is not None and len(out) >= limit:
                    break
                if index >= offset:
                    out.append(self._member(okey))
            return out

        return self._env.read(body)

    def count(self, min: float = -math.inf, max: float = math.inf) -> int:
        """How many members have ``min <= score <= max``."""
        low, high = check_score(min, "min"), check_score(max, "max")
        return self._env.read(
            lambda txn, mdb, odb: sum(1 for _ in self._by_score(txn, odb, low, high))
        )
