"""What an engine's storage can do, decided once, when the engine is built.

The optional capabilities are declared in :mod:`swr.storage.base` as runtime-checkable
Protocols; :func:`bind_storage` (threads) and :func:`async_bind_storage` (asyncio) check
them with ``isinstance`` and return a :class:`Bound`: the storage the engine talks to
and the callables of each capability it has (``None`` for the ones it lacks). The
engines never probe their storage after that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swr._core import CachedEntry
from swr.errors import ConfigError
from swr.storage import AsyncAdapter, MemoryStorage
from swr.storage.adapters import as_async, is_async
from swr.storage.base import (
    AsyncLeases,
    AsyncSetAndRelease,
    ClockAdoption,
    EntryFactoryBinding,
    FastLookup,
    Health,
    Leases,
    SerializerBinding,
    SetAndRelease,
    Stats,
)

if TYPE_CHECKING:
    from swr.storage import Entry, Storage
    from swr.storage.serializers import Serializer

__all__ = ["Bound", "adopt_clock", "async_bind_storage", "bind_storage"]

Read = Callable[[str], "Entry | None"]


@dataclass(frozen=True, slots=True)
class Bound:
    """A storage as an engine uses it: the storage, then one field per capability.

    Attributes:
        storage: What the engine calls (for asyncio: the storage's asyncio view).
        get: A read made without the asyncio protocol (sync storages, inline adapters),
            or ``None``: await ``storage.get``.
        lookup: The hit path's read (``FastLookup``: no expiry check), or ``None``.
        touch: Marks an entry found by ``lookup`` recently used, or ``None``.
        leases: The storage when it has ``Leases``, else ``None``.
        set_and_release: ``SetAndRelease.set_and_release``, or ``None``.
        stats: ``Stats.stats``, or ``None``.
        health: The object whose ``available`` says the storage answers, or ``None``.
    """

    storage: Any
    get: Read | None
    lookup: Read | None
    touch: Callable[[str], None] | None
    leases: Any
    set_and_release: Callable[..., Any] | None
    stats: Callable[[], Mapping[str, Any]] | None
    health: Health | None


def _prepare(storage: Any, serializer: Serializer | None, clock: Callable[[], float] | None) -> Any:
    """``storage`` (a new MemoryStorage if ``None``), bound to ``serializer`` and entries."""
    store: Any = MemoryStorage() if storage is None else storage
    if serializer is not None and not isinstance(store, SerializerBinding):
        raise ConfigError(
            f"{type(store).__name__} keeps values as Python objects and takes no "
            "serializer; serializers apply to byte storages such as LMDBStorage and "
            "RedisStorage"
        )
    # Before any view is made: views share the clock of the storage they come from.
    adopt_clock(store, clock)
    if serializer is not None:
        store = store.with_serializer(serializer)
    # Byte storages that keep decoded entries then hand back the engine's own entries,
    # whose hits reach the same allocation-free return as memory hits.
    if isinstance(store, EntryFactoryBinding):
        store = store.with_entry_factory(CachedEntry)
    return store


def adopt_clock(store: object, clock: Callable[[], float] | None) -> None:
    """Have ``store`` judge expiry with the engine's ``clock`` (``ClockAdoption``).

    Raises:
        ValueError: ``store`` was given a clock of its own that is not ``clock``: the
            engine and its storage would judge the same entries by two clocks.
    """
    inner = store.sync if isinstance(store, AsyncAdapter) else store
    if not isinstance(inner, ClockAdoption):
        return
    own = inner.adopt_clock(clock)
    if own is not None and own != clock:
        raise ValueError(
            f"{type(store).__name__} was given its own clock {own!r}, which is not the "
            f"engine's clock {clock!r} (time.time when None): give the clock to the "
            "engine only, and the storage adopts it"
        )


def _reads(store: Storage) -> tuple[Read | None, Read | None, Callable[[str], None] | None]:
    """``(get, lookup, touch)`` of a synchronous storage."""
    if isinstance(store, FastLookup):
        lookup, touch = store.lookup_functions()
        return store.get, lookup, touch
    return store.get, store.get, None


def bind_storage(
    storage: Any, serializer: Serializer | None, clock: Callable[[], float] | None
) -> Bound:
    """The storage of a ``StaleEngine`` and its capabilities.

    Raises:
        ConfigError: ``storage`` is an asyncio storage, or refuses ``serializer``.
    """
    if storage is not None and is_async(storage):
        raise ConfigError(
            f"{type(storage).__name__} is an asyncio storage; use AsyncStaleEngine with it"
        )
    store = _prepare(storage, serializer, clock)
    get, lookup, touch = _reads(store)
    leases = store if isinstance(store, Leases) else None
    return Bound(
        store,
        get,
        lookup,
        touch,
        leases,
        store.set_and_release if leases is not None and isinstance(store, SetAndRelease) else None,
        store.stats if isinstance(store, Stats) else None,
        store if isinstance(store, Health) else None,
    )


def async_bind_storage(
    storage: Any, serializer: Serializer | None, clock: Callable[[], float] | None
) -> Bound:
    """The storage of an ``AsyncStaleEngine`` (its asyncio view) and its capabilities.

    Raises:
        ConfigError: ``storage`` refuses ``serializer``.
    """
    base = _prepare(storage, serializer, clock)
    store = as_async(base)
    if isinstance(store, AsyncAdapter):
        # An adapter over a sync storage: its reads need no await, and its capabilities
        # are those of the storage it wraps.
        sync = store.sync
        get, lookup, touch = _reads(sync)
        has_leases = isinstance(sync, Leases)
        releases = has_leases and isinstance(sync, SetAndRelease)
        stats = sync.stats if isinstance(sync, Stats) else None
    else:
        get = lookup = touch = None
        has_leases = isinstance(store, AsyncLeases)
        releases = has_leases and isinstance(store, AsyncSetAndRelease)
        stats = store.stats if isinstance(store, Stats) else None
    return Bound(
        store,
        get,
        lookup,
        touch,
        store if has_leases else None,
        store.set_and_release if releases else None,
        stats,
        base if isinstance(base, Health) else None,
    )
