# Generated from swr/storage/_async/fallback.py by tools/unasync.py:
# edit that file, not this one.
"""FallbackStorage: a primary (Redis) with a local fallback, over asyncio storages.

Written once: the thread twin in ``swr/storage/_sync/`` is generated from this file by
``tools/unasync.py``. Every decision lives in :mod:`swr.storage._fallback`; this class
only performs the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from swr.storage._fallback import (
    FROM_FALLBACK,
    FROM_PRIMARY,
    Action,
    SyncTwin,
    WarmCopies,
    _FallbackBase,
    reconcile,
    warm_settings,
)
from swr.storage._primitives import has_leases
from swr.storage._sync._tiers import (
    AtomicForwarding,
    clear,
    delete_keys,
    invalidate,
    touch,
)
from swr.storage._views import with_serializer
from swr.storage.base import AtomicOps, Entry, EntryTimes, StorageMixin
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage.base import Storage
    from swr.storage.serializers import Serializer

__all__ = ["FallbackStorage"]


class FallbackStorage(
    _FallbackBase,
    AtomicForwarding,
    SyncTwin,
    StorageMixin,
):
    """A primary storage (Redis) that falls back to another (memory) while unavailable.

    Example::

        store = RedisStorage.from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
        safe = FallbackStorage(store, MemoryStorage(max_entries=50_000).as_async())
        engine = StaleEngine(safe, ttl=CacheTTL(fresh=60, stale=600))

    Args:
        primary: The storage used while healthy; it should fail fast when unavailable
            (RedisStorage does, and exposes ``available``).
        fallback: The storage used while the primary is unavailable; kept warm by
            writing to it too.
        clock: Zero-argument callable returning epoch seconds, for delete instants;
            ``time.time`` at each call by default. Give it the engine's clock.
        max_dirty: Most keys changed during an outage remembered for reconciling.
        warm_reads: Also copy into the fallback the entries *read* from the primary,
            so an outage costs no refetch of the keys this process reads (written
            keys are always copied).
        warm_max_entries: Most entries kept by ``warm_reads``; the oldest copies are
            deleted from the fallback past it.
        warm_max_bytes: Most bytes (estimated from the values) kept by ``warm_reads``.

    Raises:
        ValueError: ``primary is fallback``, ``max_dirty`` < 0, or a ``warm_max_*``
            < 1.

    Errors of the primary other than unavailability (a value it cannot encode) and any
    error of the fallback propagate. ``close()`` closes both tiers. The thread twin
    (over two sync storages) is thread-safe if both tiers are; the asyncio one (over
    two asyncio storages) is used from one event loop.
    """

    primary: Storage
    fallback: Storage

    def __init__(
        self,
        primary: Storage,
        fallback: Storage,
        *,
        clock: Callable[[], float] | None = None,
        max_dirty: int = 10_000,
        warm_reads: bool = True,
        warm_max_entries: int = 10_000,
        warm_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        warm = WarmCopies(warm_max_entries, warm_max_bytes) if warm_reads else None
        self._setup(primary, fallback, clock, max_dirty, warm)

    def get(self, key: str) -> Entry | None:
        """Read the primary while it is available, else the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                entry = self.primary.get(key)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                self._served_primary += 1
                pending, mark = self._pending(key)
                if pending:
                    return self._reconcile(key, mark, entry)
                if entry is not None and self._warm is not None:
                    self._keep_warm((key,), (entry,))
                return entry
        self._served_fallback += 1
        return self.fallback.get(key)

    def _keep_warm(self, keys: Sequence[str], entries: Sequence[Entry | None]) -> None:
        """Copy entries read from the primary into the fallback (bounded, new ones only)."""
        copies = self._warm_copies(keys, entries)
        if not copies:
            return
        self.fallback.set_many(copies)
        evicted = self._warm.add(copies)  # type: ignore[union-attr]
        for key in evicted:
            self.fallback.delete(key)

    def _reconcile(self, key: str, mark: float | None, entry: Entry | None) -> Entry | None:
        served, action = reconcile(mark, entry, self.fallback.get(key))
        try:
            if action is Action.WRITE:
                assert served is not None  # noqa: S101 - WRITE always carries the entry
                self.primary.set(key, served)
            elif action is Action.DELETE:
                self.primary.delete(key)
        except StorageUnavailableError as exc:
            self._primary_failed(exc)
            return served
        self._reconciled_key(key, mark)
        return served

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Read a batch from the primary while available, else the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                entries: list[Entry | None] = self.primary.get_many(keys)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                self._served_primary += len(keys)
                if self._dirty:
                    for i, key in enumerate(keys):
                        pending, mark = self._pending(key)
                        if pending:
                            entries[i] = self._reconcile(key, mark, entries[i])
                if self._warm is not None:
                    self._keep_warm(keys, entries)
                return entries
        self._served_fallback += len(keys)
        return self.fallback.get_many(keys)

    def set(self, key: str, entry: Entry) -> None:
        """Write to the primary (while available) and to the fallback."""
        if self._closed:
            self._check_open()
        self._write(key, entry, None)

    def _write(self, key: str, entry: Entry, tags: Sequence[str] | None) -> None:
        """Write to the primary while it is up (under ``tags`` if any), then the fallback."""
        if self._primary_up():
            try:
                if tags is None:
                    self.primary.set(key, entry)
                else:
                    self.primary.set_tagged(key, entry, tags)  # type: ignore[attr-defined]
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark(key, None)
            else:
                self._clear(key)
        else:
            self._mark(key, None)
        self._written(key)
        self.fallback.set(key, entry)

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Write a batch to the primary (while available) and to the fallback."""
        if self._closed:
            self._check_open()
        if self._primary_up():
            try:
                self.primary.set_many(entries)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                for key in entries:
                    self._mark(key, None)
            else:
                for key in entries:
                    self._clear(key)
        else:
            for key in entries:
                self._mark(key, None)
        for key in entries:
            self._written(key)
        self.fallback.set_many(entries)

    def delete(self, key: str) -> bool:
        """Delete from both; return whether either held the key."""
        if self._closed:
            self._check_open()
        removed = False
        if self._primary_up():
            try:
                removed = self.primary.delete(key)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark(key, self._now())
            else:
                self._clear(key)
        else:
            self._mark(key, self._now())
        self._written(key)
        removed_fallback: bool = self.fallback.delete(key)
        return removed_fallback or removed

    # -- bulk verbs and tags: the primary while available, the fallback always ----------

    def delete_many(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` from both tiers; return how many either held.

        While the primary is unavailable the keys are remembered as deleted (as by
        :meth:`delete`) and removed from it once it is back.
        """
        self._check_open()
        removed = 0
        if self._primary_up():
            try:
                removed = delete_keys(self.primary, keys)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
                self._mark_all(keys, self._now())
            else:
                for key in keys:
                    self._clear(key)
        else:
            self._mark_all(keys, self._now())
        for key in keys:
            self._written(key)
        return max(removed, delete_keys(self.fallback, keys))

    def exists(self, key: str) -> bool:
        """Whether a live entry is under ``key``: the primary's answer while available."""
        self._check_open()
        if self._primary_up() and not self._pending(key)[0]:
            try:
                found: bool = self.primary.exists(key)  # type: ignore[attr-defined]
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                return found
        return self.get(key) is not None

    def touch(self, key: str, times: EntryTimes) -> bool:
        """Renew the entry's instants in the primary (while available) and the fallback."""
        self._check_open()
        touched = False
        if self._primary_up():
            try:
                touched = touch(self.primary, key, times)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
        return touch(self.fallback, key, times) or touched

    def scan(self, prefix: str = "") -> Iterator[str]:
        """The primary's keys starting with ``prefix``; the fallback's while it is down."""
        self._check_open()
        tier: Any = self.primary if self._primary_up() else self.fallback
        keys: Iterator[str] = tier.scan(prefix)
        return keys

    def clear(self) -> None:
        """Clear both tiers.

        Raises:
            StorageUnavailableError: the primary is unavailable (the fallback is cleared
                anyway; the primary still holds its entries).
        """
        self._check_open()
        try:
            if not self._primary_up():
                raise StorageUnavailableError("the primary is unavailable: it was not cleared")
            clear(self.primary)
        finally:
            clear(self.fallback)

    def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Record ``entry`` under ``tags`` in the primary (while available); copy it to the
        fallback as :meth:`set` does.
        """  # noqa: D205 - the two tiers are the summary
        self._check_open()
        self._write(key, entry, tags)

    def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove the entries of ``tags`` from the primary and their copies in the fallback.

        The fallback drops the keys the primary names (Redis does), else everything.

        Raises:
            StorageUnavailableError: the primary is unavailable (the tag index lives
                there); the fallback is cleared so that none of its copies is served.
        """
        self._check_open()
        keys: list[str] | None = None
        try:
            if not self._primary_up():
                raise StorageUnavailableError("the primary is unavailable: tags not invalidated")
            removed, keys = invalidate(self.primary, tags)
        finally:
            if keys is None:
                clear(self.fallback)
            else:
                delete_keys(self.fallback, keys)
        return removed

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease from the primary while available, else from the fallback."""
        self._check_open()
        primary = self.primary
        if self._primary_up() and has_leases(primary):
            try:
                token = primary.acquire_lease(key, ttl)
            except StorageUnavailableError as exc:
                self._primary_failed(exc)
            else:
                return None if token is None else FROM_PRIMARY + token
        fallback = self.fallback
        if not has_leases(fallback):
            raise TypeError(f"{type(fallback).__name__} does not support leases")
        token = fallback.acquire_lease(key, ttl)
        return None if token is None else FROM_FALLBACK + token

    def release_lease(self, key: str, token: str) -> None:
        """Release a lease on the tier that granted it; a lost one expires by itself."""
        tier, raw = self._split_token(token)
        storage = self.primary if tier == FROM_PRIMARY else self.fallback
        if not tier or not has_leases(storage):
            return
        try:
            storage.release_lease(key, raw)
        except StorageUnavailableError as exc:
            self._primary_failed(exc)

    def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store ``entry`` as :meth:`set` does and release the lease ``token``.

        A lease granted by a primary that stores and releases together
        (``set_and_release``, as Redis does in one round trip) costs it one call.
        """
        if self._closed:
            self._check_open()
        tier, raw = self._split_token(token)
        if tier != FROM_PRIMARY or not self._store_release or not self._primary_up():
            self.set(key, entry)
            self.release_lease(key, token)
            return
        try:
            self.primary.set_and_release(key, entry, raw)  # type: ignore[attr-defined]
        except StorageUnavailableError as exc:
            self._primary_failed(exc)
            self._mark(key, None)
        else:
            self._clear(key)
        self._written(key)
        self.fallback.set(key, entry)

    def _atomic_ops(self) -> Any:
        primary = self.primary
        if not isinstance(primary, AtomicOps):
            raise TypeError(f"primary {primary!r} has no atomic operations")
        if not self._primary_up():
            # The fallback is local: a count kept there would diverge from the
            # primary's, and come back wrong. Callers (a rate limiter) decide.
            raise StorageUnavailableError(
                "atomic operations run on the primary only, and the primary is down"
            )
        return primary

    def _atomic(self, name: str, key: str, *args: Any) -> Any:
        """Run the atomic operation ``name`` on the primary, then drop the fallback's copy.

        Raises:
            StorageUnavailableError: the primary is down (or fails now): the fallback
                never takes an atomic operation (see the class docstring).
        """
        self._check_open()
        try:
            result = getattr(self._atomic_ops(), name)(key, *args)
        except StorageUnavailableError as exc:
            if self._primary_up():
                self._primary_failed(exc)
            raise
        self.fallback.delete(key)
        return result

    # -- atomic operations (AtomicOps) ----------------------------------------------------

    def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """``get_versioned`` on the primary."""
        result: tuple[Entry, Any] | None = self._atomic_ops().get_versioned(key)
        return result

    def with_serializer(self, serializer: Serializer) -> FallbackStorage:
        """The same tiers with ``serializer`` for those that take one."""
        return FallbackStorage(
            with_serializer(self.primary, serializer),
            with_serializer(self.fallback, serializer),
            clock=self._clock,
            max_dirty=self._max_dirty,
            **warm_settings(self._warm),
        )

    def close(self) -> None:
        """Close both tiers. Idempotent; later calls raise ``StorageUnavailableError``."""
        if self._closed:
            return
        self._closed = True
        try:
            self.primary.close()
        finally:
            self.fallback.close()
