"""The validators of settings: each raises an error that names the setting and the value."""

from __future__ import annotations

import math
from datetime import timedelta

from swr.errors import ConfigError

# The storage contract refuses keys the same way: the engine checks them with its rule.
from swr.storage._verbs import check_key

__all__ = ["check_callable", "check_int", "check_key", "check_seconds"]


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``.

    Raises:
        TypeError: ``value`` is not an int.
        ConfigError: ``value < minimum`` (a ``ValueError``).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_seconds(
    name: str, value: object, *, positive: bool = True, timedeltas: bool = False
) -> float:
    """Return ``value`` as finite float seconds, ``> 0`` (or ``>= 0`` when not ``positive``).

    Args:
        name: The setting, as the error messages name it.
        value: An int or float (not a bool), or a ``timedelta`` when ``timedeltas``.
        positive: Whether zero is refused too.
        timedeltas: Whether a ``timedelta`` is accepted.

    Raises:
        TypeError: ``value`` is not a number of seconds.
        ConfigError: ``value`` is out of range or not finite (a ``ValueError``).
    """
    if timedeltas and isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        kinds = "(int or float) or a timedelta" if timedeltas else "as a number"
        raise TypeError(f"{name} must be seconds {kinds}, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ConfigError(f"{name} must be a finite number of seconds, got {value!r}")
    if seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be {bound} seconds, got {seconds}")
    return seconds


def check_callable(name: str, value: object, what: str) -> None:
    """Raise ``TypeError`` unless ``value`` is ``None`` or callable (``what`` it should be)."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
