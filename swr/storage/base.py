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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = [
    "AsyncCloseable",
    "AsyncLeases",
    "AsyncStorage",
    "AsyncStorageMixin",
    "Closeable",
    "Entry",
    "Leases",
    "Storage",
    "StorageMixin",
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


@runtime_checkable
class Leases(Protocol):
    """Optional capability: short exclusive leases for singleflight across processes.

    A storage shared by several processes (LMDB) or hosts (Redis) implements this so
    that only one of them fetches a key at a time. A lease expires on its own after
    ``ttl`` seconds, so a holder that died costs one lease period, never a hang.
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
