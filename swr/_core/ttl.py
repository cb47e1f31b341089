"""TTL windows: ``CacheTTL``, choosing the windows of a value, and building its entry."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from swr._core.validate import check_seconds
from swr._core.windows import Result
from swr.errors import ConfigError
from swr.storage import Entry

__all__ = [
    "CacheTTL",
    "CachedEntry",
    "TTLSpec",
    "check_call_ttl",
    "make_entry",
    "resolve_ttl",
    "validate_ttl_spec",
]


@dataclass(frozen=True, slots=True)
class CacheTTL:
    """The lengths of an entry's windows, in seconds.

    Example::

        CacheTTL(fresh=60, stale=300, expired=3600)          # 1 min, 5 min, 1 h
        CacheTTL(fresh=timedelta(minutes=5), jitter=0.1)

    Args:
        fresh: How long a value is served as a HIT; must be > 0.
        stale: How long after that it is served STALE while refreshing; >= 0.
        expired: How long after that it is kept as a fallback for failed fetches; >= 0.
        jitter: Fraction in [0, 1) by which ``fresh`` is shortened at random for each
            write (``fresh * (1 - jitter * random())``), so entries written together
            do not all go stale together. ``fresh`` is never lengthened.

    Raises:
        ConfigError: a window is out of range (a ``ValueError``); the message names
            the field.
        TypeError: a window is neither a number nor a ``timedelta``.
    """

    fresh: float
    stale: float = 0.0
    expired: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        fresh = check_seconds("CacheTTL.fresh", self.fresh, timedeltas=True)
        stale = check_seconds("CacheTTL.stale", self.stale, positive=False, timedeltas=True)
        expired = check_seconds("CacheTTL.expired", self.expired, positive=False, timedeltas=True)
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise TypeError(f"CacheTTL.jitter must be a float, got {type(jitter).__name__}")
        if not 0.0 <= jitter < 1.0:
            raise ConfigError(f"CacheTTL.jitter must be in [0, 1), got {jitter}")
        object.__setattr__(self, "fresh", fresh)
        object.__setattr__(self, "stale", stale)
        object.__setattr__(self, "expired", expired)
        object.__setattr__(self, "jitter", float(jitter))

    @property
    def lifetime(self) -> float:
        """Seconds from storing to dead: ``fresh + stale + expired`` (before jitter)."""
        return self.fresh + self.stale + self.expired


TTLSpec: TypeAlias = "CacheTTL | Callable[[str, Any], CacheTTL]"
"""A :class:`CacheTTL`, or a callable ``(key, value) -> CacheTTL`` choosing it per value."""


def validate_ttl_spec(ttl: object, name: str = "ttl") -> TTLSpec:
    """Check that ``ttl`` is a CacheTTL or a callable returning one."""
    if isinstance(ttl, CacheTTL) or callable(ttl):
        return ttl
    raise ConfigError(
        f"{name} must be a CacheTTL or a callable (key, value) -> CacheTTL, "
        f"got {type(ttl).__name__}"
    )


def check_call_ttl(ttl: object) -> TTLSpec:
    """Check the ``ttl`` given to one call, before anything is fetched.

    Raises:
        TypeError: ``ttl`` is neither a CacheTTL nor a callable (key, value) -> CacheTTL.
    """
    if isinstance(ttl, CacheTTL) or callable(ttl):
        return ttl
    raise TypeError(
        f"ttl must be a CacheTTL or a callable (key, value) -> CacheTTL, "
        f"got {type(ttl).__name__}: {ttl!r}"
    )


def resolve_ttl(spec: TTLSpec, key: str, value: Any) -> CacheTTL:
    """Return the windows for ``value``: ``spec`` itself or what the callable chose."""
    if isinstance(spec, CacheTTL):
        return spec
    ttl = spec(key, value)
    if not isinstance(ttl, CacheTTL):
        raise TypeError(
            f"the ttl callable must return a CacheTTL, returned {type(ttl).__name__} for "
            f"key {key!r}"
        )
    return ttl


@dataclass(slots=True)
class CachedEntry(Entry):
    """An entry made by the engine, remembering the results it answered HIT and STALE with.

    Memory storages (and LMDBStorage's read cache) hand back the very object they were
    given, so the engine builds the HIT result of an entry once, on its first hit, and
    answers every later hit with that same object: the hit path allocates nothing. Byte
    storages store only the :class:`~storage.Entry` fields.
    """

    hit: Result[Any] | None = field(default=None, compare=False, repr=False)
    stale: Result[Any] | None = field(default=None, compare=False, repr=False)


def make_entry(
    value: Any,
    ttl: CacheTTL,
    now: float,
    rand: Callable[[], float] = random.random,
) -> CachedEntry:
    """Build the entry of a value fetched at ``now`` with absolute window boundaries."""
    fresh = ttl.fresh
    if ttl.jitter:
        fresh *= 1.0 - ttl.jitter * rand()
    fresh_until = now + fresh
    stale_until = fresh_until + ttl.stale
    return CachedEntry(value, now, fresh_until, stale_until, stale_until + ttl.expired)
