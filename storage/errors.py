"""Errors raised by the storage layer.

The tree::

    StorageError                  any failure of a storage backend
    ├── StorageUnavailableError   the backend cannot be reached or was closed
    ├── StorageFullError          the backend has no room and cannot evict
    ├── CorruptEntryError         a stored record cannot be decoded
    └── SerializationError        a value cannot be encoded (also a TypeError)

Backends translate their driver's exceptions into this tree with ``raise ... from exc``
so callers (the engine) can handle one family of errors.
"""

from __future__ import annotations

__all__ = [
    "CorruptEntryError",
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
