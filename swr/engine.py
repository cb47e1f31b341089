"""StaleEngine and AsyncStaleEngine: serve from cache, refresh in the background.

Both engines share :class:`_EngineBase`, which holds the configuration, counters,
TTL and backoff rules and every decision that needs no I/O (most of it in
``swr._core``). Each shell only performs I/O in its own way: the sync engine with
threads (``threading.Event`` for singleflight, worker threads for refreshes), the
async engine with tasks (a shared task per key, worker tasks for refreshes).

One call of ``execute(key, fetch)``:

1. read the entry (a storage error reads as a miss, counted and logged);
2. by its windows: HIT -> return; STALE -> return and queue one refresh of the key;
   EXPIRED or MISS -> join the key's singleflight and wait for its fetch;
3. the singleflight leader takes a circuit breaker permit (when the engine has a
   breaker), then the storage's lease when it has leases (several processes or hosts
   then fetch once between them), fetches, stores, and wakes the others; a failed or
   refused fetch serves the old value as FALLBACK when there is one.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
import time as _time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from swr import _core
from swr._cached import AsyncCachedFunction, CachedFunction
from swr._log import logger
from swr.breaker import CircuitBreaker, Permit
from swr.errors import CircuitOpenError, ConfigError, FetchAbortedError, FetchTimeoutError
from swr.policy import CacheTTL, Result, Status, TTLSpec
from swr.refresh import Submit, TaskRefresher, ThreadRefresher
from swr.stats import Counter, EngineStats
from swr.storage import AsyncAdapter, AsyncLeases, Entry, Leases, MemoryStorage
from swr.storage.adapters import as_async, has_async_leases
from swr.storage.base import AsyncCloseable, Closeable

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    from swr.metrics import MetricsHook
    from swr.storage import AsyncStorage, Storage
    from swr.storage.serializers import Serializer

    P = ParamSpec("P")

__all__ = ["AsyncStaleEngine", "StaleEngine"]

T = TypeVar("T")

_CachedEntry = _core.CachedEntry
_HIT = Status.HIT
_STALE = Status.STALE
_EXPIRED = Status.EXPIRED
_MISS = Status.MISS
_FALLBACK = Status.FALLBACK

DEFAULT_TTL = CacheTTL(fresh=60, stale=300, expired=3600)

# Polling a lease held by another process: first delay, growth factor, largest delay.
_POLL_FIRST = 0.005
_POLL_GROWTH = 2.0
_POLL_MAX = 0.1


class _RefreshNotNeeded(Exception):
    """Another process is refreshing the key, or already did: skip this refresh."""


def _bind_serializer(storage: Any, serializer: Serializer | None) -> Any:
    if serializer is None:
        return storage
    with_serializer = getattr(storage, "with_serializer", None)
    if with_serializer is None:
        raise ConfigError(
            f"{type(storage).__name__} keeps values as Python objects and takes no "
            "serializer; serializers apply to byte storages such as LMDBStorage and "
            "RedisStorage"
        )
    return with_serializer(serializer)


def _bind_entries(storage: Any) -> Any:
    """A view of a byte storage that decodes into entries able to remember their results.

    Byte storages that keep decoded entries offer ``with_entry_factory``; their hits
    then reach the same allocation-free return as memory hits.
    """
    with_entry_factory = getattr(storage, "with_entry_factory", None)
    if with_entry_factory is None:
        return storage
    return with_entry_factory(_core.CachedEntry)


class _EngineBase:
    """Configuration, counters and I/O-free decisions shared by both engines."""

    # Provided by each shell: its executor and its refresh job.
    _refresher: ThreadRefresher | TaskRefresher
    _refresh: Callable[..., Any]

    def __init__(
        self,
        storage: Any,
        ttl: TTLSpec | None,
        namespace: str,
        max_concurrent_refreshes: int,
        refresh_timeout: float,
        clock: Callable[[], float] | None,
        name: str | None,
        metrics: MetricsHook | None,
        refresh_queue_size: int,
        backoff_initial: float,
        backoff_max: float,
        close_timeout: float,
        breaker: CircuitBreaker | None,
    ) -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {type(namespace).__name__}")
        if isinstance(max_concurrent_refreshes, bool) or not isinstance(
            max_concurrent_refreshes, int
        ):
            raise TypeError("max_concurrent_refreshes must be an int")
        if max_concurrent_refreshes < 1:
            raise ConfigError(
                f"max_concurrent_refreshes must be >= 1, got {max_concurrent_refreshes}"
            )
        if isinstance(refresh_queue_size, bool) or not isinstance(refresh_queue_size, int):
            raise TypeError("refresh_queue_size must be an int")
        if refresh_queue_size < 0:
            raise ConfigError(f"refresh_queue_size must be >= 0, got {refresh_queue_size}")
        for field, value in (
            ("refresh_timeout", refresh_timeout),
            ("close_timeout", close_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{field} must be seconds as a number")
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{field} must be a finite number of seconds > 0, got {value}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument callable returning epoch seconds")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a CircuitBreaker, got {type(breaker).__name__}")
        self._breaker = breaker
        self._ttl: TTLSpec = _core.validate_ttl_spec(ttl if ttl is not None else DEFAULT_TTL)
        self._prefix = f"{namespace}:" if namespace else ""
        self.namespace = namespace
        self.name = name or namespace or "swr"
        self._clock = clock
        self._metrics = metrics
        self._refresh_timeout = float(refresh_timeout)
        self._lease_ttl = max(float(refresh_timeout), 0.1)
        self._close_timeout = float(close_timeout)
        self._backoff = _core.Backoff(backoff_initial, backoff_max)
        self._backoff_lock = threading.Lock()
        self._storage = storage
        self._closed = False

        c = self._counters = {
            name: Counter()
            for name in (
                "hits",
                "stale",
                "expired",
                "misses",
                "fallbacks",
                "refreshes_started",
                "refreshes_succeeded",
                "refreshes_failed",
                "refreshes_timed_out",
                "refreshes_dropped",
                "refreshes_skipped",
                "fetch_errors",
                "storage_read_errors",
                "storage_write_errors",
                "circuit_rejected",
            )
        }
        # Bound increments for the hot path: one C call each, no attribute chains.
        self._count_hit = c["hits"].incr
        self._count_stale = c["stale"].incr
        self._count: dict[Status, Counter] = {
            _HIT: c["hits"],
            _STALE: c["stale"],
            _EXPIRED: c["expired"],
            _MISS: c["misses"],
            _FALLBACK: c["fallbacks"],
        }

    # -- small helpers -------------------------------------------------------------

    def _now(self) -> float:
        clock = self._clock
        return clock() if clock is not None else _time.time()

    def _skey(self, key: object) -> str:
        return self._prefix + _core.check_key(key)

    def _user_key(self, skey: str) -> str:
        return skey[len(self._prefix) :]

    def _new_entry(self, key: str, value: Any, ttl: TTLSpec | None) -> Entry:
        spec = self._ttl if ttl is None else ttl
        return _core.make_entry(value, _core.resolve_ttl(spec, key, value), self._now())

    def _answered(self, status: Status) -> None:
        self._count[status].incr()
        metrics = self._metrics
        if metrics is not None:
            metrics.record_status(self.name, status)

    def _refresh_event(self, counter: str, outcome: str) -> None:
        self._counters[counter].incr()
        metrics = self._metrics
        if metrics is not None:
            metrics.record_refresh(self.name, outcome)

    def _error_event(self, counter: str, kind: str) -> None:
        self._counters[counter].incr()
        metrics = self._metrics
        if metrics is not None:
            metrics.record_error(self.name, kind)

    def _read_failed(self, skey: str, exc: Exception) -> None:
        self._error_event("storage_read_errors", "storage_read")
        logger.warning("storage_read_failed", engine=self.name, key=skey, error=repr(exc))

    def _write_failed(self, skey: str, exc: Exception) -> None:
        self._error_event("storage_write_errors", "storage_write")
        logger.warning("storage_write_failed", engine=self.name, key=skey, error=repr(exc))

    def _lease_failed(self, skey: str, exc: Exception) -> None:
        self._error_event("storage_read_errors", "storage_read")
        logger.warning("lease_failed", engine=self.name, key=skey, error=repr(exc))

    def _fetch_failed(self, skey: str, exc: BaseException) -> None:
        """Count and log one failed upstream fetch (once per fetch, not per waiter)."""
        self._error_event("fetch_errors", "fetch")
        logger.warning(
            "fetch_failed",
            engine=self.name,
            key=skey,
            error=repr(exc),
            timed_out=isinstance(exc, FetchTimeoutError),
        )

    def _answer_failure(
        self, skey: str, exc: BaseException, entry: Entry | None, leader: bool
    ) -> Result[Any]:
        """Serve ``entry`` as FALLBACK after a failed fetch, or raise the fetch's error."""
        if not isinstance(exc, Exception):
            if leader:
                raise exc  # KeyboardInterrupt and friends belong to the thread they hit
            exc = FetchAbortedError(f"the shared fetch of {skey!r} was interrupted: {exc!r}")
        if entry is not None:
            self._answered(_FALLBACK)
            return Result(entry.value, _FALLBACK, entry.stored_at, self._clock)
        self._answered(_MISS)
        raise exc

    def _peek_result(self, entry: Entry | None) -> Result[Any] | None:
        """The answer of ``get``: the entry's window now, or ``None`` if it is dead."""
        if entry is None:
            return None
        status = _core.classify(entry, self._now())
        if status is _MISS:
            return None
        return Result(entry.value, status, entry.stored_at, self._clock)

    def _live(self, entry: Entry | None) -> Entry | None:
        """``entry`` if it is still within its lifetime (a usable fallback), else None."""
        if entry is not None and self._now() >= entry.expires_at:
            return None
        return entry

    def _seen(self, entry: Entry | None, force_refresh: bool) -> float:
        """The ``stored_at`` after which another process's result can replace our fetch.

        A forced refresh only accepts values fetched after the call began.
        """
        if force_refresh:
            return self._now()
        return entry.stored_at if entry is not None else -math.inf

    def _answer_fetched(self, entry: Entry, had_entry: bool) -> Result[Any]:
        status = _EXPIRED if had_entry else _MISS
        self._answered(status)
        return Result(entry.value, status, entry.stored_at, self._clock)

    def _refresh_allowed(self, skey: str, now: float) -> bool:
        """Whether the key's backoff lets a refresh start now (counted when not)."""
        if self._backoff and not self._backoff.allows(skey, now):
            self._refresh_event("refreshes_skipped", "skipped")
            return False
        return True

    def _serve_stale(
        self, key: str, skey: str, fetch: Any, ttl: TTLSpec | None, entry: Entry, now: float
    ) -> Result[Any]:
        """Answer from a stale entry and start (at most) one background refresh.

        With a circuit breaker that refuses calls, nothing is refreshed and the entry is
        served as FALLBACK instead.
        """
        breaker = self._breaker
        if breaker is not None and breaker.is_open():
            return self._refused(entry)
        refresher = self._refresher
        if skey not in refresher.pending and self._refresh_allowed(skey, now):
            permit: Permit | None = None
            if breaker is not None:
                permit = breaker.acquire()
                if permit is None:  # half-open and every trial slot taken
                    return self._refused(entry)
            outcome = refresher.submit(
                skey, self._refresh, (key, skey, fetch, ttl, entry.stored_at, permit)
            )
            if outcome is not Submit.ACCEPTED and permit is not None:
                breaker.release(permit)  # type: ignore[union-attr]  # set with the permit
            if outcome is Submit.DROPPED:
                self._refresh_event("refreshes_dropped", "dropped")
                logger.debug("refresh_dropped", engine=self.name, key=skey)
        self._count_stale()
        if self._metrics is not None:
            self._metrics.record_status(self.name, _STALE)
        if type(entry) is _CachedEntry:
            result = entry.stale
            if result is None:
                result = entry.stale = Result(entry.value, _STALE, entry.stored_at, self._clock)
            return result
        return Result(entry.value, _STALE, entry.stored_at, self._clock)

    def _refused(self, entry: Entry) -> Result[Any]:
        """The circuit refused a refresh: serve the cached entry as FALLBACK."""
        self._counters["circuit_rejected"].incr()
        self._answered(_FALLBACK)
        return Result(entry.value, _FALLBACK, entry.stored_at, self._clock)

    def _take_permit(self, permit: Permit | None, background: bool) -> Permit | None:
        """The breaker permit for a fetch: the refresh's own, or a new foreground one.

        Raises:
            CircuitOpenError: the breaker refuses a foreground fetch.
            _RefreshNotNeeded: the breaker opened while the refresh waited in the queue.
        """
        breaker = self._breaker
        if breaker is None:
            return None
        if background:
            if permit is not None and breaker.is_open():
                breaker.release(permit)
                self._counters["circuit_rejected"].incr()
                raise _RefreshNotNeeded
            return permit
        permit = breaker.acquire()
        if permit is None:
            self._counters["circuit_rejected"].incr()
            raise breaker.refusal()
        return permit

    def _fetch_outcome(self, permit: Permit | None, error: BaseException | None) -> None:
        """Report a fetch's outcome to the breaker (``None`` error = success)."""
        if permit is not None:
            self._breaker.record(permit, error)  # type: ignore[union-attr]  # permit => breaker

    def _release_permit(self, permit: Permit | None) -> None:
        if permit is not None:
            self._breaker.release(permit)  # type: ignore[union-attr]  # permit => breaker

    def _refresh_started(self) -> None:
        self._refresh_event("refreshes_started", "started")

    def _refresh_succeeded(self, skey: str) -> None:
        if self._backoff:
            with self._backoff_lock:
                self._backoff.succeeded(skey)
        self._refresh_event("refreshes_succeeded", "succeeded")

    def _refresh_failed(self, skey: str, exc: BaseException) -> None:
        with self._backoff_lock:
            retry_at = self._backoff.failed(skey, self._now())
            failures = self._backoff.failures(skey)
        timed_out = isinstance(exc, FetchTimeoutError)
        if timed_out:
            self._refresh_event("refreshes_timed_out", "timed_out")
        self._refresh_event("refreshes_failed", "failed")
        logger.warning(
            "refresh_timed_out" if timed_out else "refresh_failed",
            engine=self.name,
            key=skey,
            error=repr(exc),
            failures=failures,
            retry_in=round(retry_at - self._now(), 3),
        )

    def _stats(self, running: int, queued: int, storage: Any) -> EngineStats:
        values = {name: counter.value for name, counter in self._counters.items()}
        storage_stats = getattr(storage, "stats", None)
        extra: dict[str, Any] = {}
        if callable(storage_stats):
            try:
                extra = dict(storage_stats())
            except Exception as exc:  # noqa: BLE001 - stats must never fail
                extra = {"error": repr(exc)}
        breaker = self._breaker
        return EngineStats(
            **values,
            refreshes_in_flight=running,
            refreshes_queued=queued,
            storage=extra,
            circuit=breaker.stats() if breaker is not None else {},
        )


class _Flight:
    """One in-process fetch shared by every thread asking for the same key."""

    __slots__ = ("done", "entry", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: Entry | None = None
        self.error: BaseException | None = None


class StaleEngine(_EngineBase, Closeable):
    """A stale-while-revalidate cache in front of slow or flaky calls (threads).

    Example::

        engine = StaleEngine(ttl=CacheTTL(fresh=60, stale=300, expired=3600))
        result = engine.execute("user:1", lambda: load_user(1))
        result.value, result.status, result.age

    Args:
        storage: Where entries live; ``None`` creates a :class:`~storage.MemoryStorage`
            (owned and closed by the engine, sharing its clock).
        ttl: Default windows: a :class:`~swr.CacheTTL` or ``(key, value) -> CacheTTL``.
        namespace: Prefix (``namespace + ":"``) of every key this engine writes.
        serializer: Serializer for byte storages (passed to ``storage.with_serializer``);
            memory storages keep objects and refuse one.
        max_concurrent_refreshes: Most background refreshes running at once.
        refresh_timeout: Seconds after which a fetch counts as failed: a background
            refresh's late result is dropped, and callers waiting on another thread's
            fetch stop waiting (serving the fallback or raising ``FetchTimeoutError``).
            A fetch running in the caller's own thread cannot be interrupted.
        clock: Zero-argument callable returning epoch seconds; default ``time.time``
            looked up at each call (freezegun works).
        name: Engine name for logs and metrics labels; default the namespace or "swr".
        metrics: Optional :class:`~swr.metrics.MetricsHook`.
        refresh_queue_size: Most refreshes waiting for a worker; more are dropped.
        backoff_initial: Seconds a key waits before its next refresh after one failure;
            doubles with each further failure, up to ``backoff_max``.
        backoff_max: Largest wait between refreshes of a failing key, in seconds.
        close_timeout: Seconds ``close()`` waits for running refreshes.
        breaker: Optional :class:`~swr.CircuitBreaker` guarding ``fetch``: while it is
            open nothing is fetched, stale and expired entries are served as FALLBACK
            and a miss raises :class:`~swr.CircuitOpenError`. May be shared by engines.

    Raises:
        ConfigError: a setting is out of range (a ``ValueError``).
        TypeError: a setting has the wrong type.

    Thread-safe: one engine serves every thread of a process.
    """

    _refresher: ThreadRefresher

    def __init__(
        self,
        storage: Storage | None = None,
        ttl: TTLSpec | None = None,
        namespace: str = "",
        serializer: Serializer | None = None,
        max_concurrent_refreshes: int = 16,
        refresh_timeout: float = 10.0,
        clock: Callable[[], float] | None = None,
        *,
        name: str | None = None,
        metrics: MetricsHook | None = None,
        refresh_queue_size: int = 1024,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        close_timeout: float = 5.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        owns = storage is None
        store: Any = MemoryStorage(clock=clock) if storage is None else storage
        if inspect.iscoroutinefunction(getattr(store, "get", None)):
            raise ConfigError(
                f"{type(store).__name__} is an asyncio storage; use AsyncStaleEngine with it"
            )
        store = _bind_entries(_bind_serializer(store, serializer))
        super().__init__(
            store,
            ttl,
            namespace,
            max_concurrent_refreshes,
            refresh_timeout,
            clock,
            name,
            metrics,
            refresh_queue_size,
            backoff_initial,
            backoff_max,
            close_timeout,
            breaker,
        )
        self._owns_storage = owns
        self._get = store.get
        # Hit path: a memory storage's dict methods when offered (no expiry check
        # there: the window comparisons below cover it), else the storage's get.
        lookup_functions = getattr(store, "lookup_functions", None)
        self._lookup: Callable[[str], Entry | None]
        self._touch: Callable[[str], None] | None
        if callable(lookup_functions):
            self._lookup, self._touch = lookup_functions()
        else:
            self._lookup, self._touch = store.get, None
        self._leases: Leases | None = store if isinstance(store, Leases) else None
        self._flights: dict[str, _Flight] = {}
        self._flights_lock = threading.Lock()
        self._refresher = ThreadRefresher(
            max_concurrent_refreshes, refresh_queue_size, name=f"swr-refresh-{self.name}"
        )

    @property
    def storage(self) -> Storage:
        """The storage this engine reads and writes."""
        storage: Storage = self._storage
        return storage

    # -- the hot path --------------------------------------------------------------

    def execute(
        self,
        key: str,
        fetch: Callable[[], T],
        *,
        ttl: TTLSpec | None = None,
        force_refresh: bool = False,
    ) -> Result[T]:
        """Return the value of ``key`` from the cache, fetching it when needed.

        Args:
            key: Non-empty string; namespaced before it reaches the storage.
            fetch: Zero-argument callable returning the value; called in this thread
                on a miss, in a worker thread for background refreshes.
            ttl: Windows for the value fetched by this call; the engine's default
                otherwise.
            force_refresh: Skip the cache read and fetch (sharing the singleflight);
                if that fetch fails, a cached value is still served as FALLBACK.

        Returns:
            A :class:`~swr.Result` with the value, its status and its age.

        Raises:
            Exception: whatever ``fetch`` raised, unchanged, when nothing cached can be
                served instead. Never a storage error.
            FetchTimeoutError: this call waited on another thread's fetch for longer
                than ``refresh_timeout`` with nothing cached to serve.
            TypeError, ValueError: ``key`` is not a non-empty str.
        """
        if type(key) is not str or not key:
            _core.check_key(key)
        skey = self._prefix + key
        entry: Entry | None = None
        if not force_refresh:
            try:
                entry = self._lookup(skey)
                if entry is not None and self._touch is not None:
                    self._touch(skey)
            except KeyError:  # evicted between lookup and touch: the read still holds
                pass
            except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
                self._read_failed(skey, exc)
                entry = None
            if entry is not None:
                clock = self._clock
                now = clock() if clock is not None else _time.time()
                if now < entry.fresh_until:
                    self._count_hit()
                    if self._metrics is not None:
                        self._metrics.record_status(self.name, _HIT)
                    if type(entry) is _CachedEntry:
                        result = entry.hit
                        if result is None:  # the entry's first hit
                            result = entry.hit = Result(entry.value, _HIT, entry.stored_at, clock)
                        return result
                    return Result(entry.value, _HIT, entry.stored_at, clock)
                if now < entry.stale_until:
                    return self._serve_stale(key, skey, fetch, ttl, entry, now)
                if now >= entry.expires_at:
                    entry = None
        return self._load(key, skey, fetch, ttl, entry, force_refresh)

    # -- foreground fetches ----------------------------------------------------------

    def _load(
        self,
        key: str,
        skey: str,
        fetch: Callable[[], T],
        ttl: TTLSpec | None,
        entry: Entry | None,
        force_refresh: bool,
    ) -> Result[T]:
        with self._flights_lock:
            flight = self._flights.get(skey)
            leader = flight is None
            if flight is None:
                flight = self._flights[skey] = _Flight()
        if leader:
            seen = self._seen(entry, force_refresh)
            try:
                fresh = self._fetch_and_store(key, skey, fetch, ttl, seen)
            except BaseException as exc:  # noqa: BLE001 - waiters must learn of any end
                flight.error = exc
                if not isinstance(exc, CircuitOpenError):
                    self._fetch_failed(skey, exc)
                self._end_flight(skey, flight)
                return self._answer_failure(
                    skey, exc, self._fallback(skey, entry, force_refresh), leader=True
                )
            flight.entry = fresh
            self._end_flight(skey, flight)
        elif not flight.done.wait(self._refresh_timeout):
            timed_out = FetchTimeoutError(
                f"waited {self._refresh_timeout}s for the fetch of {skey!r} in another thread"
            )
            logger.warning("fetch_timed_out", engine=self.name, key=skey)
            return self._answer_failure(
                skey, timed_out, self._fallback(skey, entry, force_refresh), leader=False
            )
        elif flight.error is not None:
            return self._answer_failure(
                skey, flight.error, self._fallback(skey, entry, force_refresh), leader=False
            )
        assert flight.entry is not None  # noqa: S101 - set before done when no error
        return self._answer_fetched(flight.entry, entry is not None)

    def _end_flight(self, skey: str, flight: _Flight) -> None:
        with self._flights_lock:
            if self._flights.get(skey) is flight:
                del self._flights[skey]
        flight.done.set()

    def _fallback(self, skey: str, entry: Entry | None, force_refresh: bool) -> Entry | None:
        """The entry to serve after a failed fetch: the one read, or (forced) one read now."""
        if entry is None and force_refresh:
            return self._live(self._read_quiet(skey))
        return entry

    def _read_quiet(self, skey: str) -> Entry | None:
        try:
            entry: Entry | None = self._get(skey)
            return entry
        except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
            self._read_failed(skey, exc)
            return None

    def _write(self, skey: str, entry: Entry) -> None:
        try:
            self._storage.set(skey, entry)
        except Exception as exc:  # noqa: BLE001 - the value is returned all the same
            self._write_failed(skey, exc)

    def _fetch_and_store(
        self,
        key: str,
        skey: str,
        fetch: Callable[[], Any],
        ttl: TTLSpec | None,
        seen: float,
        *,
        background: bool = False,
        permit: Permit | None = None,
    ) -> Entry:
        """Fetch once across processes (lease), store and return the new entry.

        Args:
            key: The caller's key (given to a ttl callable).
            skey: The storage key.
            fetch: The upstream call.
            ttl: Windows for the new value, or ``None`` for the engine's default.
            seen: ``stored_at`` of the entry the caller saw (``-inf`` if none); an entry
                stored later by another lease holder is taken instead of fetching.
            background: A refresh: counted as started only once it really fetches, it
                raises ``_RefreshNotNeeded`` when another process holds the lease or
                already refreshed, and a result arriving after ``refresh_timeout`` is
                discarded with ``FetchTimeoutError``.
            permit: The circuit breaker's permit a refresh took when it was queued; a
                foreground fetch takes its own (``CircuitOpenError`` when refused).
        """
        permit = self._take_permit(permit, background)
        token: str | None = None
        reported = False
        try:
            if self._leases is not None:
                token, found = self._lease_or_result(skey, seen, wait=not background)
                if found is not None:
                    if background:
                        raise _RefreshNotNeeded
                    return found
            if background:
                self._refresh_started()
                late_after = _time.monotonic() + self._refresh_timeout
            try:
                value = fetch()
                if background and _time.monotonic() > late_after:
                    raise FetchTimeoutError(  # noqa: TRY301 - reported as the fetch's outcome
                        f"the refresh of {skey!r} took more than {self._refresh_timeout}s; "
                        "its result was discarded"
                    )
            except BaseException as exc:
                reported = True
                self._fetch_outcome(permit, exc)
                raise
            reported = True
            self._fetch_outcome(permit, None)
            entry = self._new_entry(key, value, ttl)
            self._write(skey, entry)
            return entry
        finally:
            if not reported:
                self._release_permit(permit)
            if token is not None:
                self._release_lease(skey, token)

    def _lease_or_result(
        self, skey: str, seen: float, wait: bool
    ) -> tuple[str | None, Entry | None]:
        """Take the key's lease, or find the entry another lease holder stored.

        Returns ``(token, None)`` to fetch under the lease, ``(None, entry)`` when another
        process fetched meanwhile, or ``(None, None)`` to fetch without a lease (leases
        failing, or the holder never delivered within a lease period).
        """
        leases = self._leases
        assert leases is not None  # noqa: S101 - only called when leases exist
        deadline = _time.monotonic() + self._lease_ttl
        delay = _POLL_FIRST
        while True:
            try:
                token = leases.acquire_lease(skey, self._lease_ttl)
            except Exception as exc:  # noqa: BLE001 - no lease: fetch without one
                self._lease_failed(skey, exc)
                return None, None
            # Re-read under the lease, or while another holds it: a result stored since
            # the caller's read is the one to use.
            entry = self._read_quiet(skey)
            if entry is not None and entry.stored_at > seen:
                if token is not None:
                    self._release_lease(skey, token)
                return None, entry
            if token is not None:
                return token, None
            if not wait:
                raise _RefreshNotNeeded
            if _time.monotonic() >= deadline:
                return None, None
            _time.sleep(delay)
            delay = min(delay * _POLL_GROWTH, _POLL_MAX)

    def _release_lease(self, skey: str, token: str) -> None:
        assert self._leases is not None  # noqa: S101 - tokens only exist with leases
        try:
            self._leases.release_lease(skey, token)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            self._lease_failed(skey, exc)

    # -- background refreshes ----------------------------------------------------------

    def _refresh(
        self,
        key: str,
        skey: str,
        fetch: Callable[[], Any],
        ttl: TTLSpec | None,
        seen: float,
        permit: Permit | None,
    ) -> None:
        try:
            self._fetch_and_store(key, skey, fetch, ttl, seen, background=True, permit=permit)
        except _RefreshNotNeeded:
            self._refresh_event("refreshes_skipped", "skipped")
        except Exception as exc:  # noqa: BLE001 - counted, logged, stale keeps serving
            self._refresh_failed(skey, exc)
        else:
            self._refresh_succeeded(skey)

    # -- cache-only operations -----------------------------------------------------------

    def get(self, key: str) -> Result[Any] | None:
        """Return the cached result of ``key`` without fetching or refreshing.

        The status is the entry's window now (HIT, STALE or EXPIRED); ``None`` when
        nothing live is cached or the storage fails. Not counted in ``stats()``.
        """
        return self._peek_result(self._read_quiet(self._skey(key)))

    def set(self, key: str, value: Any, ttl: TTLSpec | None = None) -> None:
        """Store ``value`` under ``key`` as if just fetched.

        Raises:
            StorageError: the storage failed (unlike ``execute``, an explicit write
                reports its failure).
        """
        skey = self._skey(key)
        self._storage.set(skey, self._new_entry(key, value, ttl))
        if self._backoff:
            with self._backoff_lock:
                self._backoff.succeeded(skey)

    def delete(self, key: str) -> bool:
        """Remove ``key`` from the cache; return whether it was there.

        Raises:
            StorageError: the storage failed.
        """
        deleted: bool = self._storage.delete(self._skey(key))
        return deleted

    def stats(self) -> EngineStats:
        """A snapshot of the counters; see :class:`~swr.stats.EngineStats`."""
        refresher = self._refresher
        return self._stats(refresher.running, refresher.queued, self._storage)

    def cached(
        self, *, ttl: TTLSpec | None = None, key: Callable[..., str] | None = None
    ) -> Callable[[Callable[P, T]], CachedFunction[P, T]]:
        """Decorate a function so its results go through this engine.

        Example::

            @engine.cached(ttl=CacheTTL(fresh=30, stale=600), key=lambda uid: f"user:{uid}")
            def load_user(uid: int) -> dict: ...

        Args:
            ttl: Windows for this function's values; the engine's default otherwise.
            key: Builds the key from the call's arguments; by default the function's
                qualified name and the ``repr`` of simple arguments.

        Raises:
            TypeError: the function is a coroutine function (use AsyncStaleEngine).
        """
        if ttl is not None:
            _core.validate_ttl_spec(ttl)

        def decorate(func: Callable[P, T]) -> CachedFunction[P, T]:
            if inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"{func.__qualname__} is a coroutine function; decorate it with "
                    "AsyncStaleEngine.cached"
                )
            return CachedFunction(self, func, key, ttl)

        return decorate

    def close(self, timeout: float | None = None) -> None:
        """Stop background refreshes, waiting up to ``timeout`` s for running ones.

        Calls of ``execute`` still work afterwards but start no refreshes. A storage
        the engine created itself is closed too. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        finished = self._refresher.close(self._close_timeout if timeout is None else timeout)
        if not finished:
            logger.warning("close_timed_out", engine=self.name, running=self._refresher.running)
        if self._owns_storage:
            self._storage.close()

    def __repr__(self) -> str:
        return f"StaleEngine(name={self.name!r}, storage={self._storage!r})"


class AsyncStaleEngine(_EngineBase, AsyncCloseable):
    """The asyncio twin of :class:`StaleEngine`, with the same arguments and rules.

    Example::

        async with AsyncStaleEngine(ttl=CacheTTL(fresh=60, stale=300)) as engine:
            result = await engine.execute("user:1", lambda: fetch_user(1))

    ``fetch`` is a zero-argument callable returning an awaitable. Background refreshes
    are tasks (at most ``max_concurrent_refreshes``); a fetch past ``refresh_timeout``
    is cancelled and counts as failed. A synchronous storage is used through its
    ``as_async()`` view or an inline :class:`~storage.AsyncAdapter`, so memory and LMDB
    work without any change.

    Use one engine from one event loop at a time.
    """

    _refresher: TaskRefresher

    def __init__(
        self,
        storage: Storage | AsyncStorage | None = None,
        ttl: TTLSpec | None = None,
        namespace: str = "",
        serializer: Serializer | None = None,
        max_concurrent_refreshes: int = 16,
        refresh_timeout: float = 10.0,
        clock: Callable[[], float] | None = None,
        *,
        name: str | None = None,
        metrics: MetricsHook | None = None,
        refresh_queue_size: int = 1024,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        close_timeout: float = 5.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        owns = storage is None
        base: Any = MemoryStorage(clock=clock) if storage is None else storage
        store = as_async(_bind_entries(_bind_serializer(base, serializer)))
        super().__init__(
            store,
            ttl,
            namespace,
            max_concurrent_refreshes,
            refresh_timeout,
            clock,
            name,
            metrics,
            refresh_queue_size,
            backoff_initial,
            backoff_max,
            close_timeout,
            breaker,
        )
        self._owns_storage = owns
        # Inline adapters over non-blocking storages are read without an extra await,
        # through the dict methods of a memory storage when offered.
        self._inline_get: Callable[[str], Entry | None] | None = None
        self._lookup: Callable[[str], Entry | None] | None = None
        self._touch: Callable[[str], None] | None = None
        if isinstance(store, AsyncAdapter):
            self._inline_get = self._lookup = store.sync.get
            lookup_functions = getattr(store.sync, "lookup_functions", None)
            if callable(lookup_functions):
                self._lookup, self._touch = lookup_functions()
        self._leases: AsyncLeases | None = store if has_async_leases(store) else None
        self._flights: dict[str, asyncio.Task[Entry]] = {}
        self._refresher = TaskRefresher(max_concurrent_refreshes, refresh_queue_size)

    @property
    def storage(self) -> AsyncStorage:
        """The asyncio storage this engine reads and writes."""
        storage: AsyncStorage = self._storage
        return storage

    async def _read(self, skey: str) -> Entry | None:
        get = self._inline_get
        if get is not None:
            return get(skey)
        entry: Entry | None = await self._storage.get(skey)
        return entry

    async def execute(
        self,
        key: str,
        fetch: Callable[[], Awaitable[T]],
        *,
        ttl: TTLSpec | None = None,
        force_refresh: bool = False,
    ) -> Result[T]:
        """Return the value of ``key`` from the cache, fetching it when needed.

        Same contract as :meth:`StaleEngine.execute`; ``fetch`` returns an awaitable.
        A caller that is cancelled while waiting does not cancel the shared fetch:
        the others still get its result, and it is still stored.
        """
        if type(key) is not str or not key:
            _core.check_key(key)
        skey = self._prefix + key
        entry: Entry | None = None
        if not force_refresh:
            try:
                lookup = self._lookup
                if lookup is None:
                    entry = await self._storage.get(skey)
                else:
                    entry = lookup(skey)
                    if entry is not None and self._touch is not None:
                        self._touch(skey)
            except KeyError:  # evicted between lookup and touch: the read still holds
                pass
            except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
                self._read_failed(skey, exc)
                entry = None
            if entry is not None:
                clock = self._clock
                now = clock() if clock is not None else _time.time()
                if now < entry.fresh_until:
                    self._count_hit()
                    if self._metrics is not None:
                        self._metrics.record_status(self.name, _HIT)
                    if type(entry) is _CachedEntry:
                        result = entry.hit
                        if result is None:  # the entry's first hit
                            result = entry.hit = Result(entry.value, _HIT, entry.stored_at, clock)
                        return result
                    return Result(entry.value, _HIT, entry.stored_at, clock)
                if now < entry.stale_until:
                    return self._serve_stale(key, skey, fetch, ttl, entry, now)
                if now >= entry.expires_at:
                    entry = None
        return await self._load(key, skey, fetch, ttl, entry, force_refresh)

    async def _load(
        self,
        key: str,
        skey: str,
        fetch: Callable[[], Awaitable[T]],
        ttl: TTLSpec | None,
        entry: Entry | None,
        force_refresh: bool,
    ) -> Result[T]:
        loop = asyncio.get_running_loop()
        task = self._flights.get(skey)
        if task is None or task.get_loop() is not loop:
            seen = self._seen(entry, force_refresh)
            task = loop.create_task(self._fetch_and_store(key, skey, fetch, ttl, seen))
            self._flights[skey] = task
            task.add_done_callback(functools.partial(self._flight_done, skey))
        try:
            fresh = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this caller was cancelled; the shared fetch goes on
            exc: BaseException = FetchAbortedError(f"the fetch of {skey!r} was cancelled")
        except Exception as error:  # noqa: BLE001 - served as fallback or re-raised
            exc = error
        else:
            return self._answer_fetched(fresh, entry is not None)
        return self._answer_failure(
            skey, exc, await self._fallback(skey, entry, force_refresh), leader=False
        )

    def _flight_done(self, skey: str, task: asyncio.Task[Entry]) -> None:
        if self._flights.get(skey) is task:
            del self._flights[skey]
        if task.cancelled():
            self._fetch_failed(skey, asyncio.CancelledError())
        elif (exc := task.exception()) is not None and not isinstance(
            exc, CircuitOpenError
        ):  # task.exception() also marks the error retrieved
            self._fetch_failed(skey, exc)

    async def _fallback(self, skey: str, entry: Entry | None, force_refresh: bool) -> Entry | None:
        if entry is None and force_refresh:
            return self._live(await self._read_quiet(skey))
        return entry

    async def _read_quiet(self, skey: str) -> Entry | None:
        try:
            return await self._read(skey)
        except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
            self._read_failed(skey, exc)
            return None

    async def _write(self, skey: str, entry: Entry) -> None:
        try:
            await self._storage.set(skey, entry)
        except Exception as exc:  # noqa: BLE001 - the value is returned all the same
            self._write_failed(skey, exc)

    async def _call_fetch(self, skey: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        awaitable = fetch()
        if not inspect.isawaitable(awaitable):
            raise TypeError(
                f"fetch for {skey!r} returned {type(awaitable).__name__}, not an awaitable; "
                "AsyncStaleEngine needs an async fetch (use StaleEngine for plain functions)"
            )
        # asyncio.wait rather than wait_for: a TimeoutError raised by the fetch itself
        # (a socket timeout) must not be mistaken for ours.
        inner = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait((inner,), timeout=self._refresh_timeout)
        except BaseException:
            inner.cancel()
            raise
        if not done:
            inner.cancel()
            # The fetch keeps its slot until it has really stopped.
            await asyncio.wait((inner,))
            if not inner.cancelled():
                inner.exception()  # a late result or error is discarded on purpose
            raise FetchTimeoutError(
                f"the fetch of {skey!r} took more than {self._refresh_timeout}s and was cancelled"
            )
        return inner.result()

    async def _fetch_and_store(
        self,
        key: str,
        skey: str,
        fetch: Callable[[], Awaitable[Any]],
        ttl: TTLSpec | None,
        seen: float,
        *,
        background: bool = False,
        permit: Permit | None = None,
    ) -> Entry:
        """Fetch once across processes (lease), store and return the new entry.

        The twin of :meth:`StaleEngine._fetch_and_store`; timeouts cancel the fetch.
        """
        permit = self._take_permit(permit, background)
        token: str | None = None
        reported = False
        try:
            if self._leases is not None:
                token, found = await self._lease_or_result(skey, seen, wait=not background)
                if found is not None:
                    if background:
                        raise _RefreshNotNeeded
                    return found
            if background:
                self._refresh_started()
            try:
                value = await self._call_fetch(skey, fetch)
            except BaseException as exc:
                reported = True
                self._fetch_outcome(permit, exc)
                raise
            reported = True
            self._fetch_outcome(permit, None)
            entry = self._new_entry(key, value, ttl)
            await self._write(skey, entry)
            return entry
        finally:
            if not reported:
                self._release_permit(permit)
            if token is not None:
                await self._release_lease(skey, token)

    async def _lease_or_result(
        self, skey: str, seen: float, wait: bool
    ) -> tuple[str | None, Entry | None]:
        """The twin of :meth:`StaleEngine._lease_or_result`, sleeping with asyncio."""
        leases = self._leases
        assert leases is not None  # noqa: S101 - only called when leases exist
        deadline = _time.monotonic() + self._lease_ttl
        delay = _POLL_FIRST
        while True:
            try:
                token = await leases.acquire_lease(skey, self._lease_ttl)
            except Exception as exc:  # noqa: BLE001 - no lease: fetch without one
                self._lease_failed(skey, exc)
                return None, None
            entry = await self._read_quiet(skey)
            if entry is not None and entry.stored_at > seen:
                if token is not None:
                    await self._release_lease(skey, token)
                return None, entry
            if token is not None:
                return token, None
            if not wait:
                raise _RefreshNotNeeded
            if _time.monotonic() >= deadline:
                return None, None
            await asyncio.sleep(delay)
            delay = min(delay * _POLL_GROWTH, _POLL_MAX)

    async def _release_lease(self, skey: str, token: str) -> None:
        assert self._leases is not None  # noqa: S101 - tokens only exist with leases
        try:
            await self._leases.release_lease(skey, token)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            self._lease_failed(skey, exc)

    async def _refresh(
        self,
        key: str,
        skey: str,
        fetch: Callable[[], Awaitable[Any]],
        ttl: TTLSpec | None,
        seen: float,
        permit: Permit | None,
    ) -> None:
        try:
            await self._fetch_and_store(key, skey, fetch, ttl, seen, background=True, permit=permit)
        except _RefreshNotNeeded:
            self._refresh_event("refreshes_skipped", "skipped")
        except Exception as exc:  # noqa: BLE001 - counted, logged, stale keeps serving
            self._refresh_failed(skey, exc)
        else:
            self._refresh_succeeded(skey)

    async def get(self, key: str) -> Result[Any] | None:
        """Return the cached result of ``key`` without fetching; see :meth:`StaleEngine.get`."""
        return self._peek_result(await self._read_quiet(self._skey(key)))

    async def set(self, key: str, value: Any, ttl: TTLSpec | None = None) -> None:
        """Store ``value`` under ``key`` as if just fetched; storage errors propagate."""
        skey = self._skey(key)
        await self._storage.set(skey, self._new_entry(key, value, ttl))
        self._backoff.succeeded(skey)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from the cache; return whether it was there."""
        deleted: bool = await self._storage.delete(self._skey(key))
        return deleted

    def stats(self) -> EngineStats:
        """A snapshot of the counters; see :class:`~swr.stats.EngineStats`."""
        refresher = self._refresher
        return self._stats(refresher.running, refresher.queued, self._storage)

    def cached(
        self, *, ttl: TTLSpec | None = None, key: Callable[..., str] | None = None
    ) -> Callable[[Callable[P, Awaitable[T]]], AsyncCachedFunction[P, T]]:
        """Decorate a coroutine function so its results go through this engine.

        Raises:
            TypeError: the function is not a coroutine function (use StaleEngine).
        """
        if ttl is not None:
            _core.validate_ttl_spec(ttl)

        def decorate(func: Callable[P, Awaitable[T]]) -> AsyncCachedFunction[P, T]:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"{getattr(func, '__qualname__', func)!r} is not a coroutine function; "
                    "decorate it with StaleEngine.cached"
                )
            return AsyncCachedFunction(self, func, key, ttl)

        return decorate

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop background refreshes, waiting up to ``timeout`` s, then cancel the rest.

        A storage the engine created itself is closed too. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        finished = await self._refresher.aclose(self._close_timeout if timeout is None else timeout)
        if not finished:
            logger.warning("close_timed_out", engine=self.name)
        if self._owns_storage:
            await self._storage.aclose()

    def __repr__(self) -> str:
        return f"AsyncStaleEngine(name={self.name!r}, storage={self._storage!r})"
