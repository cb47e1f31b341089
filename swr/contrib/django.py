"""Django cache backends on swr storages: a durable LMDB directory, or Redis.

Configure them in ``settings.CACHES`` like Django's own backends::

    CACHES = {
        "default": {
            "BACKEND": "swr.contrib.django.LMDBCache",
            "LOCATION": "/var/cache/myapp",  # a directory every worker opens
            "TIMEOUT": 300,
            "OPTIONS": {"max_bytes": 1 << 30},  # LMDBStorage's keyword arguments
        },
        "shared": {
            "BACKEND": "swr.contrib.django.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/0",
            "OPTIONS": {"prefix": "myapp:"},  # RedisStorage.from_url's keywords
        },
    }

Both honour Django's whole cache contract (``KEY_PREFIX``, ``VERSION``,
``KEY_FUNCTION``, key warnings, ``timeout=None`` for ever and ``0`` for not cached).
``add``, ``incr``, ``decr`` and ``touch`` are atomic across the processes sharing the
directory or the Redis, through the storage's atomic operations
(:class:`~swr.storage.base.AtomicOps`: ``add``, and ``incr`` as a compare-and-set that
keeps the key's expiry; on Redis ``incr`` makes the value a native Redis integer and is
one round trip) and bulk verbs (``touch``). 4 processes incrementing one key
lose no update and 6 processes adding one key have exactly one winner.

``get_or_set`` with a callable computes once across processes: the caller that takes
the key's lease computes, the others wait for its value (up to ``lease_timeout``
seconds, then compute themselves).

Values are pickled, as Django's own backends do (integers are kept as integers so that
they can be incremented). Unpickling runs code chosen by whoever wrote the bytes: the
directory or the Redis must be writable only by trusted processes.

Options of the backend itself (the others go to the storage): ``pickle_protocol``
(default :data:`pickle.HIGHEST_PROTOCOL`) and ``lease_timeout`` (seconds a
``get_or_set`` computation may hold its key before others compute too; default 30).
``MAX_ENTRIES`` and ``CULL_FREQUENCY`` are read by Django and ignored here: the storages
bound themselves by bytes (LMDB's ``max_bytes``) or by Redis's own eviction policy.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Protocol

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from swr.storage._validate import check_int, check_seconds
from swr.storage.base import AtomicOps, Entry, EntryTimes
from swr.storage.errors import SerializationError

__all__ = ["LMDBCache", "RedisCache"]

_FOREVER: Final = sys.float_info.max  # "never expires", finite as the records need
_MISSING: Final = object()
_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 63) - 1  # the stored integer must fit in 64 bits (msgpack)
_POLL_FIRST: Final = 0.0005
_POLL_MAX: Final = 0.005
_FILL_SUFFIX: Final = "\x00get_or_set"  # the lease of a get_or_set computation


class _LeasedStorage(Protocol):
    """What the backends need of a storage: the verbs, leases, bulk and atomic verbs."""

    def get(self, key: str) -> Entry | None: ...
    def set(self, key: str, entry: Entry) -> None: ...
    def delete(self, key: str) -> bool: ...
    def get_many(self, keys: list[str]) -> list[Entry | None]: ...
    def set_many(self, entries: Mapping[str, Entry]) -> None: ...
    def acquire_lease(self, key: str, ttl: float) -> str | None: ...
    def release_lease(self, key: str, token: str) -> None: ...
    def add(self, key: str, value: Any, ttl: float | None = None) -> bool: ...
    def get_versioned(self, key: str) -> tuple[Entry, Any] | None: ...
    def replace_if(self, key: str, version: Any, value: Any, ttl: float | None = None) -> bool: ...
    def delete_many(self, keys: list[str]) -> int: ...
    def exists(self, key: str) -> bool: ...
    def touch(self, key: str, times: EntryTimes) -> bool: ...
    def clear(self) -> None: ...


def _pauses() -> Iterator[float]:
    """Sleeps between polls: from half a millisecond, doubling up to 5 ms."""
    pause = _POLL_FIRST
    while True:
        yield pause
        pause = min(pause * 2, _POLL_MAX)


class _SWRCache(BaseCache):  # type: ignore[misc]  # django ships no type information
    """Django's ``BaseCache`` over an swr storage with leases (see the module)."""

    def __init__(self, location: Any, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        options = {k: v for k, v in (params.get("OPTIONS") or {}).items() if not k.isupper()}
        protocol = options.pop("pickle_protocol", pickle.HIGHEST_PROTOCOL)
        lease_timeout = options.pop("lease_timeout", 30.0)
        self._protocol = check_int(
            "OPTIONS['pickle_protocol']", protocol, type_error=ImproperlyConfigured
        )
        self._lease_timeout = check_seconds(
            "OPTIONS['lease_timeout']",
            lease_timeout,
            error=ImproperlyConfigured,
            type_error=ImproperlyConfigured,
        )
        try:
            self._storage: _LeasedStorage = self._open(location, options)
        except TypeError as exc:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: bad OPTIONS {sorted(options)}: {exc}"
            ) from exc
        if not isinstance(self._storage, AtomicOps):  # pragma: no cover - both have them
            raise ImproperlyConfigured(
                f"{type(self).__name__}: the storage lacks atomic operations (AtomicOps)"
            )

    def _open(self, location: Any, options: dict[str, Any]) -> _LeasedStorage:
        raise NotImplementedError  # pragma: no cover - each backend opens its storage

    @property
    def storage(self) -> Any:
        """The swr storage holding this cache's entries."""
        return self._storage

    # -- values and times -------------------------------------------------------------

    def _encode(self, value: Any) -> Any:
        # Integers stay integers (incr works on them); anything else is pickled.
        if type(value) is int and _INT_MIN <= value <= _INT_MAX:
            return value
        return pickle.dumps(value, self._protocol)

    def _decode(self, stored: Any) -> Any:
        if type(stored) is int:
            return stored
        return pickle.loads(stored)  # noqa: S301 - the store is trusted (see the module)

    def _expires_at(self, timeout: Any, now: float) -> float:
        """When an entry written now with Django's ``timeout`` dies (<= now: not cached)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return _FOREVER
        return now + timeout if timeout > 0 else now - 1.0

    def _entry(self, value: Any, timeout: Any) -> Entry | None:
        """The entry of ``value``, or ``None`` when ``timeout`` says not to cache it."""
        now = time.time()
        expires_at = self._expires_at(timeout, now)
        if expires_at <= now:
            return None
        return Entry(self._encode(value), now, expires_at, expires_at, expires_at)

    # -- Django's cache contract ------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        """Return the value under ``key``, or ``default``."""
        entry = self._storage.get(self.make_and_validate_key(key, version=version))
        return default if entry is None else self._decode(entry.value)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        """Store ``value`` under ``key`` (``timeout=0`` removes it instead)."""
        skey = self.make_and_validate_key(key, version=version)
        entry = self._entry(value, timeout)
        if entry is None:
            self._storage.delete(skey)
        else:
            self._storage.set(skey, entry)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        """Store ``value`` only if ``key`` holds nothing; atomic across processes."""
        skey = self.make_and_validate_key(key, version=version)
        entry = self._entry(value, timeout)
        if entry is None:  # not cached: "added" if nothing is there
            return not self._storage.exists(skey)
        ttl = None if entry.expires_at == _FOREVER else entry.expires_at - entry.stored_at
        return self._storage.add(skey, entry.value, ttl)  # one atomic step of the storage

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        """Give ``key`` a new timeout; return whether it held a value.

        One atomic step of the storage (its instants are rewritten, not its value);
        ``timeout=0`` removes the key.
        """
        skey = self.make_and_validate_key(key, version=version)
        now = time.time()
        expires_at = self._expires_at(timeout, now)
        if expires_at <= now:
            return self._storage.delete(skey)
        return self._storage.touch(skey, EntryTimes(now, expires_at, expires_at, expires_at))

    def delete(self, key: Any, version: Any = None) -> bool:
        """Remove ``key``; return whether it held a value."""
        return self._storage.delete(self.make_and_validate_key(key, version=version))

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        """Add ``delta`` to the value under ``key``; atomic across processes.

        Raises:
            ValueError: ``key`` holds nothing.
            TypeError: the value cannot be added to (``None``, a string, ...).
        """
        return self._incr_cas(key, self.make_and_validate_key(key, version=version), delta)

    def _incr_cas(self, key: Any, skey: str, delta: Any) -> Any:
        """:meth:`incr` by compare-and-set: any value ``+`` works on (pickled ones too)."""
        storage = self._storage
        while True:  # compare-and-set; read again when another write came first
            found = storage.get_versioned(skey)
            if found is None:
                raise ValueError(f"Key '{key}' not found")
            current, version_token = found
            value = self._decode(current.value) + delta
            if storage.replace_if(skey, version_token, self._encode(value)):  # keeps its expiry
                return value

    def decr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        """Subtract ``delta`` from the value under ``key`` (see :meth:`incr`)."""
        return self.incr(key, -delta, version=version)

    def has_key(self, key: Any, version: Any = None) -> bool:
        """Whether ``key`` holds a value."""
        return self._storage.exists(self.make_and_validate_key(key, version=version))

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        """The values of those ``keys`` that hold one, by key."""
        by_skey = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not by_skey:
            return {}
        entries = self._storage.get_many(list(by_skey))
        return {
            key: self._decode(entry.value)
            for key, entry in zip(by_skey.values(), entries, strict=True)
            if entry is not None
        }

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        """Store every item of ``data``; return the keys that failed (always none)."""
        entries: dict[str, Entry] = {}
        dead: list[str] = []
        for key, value in data.items():
            skey = self.make_and_validate_key(key, version=version)
            entry = self._entry(value, timeout)
            if entry is None:
                dead.append(skey)
            else:
                entries[skey] = entry
        if entries:
            self._storage.set_many(entries)
        self._delete_skeys(dead)
        return []

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        """Remove ``keys``."""
        self._delete_skeys([self.make_and_validate_key(key, version=version) for key in keys])

    def _delete_skeys(self, skeys: list[str]) -> None:
        if not skeys:
            return
        self._storage.delete_many(skeys)

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: Any = None,
    ) -> Any:
        """The value under ``key``; on a miss, store ``default`` (called if callable).

        A callable ``default`` is computed once across processes: the caller taking the
        key's lease computes while the others poll for its value, for at most
        ``lease_timeout`` seconds (then they compute too).
        """
        lease = self.make_and_validate_key(key, version=version) + _FILL_SUFFIX
        value, token = self._claim(key, version, lease, callable(default))
        if token is None and value is _MISSING and callable(default):
            deadline = time.monotonic() + self._lease_timeout
            pauses = _pauses()
            while token is None and value is _MISSING and time.monotonic() < deadline:
                time.sleep(next(pauses))
                value, token = self._claim(key, version, lease, True)
        if value is not _MISSING:
            return value
        try:
            return self._fill(key, default() if callable(default) else default, timeout, version)
        finally:
            if token is not None:
                self._storage.release_lease(lease, token)

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: Any = None,
    ) -> Any:
        """:meth:`get_or_set` for asyncio: computes once across processes too.

        The storage calls run in a thread (``sync_to_async``, as Django's defaults);
        waiting for another process's value sleeps with ``asyncio.sleep``, and a
        callable ``default`` is called on the event loop, as Django's default does.
        """
        lease = self.make_and_validate_key(key, version=version) + _FILL_SUFFIX
        claim = sync_to_async(self._claim, thread_sensitive=True)
        value, token = await claim(key, version, lease, callable(default))
        if token is None and value is _MISSING and callable(default):
            deadline = time.monotonic() + self._lease_timeout
            pauses = _pauses()
            while token is None and value is _MISSING and time.monotonic() < deadline:
                await asyncio.sleep(next(pauses))
                value, token = await claim(key, version, lease, True)
        if value is not _MISSING:
            return value
        try:
            computed = default() if callable(default) else default
            return await sync_to_async(self._fill, thread_sensitive=True)(
                key, computed, timeout, version
            )
        finally:
            if token is not None:
                release = sync_to_async(self._storage.release_lease, thread_sensitive=True)
                await release(lease, token)

    def _claim(self, key: Any, version: Any, lease: str, compute: bool) -> tuple[Any, str | None]:
        """``(value, None)`` if ``key`` holds one; else ``(_MISSING, the fill lease or None)``.

        The lease is taken only when a callable will ``compute`` (a plain default is
        stored with ``add`` at once, as Django does). Its re-read after the lease
        closes the race with a holder that stored and released in between.
        """
        value = self.get(key, _MISSING, version=version)
        if value is not _MISSING or not compute:
            return value, None
        token = self._storage.acquire_lease(lease, self._lease_timeout)
        if token is None:
            return _MISSING, None
        value = self.get(key, _MISSING, version=version)
        if value is not _MISSING:
            self._storage.release_lease(lease, token)
            return value, None
        return _MISSING, token

    def _fill(self, key: Any, value: Any, timeout: Any, version: Any) -> Any:
        # As Django's own: add, then read back what won (ours or a racing writer's).
        self.add(key, value, timeout=timeout, version=version)
        return self.get(key, value, version=version)

    def clear(self) -> None:
        """Remove every entry of the storage (every prefix and version)."""
        self._storage.clear()

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: Django calls this after every request; the storage stays open."""


class LMDBCache(_SWRCache):
    """A Django cache in an LMDB directory, durable and shared by a host's processes.

    ``LOCATION`` is the directory; ``OPTIONS`` are
    :class:`~swr.storage.LMDBStorage`'s keyword arguments (``max_bytes``,
    ``durability``, ...), plus the backend's own (see the module).
    """

    def _open(self, location: Any, options: dict[str, Any]) -> _LeasedStorage:
        from swr.storage.lmdb import LMDBStorage  # noqa: PLC0415 - opened per backend

        if not isinstance(location, str) or not location:
            raise ImproperlyConfigured(
                f"LMDBCache: LOCATION must be a directory path, got {location!r}"
            )
        return LMDBStorage(location, **options)


class RedisCache(_SWRCache):
    """A Django cache in Redis, shared by every process and host using it.

    ``LOCATION`` is one Redis URL (``redis://``, ``rediss://``, ``unix://``); ``OPTIONS``
    are :meth:`~swr.storage.RedisStorage.from_url`'s keyword arguments (``prefix``,
    ``socket_timeout``, ``cluster``, redis-py's own), plus the backend's own (see the
    module). :meth:`clear` removes every entry under the storage's ``prefix`` (every
    entry of the database without one, like Django's Redis backend).
    """

    def _open(self, location: Any, options: dict[str, Any]) -> _LeasedStorage:
        from swr.storage.redis import RedisStorage  # noqa: PLC0415 - redis is optional

        urls = location.split(",") if isinstance(location, str) else location
        if not isinstance(urls, (list, tuple)) or len(urls) != 1 or not urls[0]:
            raise ImproperlyConfigured(
                f"RedisCache: LOCATION must be one Redis URL, got {location!r}"
            )
        return RedisStorage.from_url(urls[0].strip(), **options)

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        """Add ``delta`` to the value under ``key``; atomic across hosts.

        The value becomes a native Redis integer (one script, one round trip: ``EXISTS``
        then ``INCRBY``; the first ``incr`` after a ``set`` converts the record, keeping
        its expiry). A value that is not an ``int`` (a pickled ``float``...) goes
        through a compare-and-set as on LMDB.

        Raises:
            ValueError: ``key`` holds nothing.
            TypeError: the value cannot be added to (``None``, a string, ...).
        """
        skey = self.make_and_validate_key(key, version=version)
        try:
            value = self._storage.incr_existing(skey, delta)  # type: ignore[attr-defined]
        except (TypeError, SerializationError):  # not an int64: Python's own arithmetic
            return self._incr_cas(key, skey, delta)
        if value is None:
            raise ValueError(f"Key '{key}' not found")
        return value
