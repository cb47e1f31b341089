"""Per-key retry delays after failed refreshes."""

from __future__ import annotations

from collections import OrderedDict

from swr._core.validate import check_seconds
from swr.errors import ConfigError

__all__ = ["Backoff"]


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
        initial = check_seconds("refresh backoff initial", initial)
        maximum = check_seconds("refresh backoff maximum", maximum)
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
