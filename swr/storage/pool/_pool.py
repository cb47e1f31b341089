"""MemoryPool: the shared capacity, registration of caches, and the expiry collector."""

from __future__ import annotations

import threading
import time as _time
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from swr.storage._clock import now
from swr.storage._log import logger
from swr.storage._validate import check_int, check_seconds
from swr.storage.base import Closeable
from swr.storage.errors import (
    CacheLimitsError,
    CacheNameError,
    PoolCapacityError,
    PoolConfigError,
    StorageUnavailableError,
)
from swr.storage.pool._cache import PoolCache
from swr.storage.pool._stats import PoolStats

__all__ = ["MemoryPool"]

# Most expired entries the background GC drops per hold of the pool's lock.
_GC_STEP = 256


class MemoryPool(Closeable):
    """Several typed in-process caches sharing one capacity, with priorities and mins.

    Example::

        with MemoryPool(capacity=10_000) as pool:
            users = pool.register("users", min=100, max=5_000, ttl=300, priority=10)
            sessions = pool.register("sessions", min=50, max=5_000, ttl=60, priority=5)
            users.set(1, user)
            pool.stats().used

    Args:
        capacity: Most entries held by all caches together.
        gc_interval: Seconds between background passes dropping expired entries (a
            daemon thread, stopped by :meth:`close`); ``None`` for no thread (expired
            entries then go when read, when room is needed, or on :meth:`collect`).
        clock: Zero-argument callable returning epoch seconds, judging every ttl and
            ``Entry.expires_at``. Default ``time.time``, looked up at each call (so
            freezegun works). Give it the same clock as an engine using the pool.

    Raises:
        PoolConfigError: ``capacity`` < 1 or ``gc_interval`` <= 0 (a ``ValueError``).
        TypeError: a setting has the wrong type.

    Thread-safe; a context manager closing the pool on exit.
    """

    def __init__(
        self,
        capacity: int,
        gc_interval: float | None = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        capacity = check_int("capacity", capacity)
        if capacity < 1:
            raise PoolConfigError(f"capacity must be >= 1 entry, got {capacity}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        interval = (
            None
            if gc_interval is None
            else check_seconds("gc_interval", gc_interval, timedeltas=True, error=PoolConfigError)
        )
        self.capacity = capacity
        self.gc_interval = interval
        self._clock = clock
        self._own_clock = clock
        self._lock = threading.Lock()
        self._used = 0
        self._caches: dict[str, PoolCache[Any, Any]] = {}
        # Caches grouped by priority, lowest first, each group in registration order.
        self._groups: list[list[PoolCache[Any, Any]]] = []
        self._closed = False
        self._gc_stop = threading.Event()
        self._gc_thread: threading.Thread | None = None
        if interval is not None:
            # The thread holds only a weak reference, so a pool nobody closed can still
            # be garbage collected (its thread then ends at its next wake-up).
            self._gc_thread = threading.Thread(
                target=_gc_loop,
                args=(weakref.ref(self), self._gc_stop, interval),
                name="swr-pool-gc",
                daemon=True,
            )
            self._gc_thread.start()

    def _adopt_clock(self, clock: Callable[[], float] | None) -> Callable[[], float] | None:
        """Judge every ttl with ``clock`` (an engine's) unless one was given; return that one.

        The pool's sweep and every cache then use it, so that nothing is dropped before
        the engine judges it dead.
        """
        with self._lock:
            if self._own_clock is None:
                self._clock = clock
                for cache in self._caches.values():
                    cache._clock = clock
                    cache._now_read = _time.time if clock is None else clock
        return self._own_clock

    def _now(self) -> float:
        return now(self._clock)

    def register(
        self,
        name: str,
        *,
        min: int = 0,
        max: int | None = None,
        ttl: float | timedelta | None = None,
        priority: int = 0,
    ) -> PoolCache[Any, Any]:
        """Create a cache in this pool and return it.

        Annotate the result to type it: ``users: PoolCache[int, User] = pool.register(...)``.

        Args:
            name: Non-empty, unique within the pool.
            min: Entries guaranteed to this cache: other caches' writes never push it
                below (its own writes, deletes and expiry may).
            max: Most entries it holds; ``None``: whatever the other caches' mins leave.
            ttl: Seconds (or a timedelta) an entry lives after it is written; ``None``:
                until evicted (an :class:`~swr.storage.Entry` value still ends at its
                ``expires_at``).
            priority: When the pool is full, caches of lower priority give up entries
                (above their min) first.

        Returns:
            The new :class:`PoolCache`.

        Raises:
            CacheNameError: ``name`` is empty or already registered.
            CacheLimitsError: not ``0 <= min <= max``, or ``ttl`` <= 0.
            PoolCapacityError: the mins would add up to more than the capacity, or a
                cache's max (this one's, or one registered before) would exceed the
                capacity minus the other caches' mins.
            TypeError: a setting has the wrong type.
            StorageUnavailableError: the pool was closed.
        """
        if not isinstance(name, str):
            raise TypeError(f"cache name must be a str, got {type(name).__name__}: {name!r}")
        if not name:
            raise CacheNameError("cache name must not be empty")
        low = check_int("min", min)
        high = None if max is None else check_int("max", max)
        if low < 0:
            raise CacheLimitsError(f"cache {name!r}: min must be >= 0, got min={low}")
        if high is not None and high < low:
            raise CacheLimitsError(f"cache {name!r}: min must be <= max, got min={low}, max={high}")
        seconds = (
            None
            if ttl is None
            else check_seconds("ttl", ttl, timedeltas=True, error=CacheLimitsError)
        )
        rank = check_int("priority", priority)
        with self._lock:
            if self._closed:
                raise StorageUnavailableError("the MemoryPool is closed")
            if name in self._caches:
                raise CacheNameError(f"a cache named {name!r} is already registered")
            self._check_fits(name, low, high)
            cache: PoolCache[Any, Any] = PoolCache(self, name, low, high, seconds, rank)
            self._caches[name] = cache
            self._rearrange()
        return cache

    def _check_fits(self, name: str, low: int, high: int | None) -> None:
        """Raise unless ``name``'s min and max fit beside the registered caches."""
        capacity = self.capacity
        mins = sum(cache.min for cache in self._caches.values())
        if mins + low > capacity:
            raise PoolCapacityError(
                f"cache {name!r}: the sum of all mins must be <= capacity: "
                f"{mins} (other caches) + {low} (min) = {mins + low} > {capacity}"
            )
        if high is not None and high > capacity - mins:
            raise PoolCapacityError(
                f"cache {name!r}: max must be <= capacity - the other caches' mins: "
                f"max={high} > {capacity} - {mins} = {capacity - mins}"
            )
        # The rule holds for every cache at all times, so a new min must leave each
        # earlier cache room for its own max too.
        for other in self._caches.values():
            if other.max is None:
                continue
            left = capacity - (mins - other.min + low)
            if other.max > left:
                raise PoolCapacityError(
                    f"cache {name!r}: min={low} would leave cache {other.name!r} less than "
                    f"its max: max={other.max} > {capacity} - {mins - other.min + low} "
                    f"(the other caches' mins) = {left}"
                )

    def _rearrange(self) -> None:
        """Recompute priority groups and effective maxes; trim caches now over theirs."""
        caches = list(self._caches.values())
        ranks = sorted({cache.priority for cache in caches})
        self._groups = [[c for c in caches if c.priority == rank] for rank in ranks]
        mins = sum(cache.min for cache in caches)
        now: float | None = None
        for cache in caches:
            if cache.max is not None:
                cache._limit = cache.max
            else:
                cache._limit = self.capacity - (mins - cache.min)
            while len(cache._data) > cache._limit:
                if now is None:
                    now = self._now()
                cache._make_own_room(now)

    def _unregister(self, cache: PoolCache[Any, Any]) -> None:
        """Forget a closed cache; the lock is held."""
        if self._caches.get(cache.name) is cache:
            del self._caches[cache.name]
            self._rearrange()

    def collect(self, limit: int | None = None) -> int:
        """Drop expired entries of every cache now; return how many were dropped.

        Works in steps of a few hundred entries, releasing the lock in between so
        writers are not held up. The background thread calls this every
        ``gc_interval`` seconds. A closed pool has nothing to collect.

        Args:
            limit: Most entries to drop; ``None`` for all that are expired.
        """
        removed = 0
        while True:
            budget = _GC_STEP if limit is None else min(_GC_STEP, limit - removed)
            if budget <= 0:
                return removed
            dropped = 0
            with self._lock:
                now = self._now()
                for cache in self._caches.values():
                    while dropped < budget and cache._drop_first_expired(now):
                        dropped += 1
            removed += dropped
            if dropped < budget:
                return removed

    def stats(self) -> PoolStats:
        """Return ``used``, ``capacity`` and every cache's stats, taken atomically."""
        with self._lock:
            return PoolStats(
                used=self._used,
                capacity=self.capacity,
                caches={name: cache._stats_locked() for name, cache in self._caches.items()},
            )

    def close(self, timeout: float = 5.0) -> None:
        """Stop the GC thread (waiting up to ``timeout`` s) and close every cache.

        Later calls on the pool's caches, and ``register``, raise
        :class:`~swr.storage.errors.StorageUnavailableError`. Idempotent.
        """
        self._gc_stop.set()
        thread = self._gc_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            self._closed = True
            caches = list(self._caches.values())
        for cache in caches:
            cache.close()

    def __repr__(self) -> str:
        return (
            f"MemoryPool(capacity={self.capacity}, used={self._used}, caches={list(self._caches)})"
        )


def _gc_loop(pool_ref: weakref.ref[MemoryPool], stop: threading.Event, interval: float) -> None:
    """Body of the GC thread: collect every ``interval`` seconds until stopped."""
    while not stop.wait(interval):
        pool = pool_ref()
        if pool is None:
            return
        try:
            pool.collect()
        except Exception as exc:  # noqa: BLE001 - a key's __eq__ may raise; keep going
            logger.warning("pool_gc_failed", error=repr(exc))
        del pool
