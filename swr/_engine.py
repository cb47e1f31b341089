"""What both engines share: settings, counters, and every step that does no I/O.

``StaleEngine`` and ``AsyncStaleEngine`` (``swr/_sync/engine.py``, generated from
``swr/_async/engine.py``) derive from :class:`EngineBase`. It holds the configuration,
the counters, the breaker and backoff bookkeeping and the answers after a fetch; the
engines add the I/O (storage calls, fetches, waiting), with threads or with tasks.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

from swr import _core
from swr._log import ThrottledLog, logger
from swr._primitives import Submit, TaskRefresher, ThreadRefresher
from swr.breaker import CircuitBreaker, Permit
from swr.errors import CircuitOpenError, FetchTimeoutError, ReentrantFetchError
from swr.metrics import BoundHook, fetch_outcome, storage_kind
from swr.policy import CacheTTL, Result, Status, TTLSpec
from swr.stats import Counter, EngineCounters, EngineStats
from swr.storage import AsyncAdapter
from swr.storage.serializers import _speedup

if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextlib import AbstractContextManager

    from swr.metrics import MetricsHook
    from swr.refresh import RefreshOptions
    from swr.storage import AsyncStorage, Entry, Storage
    from swr.storage.base import Health

__all__ = [
    "DEFAULT_TTL",
    "FETCHING",
    "POLL_FIRST",
    "POLL_GROWTH",
    "POLL_MAX",
    "AnyStorage",
    "EngineBase",
    "RefreshNotNeededError",
    "async_hit_path",
    "hit_path",
    "wrong_function_kind",
]


_CachedEntry = _core.CachedEntry
_HIT = Status.HIT
_STALE = Status.STALE
_EXPIRED = Status.EXPIRED
_MISS = Status.MISS
_FALLBACK = Status.FALLBACK

_Execute = TypeVar("_Execute", bound=Callable[..., Any])


def _engine_hit(execute: Callable[..., Any]) -> Any:
    """``execute`` wrapped by ``swr._speedups.EngineHit``, or ``None`` without it."""
    engine_hit = _speedup("swr._speedups", "EngineHit")
    if engine_hit is None:
        return None
    return engine_hit(execute, time.time, _CachedEntry, Result, _HIT, _STALE, Observed, CacheTTL)


class _AsyncHitPath:
    """``AsyncStaleEngine.execute`` with its read and its common answers in C.

    A coroutine has no C form: the method stays an ``async def``, whose call
    ``execute(key, fetch)`` first asks the C code (``EngineHit.probe``) to read and
    answer. A fresh hit, or a stale entry whose refresh runs, is answered there; after
    any other read, ``_after_read`` goes on with the entry read; a call with other
    arguments, or one the C code does not take (hooks of its own kind, a storage read
    over the network), is the method's own.
    """

    def __init__(self, hit: Any) -> None:
        self._hit = hit

    def __set_name__(self, owner: type, name: str) -> None:
        hit = self._hit
        hit.__set_name__(owner, name)
        execute, probe = hit.__wrapped__, hit.probe

        @functools.wraps(execute)
        async def read_first(
            self: Any,
            key: str,
            fetch: Any,
            ttl: Any = None,
            force_refresh: bool = False,
            tags: Any = None,
            should_cache: Any = None,
            bypass: bool = False,
        ) -> Result[Any]:
            read = probe(self, key, ttl, force_refresh, tags, should_cache, bypass)
            if read is not None:
                if type(read) is not tuple:
                    return read  # type: ignore[no-any-return]
                skey, entry, now = read
                after = self._after_read(key, skey, fetch, ttl, False, entry, now)
                return await after  # type: ignore[no-any-return]
            return await execute(  # type: ignore[no-any-return]
                self, key, fetch, ttl, force_refresh, tags, should_cache, bypass
            )

        setattr(owner, name, read_first)


def async_hit_path(execute: _Execute) -> _Execute:
    """``AsyncStaleEngine.execute``, reading first in C when the extension is built."""
    hit = _engine_hit(execute)
    return execute if hit is None else cast("_Execute", _AsyncHitPath(hit))


def hit_path(execute: _Execute) -> _Execute:
    """``StaleEngine.execute`` with its common answers in C, when the extension is built.

    ``swr._speedups.EngineHit`` answers ``engine.execute(key, fetch)``, with or without
    a ``ttl`` (a cached function's call), as ``execute`` does when the entry read is
    fresh (its hook told, its reads sampled), or stale with its refresh already running
    and no circuit breaker; it hands every other call to ``execute`` (before the read)
    or to ``_after_read`` (after it). The Python method stays the rule;
    ``SWR_PURE_PYTHON=1`` keeps it alone.
    """
    hit = _engine_hit(execute)
    return execute if hit is None else cast("_Execute", hit)


_plan_stale = _core.plan_stale
_make_entry = _core.make_entry
_BACKING_OFF = _core.Plan.BACKING_OFF
_FALLBACK_PLAN = _core.Plan.FALLBACK

DEFAULT_TTL = CacheTTL(fresh=60, stale=300, expired=3600)

# Polling a lease held by another process: first delay, growth factor, largest delay.
POLL_FIRST = 0.005
POLL_GROWTH = 2.0
POLL_MAX = 0.1

perf_counter = time.perf_counter
"""The clock of the durations reported to a metrics hook; read only when a hook
receives the duration. Looked up at each call, so a test may replace it."""

_NO_CONTEXT: AbstractContextManager[object] = contextlib.nullcontext()


@dataclass(slots=True)
class Observed:
    """What an engine reports to its metrics hook, resolved once (``engine._obs``).

    One instance attribute for all of it: CPython keeps attribute loads fast only
    while an instance has fewer than 30 attributes, and the hit path loads several.
    A field is ``None`` when the hook lacks the method (nothing is measured for it).

    Hit-path reads are timed one in ``storage_read_sampling`` without a test on the
    read itself: every that many hits (by the engine's hit count) the engine's ``_lookup``
    becomes ``_timed_lookup`` for one read, which puts ``lookup`` back (with a
    sampling of 1, ``_lookup`` stays ``_timed_lookup``). Reads without a ``lookup``
    (asyncio storages: network calls) are each timed, through ``aget``.
    """

    storage_kind: str
    storage_nodes: Callable[[], list[dict[str, Any]]] | None
    aget: Callable[[str], Any]
    """The execute path's read when there is no ``lookup`` (an asyncio storage)."""
    lookup: Callable[[str], Entry | None] | None = None
    hook: BoundHook | None = None
    hit: Callable[[], object] | None = None
    stale: Callable[[], object] | None = None
    counts: dict[Status, Callable[[], object]] | None = None
    sampling: int = 0
    """Time the read after every hit whose number is a multiple of this (0: never)."""
    record_storage: Callable[[str, str, str, float], None] | None = None
    trace_fetch: Callable[[str, str, bool], AbstractContextManager[object]] | None = None


class _StorageTimer:
    """Reports the time of one storage call to the engine's hook, raised or not."""

    __slots__ = ("_engine", "_operation", "_started")

    def __init__(self, engine: EngineBase, operation: str) -> None:
        self._engine = engine
        self._operation = operation
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        engine = self._engine
        obs = engine._obs
        record = obs.record_storage
        assert record is not None  # noqa: S101 - timers exist only with record_storage
        record(engine.name, obs.storage_kind, self._operation, perf_counter() - self._started)


def _nodes_of(storage: Any) -> Callable[[], list[dict[str, Any]]] | None:
    """A Redis storage's ``nodes()`` (per-node health on a cluster), else ``None``."""
    if isinstance(storage, AsyncAdapter):
        storage = storage.sync
    nodes = getattr(storage, "nodes", None)
    return nodes if callable(nodes) else None


FETCHING: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "swr_fetching", default=()
)
"""The storage keys whose foreground fetch this thread or task is running.

A fetch runs in its caller's context (a thread's, or a copy in the shared task and the
tasks it starts), so a fetch that calls ``execute`` on its own key finds the key here
and is refused with :class:`~swr.errors.ReentrantFetchError` instead of waiting for
itself.
"""


class RefreshNotNeededError(Exception):
    """Another process is refreshing the key, or already did: skip this refresh."""


AnyStorage: TypeAlias = "Storage | AsyncStorage"
"""What the asyncio engine accepts: either kind of storage."""


def wrong_function_kind(func: Callable[..., Any], is_async: bool) -> str:
    """Why ``func`` cannot be decorated by the engine of the other kind."""
    name = getattr(func, "__qualname__", repr(func))
    if is_async:
        return f"{name} is not a coroutine function; decorate it with StaleEngine.cached"
    return f"{name} is a coroutine function; decorate it with AsyncStaleEngine.cached"


class EngineBase:
    """Configuration, counters and I/O-free decisions shared by both engines."""

    # The attributes the hit path reads are slots: a slot costs the same however many
    # other attributes the engine has, while CPython's inline attribute values (and so
    # fast attribute loads) stop at 30 attributes in the instance dict.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_breaker",
        "_clock",
        "_hit_numbers",
        "_hit_obs",
        "_lookup",
        "_now_read",
        "_obs",
        "_pending",
        "_prefix",
        "_stale_numbers",
        "_touch",
    )

    # Provided by each shell: its executor, its refresh job and its fetch.
    _refresher: ThreadRefresher | TaskRefresher
    _pending: set[str]  # the refresher's keys queued or running (read by the C hit path)
    _refresh: Callable[..., Any]
    _fetch_and_store: Callable[..., Any]

    # Set by the engine's constructor (swr/_async/engine.py).
    name: str
    namespace: str
    _prefix: str
    _ttl: TTLSpec
    _clock: Callable[[], float] | None
    _metrics: MetricsHook | None
    _obs: Observed
    _hit_obs: Observed | None
    _now_read: Callable[[], float]
    _timed_storage_get: Callable[[str], Any]
    _breaker: CircuitBreaker | None
    _options: RefreshOptions
    _lease_ttl: float
    _backoff: _core.Backoff
    _backoff_lock: threading.Lock
    _failed: bool
    """Whether a fetch or refresh ever failed (set before its key backs off or its
    failure log holds lines back): until then a stored value has no failures to forget."""
    _storage: Any
    _get: Callable[[str], Entry | None] | None
    _lookup: Callable[[str], Entry | None] | None
    _touch: Callable[[str], None] | None
    _peek: Callable[[str], Entry | None] | None
    _leases: Any
    _set_and_release: Callable[..., Any] | None
    _storage_stats: Callable[[], Mapping[str, Any]] | None
    _health: Health | None
    _closed: bool
    _owns_storage: bool
    _counters: EngineCounters
    _hit_numbers: Iterator[int]
    _stale_numbers: Iterator[int]
    _count: dict[Status, Counter]
    _flights: Any
    _failure_log: ThrottledLog

    # -- small helpers -------------------------------------------------------------

    def _now(self) -> float:
        return _core.now(self._clock)

    def _skey(self, key: object) -> str:
        return self._prefix + _core.check_key(key)

    def _new_entry(self, key: str, value: Any, ttl: TTLSpec | None) -> Entry:
        spec = self._ttl if ttl is None else ttl
        if type(spec) is not CacheTTL:  # a callable (or a subclass): resolved
            spec = _core.resolve_ttl(spec, key, value)
        clock = self._clock  # _core.now(clock), inline: every miss builds an entry
        now = clock() if clock is not None else time.time()
        if spec.jitter:
            return _make_entry(value, spec, now)
        # _core.make_entry without jitter, inline (tests/swr/test_core.py pins the two).
        fresh_until = now + spec.fresh
        stale_until = fresh_until + spec.stale
        return _CachedEntry(value, now, fresh_until, stale_until, stale_until + spec.expired)

    def _answered(self, status: Status) -> None:
        self._count[status].incr()
        counts = self._obs.counts
        if counts is not None:
            counts[status]()

    # -- metrics: what the hook receives, resolved once ------------------------------

    def _wire_metrics(self, hook: BoundHook | None) -> None:
        """Bind the hook's methods once: which answers, durations and events reach it.

        Called at the end of the constructor (the storage and ``name`` set) with the
        bound hook or ``None``. A duration whose method the hook lacks is never
        measured: no clock read, no call.
        """
        obs = self._obs = Observed(
            storage_kind(self._storage), _nodes_of(self._storage), self._storage.get, self._lookup
        )
        self._hit_obs = None  # the hit path's one test for a hook
        if hook is None:
            return
        obs.hook = hook
        if hook.adopt_status_counters is not None:
            # The hook reads this engine's own counters: one increment per answer. It
            # drops them (keeping their totals) once the engine is collected.
            weakref.finalize(self, hook.adopt_status_counters(self.name, dict(self._count)))
        else:
            counts = obs.counts = {status: hook.counter(self.name, status) for status in Status}
            obs.hit = counts[_HIT]
            self._hit_obs = obs
            obs.stale = counts[_STALE]
        obs.record_storage = hook.record_storage
        if hook.record_storage is not None:
            # One hit-path read in storage_read_sampling, chosen by the hit count.
            sampling = hook.storage_read_sampling
            if sampling > 1:
                obs.sampling = sampling
                self._hit_obs = obs
            elif self._lookup is not None:
                self._lookup = self._timed_lookup  # every read, for good
            obs.aget = self._timed_storage_get  # network reads: each one timed
        obs.trace_fetch = hook.trace_fetch
        if hook.register_stats is not None:
            hook.register_stats(self.name, self.stats)
        if hook.record_circuit is not None and self._breaker is not None:
            self._breaker.add_listener(self._circuit_changed)

    def _timed_lookup(self, skey: str) -> Entry | None:
        """One hit-path read, timed for the hook; the reads after it are not."""
        obs = self._obs
        lookup = obs.lookup
        assert lookup is not None  # noqa: S101 - swapped in only over a lookup
        if obs.sampling:
            self._lookup = lookup
        with self._storage_timer("get"):
            return lookup(skey)

    def _unwire_metrics(self) -> None:
        """The engine is closing: its name stops hearing of the shared breaker."""
        if self._breaker is not None:
            self._breaker.remove_listener(self._circuit_changed)

    def _circuit_changed(self, state: str) -> None:
        hook = self._obs.hook
        if hook is not None and hook.record_circuit is not None:
            hook.record_circuit(self.name, state)

    def _storage_timer(self, operation: str) -> AbstractContextManager[object]:
        """A context timing one storage call for the hook (nothing without one)."""
        if self._obs.record_storage is None:
            return _NO_CONTEXT
        return _StorageTimer(self, operation)

    def _fetch_started(self, background: bool) -> float | None:
        """``perf_counter()`` when the hook receives this fetch's duration, else ``None``."""
        hook = self._obs.hook
        if hook is None:
            return None
        record = hook.record_refresh_duration if background else hook.record_fetch
        return None if record is None else perf_counter()

    def _fetch_timed(self, started: float, background: bool, error: BaseException | None) -> None:
        """Report a fetch's duration; an interrupted one (not an Exception) has none."""
        if error is not None and not isinstance(error, Exception):
            return
        elapsed = perf_counter() - started
        hook = self._obs.hook
        assert hook is not None  # noqa: S101 - started only with a hook
        record = hook.record_refresh_duration if background else hook.record_fetch
        assert record is not None  # noqa: S101 - started only when it is set
        record(self.name, fetch_outcome(error), elapsed)

    def _lease_wait_started(self) -> float | None:
        """``perf_counter()`` when the hook receives lease waits, else ``None``."""
        hook = self._obs.hook
        if hook is None or hook.record_lease_wait is None:
            return None
        return perf_counter()

    def _lease_wait_ended(self, started: float | None) -> None:
        """A caller stopped waiting for another process's fetch (if it waited)."""
        if started is not None:
            record = self._obs.hook.record_lease_wait  # type: ignore[union-attr]  # started => set
            record(self.name, perf_counter() - started)  # type: ignore[misc]

    def _refresh_event(self, counter: Counter, outcome: str) -> None:
        counter.incr()
        metrics = self._metrics
        if metrics is not None:
            metrics.record_refresh(self.name, outcome)

    def _error_event(self, counter: Counter, kind: str) -> None:
        counter.incr()
        metrics = self._metrics
        if metrics is not None:
            metrics.record_error(self.name, kind)

    def _read_failed(self, skey: str, exc: Exception) -> None:
        self._error_event(self._counters.storage_read_errors, "storage_read")
        logger.warning("storage_read_failed", engine=self.name, key=skey, error=repr(exc))

    def _write_failed(self, skey: str, exc: Exception) -> None:
        self._error_event(self._counters.storage_write_errors, "storage_write")
        logger.warning("storage_write_failed", engine=self.name, key=skey, error=repr(exc))

    def _lease_failed(self, skey: str, exc: Exception) -> None:
        self._error_event(self._counters.storage_read_errors, "storage_read")
        logger.warning("lease_failed", engine=self.name, key=skey, error=repr(exc))

    def _flight_failed(self, skey: str, exc: BaseException) -> None:
        """Count and log one failed upstream fetch (once per fetch, not per waiter).

        The key then backs off, as after a failed refresh: while it does, callers with
        an entry to fall back on are served it without a fetch (see ``_backs_off``).
        A failure within the key's current delay (callers with nothing to fall back on
        still fetch) is the same backoff step: the line is logged once per step, with
        the failures held back since.
        """
        if isinstance(exc, (CircuitOpenError, ReentrantFetchError)):
            return  # refused by the breaker or re-entered: nothing was fetched
        self._error_event(self._counters.fetch_errors, "fetch")
        now = self._now()
        self._failed = True
        with self._backoff_lock:
            backoff = self._backoff
            if backoff.allows(skey, now):
                retry_at = backoff.failed(skey, now)
            else:
                retry_at = now + backoff.delay(backoff.failures(skey))
            failures = backoff.failures(skey)
        self._failure_log.warning(
            "fetch_failed",
            key=skey,
            step=failures,
            engine=self.name,
            error=repr(exc),
            timed_out=isinstance(exc, FetchTimeoutError),
            failures=failures,
            retry_in=round(retry_at - now, 3),
        )

    def _check_reentry(self, skey: str) -> tuple[str, ...]:
        """The keys this thread or task is fetching; raise if ``skey`` is one of them.

        Raises:
            ReentrantFetchError: the fetch of ``skey`` called ``execute`` on ``skey``.
        """
        fetching = FETCHING.get()
        if skey in fetching:
            raise ReentrantFetchError(
                f"the fetch of {skey!r} called execute({skey!r}) in its own "
                f"{'task' if self._flights.is_async else 'thread'}: it would wait for "
                "itself; fetch the value directly inside the fetch (e.g. call the "
                "undecorated function)"
            )
        return fetching

    def _backs_off(self, skey: str) -> bool:
        """Whether a caller with an entry to fall back on skips fetching ``skey`` now.

        After a failed fetch or refresh the key backs off: no fetch until its delay has
        passed, then one try (the key's singleflight); while that try runs, the other
        callers are served the entry as FALLBACK instead of waiting for it. An engine
        with a circuit breaker leaves that decision to the breaker (its half-open trial
        call must go through), so keys back off only without one.
        """
        if self._breaker is not None:
            return False
        with self._backoff_lock:
            backoff = self._backoff
            if not backoff.failures(skey):
                return False
            return skey in self._flights or not backoff.allows(skey, self._now())

    def _backed_off(self, entry: Entry) -> Result[Any]:
        """Serve ``entry`` as FALLBACK without fetching: its key is backing off."""
        self._counters.fetches_backed_off.incr()
        self._answered(_FALLBACK)
        return Result(entry.value, _FALLBACK, entry.stored_at, self._clock)

    def _answer_failure(self, exc: Exception, entry: Entry | None) -> Result[Any]:
        """Serve ``entry`` as FALLBACK after a failed fetch, or raise the fetch's error."""
        if _core.plan_failure(entry) is _FALLBACK_PLAN:
            assert entry is not None  # noqa: S101 - FALLBACK means an entry to serve
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
        return _core.live(entry, self._now())

    def _seen(self, entry: Entry | None, force_refresh: bool) -> float:
        """The ``stored_at`` after which another process's result can replace our fetch.

        A forced refresh only accepts values fetched after the call began.
        """
        if force_refresh:
            return self._now()
        return entry.stored_at if entry is not None else -math.inf

    def _answer_fetched(self, entry: Entry, had_entry: bool) -> Result[Any]:
        status = _EXPIRED if had_entry else _MISS
        self._count[status].incr()  # _answered, inline: every miss answers here
        counts = self._obs.counts
        if counts is not None:
            counts[status]()
        return Result(entry.value, status, entry.stored_at, self._clock)

    def _serve_stale(
        self, key: str, skey: str, fetch: Any, ttl: TTLSpec | None, entry: Entry, now: float
    ) -> Result[Any]:
        """Answer from a stale entry and start (at most) one background refresh.

        With a circuit breaker that refuses calls, nothing is refreshed and the entry is
        served as FALLBACK instead.
        """
        breaker = self._breaker
        circuit_open = breaker is not None and breaker.is_open()
        # The common case, the key's refresh already running with the circuit closed,
        # is plan_stale's SERVE: nothing to do, no call (tests/swr/test_core.py pins it).
        if circuit_open or skey not in self._refresher.pending:
            plan = _plan_stale(circuit_open, False, self._backoff, skey, now)
            if plan is _FALLBACK_PLAN:
                return self._refused(entry)
            if plan is _BACKING_OFF:
                self._refresh_event(self._counters.refreshes_skipped, "skipped")
            elif not self._start_refresh(key, skey, fetch, ttl, entry):
                return self._refused(entry)
        next(self._stale_numbers)  # the stale count: see execute's hit count
        hook_stale = self._obs.stale
        if hook_stale is not None:
            hook_stale()
        if type(entry) is _CachedEntry:
            result = entry.stale
            if result is None:
                result = entry.stale = Result(entry.value, _STALE, entry.stored_at, self._clock)
            return result
        return Result(entry.value, _STALE, entry.stored_at, self._clock)

    def _start_refresh(
        self, key: str, skey: str, fetch: Any, ttl: TTLSpec | None, entry: Entry
    ) -> bool:
        """Queue the refresh of a stale entry; ``False`` if the breaker has no trial slot."""
        return self._submit_refresh(key, skey, fetch, ttl, entry.stored_at) is not None

    def _submit_refresh(
        self, key: str, skey: str, fetch: Any, ttl: TTLSpec | None, seen: float
    ) -> Submit | None:
        """Queue one background refresh of ``key``; ``None`` if the breaker has no slot.

        ``seen`` is the ``stored_at`` of the entry the caller saw (``-inf``: none).
        """
        breaker = self._breaker
        permit: Permit | None = None
        if breaker is not None:
            permit = breaker.acquire()
            if permit is None:  # half-open and every trial slot taken
                return None
        job = functools.partial(
            self._fetch_and_store, key, skey, fetch, ttl, seen, background=True, permit=permit
        )
        outcome = self._refresher.submit(skey, self._refresh, (skey, job))
        if outcome is not Submit.ACCEPTED and permit is not None:
            breaker.release(permit)  # type: ignore[union-attr]  # set with the permit
        if outcome is Submit.DROPPED:
            self._refresh_event(self._counters.refreshes_dropped, "dropped")
            logger.debug("refresh_dropped", engine=self.name, key=skey)
        return outcome

    def _refused(self, entry: Entry) -> Result[Any]:
        """The circuit refused a refresh: serve the cached entry as FALLBACK."""
        self._counters.circuit_rejected.incr()
        self._answered(_FALLBACK)
        return Result(entry.value, _FALLBACK, entry.stored_at, self._clock)

    def _take_permit(self, permit: Permit | None, background: bool) -> Permit | None:
        """The breaker permit for a fetch: the refresh's own, or a new foreground one.

        Raises:
            CircuitOpenError: the breaker refuses a foreground fetch.
            RefreshNotNeededError: the breaker opened while the refresh waited in the queue.
        """
        breaker = self._breaker
        if breaker is None:
            return None
        if background:
            if permit is not None and breaker.is_open():
                breaker.release(permit)
                self._counters.circuit_rejected.incr()
                raise RefreshNotNeededError
            return permit
        permit = breaker.acquire()
        if permit is None:
            self._counters.circuit_rejected.incr()
            raise breaker.refusal()
        return permit

    def _fetch_outcome(
        self,
        permit: Permit | None,
        error: BaseException | None,
        started: float | None = None,
        background: bool = False,
    ) -> None:
        """Report a fetch's outcome to the breaker (``None`` error = success), and its
        duration to the hook when ``started`` (from :meth:`_fetch_started`) is set.
        """  # noqa: D205 - two receivers, one summary
        if started is not None:
            self._fetch_timed(started, background, error)
        if permit is not None:
            self._breaker.record(permit, error)  # type: ignore[union-attr]  # permit => breaker

    def _release_permit(self, permit: Permit | None) -> None:
        if permit is not None:
            self._breaker.release(permit)  # type: ignore[union-attr]  # permit => breaker

    def _refresh_started(self) -> None:
        self._refresh_event(self._counters.refreshes_started, "started")

    def _forget_failures(self, skey: str) -> None:
        """A new value of ``skey`` was stored: it no longer backs off, logs at once."""
        if not self._failed:  # nothing ever failed: no key backs off, none is held back
            return
        if self._backoff:
            with self._backoff_lock:
                self._backoff.succeeded(skey)
        if len(self._failure_log):
            self._failure_log.forget(skey)

    def _refresh_succeeded(self, skey: str) -> None:
        self._forget_failures(skey)
        self._refresh_event(self._counters.refreshes_succeeded, "succeeded")

    def _refresh_failed(self, skey: str, exc: BaseException) -> None:
        self._failed = True
        with self._backoff_lock:
            retry_at = self._backoff.failed(skey, self._now())
            failures = self._backoff.failures(skey)
        timed_out = isinstance(exc, FetchTimeoutError)
        if timed_out:
            self._refresh_event(self._counters.refreshes_timed_out, "timed_out")
        self._refresh_event(self._counters.refreshes_failed, "failed")
        # Once per backoff step (the key's failures), with the lines held back since.
        self._failure_log.warning(
            "refresh_timed_out" if timed_out else "refresh_failed",
            key=skey,
            step=failures,
            engine=self.name,
            error=repr(exc),
            failures=failures,
            retry_in=round(retry_at - self._now(), 3),
        )

    def stats(self) -> EngineStats:
        """A snapshot of the counters; see :class:`~swr.stats.EngineStats`."""
        refresher = self._refresher
        return self._stats(refresher.running, refresher.queued)

    def _stats(self, running: int, queued: int) -> EngineStats:
        values = self._counters.values()
        extra: dict[str, Any] = {}
        nodes: list[dict[str, Any]] = []
        try:
            if self._storage_stats is not None:
                extra = dict(self._storage_stats())
            if self._health is not None:
                extra["available"] = int(self._health.available)
            storage_nodes = self._obs.storage_nodes
            if storage_nodes is not None:
                nodes = [dict(node) for node in storage_nodes()]
        except Exception as exc:  # noqa: BLE001 - stats must never fail
            extra = {"error": repr(exc)}
        breaker = self._breaker
        return EngineStats(
            **values,
            refreshes_in_flight=running,
            refreshes_queued=queued,
            storage=extra,
            storage_nodes=nodes,
            circuit=breaker.stats() if breaker is not None else {},
        )
