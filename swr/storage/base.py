"""Entries and the storage protocols every backend implements.

A storage maps a string key (already namespaced by the engine) to an :class:`Entry`:
the cached value and the absolute instants (epoch seconds) at which it turns stale,
expired and dead. Keeping absolute instants in the entry means an entry keeps its
windows across restarts and across changes of the TTL configuration.

Rules every backend follows (the contract suite in ``tests/storage`` checks them):

- ``get`` returns ``None`` for an absent key and for an entry past ``expires_at``;
  it never raises for a missing key. A record that cannot be decoded is deleted and
  read as ``None``.
- ``delete`` is idempotent and says whether something was removed.
- Calls are safe from several threads (sync storages) or tasks (async storages).

What a storage must implement: the six verbs of :class:`Storage` (``get``, ``set``,
``delete``, ``get_many``, ``set_many``, ``close``) or of :class:`AsyncStorage` (with
``aclose``); :class:`StorageMixin` gives loops for the batch verbs. Everything else is
an optional capability, declared below as a runtime-checkable Protocol: the engine
checks once, in its constructor, which ones its storage has (``isinstance``), and
each capability's docstring says what the engine does with it and without it.

==========================  =========================================================
capability                  used for
==========================  =========================================================
:class:`FastLookup`         the hit path reads a dict directly (memory storages)
:class:`Leases`             one fetch per key across processes or hosts
:class:`SetAndRelease`      a leased miss stores and frees the lease in one step
:class:`Stats`              ``engine.stats().storage``
:class:`Health`             ``engine.stats().storage["available"]``, fallbacks' routing
:class:`AsyncView`          the asyncio engine's view of a sync storage
:class:`SerializerBinding`  ``StaleEngine(serializer=...)`` for byte storages
:class:`EntryFactoryBinding` byte storages decode into the engine's entry type
:class:`ClockAdoption`      the storage judges expiry with the engine's clock
:class:`BulkVerbs`          ``delete_many``, ``exists``, ``touch``, ``scan``, ``clear``
:class:`TagIndex`           ``execute(..., tags=...)`` and ``invalidate_tags``
:class:`AtomicOps`          ``incr``, ``add``, compare-and-set, ``append``; rate limits
:class:`Leaderboards`       ``storage.leaderboard(name)``
==========================  =========================================================

(``Async`` + name: the asyncio twin of a capability.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from swr.storage.serializers import Serializer

__all__ = [
    "AsyncAtomicOps",
    "AsyncBulkVerbs",
    "AsyncCloseable",
    "AsyncLeases",
    "AsyncSetAndRelease",
    "AsyncStorage",
    "AsyncStorageMixin",
    "AsyncTagIndex",
    "AsyncView",
    "AtomicOps",
    "BulkVerbs",
    "ClockAdoption",
    "Closeable",
    "CounterEntry",
    "Entry",
    "EntryFactory",
    "EntryFactoryBinding",
    "EntryTimes",
    "FastLookup",
    "Health",
    "Leaderboards",
    "Leases",
    "SerializerBinding",
    "SetAndRelease",
    "Stats",
    "Storage",
    "StorageMixin",
    "TagIndex",
]


@dataclass(slots=True)
class Entry:
    """One cached value with its windows, as absolute epoch seconds.

    ``stored_at <= fresh_until <= stale_until <= expires_at`` always holds.

    Entries are immutable by contract: neither storages nor the engine ever change
    one after creating it (use ``dataclasses.replace`` for a modified copy). The class
    is not ``frozen`` because a frozen dataclass costs five times as much to build,
    and byte storages build one on every read.

    Attributes:
        value: The cached object. Memory storages keep the object itself (shared,
            not copied); byte storages encode it with their serializer.
        stored_at: When the value was fetched.
        fresh_until: Served as a hit before this instant.
        stale_until: Served stale (with a background refresh) before this instant.
        expires_at: Kept as a fallback before this instant; storages may drop it after.
    """

    value: Any
    stored_at: float
    fresh_until: float
    stale_until: float
    expires_at: float


class CounterEntry(Entry):
    """An entry whose death only its store knows: a Redis native counter.

    Redis keeps a counter's TTL and nothing else, so it reads as an entry with infinite
    windows that Redis removes at its TTL. A copy kept elsewhere would outlive it: the
    wrappers (``TieredStorage``'s L1, ``FallbackStorage``'s warm copies) never copy one,
    and every read of it goes to its store.
    """

    __slots__ = ()


@runtime_checkable
class Storage(Protocol):
    """A synchronous key -> :class:`Entry` store."""

    def get(self, key: str) -> Entry | None:
        """Return the live entry under ``key``, or ``None``."""
        ...

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` under ``key``, replacing any previous one."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether an entry was there."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the entries of ``keys``, in order, ``None`` where missing."""
        ...

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries at once."""
        ...

    def close(self) -> None:
        """Release resources; idempotent."""
        ...


@runtime_checkable
class AsyncStorage(Protocol):
    """The asyncio twin of :class:`Storage`: the same verbs as coroutines."""

    async def get(self, key: str) -> Entry | None:
        """Return the live entry under ``key``, or ``None``."""
        ...

    async def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` under ``key``, replacing any previous one."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether an entry was there."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the entries of ``keys``, in order, ``None`` where missing."""
        ...

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries at once."""
        ...

    async def aclose(self) -> None:
        """Release resources; idempotent."""
        ...


EntryFactory: TypeAlias = "Callable[[Any, float, float, float, float], Entry]"
"""Builds an entry from ``(value, stored_at, fresh_until, stale_until, expires_at)``."""


@runtime_checkable
class FastLookup(Protocol):
    """Optional capability: raw dict reads for the engine's hit path.

    With it, a hit costs two C calls (``lookup`` then ``touch``) and the engine judges
    the windows itself (``lookup`` may return an entry past ``expires_at``). Without
    it, the engine calls ``get`` (sync) or awaits it (asyncio).
    """

    def lookup_functions(self) -> tuple[Callable[[str], Entry | None], Callable[[str], None]]:
        """Return ``(lookup, touch)``: ``touch(key)`` marks a found entry recently used."""
        ...


@runtime_checkable
class Leases(Protocol):
    """Optional capability: short exclusive leases for singleflight across processes.

    A storage shared by several processes (LMDB) or hosts (Redis) implements this so
    that only one of them fetches a key at a time. A lease expires on its own after
    ``ttl`` seconds, so a holder that died costs one lease period, never a hang.

    With it, the engine's singleflight leader takes the key's lease before fetching,
    and other processes wait for its entry. Without it, each process fetches on its own
    (threads or tasks of one engine still share one fetch).
    """

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds; return a token, or ``None`` if held."""
        ...

    def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still owns it."""
        ...


@runtime_checkable
class AsyncLeases(Protocol):
    """The asyncio twin of :class:`Leases`."""

    async def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds; return a token, or ``None`` if held."""
        ...

    async def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still owns it."""
        ...


@runtime_checkable
class SetAndRelease(Protocol):
    """Optional capability: store an entry and release its lease in one step.

    With it, a miss fetched under a lease costs one write (one LMDB transaction, one
    Redis round trip) instead of two. Without it, the engine calls ``set`` and then
    ``release_lease``. Only meaningful with :class:`Leases`.
    """

    def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store ``entry`` under ``key``; release the lease on ``key`` if ``token`` owns it."""
        ...


@runtime_checkable
class AsyncSetAndRelease(Protocol):
    """The asyncio twin of :class:`SetAndRelease`."""

    async def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store ``entry`` under ``key``; release the lease on ``key`` if ``token`` owns it."""
        ...


@runtime_checkable
class Stats(Protocol):
    """Optional capability: the storage's own counters.

    With it, ``engine.stats().storage`` holds them (an error reading them shows as
    ``{"error": ...}``, never raises). Without it, that dict is empty.
    """

    def stats(self) -> Mapping[str, Any]:
        """The counters by name."""
        ...


@runtime_checkable
class Health(Protocol):
    """Optional capability: a cheap, non-blocking health flag.

    With it, ``engine.stats().storage`` says ``available`` (0 or 1) and a
    :class:`~swr.storage.FallbackStorage` routes around a primary that is down.
    Without it, the storage is taken as available; its failures still read as misses.
    """

    @property
    def available(self) -> bool:
        """Whether the storage answers now (no I/O: a flag the storage keeps)."""
        ...


@runtime_checkable
class AsyncView(Protocol):
    """Optional capability of a sync storage: its own asyncio view.

    With it, ``AsyncStaleEngine`` uses that view (Redis: a client on the event loop;
    LMDB: writes off the loop when they fsync). Without it, the engine wraps the
    storage in an inline :class:`~swr.storage.AsyncAdapter` (right for storages that
    never block).
    """

    def as_async(self) -> AsyncStorage:
        """The asyncio view of this storage (same data)."""
        ...


@runtime_checkable
class SerializerBinding(Protocol):
    """Optional capability of byte storages: a view encoding values with a serializer.

    With it, ``StaleEngine(storage, serializer=s)`` uses ``storage.with_serializer(s)``.
    Without it, a serializer is refused with ``ConfigError`` (the storage keeps Python
    objects, there is nothing to encode).
    """

    def with_serializer(self, serializer: Serializer) -> Any:
        """A view of the same data whose values go through ``serializer``."""
        ...


@runtime_checkable
class EntryFactoryBinding(Protocol):
    """Optional capability of byte storages: a view decoding into another entry type.

    With it, the engine's entries (which remember their HIT result) come back from a
    storage that keeps decoded entries (LMDB's read cache), so its hits allocate
    nothing. Without it, the engine builds a result per hit.
    """

    def with_entry_factory(self, factory: EntryFactory) -> Any:
        """A view of the same data whose reads build entries with ``factory``."""
        ...


@runtime_checkable
class ClockAdoption(Protocol):
    """Optional capability: judge expiry with the engine's clock.

    The engine's clock decides every window of the entries it serves. An engine calls
    ``adopt_clock(engine_clock)`` once, in its constructor: a storage that was given no
    clock of its own starts judging expiry (reads, sweeps, eviction by age) with the
    engine's; one given a clock explicitly keeps it and returns it, and the engine then
    raises ``ValueError`` if the two differ. Without it, the storage is taken to keep
    entries at least until the engine judges them dead (removal may come later, never
    earlier).
    """

    def adopt_clock(self, clock: Callable[[], float] | None) -> Callable[[], float] | None:
        """Use ``clock`` unless a clock was given explicitly; return that explicit clock."""
        ...


class EntryTimes(NamedTuple):
    """The four instants of an entry, without its value (see :class:`Entry`)."""

    stored_at: float
    fresh_until: float
    stale_until: float
    expires_at: float


@runtime_checkable
class BulkVerbs(Protocol):
    """Optional capability: keys in bulk, without decoding values.

    ``delete_many`` removes keys in one round trip or transaction and returns how many
    held an entry; ``exists`` says whether a live entry is there without decoding its
    value; ``touch`` replaces an entry's instants (its windows) without rewriting the
    payload and says whether a live entry was there; ``scan(prefix)`` yields the keys
    of entries (never leases or indexes) starting with the literal ``prefix`` (no
    pattern characters), in batches, never blocking the store (Redis: ``SCAN``, never
    ``KEYS``); ``clear()`` removes every entry this storage holds (under its prefix).
    Without it, the engine loops over ``delete`` and cannot clear or invalidate by prefix.
    """

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; return how many held an entry."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a live entry is under ``key`` (its value is not decoded)."""
        ...

    def touch(self, key: str, times: EntryTimes) -> bool:
        """Give the entry under ``key`` new instants; return whether one was there."""
        ...

    def scan(self, prefix: str = "") -> Iterator[str]:
        """The keys of entries starting with ``prefix``."""
        ...

    def clear(self) -> None:
        """Remove every entry (under this storage's prefix)."""
        ...


@runtime_checkable
class TagIndex(Protocol):
    """Optional capability: entries recorded under tags, invalidated by tag.

    ``set_tagged`` stores an entry and records its key under each tag, in the same
    store (an LMDB sub-database, a Redis set per tag living as long as its entries), so
    that ``invalidate_tags`` in any process or host sharing the store removes every
    entry carrying one of the tags and returns how many it removed.
    """

    def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Store ``entry`` and record ``key`` under each of ``tags``."""
        ...

    def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry recorded under one of ``tags``; return how many."""
        ...


@runtime_checkable
class AsyncBulkVerbs(Protocol):
    """The asyncio twin of :class:`BulkVerbs` (``scan`` is an async iterator)."""

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; return how many held an entry."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether a live entry is under ``key`` (its value is not decoded)."""
        ...

    async def touch(self, key: str, times: EntryTimes) -> bool:
        """Give the entry under ``key`` new instants; return whether one was there."""
        ...

    def scan(self, prefix: str = "") -> AsyncIterator[str]:
        """The keys of entries starting with ``prefix``."""
        ...

    async def clear(self) -> None:
        """Remove every entry (under this storage's prefix)."""
        ...


@runtime_checkable
class AsyncTagIndex(Protocol):
    """The asyncio twin of :class:`TagIndex`."""

    async def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Store ``entry`` and record ``key`` under each of ``tags``."""
        ...

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry recorded under one of ``tags``; return how many."""
        ...


@runtime_checkable
class AtomicOps(Protocol):
    """Optional capability: key-value operations that are atomic in the storage's scope.

    Atomic across the threads of a process (memory, pool), the processes of a host
    (LMDB: one write transaction) or the hosts sharing a Redis (native commands or
    scripts). Values written here are ordinary entries (``get`` reads them back). A
    ``ttl`` (seconds, ``None`` for never) applies when an operation creates the key;
    the entry is then fresh for its whole life (``fresh_until == stale_until ==
    expires_at``). A dead key counts as absent.

    - ``incr(key, delta=1, ttl=None) -> int``: add ``delta`` to an integer value,
      creating the key at 0 first (with ``ttl``); an existing key keeps its windows.
      A value that is not an ``int`` raises ``TypeError``.
    - ``decr``: ``incr`` by ``-delta``.
    - ``add(key, value, ttl=None) -> bool``: store only if absent or dead; exactly
      ``True`` or ``False``.
    - ``get_versioned(key) -> (Entry, version) | None`` and ``replace_if(key, version,
      value, ttl=None) -> bool``: compare-and-set; ``version`` is an opaque token that
      changes with every write of the key (memory: the entry object; byte storages: the
      stored record, so a rewrite with identical bytes, instants included, keeps it).
      ``replace_if`` stores only over a live entry; the new value keeps the old
      windows, or lives ``ttl`` seconds from now when ``ttl`` is given.
    - ``append(key, data, ttl=None) -> int``: append ``bytes`` to a ``bytes`` value or
      ``str`` to a ``str`` value (creating it, with ``ttl``); return the new length.
      Other types: ``TypeError``.

    A ``ttl`` that is not ``None`` must be a finite number of seconds > 0 (else
    ``ValueError``). "Never" is stored as ``inf`` in memory and Redis, as the largest
    finite float in LMDB (its records hold finite times).

    Redis stores a counter as a native integer (``INCRBY``; with a ``ttl``, ``SET NX
    PX`` then ``INCRBY`` in one script), whose only time is the key's own TTL: every
    read gives it as an ``int`` entry fresh until Redis removes the key (windows
    ``inf``, ``stored_at`` the time of the read), and Redis's clock, not the storage's,
    decides when it dies. ``touch`` sets that TTL; a change derived from the counter
    (``replace_if`` without ``ttl``) keeps it. An ``int`` written by ``set`` stays a
    record and keeps its windows through ``incr``.
    """

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to the integer under ``key``; return the new value."""
        ...

    def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Subtract ``delta`` from the integer under ``key``; return the new value."""
        ...

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent or dead; return whether it did."""
        ...

    def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """The live entry under ``key`` with its version token, or ``None``."""
        ...

    def replace_if(self, key: str, version: Any, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` still holds ``version``; return whether it did."""
        ...

    def append(self, key: str, data: bytes | str, ttl: float | None = None) -> int:
        """Append ``data`` to the value under ``key``; return its new length."""
        ...


@runtime_checkable
class AsyncAtomicOps(Protocol):
    """The asyncio twin of :class:`AtomicOps`: the same operations as coroutines."""

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to the integer under ``key``; return the new value."""
        ...

    async def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Subtract ``delta`` from the integer under ``key``; return the new value."""
        ...

    async def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent or dead; return whether it did."""
        ...

    async def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """The live entry under ``key`` with its version token, or ``None``."""
        ...

    async def replace_if(
        self, key: str, version: Any, value: Any, ttl: float | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` still holds ``version``; return whether it did."""
        ...

    async def append(self, key: str, data: bytes | str, ttl: float | None = None) -> int:
        """Append ``data`` to the value under ``key``; return its new length."""
        ...


@runtime_checkable
class Leaderboards(Protocol):
    """Optional capability: sorted sets of ``member -> score`` shared like the entries.

    ``leaderboard(name, max_size=None)`` returns a leaderboard (see
    :mod:`swr.storage.leaderboard` for the API and its Redis semantics) stored in this
    storage: in this process (memory), shared by the processes of a host (LMDB), or by
    every host (Redis: one sorted set, cluster-safe).
    """

    def leaderboard(self, name: str, *, max_size: int | None = None) -> Any:
        """The leaderboard called ``name``."""
        ...


class Closeable:
    """``with`` support for anything with a ``close()``: leaving the block closes it."""

    __slots__ = ()

    def close(self) -> None:  # pragma: no cover - always overridden
        """Release resources."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncCloseable:
    """``async with`` support for anything with an ``aclose()``: leaving awaits it."""

    __slots__ = ()

    async def aclose(self) -> None:  # pragma: no cover - always overridden
        """Release resources."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class StorageMixin(Closeable):
    """Defaults for synchronous storages: batch calls as loops, and ``with`` support.

    Backends with a real batch primitive (Redis pipelines, one LMDB transaction)
    override ``get_many`` / ``set_many``.
    """

    def get(self, key: str) -> Entry | None:  # pragma: no cover - always overridden
        """Return the live entry under ``key``, or ``None``."""
        raise NotImplementedError

    def set(self, key: str, entry: Entry) -> None:  # pragma: no cover - always overridden
        """Store ``entry`` under ``key``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; the default has none."""

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the entries of ``keys`` in order, ``None`` where missing."""
        return [self.get(key) for key in keys]

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store each entry in turn."""
        for key, entry in entries.items():
            self.set(key, entry)


class AsyncStorageMixin(AsyncCloseable):
    """``async with`` support for asyncio storages: leaving the block awaits ``aclose()``."""

    async def aclose(self) -> None:
        """Release resources; the default has none."""
