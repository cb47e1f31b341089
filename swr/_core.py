"""Pure decisions of the engine: no I/O, no locks, ``now`` passed in.

Both engines (threads and asyncio) call these, so every rule about windows, TTLs and
backoff is written once and unit-tested here.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swr.errors import ConfigError
from swr.policy import CacheTTL, Result, Status, TTLSpec
from swr.storage import Entry

__all__ = [
    "Backoff",
    "CachedEntry",
    "check_key",
    "classify",
    "make_entry",
    "resolve_ttl",
    "validate_ttl_spec",
]


def classify(entry: Entry | None, now: float) -> Status:
    """Return the window ``entry`` is in at ``now``: HIT, STALE, EXPIRED or MISS.

    The engines inline the same comparisons on their hot path.
    """
    if entry is None or now >= entry.expires_at:
        return Status.MISS
    if now < entry.fresh_until:
        return Status.HIT
    if now < entry.stale_until:
        return Status.STALE
    return Status.EXPIRED


def check_key(key: object) -> str:
    """Return ``key`` if it is a non-empty ``str``; raise naming the problem otherwise."""
    if not isinstance(key, str):
        raise TypeError(f"cache key must be a str, got {type(key).__name__}: {key!r}")
    if not key:
        raise ValueError("cache key must not be empty")
    return key


def validate_ttl_spec(ttl: object, name: str = "ttl") -> TTLSpec:
    """Check that ``ttl`` is a CacheTTL or a callable returning one."""
    if isinstance(ttl, CacheTTL) or callable(ttl):
        return ttl
    raise ConfigError(
        f"{name} must be a CacheTTL or a callable (key, value) -> CacheTTL, "
        f"got {type(ttl).__name__}"
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


class Backoff:
    """Per-key retry delays after failed refreshes: growing, capped, bounded in memory.

    After the n-th consecutive failure of a key, refreshes of that key are not tried
    again before ``initial * 2 ** (n - 1)`` seconds (at most ``maximum``). A success
    forgets the key. At most ``max_keys`` keys are remembered; the oldest are forgotten
    first, which only makes a refresh happen sooner. Not thread-safe by itself: the
    engines call it under their own lock or from one event loop.
    """

    __slots__ = ("_keys", "initial", "max_keys", "maximum")

    def __init__(self, initial: float = 1.0, maximum: float = 60.0, max_keys: int = 10_000) -> None:
        if initial <= 0:
            raise ConfigError(f"refresh backoff initial must be > 0 seconds, got {initial}")
        if maximum < initial:
            raise ConfigError(
                f"refresh backoff maximum ({maximum}) must be >= its initial ({initial})"
            )
        self.initial = initial
        self.maximum = maximum
        self.max_keys = max_keys
        self._keys: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures."""
        if failures <= 0:
            return 0.0
        # The exponent is capped so the power never overflows a float.
        return float(min(self.maximum, self.initial * 2.0 ** min(failures - 1, 64)))

    def allows(self, key: str, now: float) -> bool:
        """Whether a refresh of ``key`` may start at ``now``."""
        state = self._keys.get(key)
        return state is None or now >= state[1]

    def failed(self, key: str, now: float) -> float:
        """Record a failure of ``key`` at ``now``; return the next allowed instant."""
        failures = self._keys.pop(key, (0, 0.0))[0] + 1
        next_try = now + self.delay(failures)
        self._keys[key] = (failures, next_try)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return next_try

    def succeeded(self, key: str) -> None:
        """Forget the failures of ``key``."""
        self._keys.pop(key, None)

    def failures(self, key: str) -> int:
        """Consecutive failures recorded for ``key``."""
        state = self._keys.get(key)
        return 0 if state is None else state[0]
