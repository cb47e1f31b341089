"""Storage layer of swr: entries, the storage protocols and their backends.

This package never imports ``swr``; it is usable on its own.
"""

from storage.adapters import AsyncAdapter
from storage.base import AsyncLeases, AsyncStorage, Entry, Leases, Storage, StorageMixin
from storage.errors import (
    CorruptEntryError,
    SerializationError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from storage.lmdb import LMDBStorage
from storage.memory import MemoryStorage

__all__ = [
    "AsyncAdapter",
    "AsyncLeases",
    "AsyncStorage",
    "CorruptEntryError",
    "Entry",
    "LMDBStorage",
    "Leases",
    "MemoryStorage",
    "SerializationError",
    "Storage",
    "StorageError",
    "StorageFullError",
    "StorageMixin",
    "StorageUnavailableError",
]
