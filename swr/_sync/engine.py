# Generated from swr/_async/engine.py by tools/unasync.py:
# edit that file, not this one.
"""The engine: serve from cache, refresh in the background.

Written once, as asyncio code in ``swr/_async/engine.py``; ``tools/unasync.py``
generates its thread twin ``swr/_sync/engine.py`` from it (names lose ``Async``, ``await``
goes). What differs between threads and tasks lives in :mod:`swr._primitives`; what
needs no I/O in :class:`swr._engine.EngineBase` and :mod:`swr._core`.

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

import inspect
import math
import threading
import time as _time
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from swr import _core
from swr._capabilities import bind_storage
from swr._engine import (
    DEFAULT_TTL,
    FETCHING,
    POLL_FIRST,
    POLL_GROWTH,
    POLL_MAX,
    RefreshNotNeededError,
    hit_path,
    wrong_function_kind,
)
from swr._log import ThrottledLog, logger
from swr._primitives import (
    Fetch,
    Function,
    Refresher,
    call_fetch,
    fetch_flights,
    sleep,
)
from swr._sync.bulk import BulkMixin
from swr.breaker import CircuitBreaker
from swr.metrics import bind_hook
from swr.policy import CacheTTL, Result, Status
from swr.refresh import RefreshOptions
from swr.stats import EngineCounters
from swr.storage import Entry
from swr.storage.base import Closeable

if TYPE_CHECKING:
    from swr._bulk import ShouldCache
    from swr._sync.cached import CachedFunction
    from swr.breaker import Permit
    from swr.metrics import MetricsHook
    from swr.policy import TTLSpec
    from swr.storage import Leases, Storage
    from swr.storage._flight import Flights
    from swr.storage.serializers import Serializer


__all__ = ["StaleEngine"]

P = ParamSpec("P")
T = TypeVar("T")

_IS_ASYNC = False
_CachedEntry = _core.CachedEntry
# Objects of the miss path built slot by slot: calling a class whose __init__ is Python
# code costs about twice as much (tests/swr/test_miss_inline.py pins both forms).
_new_entry_object = _CachedEntry.__new__
_new_result = Result.__new__
_FUNCTION = types.FunctionType
_NOTHING_SEEN = -math.inf
_HIT = Status.HIT
_STALE = Status.STALE
_EXPIRED = Status.EXPIRED
_MISS = Status.MISS


class StaleEngine(BulkMixin, Closeable):
    """A stale-while-revalidate cache in front of slow or flaky calls.

    Example::

        with StaleEngine(ttl=CacheTTL(fresh=60, stale=300)) as engine:
            result = engine.execute("user:1", lambda: fetch_user(1))
            result.value, result.status, result.age

    The engine comes twice, from one source: with asyncio tasks (the ``Async`` name)
    and with threads. With tasks, ``fetch`` returns an awaitable, refreshes are tasks,
    a fetch past the refresh timeout is cancelled, and a synchronous storage (memory,
    LMDB) is used through its asyncio view. With threads, ``fetch`` is a plain
    function called in the caller's thread or a worker thread; a thread cannot be
    interrupted, so a refresh's late result is dropped instead.

    Args:
        storage: Where entries live; ``None`` creates a :class:`~swr.storage.MemoryStorage`
            (owned and closed by the engine, sharing its clock).
        ttl: Default windows: a :class:`~swr.CacheTTL` or ``(key, value) -> CacheTTL``.
        namespace: Prefix (``namespace + ":"``) of every key this engine writes.
        serializer: Serializer for byte storages (passed to ``storage.with_serializer``);
            memory storages keep objects and refuse one.
        clock: Zero-argument callable returning epoch seconds; default ``time.time``
            looked up at each call (freezegun works).
        name: Engine name for logs and metrics labels; default the namespace or "swr".
        metrics: Optional :class:`~swr.metrics.MetricsHook`.
        breaker: Optional :class:`~swr.CircuitBreaker` guarding ``fetch``: while it is
            open nothing is fetched, stale and expired entries are served as FALLBACK
            and a miss raises :class:`~swr.CircuitOpenError`. May be shared by engines.
        refresh: The background refreshes' bounds, timeout and backoff, a
            :class:`~swr.RefreshOptions` (its defaults when ``None``).
        should_cache: Default predicate on fetched values: a value it refuses is
            returned but not stored (e.g. ``lambda v: v is not None``); a call's own
            ``should_cache`` wins.

    Raises:
        ConfigError: a setting is out of range (a ``ValueError``).
        TypeError: a setting has the wrong type.

    One engine serves every task of its event loop, or every thread of a process.
    """

    _refresher: Refresher
    _storage: Storage
    _leases: Leases | None

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        ttl: TTLSpec | None = None,
        namespace: str = "",
        serializer: Serializer | None = None,
        clock: Callable[[], float] | None = None,
        name: str | None = None,
        metrics: MetricsHook | None = None,
        breaker: CircuitBreaker | None = None,
        refresh: RefreshOptions | None = None,
        should_cache: ShouldCache | None = None,
    ) -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {type(namespace).__name__}")
        _core.check_callable("clock", clock, "a zero-argument callable returning epoch seconds")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a CircuitBreaker, got {type(breaker).__name__}")
        options = RefreshOptions() if refresh is None else refresh
        if not isinstance(options, RefreshOptions):
            raise TypeError(f"refresh must be a RefreshOptions, got {type(options).__name__}")
        self.namespace = namespace
        self.name = name or namespace or "swr"
        self._prefix = f"{namespace}:" if namespace else ""
        self._ttl = _core.validate_ttl_spec(ttl if ttl is not None else DEFAULT_TTL)
        self._clock = clock
        self._now_read = _time.time if clock is None else clock
        self._metrics = metrics
        hook = None if metrics is None else bind_hook(metrics)
        self._breaker = breaker
        self._options = options
        self._lease_ttl = max(options.timeout, 0.1)
        self._backoff = _core.Backoff(options.backoff_initial, options.backoff_max)
        self._backoff_lock = threading.Lock()
        self._failed = False
        self._closed = False

        # What the storage can do, decided here once (see swr._capabilities).
        bound = bind_storage(storage, serializer, clock)
        self._owns_storage = storage is None
        self._storage = bound.storage
        self._get = bound.get
        self._lookup = bound.lookup
        self._touch = bound.touch
        # The lookup that judges nothing (FastLookup's), for the miss path's re-read.
        self._peek = bound.lookup if bound.touch is not None else None
        self._leases = bound.leases
        self._set_and_release = bound.set_and_release
        self._storage_stats = bound.stats
        self._health = bound.health

        c = self._counters = EngineCounters()
        # The hit and stale counts' sequences, for the hot paths: next() on one is a C
        # call that costs less than calling its incr (a method-wrapper) kept in a slot.
        self._hit_numbers = c.hits.numbers
        self._stale_numbers = c.stale.numbers
        self._count = {
            _HIT: c.hits,
            _STALE: c.stale,
            Status.EXPIRED: c.expired,
            Status.MISS: c.misses,
            Status.FALLBACK: c.fallbacks,
        }
        self._flights: Flights[str, Entry] = fetch_flights(
            options.timeout, self.name, self._flight_failed
        )
        self._failure_log = ThrottledLog(logger)
        self._refresher = Refresher(
            options.max_concurrent, options.queue_size, name=f"swr-refresh-{self.name}"
        )
        self._pending = self._refresher.pending
        self._bind_bulk(should_cache)
        self._wire_metrics(hook)

    @property
    def storage(self) -> Storage:
        """The storage this engine reads and writes."""
        return self._storage

    # -- the hot path --------------------------------------------------------------

    @hit_path
    def execute(
        self,
        key: str,
        fetch: Fetch[T],
        ttl: TTLSpec | None = None,
        force_refresh: bool = False,
        tags: Iterable[str] | None = None,
        should_cache: ShouldCache | None = None,
        bypass: bool = False,
    ) -> Result[T]:
        """Return the value of ``key`` from the cache, fetching it when needed.

        A caller that is cancelled while waiting does not cancel the shared fetch:
        the others still get its result, and it is still stored.

        Args:
            key: Non-empty string; namespaced before it reaches the storage.
            fetch: Zero-argument callable returning the value (with tasks: an awaitable
                of it); called on a miss, and by background refreshes.
            ttl: Windows for the value fetched by this call; the engine's default
                otherwise.
            force_refresh: Skip the cache read and fetch (sharing the singleflight);
                if that fetch fails, a cached value is still served as FALLBACK.
            tags: Tags to record the fetched entry under (the storage needs a
                ``TagIndex``); ``invalidate_tags`` removes it.
            should_cache: Predicate on the fetched value; a refused value is returned
                but not stored. Wins over the engine's default.
            bypass: Fetch without reading or writing the cache (counted in
                ``stats().bypasses``; the result says MISS).

        A ``fetch`` taking one argument is a conditional fetch: it receives the cached
        entry being refreshed (``None`` if none) and may return :class:`~swr.NotModified`
        to keep its value with renewed windows.

        Returns:
            A :class:`~swr.Result` with the value, its status and its age.

        Raises:
            Exception: whatever ``fetch`` raised, unchanged, when nothing cached can be
                served instead. Never a storage error.
            FetchTimeoutError: the fetch (or, with threads, the wait for another
                thread's fetch) outlived ``RefreshOptions.timeout`` with nothing cached to serve.
            TypeError, ValueError: ``key`` is not a non-empty str.
            TypeError: ``ttl`` is neither a CacheTTL nor a callable.
            ReentrantFetchError: called by the fetch of ``key`` itself (same thread or
                task), which would wait for itself.
        """
        if ttl is not None:
            _core.check_call_ttl(ttl)
        if bypass:
            return self._bypass(_core.check_key(key), fetch)
        if tags is not None or should_cache is not None:
            fetch = self._controlled(fetch, tags, should_cache)  # type: ignore[assignment]
        # The key is checked where a call leaves the hit path (in _load): a non-str key
        # fails the concatenation, and an empty one is never stored, so never hit.
        try:
            skey = self._prefix + key
        except TypeError:
            _core.check_key(key)
            raise
        entry: Entry | None = None
        if not force_refresh:
            try:
                lookup = self._lookup
                entry = self._obs.aget(skey) if lookup is None else lookup(skey)
                touch = self._touch
                if entry is not None and touch is not None:
                    touch(skey)
            except KeyError:  # evicted between lookup and touch: the read still holds
                pass
            except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
                self._read_failed(skey, exc)
                entry = None
            if entry is not None:
                # Inline forms, for speed, of swr._core.now and swr._core.classify_inline
                # (tests/swr/test_windows.py checks them at every window boundary).
                # Callables kept in slots are loaded, then called: CPython 3.11
                # specializes that load, not the method-call form ``self._now_read()``.
                now_read = self._now_read
                now = now_read()
                if now < entry.fresh_until:
                    hits = next(self._hit_numbers)
                    obs = self._hit_obs
                    if obs is not None:  # a hook counting answers, or sampling reads
                        hook_hit = obs.hit
                        if hook_hit is not None:
                            hook_hit()
                        if obs.sampling and not hits % obs.sampling:
                            self._lookup = self._timed_lookup  # for one read
                    if type(entry) is _CachedEntry:
                        result = entry.hit
                        if result is None:  # the entry's first hit (every hit of a
                            # byte storage's new decode): Result(...), slot by slot
                            result = _new_result(Result)
                            result.value = entry.value
                            result.status = _HIT
                            result.stored_at = entry.stored_at
                            result._clock = self._clock
                            entry.hit = result
                        return result
                    return Result(entry.value, _HIT, entry.stored_at, self._clock)
                return self._after_read(key, skey, fetch, ttl, force_refresh, entry, now)
        return self._load(key, skey, fetch, ttl, entry, force_refresh)

    def _after_read(
        self,
        key: str,
        skey: str,
        fetch: Fetch[T],
        ttl: TTLSpec | None,
        force_refresh: bool,
        entry: Entry | None,
        now: float | None,
    ) -> Result[T]:
        """``execute`` past its read: ``entry`` (``None``: a miss) is not fresh at ``now``.

        Also where the C hit path (``swr._speedups.EngineHit``) hands back every call
        whose read was not a fresh hit.
        """
        if entry is not None:
            assert now is not None  # noqa: S101 - given with every entry
            if now < entry.stale_until:
                return self._serve_stale(key, skey, fetch, ttl, entry, now)
            if now >= entry.expires_at:
                # Dead by the engine's clock, whatever the storage thinks: only a value
                # stored after it may answer this call.
                return self._load(key, skey, fetch, ttl, None, force_refresh, entry.stored_at)
        return self._load(key, skey, fetch, ttl, entry, force_refresh)

    # -- foreground fetches ----------------------------------------------------------

    def _load(
        self,
        key: str,
        skey: str,
        fetch: Fetch[T],
        ttl: TTLSpec | None,
        entry: Entry | None,
        force_refresh: bool,
        seen: float | None = None,
    ) -> Result[T]:
        if type(key) is not str or not key:
            _core.check_key(key)  # execute's hit path leaves it to here
        if entry is not None and not force_refresh and self._backoff and self._backs_off(skey):
            return self._backed_off(entry)
        fetching = FETCHING.get()
        if skey in fetching:
            self._check_reentry(skey)  # raises ReentrantFetchError
        if seen is None:
            seen = _NOTHING_SEEN  # what _seen says of a caller that saw nothing
            if entry is not None or force_refresh:
                seen = self._seen(entry, force_refresh)
        # The shared fetch (a task created here, or this very thread) runs with the key
        # marked as being fetched, so that it cannot wait for itself.
        marked = FETCHING.set(fetching + (skey,))  # noqa: RUF005 - a third cheaper than (*a, b)
        try:
            fresh = self._flights.run(
                skey, self._fetch_and_store, None, (key, skey, fetch, ttl, seen)
            )
        except Exception as exc:  # noqa: BLE001 - served as fallback or re-raised
            return self._answer_failure(exc, self._fallback(skey, entry, force_refresh))
        finally:
            FETCHING.reset(marked)
        # _answer_fetched, inline: every miss answers here.
        status = _MISS if entry is None else _EXPIRED
        self._count[status].incr()
        counts = self._obs.counts
        if counts is not None:
            counts[status]()
        # Result(fresh.value, status, fresh.stored_at, self._clock), slot by slot.
        result: Result[T] = _new_result(Result)
        result.value = fresh.value
        result.status = status
        result.stored_at = fresh.stored_at
        result._clock = self._clock
        return result

    def _fallback(self, skey: str, entry: Entry | None, force_refresh: bool) -> Entry | None:
        """The entry to serve after a failed fetch: the one read, or (forced) one read now."""
        if entry is None and force_refresh:
            return self._live(self._read_quiet(skey))
        return entry

    def _timed_storage_get(self, skey: str) -> Entry | None:
        """A read of the storage itself, timed for the hook."""
        with self._storage_timer("get"):
            return self._storage.get(skey)

    def _read(self, skey: str) -> Entry | None:
        get = self._get
        if self._obs.record_storage is None:  # no timer: the miss path's common case
            if get is not None:
                return get(skey)
            return self._storage.get(skey)
        with self._storage_timer("get"):
            if get is not None:
                return get(skey)
            return self._storage.get(skey)

    def _read_quiet(self, skey: str) -> Entry | None:
        try:
            return self._read(skey)
        except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
            self._read_failed(skey, exc)
            return None

    def _write(self, skey: str, entry: Entry) -> None:
        try:
            with self._storage_timer("set"):
                self._storage.set(skey, entry)
        except Exception as exc:  # noqa: BLE001 - the value is returned all the same
            self._write_failed(skey, exc)

    def _write_and_release(self, skey: str, entry: Entry, token: str) -> None:
        """Store ``entry`` and release the lease ``token`` in one storage call."""
        assert self._set_and_release is not None  # noqa: S101 - called only when offered
        try:
            if self._obs.record_storage is None:
                self._set_and_release(skey, entry, token)
            else:
                with self._storage_timer("set_and_release"):
                    self._set_and_release(skey, entry, token)
        except Exception as exc:  # noqa: BLE001 - the value is returned all the same
            self._write_failed(skey, exc)
            self._release_lease(skey, token)

    def _fetch_and_store(  # noqa: PLR0915 - the miss path, inlined
        self,
        key: str,
        skey: str,
        fetch: Fetch[Any],
        ttl: TTLSpec | None,
        seen: float,
        background: bool = False,  # not keyword-only: those cost a dict lookup per call
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
                raises ``RefreshNotNeededError`` when another process holds the lease or
                already refreshed, and a result arriving after ``RefreshOptions.timeout`` is
                discarded with ``FetchTimeoutError``.
            permit: The circuit breaker's permit a refresh took when it was queued; a
                foreground fetch takes its own (``CircuitOpenError`` when refused).
        """
        if self._breaker is not None:
            permit = self._take_permit(permit, background)
        token: str | None = None
        reported = False
        try:
            leases = self._leases
            if leases is not None:
                found = None
                get = self._get
                if get is not None and self._obs.record_storage is None:
                    # _lease_or_result's first pass, inline: on every miss the lease is
                    # free and the re-read finds nothing (with FastLookup, a lookup
                    # without a call tells; get reads only when it finds something).
                    try:
                        token = leases.acquire_lease(skey, self._lease_ttl)
                    except Exception as exc:  # noqa: BLE001 - no lease: fetch without one
                        self._lease_failed(skey, exc)
                    else:
                        if token is None:  # held by another: wait for it, or its result
                            token, found = self._lease_or_result(skey, seen, not background)
                        else:
                            peek = self._peek
                            try:
                                entry = None
                                if peek is None or peek(skey) is not None:
                                    entry = get(skey)
                            except Exception as exc:  # noqa: BLE001 - reads as a miss
                                self._read_failed(skey, exc)
                                entry = None
                            if entry is not None:
                                token, found = self._lease_or_result(
                                    skey, seen, not background, (token, entry)
                                )
                else:
                    token, found = self._lease_or_result(skey, seen, wait=not background)
                if found is not None:
                    if background:
                        raise RefreshNotNeededError
                    return found
            if background:
                self._refresh_started()
            if (
                type(fetch) is _FUNCTION
                and not fetch.__code__.co_argcount
                and self._should_cache is None
            ):
                plan = None  # _prepare_fetch's plain case, decided inline: every miss asks
            else:
                fetch, plan = self._prepare_fetch(key, skey, fetch)
            obs = self._obs
            started = None if obs.hook is None else self._fetch_started(background)
            trace = obs.trace_fetch
            try:
                if trace is None and not background and not _IS_ASYNC:
                    value = fetch()  # a thread's foreground fetch: all call_fetch does
                elif trace is None:
                    value = call_fetch(fetch, self._options.timeout, skey, background)
                else:
                    with trace(self.name, key, background):
                        value = call_fetch(fetch, self._options.timeout, skey, background)
            except BaseException as exc:
                reported = True
                self._fetch_outcome(permit, exc, started, background)
                raise
            reported = True
            if permit is not None or started is not None:
                self._fetch_outcome(permit, None, started, background)
            if plan is not None:
                return self._store_planned(key, skey, value, ttl, plan)
            spec = self._ttl if ttl is None else ttl
            if type(spec) is CacheTTL and not spec.jitter:
                # _new_entry's common case, inline, the entry built slot by slot.
                clock = self._clock
                now = clock() if clock is not None else _time.time()
                entry = _new_entry_object(_CachedEntry)
                entry.value = value
                entry.stored_at = now
                entry.fresh_until = fresh_until = now + spec.fresh
                entry.stale_until = stale_until = fresh_until + spec.stale
                entry.expires_at = stale_until + spec.expired
                entry.hit = None
                entry.stale = None
            else:
                entry = self._new_entry(key, value, ttl)
            if token is None or self._set_and_release is None:
                self._write(skey, entry)
            elif self._obs.record_storage is None:
                held, token = token, None  # released by the write itself
                try:  # _write_and_release without a timer, inline: every leased miss
                    self._set_and_release(skey, entry, held)
                except Exception as exc:  # noqa: BLE001 - the value is returned all the same
                    self._write_failed(skey, exc)
                    self._release_lease(skey, held)
            else:
                held, token = token, None
                self._write_and_release(skey, entry, held)
            if not background and self._failed:
                self._forget_failures(skey)
            return entry
        finally:
            if not reported:
                self._release_permit(permit)
            if token is not None:
                self._release_lease(skey, token)

    def _lease_or_result(
        self,
        skey: str,
        seen: float,
        wait: bool,
        first: tuple[str | None, Entry | None] | None = None,
    ) -> tuple[str | None, Entry | None]:
        """Take the key's lease, or find the entry another lease holder stored.

        ``first``: the lease and the re-read of a first try the caller made, if it did.

        Returns ``(token, None)`` to fetch under the lease, ``(None, entry)`` when another
        process fetched meanwhile, or ``(None, None)`` to fetch without a lease (leases
        failing, or the holder never delivered within a lease period).
        """
        leases = self._leases
        assert leases is not None  # noqa: S101 - only called when leases exist
        deadline: float | None = None  # set at the first wait: most takes never wait
        delay = POLL_FIRST
        waiting: float | None = None  # since the first sleep, when the hook times waits
        while True:
            if first is not None:
                token, entry = first
                first = None
            else:
                try:
                    if self._obs.record_storage is None:
                        token = leases.acquire_lease(skey, self._lease_ttl)
                    else:
                        with self._storage_timer("lease_acquire"):
                            token = leases.acquire_lease(skey, self._lease_ttl)
                except Exception as exc:  # noqa: BLE001 - no lease: fetch without one
                    self._lease_failed(skey, exc)
                    self._lease_wait_ended(waiting)
                    return None, None
                # Re-read under the lease, or while another holds it: a result stored
                # since the caller's read is the one to use.
                get = self._get
                if get is not None and self._obs.record_storage is None:
                    try:  # _read_quiet, inline for a read without the asyncio protocol
                        entry = get(skey)
                    except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
                        self._read_failed(skey, exc)
                        entry = None
                else:
                    entry = self._read_quiet(skey)
            # Judged by the engine's clock: a store may keep an entry past its death.
            if entry is not None and entry.stored_at > seen and self._live(entry) is not None:
                if token is not None:
                    self._release_lease(skey, token)
                self._lease_wait_ended(waiting)
                return None, entry
            if token is not None:
                if waiting is not None:
                    self._lease_wait_ended(waiting)
                return token, None
            if not wait:
                raise RefreshNotNeededError
            if deadline is None:
                deadline = _time.monotonic() + self._lease_ttl
            elif _time.monotonic() >= deadline:
                self._lease_wait_ended(waiting)
                return None, None
            if waiting is None:
                waiting = self._lease_wait_started()
            sleep(delay)
            delay = min(delay * POLL_GROWTH, POLL_MAX)

    def _release_lease(self, skey: str, token: str) -> None:
        assert self._leases is not None  # noqa: S101 - tokens only exist with leases
        try:
            with self._storage_timer("lease_release"):
                self._leases.release_lease(skey, token)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            self._lease_failed(skey, exc)

    # -- background refreshes ----------------------------------------------------------

    def _refresh(self, skey: str, job: Fetch[Entry]) -> None:
        """Run one background refresh (``job``: a ``_fetch_and_store`` with its arguments)."""
        try:
            job()
        except RefreshNotNeededError:
            self._refresh_event(self._counters.refreshes_skipped, "skipped")
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
        # _skey and the storage timer, inline when they do nothing (no hook installed).
        skey = self._prefix + key if type(key) is str and key else self._skey(key)
        entry = self._new_entry(key, value, ttl)
        if self._obs.record_storage is None:
            self._storage.set(skey, entry)
        else:
            with self._storage_timer("set"):
                self._storage.set(skey, entry)
        if self._failed:
            self._forget_failures(skey)

    def delete(self, key: str) -> bool:
        """Remove ``key`` from the cache; return whether it was there.

        Raises:
            StorageError: the storage failed.
        """
        skey = self._skey(key)
        with self._storage_timer("delete"):
            return self._storage.delete(skey)

    def cached(
        self, *, ttl: TTLSpec | None = None, key: Callable[..., str] | None = None
    ) -> Callable[[Function[P, T]], CachedFunction[P, T]]:
        """Decorate a function so its results go through this engine.

        Example::

            @engine.cached(ttl=CacheTTL(fresh=30, stale=600), key=lambda uid: f"user:{uid}")
            def load_user(uid: int) -> dict: ...

        Args:
            ttl: Windows for this function's values; the engine's default otherwise.
            key: Builds the key from the call's arguments; by default the function's
                qualified name and the ``repr`` of simple arguments.

        Raises:
            TypeError: a coroutine function given to the thread engine, or a plain one
                given to the asyncio engine.
        """
        if ttl is not None:
            _core.validate_ttl_spec(ttl)

        def decorate(func: Function[P, T]) -> CachedFunction[P, T]:
            if inspect.iscoroutinefunction(func) is not _IS_ASYNC:
                raise TypeError(wrong_function_kind(func, _IS_ASYNC))
            from swr._sync.cached import CachedFunction  # noqa: PLC0415 - import cycle

            return CachedFunction(self, func, key, ttl)

        return decorate

    def close(self, timeout: float | None = None) -> None:
        """Stop background refreshes, waiting up to ``timeout`` s for running ones.

        Calls of ``execute`` still work afterwards but start no refreshes; running
        refreshes still going at the deadline are cancelled (threads cannot be, they
        finish on their own). A storage the engine created itself is closed too.
        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self._unwire_metrics()
        finished = self._refresher.close(
            self._options.close_timeout if timeout is None else timeout
        )
        if not finished:
            logger.warning("close_timed_out", engine=self.name, running=self._refresher.unfinished)
        if self._owns_storage:
            self._storage.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, storage={self._storage!r})"
