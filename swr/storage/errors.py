"""Errors raised by the storage layer.

The tree::

    StorageError                  any failure of a storage backend
    ├── StorageUnavailableError   the backend cannot be reached or was closed
    ├── StorageFullError          the backend has no room and cannot evict
    ├── CorruptEntryError         a stored record cannot be decoded
    └── SerializationError        a value cannot be encoded (also a TypeError)

    PoolConfigError (ValueError)  a MemoryPool or one of its caches is set up wrongly
    ├── CacheNameError            the cache name is empty or already registered
    ├── CacheLimitsError          min, max or ttl out of range for one cache
    └── PoolCapacityError         the caches' mins and maxes do not fit the capacity

Backends translate their driver's exceptions into this tree with ``raise ... from exc``
so callers (the engine) can handle one family of errors.
"""

from __future__ import annotations

__all__ = [
    "CacheLimitsError",
    "CacheNameError",
    "CorruptEntryError",
    "PoolCapacityError",
    "PoolConfigError",
    "SerializationError",
    "StorageError",
    "StorageFullError",
    "StorageUnavailableError",
]


class StorageError(Exception):
    """A storage backend failed to complete an operation."""


class StorageUnavailableError(StorageError):
    """The backend is unreachable, or the storage was closed."""


class StorageFullError(StorageError):
    """The backend has no room for the write and cannot make any."""


class CorruptEntryError(StorageError):
    """A stored record does not decode: wrong format, unknown version or damaged bytes."""


class SerializationError(StorageError, TypeError):
    """A value cannot be turned into bytes by the chosen serializer."""


class PoolConfigError(ValueError):
    """A :class:`~storage.MemoryPool` or one of its caches was given impossible settings.

    Raised by the constructor or ``register``; the message names the rule and the numbers.
    """


class CacheNameError(PoolConfigError):
    """A cache name is empty, or another cache of the pool already has it."""


class CacheLimitsError(PoolConfigError):
    """A cache's own limits are out of range: not ``0 <= min <= max``, or ``ttl <= 0``."""


class PoolCapacityError(PoolConfigError):
    """The caches' reservations do not fit the pool.

    Either the mins add up to more than the capacity, or some cache's max is larger than
    the capacity left once every other cache has its min.
    """
