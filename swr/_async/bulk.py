"""The engine's bulk side: batch loads, loaders, invalidation and per-call control.

Written once, as asyncio code; ``tools/unasync.py`` generates ``swr/_sync/bulk.py``.
:class:`AsyncBulkMixin` is a base of :class:`~swr.AsyncStaleEngine` (and its thread
twin); what needs no I/O lives in :mod:`swr._bulk`.

``execute_many(keys, fetch_many)``:

1. one batch read (``get_many``, or the memory storage's direct lookups);
2. HIT keys answered; STALE keys answered at once and refreshed in the background as
   one batch of their own (the call does not wait for it);
3. the missing and expired keys: those another caller is already fetching are waited
   on; this call leads the others (their singleflight, so concurrent ``execute`` calls
   of the same keys wait for it), takes their leases where the storage has leases, and
   fetches them with one ``fetch_many`` call, then stores them with one ``set_many``.
   Keys whose lease another process holds are waited on after that; the ones it did
   not deliver within a lease period are fetched by a second ``fetch_many`` call.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from swr import _bulk, _core
from swr._bulk import AsyncLoader, BatchFetchError, Controlled, Missing, Plan, ShouldCache
from swr._engine import EngineBase, RefreshNotNeededError
from swr._log import logger
from swr._primitives import Submit, async_call_fetch
from swr.policy import Result, Status
from swr.storage.adapters import async_bulk_verbs_of, async_tag_index_of
from swr.storage.base import EntryTimes

if TYPE_CHECKING:
    from swr._async.cached import AsyncCachedManyFunction
    from swr._primitives import AsyncRefresher
    from swr.breaker import Permit
    from swr.policy import TTLSpec
    from swr.storage import Entry
    from swr.storage._flight import AsyncFlights
    from swr.storage.base import AsyncBulkVerbs, AsyncLeases, AsyncTagIndex

__all__ = ["AsyncBulkMixin"]

_CachedEntry = _core.CachedEntry
_HIT = Status.HIT
_STALE = Status.STALE
_MISS = Status.MISS
_plan_stale = _core.plan_stale
_BACKING_OFF = _core.Plan.BACKING_OFF
_FALLBACK_PLAN = _core.Plan.FALLBACK
_batch_ids = itertools.count()

# (caller's key, storage key, entry read or None)
_Item = tuple[str, str, "Entry | None"]


class AsyncBulkMixin(EngineBase):
    """Bulk loads, loaders, invalidation and per-call control of an engine."""

    _flights: AsyncFlights[str, Entry]
    _refresher: AsyncRefresher
    _leases: AsyncLeases | None
    _should_cache: ShouldCache | None
    _bulk: AsyncBulkVerbs | None
    _tag_index: AsyncTagIndex | None
    _batch_refreshing: set[str]

    if TYPE_CHECKING:  # the engine's own I/O steps (swr/_async/engine.py)

        async def _read_quiet(self, skey: str) -> Entry | None: ...

        async def _write(self, skey: str, entry: Entry) -> None: ...

        async def _lease_or_result(
            self, skey: str, seen: float, wait: bool
        ) -> tuple[str | None, Entry | None]: ...

        async def _release_lease(self, skey: str, token: str) -> None: ...

    def _bind_bulk(self, should_cache: ShouldCache | None) -> None:
        """Decide, once, the storage's bulk capabilities; keep the default predicate."""
        _core.check_callable("should_cache", should_cache, "a predicate on a fetched value")
        self._should_cache = should_cache
        storage = self._storage
        self._bulk = async_bulk_verbs_of(storage)
        self._tag_index = async_tag_index_of(storage)
        self._batch_refreshing = set()

    # -- per-call control -----------------------------------------------------------

    def _controlled(
        self, fetch: Any, tags: Iterable[str] | None, should_cache: ShouldCache | None
    ) -> Controlled:
        """``fetch`` carrying a call's (namespaced) tags and predicate to the miss path."""
        _core.check_callable("should_cache", should_cache, "a predicate on a fetched value")
        return Controlled(fetch, self._storage_tags(tags), should_cache)

    def _storage_tags(self, tags: Iterable[str] | None) -> tuple[str, ...] | None:
        """The storage's names of ``tags`` (namespaced like keys), or ``None``.

        Raises:
            TypeError: tags given to an engine whose storage keeps no tag index.
        """
        if tags is None:
            return None
        checked = _bulk.check_tags(tags)
        if self._tag_index is None:
            raise TypeError(
                f"{type(self._storage).__name__} keeps no tag index (TagIndex): "
                "execute(..., tags=...) and invalidate_tags need one"
            )
        prefix = self._prefix
        return tuple(prefix + tag for tag in checked)

    async def _prepare_fetch(
        self, key: str, skey: str, fetch: Any, *, read: bool = True
    ) -> tuple[Any, Plan | None]:
        """The zero-argument call to make for ``key``, and how to store its value.

        Unwraps a call's tags and predicate, binds a loader to ``key``, and gives a
        conditional fetch (one argument) the entry being refreshed. The plan is ``None``
        in the plain case: store the value as it comes.
        """
        tags: tuple[str, ...] | None = None
        should_cache = None
        if type(fetch) is Controlled:
            tags, should_cache, fetch = fetch.tags, fetch.should_cache, fetch.fetch
        if should_cache is None:
            should_cache = self._should_cache
        conditional = False
        previous: Entry | None = None
        if type(fetch) is AsyncLoader:
            fetch = functools.partial(fetch.load, key)
        elif _bulk.wants_entry(fetch):
            conditional = True
            if read:
                previous = self._live(await self._read_quiet(skey))
            fetch = functools.partial(fetch, previous)
        if not conditional and tags is None and should_cache is None:
            return fetch, None
        return fetch, Plan(previous, conditional, tags, should_cache)

    async def _store_planned(
        self, key: str, skey: str, value: Any, ttl: TTLSpec | None, plan: Plan
    ) -> Entry:
        """Store a fetched ``value`` by its plan; the entry to answer with.

        Raises:
            ValueError: ``NotModified`` with nothing cached to keep.
        """
        if _bulk.is_not_modified(value):
            previous = plan.previous
            if previous is None:
                raise ValueError(
                    f"the fetch of {key!r} returned NotModified but nothing is cached to keep"
                )
            renewed = self._new_entry(key, previous.value, ttl)
            await self._renew(skey, renewed, plan.tags)
            return renewed
        entry = self._new_entry(key, value, ttl)
        if plan.should_cache is None or plan.should_cache(value):
            await self._store({skey: entry}, plan.tags)
        return entry

    async def _renew(self, skey: str, entry: Entry, tags: tuple[str, ...] | None) -> None:
        """Give the stored entry ``entry``'s windows (``touch``), or rewrite it."""
        bulk = self._bulk
        if bulk is not None:
            times = EntryTimes(
                entry.stored_at, entry.fresh_until, entry.stale_until, entry.expires_at
            )
            try:
                if await bulk.touch(skey, times):
                    return
            except Exception as exc:  # noqa: BLE001 - the value is returned all the same
                self._write_failed(skey, exc)
                return
        await self._store({skey: entry}, tags)

    async def _store(self, entries: Mapping[str, Entry], tags: tuple[str, ...] | None) -> None:
        """Write ``entries`` (one batch, or tagged one by one); failures are logged."""
        if not entries:
            return
        try:
            if tags is None:
                if len(entries) == 1:
                    [(skey, entry)] = entries.items()
                    await self._storage.set(skey, entry)
                else:
                    await self._storage.set_many(entries)
            else:
                index = self._tag_index
                assert index is not None  # noqa: S101 - tags are only accepted with an index
                for skey, entry in entries.items():
                    await index.set_tagged(skey, entry, tags)
        except Exception as exc:  # noqa: BLE001 - the values are returned all the same
            self._write_failed(next(iter(entries)), exc)

    async def _bypass(self, key: str, fetch: Any) -> Result[Any]:
        """Fetch ``key`` without reading or writing the cache (counted as a bypass)."""
        self._counters.bypasses.incr()
        call, _ = await self._prepare_fetch(key, self._prefix + key, fetch, read=False)
        value = await async_call_fetch(call, self._options.timeout, key, False)
        if _bulk.is_not_modified(value):
            raise ValueError(f"the fetch of {key!r} returned NotModified in a bypass call")
        return Result(value, _MISS, self._now(), self._clock)

    async def refresh(
        self,
        key: str,
        fetch: Any,
        *,
        ttl: TTLSpec | None = None,
        tags: Iterable[str] | None = None,
        should_cache: ShouldCache | None = None,
    ) -> bool:
        """Start one background refresh of ``key`` now, whatever its window.

        A ``fetch`` taking one argument receives the entry being refreshed and may return
        :class:`~swr.NotModified`. Returns whether a refresh was queued (``False``: one is
        already pending for the key, the queue is full, the breaker refuses, or the
        engine is closed).
        """
        skey = self._skey(key)
        if tags is not None or should_cache is not None:
            fetch = self._controlled(fetch, tags, should_cache)
        entry = await self._read_quiet(skey)
        seen = entry.stored_at if entry is not None else -math.inf
        return self._submit_refresh(key, skey, fetch, ttl, seen) is Submit.ACCEPTED

    # -- execute_many -----------------------------------------------------------------

    async def execute_many(
        self,
        keys: Iterable[str],
        fetch_many: Callable[[list[str]], Any],
        *,
        ttl: TTLSpec | None = None,
        tags: Iterable[str] | None = None,
        should_cache: ShouldCache | None = None,
        missing: Missing = "omit",
    ) -> dict[str, Result[Any]]:
        """Return the results of ``keys``, fetching the missing ones with one call.

        Example::

            results = await engine.execute_many(["user:1", "user:2"], load_users)
            results["user:1"].value

        Args:
            keys: The caller's keys (duplicates count once).
            fetch_many: Called at most once for the keys that are missing or expired,
                with the list of those (caller's) keys; returns a mapping of key to
                value (with tasks: an awaitable of it). Stale keys are refreshed by a
                background call of their own.
            ttl: Windows of the fetched values; the engine's default otherwise.
            tags: Tags recorded with every fetched entry (see ``invalidate_tags``).
            should_cache: Predicate on each fetched value; a refused value is returned
                but not stored. The engine's default otherwise.
            missing: A key ``fetch_many`` does not return is left out of the answer
                (``"omit"``) or raises ``KeyError`` after the others are stored
                (``"raise"``).

        Returns:
            ``{key: Result}`` in the order of ``keys``.

        Raises:
            BatchFetchError: ``fetch_many`` failed and some keys had nothing cached to
                serve as FALLBACK; it carries the results of the others.
            KeyError: ``missing="raise"`` and ``fetch_many`` left keys out.
            TypeError, ValueError: bad keys, tags or options.
        """
        wanted = _bulk.check_keys(keys)
        _bulk.check_missing(missing)
        _bulk.check_fetch_many(fetch_many)
        _core.check_callable("should_cache", should_cache, "a predicate on a fetched value")
        stags = self._storage_tags(tags)
        accept = should_cache if should_cache is not None else self._should_cache
        prefix = self._prefix
        # With no namespace the storage keys are the caller's ("" + key is key itself).
        skeys = [prefix + key for key in wanted] if prefix else wanted
        entries, touch = await self._read_batch(skeys)
        clock = self._clock
        now = self._now()
        results: dict[str, Result[Any]] = {}
        stale: list[_Item] = []
        load: list[_Item] = []
        hit_numbers = self._hit_numbers
        hook_hit = self._obs.hit  # None without a hook, or with one adopting the counters
        for key, skey, found in zip(wanted, skeys, entries, strict=True):
            entry = found
            if entry is not None:
                if touch is not None:
                    try:
                        touch(skey)
                    except KeyError:  # evicted meanwhile: the read still holds
                        pass
                if now < entry.fresh_until:
                    next(hit_numbers)  # the hit count
                    if hook_hit is not None:
                        hook_hit()
                    if type(entry) is _CachedEntry:
                        result = entry.hit
                        if result is None:
                            result = entry.hit = Result(entry.value, _HIT, entry.stored_at, clock)
                        results[key] = result
                    else:
                        results[key] = Result(entry.value, _HIT, entry.stored_at, clock)
                    continue
                if now < entry.stale_until:
                    stale.append((key, skey, entry))
                    continue
                if now >= entry.expires_at:
                    entry = None
            load.append((key, skey, entry))
        if stale:
            self._serve_stale_many(stale, fetch_many, ttl, stags, accept, results, now)
        if load:
            await self._load_many(load, fetch_many, ttl, stags, accept, missing, results)
        if len(results) == len(wanted):
            return results if not stale else {key: results[key] for key in wanted}
        return {key: results[key] for key in wanted if key in results}

    async def _read_batch(
        self, skeys: list[str]
    ) -> tuple[list[Entry | None], Callable[[str], None] | None]:
        """The entries of ``skeys`` (see :meth:`_read_many`), and the ``touch`` the
        caller makes on each entry found, or ``None`` when the read marked them used.

        Memory: one C-level pass of direct dict reads; the caller marks each entry used
        as it judges it, instead of a second pass here.
        """  # noqa: D205 - the summary names both results
        lookup = self._lookup
        touch = self._touch
        if lookup is None or touch is None:
            return await self._read_many(skeys), None
        try:
            return list(map(lookup, skeys)), touch
        except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
            self._read_failed(skeys[0], exc)
            return [None] * len(skeys), None

    async def _read_many(self, skeys: list[str]) -> list[Entry | None]:
        """The entries of ``skeys`` in one batch read; a failing storage reads as misses."""
        lookup = self._lookup
        touch = self._touch
        try:
            if lookup is not None and touch is not None:  # memory: direct dict reads
                found = [lookup(skey) for skey in skeys]
                for skey, entry in zip(skeys, found, strict=True):
                    if entry is not None:
                        try:
                            touch(skey)
                        except KeyError:  # evicted meanwhile: the read still holds
                            pass
                return found
            return list(await self._storage.get_many(skeys))
        except Exception as exc:  # noqa: BLE001 - a failing cache reads as a miss
            self._read_failed(skeys[0], exc)
            return [None] * len(skeys)

    def _serve_stale_many(
        self,
        stale: list[_Item],
        fetch_many: Callable[[list[str]], Any],
        ttl: TTLSpec | None,
        tags: tuple[str, ...] | None,
        accept: ShouldCache | None,
        results: dict[str, Result[Any]],
        now: float,
    ) -> None:
        """Answer the stale keys at once; queue one background batch refreshing them."""
        breaker = self._breaker
        circuit_open = breaker is not None and breaker.is_open()
        pending = self._refresher.pending
        batch: list[_Item] = []
        for key, skey, entry in stale:
            assert entry is not None  # noqa: S101 - stale keys have entries
            plan = _plan_stale(circuit_open, False, self._backoff, skey, now)
            if plan is _FALLBACK_PLAN:
                results[key] = self._refused(entry)
                continue
            self._answered(_STALE)
            results[key] = Result(entry.value, _STALE, entry.stored_at, self._clock)
            if plan is _BACKING_OFF:
                self._refresh_event(self._counters.refreshes_skipped, "skipped")
            elif skey not in pending and skey not in self._batch_refreshing:
                batch.append((key, skey, entry))
        if not batch:
            return
        permit: Permit | None = None
        if breaker is not None:
            permit = breaker.acquire()
            if permit is None:  # half-open, every trial slot taken: stale keeps serving
                return
        job = functools.partial(self._refresh_many, batch, fetch_many, ttl, tags, accept, permit)
        outcome = self._refresher.submit(f"\0batch:{next(_batch_ids)}", job, ())
        if outcome is Submit.ACCEPTED:
            self._batch_refreshing.update(skey for _, skey, _ in batch)
            return
        self._release_permit(permit)
        if outcome is Submit.DROPPED:
            self._refresh_event(self._counters.refreshes_dropped, "dropped")
            logger.debug("refresh_dropped", engine=self.name, key=batch[0][1], batch=len(batch))

    async def _refresh_many(
        self,
        batch: list[_Item],
        fetch_many: Callable[[list[str]], Any],
        ttl: TTLSpec | None,
        tags: tuple[str, ...] | None,
        accept: ShouldCache | None,
        permit: Permit | None,
    ) -> None:
        """One background batch refresh of stale keys (the job ``execute_many`` queues)."""
        tokens: dict[str, str] = {}
        reported = False
        try:
            try:
                permit = self._take_permit(permit, True)
            except RefreshNotNeededError:
                permit = None
                self._refresh_event(self._counters.refreshes_skipped, "skipped")
                return
            if self._leases is not None:
                batch, tokens = await self._lease_batch(batch)
            if not batch:
                return
            for _ in batch:
                self._refresh_started()
            reported = True  # by _fetch_reported, whatever happens
            try:
                values = await self._fetch_reported(fetch_many, batch, permit, background=True)
            except Exception as exc:  # noqa: BLE001 - counted per key, stale keeps serving
                for _, skey, _ in batch:
                    self._refresh_failed(skey, exc)
                return
            _, store = self._new_entries(batch, values, ttl, accept)
            await self._store(store, tags)
            for key, skey, _ in batch:
                if key in values:
                    self._refresh_succeeded(skey)
        finally:
            if not reported:
                self._release_permit(permit)
            for skey, token in tokens.items():
                await self._release_lease(skey, token)
            self._batch_refreshing.difference_update(skey for _, skey, _ in batch)

    async def _lease_batch(self, batch: list[_Item]) -> tuple[list[_Item], dict[str, str]]:
        """Take the leases of a refresh batch without waiting; drop the keys held elsewhere."""
        leases = self._leases
        assert leases is not None  # noqa: S101 - only called with leases
        kept: list[_Item] = []
        tokens: dict[str, str] = {}
        for item in batch:
            skey = item[1]
            try:
                token = await leases.acquire_lease(skey, self._lease_ttl)
            except Exception as exc:  # noqa: BLE001 - no lease: refresh without one
                self._lease_failed(skey, exc)
                kept.append(item)
                continue
            if token is None:  # another process refreshes it
                self._refresh_event(self._counters.refreshes_skipped, "skipped")
                continue
            tokens[skey] = token
            kept.append(item)
        return kept, tokens

    async def _fetch_reported(
        self,
        fetch_many: Callable[[list[str]], Any],
        items: list[_Item],
        permit: Permit | None,
        *,
        background: bool,
    ) -> Mapping[str, Any]:
        """Call ``fetch_many`` for ``items`` and report the outcome to the breaker."""
        try:
            values = await self._call_fetch_many(fetch_many, items, background=background)
        except BaseException as exc:
            self._fetch_outcome(permit, exc)
            raise
        self._fetch_outcome(permit, None)
        return values

    async def _call_fetch_many(
        self, fetch_many: Callable[[list[str]], Any], items: list[_Item], *, background: bool
    ) -> Mapping[str, Any]:
        keys = [key for key, _, _ in items]
        call = functools.partial(fetch_many, keys)
        value = await async_call_fetch(call, self._options.timeout, keys[0], background)
        return _bulk.check_mapping(value, "fetch_many")

    def _new_entries(
        self,
        items: list[_Item],
        values: Mapping[str, Any],
        ttl: TTLSpec | None,
        accept: ShouldCache | None,
    ) -> tuple[dict[str, Entry], dict[str, Entry]]:
        """The entries of the fetched values by storage key, and those to store."""
        made: dict[str, Entry] = {}
        store: dict[str, Entry] = {}
        spec = self._ttl if ttl is None else ttl
        now = self._now()
        for key, skey, _ in items:
            if key not in values:
                continue
            value = values[key]
            entry = made[skey] = _core.make_entry(value, _core.resolve_ttl(spec, key, value), now)
            if accept is None or accept(value):
                store[skey] = entry
        return made, store

    async def _load_many(
        self,
        load: list[_Item],
        fetch_many: Callable[[list[str]], Any],
        ttl: TTLSpec | None,
        tags: tuple[str, ...] | None,
        accept: ShouldCache | None,
        missing: Missing,
        results: dict[str, Result[Any]],
    ) -> None:
        """Fetch the missing and expired keys (one call), or wait for their fetch."""
        items = {skey: (key, skey, entry) for key, skey, entry in load}
        led, joined = self._flights.lead_many(list(items))
        fetched: dict[str, Entry] = {}
        error: Exception | None = None
        if led:
            try:
                fetched = await self._fetch_led(
                    [items[skey] for skey in led], fetch_many, ttl, tags, accept
                )
            except Exception as exc:  # noqa: BLE001 - FALLBACK or BatchFetchError below
                error = exc
            except BaseException as exc:
                self._flights.settle_many(led, exc)
                raise
            outcomes: dict[str, tuple[Entry | None, BaseException | None]] = {}
            for skey in led:
                got = fetched.get(skey)
                if got is not None:
                    outcomes[skey] = (got, None)
                else:
                    outcomes[skey] = (None, error or _bulk.not_returned(items[skey][0]))
            self._flights.settle_many(led, outcomes)
        failed: list[str] = []
        left_out: list[str] = []
        cause: Exception | None = error
        for skey, (key, _, entry) in items.items():
            got = fetched.get(skey)
            problem: Exception | None = error
            if skey in joined:
                try:
                    got = await self._flights.wait(skey, joined[skey])
                except KeyError:
                    got = problem = None
                except Exception as waited:  # noqa: BLE001 - FALLBACK or BatchFetchError
                    got = None
                    problem = cause = waited
            if got is not None:
                results[key] = self._answer_fetched(got, entry is not None)
            elif problem is None:
                left_out.append(key)
            elif self._live(entry) is not None:
                results[key] = self._answer_failure(problem, entry)
            else:
                self._answered(_MISS)
                failed.append(key)
        if failed:
            raise BatchFetchError(results, failed) from cause
        if left_out and missing == "raise":
            raise KeyError(f"fetch_many did not return {len(left_out)} keys: {left_out[:5]!r}")

    async def _fetch_led(
        self,
        items: list[_Item],
        fetch_many: Callable[[list[str]], Any],
        ttl: TTLSpec | None,
        tags: tuple[str, ...] | None,
        accept: ShouldCache | None,
    ) -> dict[str, Entry]:
        """Fetch the keys this call leads (leases first, when the storage has them)."""
        permit = self._take_permit(None, False)
        tokens: dict[str, str] = {}
        got: dict[str, Entry] = {}
        held: list[_Item] = []
        reported = False
        try:
            todo = items
            if self._leases is not None:
                todo, held, tokens, got = await self._lease_many(items)
            if todo:
                reported = True  # by _fetch_reported, whatever happens
                values = await self._fetch_reported(fetch_many, todo, permit, background=False)
                made, store = self._new_entries(todo, values, ttl, accept)
                await self._store(store, tags)
                got.update(made)
        finally:
            if not reported:
                self._release_permit(permit)
            for skey, token in tokens.items():
                await self._release_lease(skey, token)
        if held:
            got.update(await self._wait_held(held, fetch_many, ttl, tags, accept))
        return got

    async def _lease_many(
        self, items: list[_Item]
    ) -> tuple[list[_Item], list[_Item], dict[str, str], dict[str, Entry]]:
        """Take the leases of ``items``: ``(to fetch, held elsewhere, tokens, found)``.

        A key whose entry another process stored since this call read it is ``found``.
        """
        leases = self._leases
        assert leases is not None  # noqa: S101 - only called with leases
        todo: list[_Item] = []
        held: list[_Item] = []
        tokens: dict[str, str] = {}
        for item in items:
            skey = item[1]
            try:
                token = await leases.acquire_lease(skey, self._lease_ttl)
            except Exception as exc:  # noqa: BLE001 - no lease: fetch without one
                self._lease_failed(skey, exc)
                todo.append(item)
                continue
            if token is None:
                held.append(item)
            else:
                tokens[skey] = token
                todo.append(item)
        found: dict[str, Entry] = {}
        if tokens:
            leased = [item for item in todo if item[1] in tokens]
            for (_, skey, seen), now in zip(
                leased, await self._read_many([item[1] for item in leased]), strict=True
            ):
                if now is not None and now.stored_at > _stored_at(seen):
                    found[skey] = now
            if found:
                todo = [item for item in todo if item[1] not in found]
        return todo, held, tokens, found

    async def _wait_held(
        self,
        held: list[_Item],
        fetch_many: Callable[[list[str]], Any],
        ttl: TTLSpec | None,
        tags: tuple[str, ...] | None,
        accept: ShouldCache | None,
    ) -> dict[str, Entry]:
        """Wait for the keys another process is fetching; fetch those it did not deliver."""
        got: dict[str, Entry] = {}
        late: list[_Item] = []
        tokens: dict[str, str] = {}
        try:
            for item in held:
                token, entry = await self._lease_or_result(item[1], _stored_at(item[2]), True)
                if entry is not None:
                    got[item[1]] = entry
                    continue
                if token is not None:
                    tokens[item[1]] = token
                late.append(item)
            if late:
                values = await self._call_fetch_many(fetch_many, late, background=False)
                made, store = self._new_entries(late, values, ttl, accept)
                await self._store(store, tags)
                got.update(made)
        finally:
            for skey, token in tokens.items():
                await self._release_lease(skey, token)
        return got

    # -- loaders and decorators ---------------------------------------------------------

    def loader(
        self,
        fetch_many: Callable[[list[str]], Any],
        *,
        max_wait: float = 0.002,
        max_batch: int = 1000,
    ) -> AsyncLoader:
        """A ``fetch`` for ``execute`` that batches concurrent misses into one call.

        Example::

            users = engine.loader(load_users)  # load_users(ids) -> {id: user}
            result = await engine.execute("7", users)

        Args:
            fetch_many: Takes a list of (caller's) keys, returns a mapping of key to
                value (with tasks: a coroutine function).
            max_wait: Seconds a batch waits for more keys after its first (with tasks,
                0 sends it at the end of the current turn of the event loop).
            max_batch: Most keys per call; a full batch is sent at once.

        Raises:
            TypeError, ValueError: bad arguments.
        """
        return AsyncLoader(fetch_many, max_wait, max_batch)

    def cached_many(
        self,
        *,
        key: Callable[[Any], str] | None = None,
        ttl: TTLSpec | None = None,
        should_cache: ShouldCache | None = None,
    ) -> Callable[[Callable[[list[Any]], Any]], AsyncCachedManyFunction]:
        """Decorate a function taking a list of ids and returning ``{id: value}``.

        Example::

            @engine.cached_many(key=lambda uid: f"user:{uid}")
            async def load_users(ids: list[int]) -> dict[int, dict]: ...

            users = await load_users([1, 2, 3])  # the cached ones are not fetched

        Args:
            key: Builds the key of one id; by default the function's qualified name and
                the ``repr`` of the id.
            ttl: Windows of the values; the engine's default otherwise.
            should_cache: Predicate on each value; refused ones are not stored.
        """
        if ttl is not None:
            _core.validate_ttl_spec(ttl)
        _core.check_callable("key", key, "a callable building the key of one id")
        _core.check_callable("should_cache", should_cache, "a predicate on a fetched value")

        def decorate(func: Callable[[list[Any]], Any]) -> AsyncCachedManyFunction:
            from swr._async.cached import AsyncCachedManyFunction  # noqa: PLC0415 - cycle

            return AsyncCachedManyFunction(self, func, key, ttl, should_cache)

        return decorate

    # -- invalidation -----------------------------------------------------------------

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys`` from the cache (one batch where the storage can); how many held one.

        Raises:
            StorageError: the storage failed.
        """
        skeys = [self._prefix + key for key in _bulk.check_keys(keys)]
        if not skeys:
            return 0
        if self._bulk is not None:
            return await self._bulk.delete_many(skeys)
        removed = 0
        for skey in skeys:
            removed += await self._storage.delete(skey)
        return removed

    async def clear(self) -> int | None:
        """Remove every entry under the engine's namespace (all entries without one).

        With a namespace, the keys are listed with ``scan`` and deleted in batches (the
        count is returned); without one, the storage's ``clear()`` removes everything
        (``None`` is returned).

        Raises:
            TypeError: the storage cannot list or clear keys (no ``BulkVerbs``).
            StorageError: the storage failed.
        """
        if self._prefix:
            return await self._delete_prefixed(self._prefix, "clear")
        await self._bulk_verbs("clear").clear()
        return None

    async def invalidate_prefix(self, prefix: str) -> int:
        """Remove every entry whose key starts with ``prefix`` (literal); how many.

        Raises:
            TypeError: ``prefix`` is not a str, or the storage cannot list keys.
            StorageError: the storage failed.
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        return await self._delete_prefixed(self._prefix + prefix, "invalidate_prefix")

    async def invalidate_tags(self, *tags: str) -> int:
        """Remove every entry stored with one of ``tags``; return how many.

        Raises:
            TypeError: the storage keeps no tag index, or a tag is not a str.
            StorageError: the storage failed.
        """
        stags = self._storage_tags(tags)
        assert stags is not None  # noqa: S101 - tags were given
        index = self._tag_index
        assert index is not None  # noqa: S101 - _storage_tags checked it
        return await index.invalidate_tags(list(stags)) if stags else 0

    def _bulk_verbs(self, verb: str) -> AsyncBulkVerbs:
        bulk = self._bulk
        if bulk is None:
            raise TypeError(
                f"{type(self._storage).__name__} cannot list or clear keys (no BulkVerbs): "
                f"{verb} needs scan and delete_many"
            )
        return bulk

    async def _delete_prefixed(self, sprefix: str, verb: str) -> int:
        bulk = self._bulk_verbs(verb)
        removed = 0
        batch: list[str] = []
        async for key in bulk.scan(sprefix):  # deleted as listed, one batch at a time
            batch.append(key)
            if len(batch) >= _bulk.INVALIDATE_BATCH:
                removed += await bulk.delete_many(batch)
                batch = []
        if batch:
            removed += await bulk.delete_many(batch)
        return removed


def _stored_at(entry: Entry | None) -> float:
    return entry.stored_at if entry is not None else -math.inf
