"""Validation of the pool's settings: each bad value is refused with its name in the error."""

from __future__ import annotations

import math
from datetime import timedelta

from swr.storage.errors import CacheLimitsError, PoolConfigError

__all__ = ["batching", "count", "gc_seconds", "seconds"]


def seconds(name: str, value: object) -> float:
    """Validate a positive, finite duration in seconds (a number or a timedelta)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds as a number or a timedelta, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise CacheLimitsError(f"{name} must be a finite number of seconds > 0, got {value}")
    return float(value)


def count(name: str, value: object) -> int:
    """Validate an ``int`` setting (not a ``bool``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    return value


def gc_seconds(value: object) -> float:
    """Validate ``gc_interval``: positive, finite seconds (a number or a timedelta)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(f"gc_interval must be seconds as a number or None, got {value!r}")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise PoolConfigError(f"gc_interval must be a finite number of seconds > 0, got {value}")
    return seconds


def batching(load_many: object, max_wait: object, max_batch: object) -> tuple[float, int]:
    """Validate a batch loader's settings; return ``(max_wait, max_batch)``."""
    if not callable(load_many):
        raise TypeError(f"load_many must be callable, got {type(load_many).__name__}")
    if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
        raise TypeError(f"max_wait must be seconds as a number, got {max_wait!r}")
    if not (max_wait >= 0 and math.isfinite(max_wait)):
        raise PoolConfigError(f"max_wait must be a finite number of seconds >= 0, got {max_wait}")
    batch = count("max_batch", max_batch)
    if batch < 1:
        raise PoolConfigError(f"max_batch must be >= 1, got {batch}")
    return float(max_wait), batch
