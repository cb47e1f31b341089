"""The one set of setting validators: each refusal names the setting and the value.

Every constructor of swr (the engine's, the storages', the pool's, the integrations')
checks its settings with these three functions. They live in the storage layer because
the storage layer must not import the engine side; the engine binds them to its own
error in :mod:`swr._core.validate` (``ConfigError``).

The caller picks the error types, so each public class keeps the errors it documents:
``error`` for a value out of range (``ValueError`` by default; the engine's
``ConfigError``, the pool's ``PoolConfigError`` / ``CacheLimitsError``, Django's
``ImproperlyConfigured``), ``type_error`` for a value of the wrong type (``TypeError``
by default). The messages have one shape everywhere::

    max_entries must be an int, got str
    max_entries must be >= 1, got 0
    ttl must be seconds as a number, got str
    ttl must be a finite number of seconds > 0, got 0
    clock must be a zero-argument callable, got int

A ``bool`` is never an int nor a number of seconds here. A setting that may be ``None``
is checked by its caller as ``None if value is None else check_int(...)``.
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["check_callable", "check_int", "check_seconds"]


def check_int(
    name: str,
    value: object,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    error: type[Exception] = ValueError,
    type_error: type[Exception] = TypeError,
) -> int:
    """Return ``value`` if it is an int (not a bool) within ``[minimum, maximum]``.

    Args:
        name: The setting, as the messages name it.
        value: What was given.
        minimum: The lowest value accepted (``None``: unbounded).
        maximum: The highest value accepted (``None``: unbounded).
        error: Raised for a value out of bounds.
        type_error: Raised for a value that is not an int.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(f"{name} must be an int, got {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            raise error(f"{name} must be >= {minimum}, got {value}")
        if minimum is None:
            raise error(f"{name} must be <= {maximum}, got {value}")
        raise error(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def check_seconds(
    name: str,
    value: object,
    *,
    positive: bool = True,
    timedeltas: bool = False,
    error: type[Exception] = ValueError,
    type_error: type[Exception] = TypeError,
) -> float:
    """Return ``value`` as finite float seconds, ``> 0`` (or ``>= 0`` when not ``positive``).

    Args:
        name: The setting, as the messages name it.
        value: An int or float (not a bool), or a ``timedelta`` when ``timedeltas``.
        positive: Whether zero is refused too.
        timedeltas: Whether a ``timedelta`` is accepted.
        error: Raised for a value out of range or not finite.
        type_error: Raised for a value that is not a number of seconds.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif timedeltas and isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        kind = "as a number or a timedelta" if timedeltas else "as a number"
        raise type_error(f"{name} must be seconds {kind}, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise error(f"{name} must be a finite number of seconds {bound}, got {value}")
    return seconds


def check_callable(
    name: str,
    value: object,
    what: str = "a callable",
    *,
    optional: bool = True,
    error: type[Exception] = TypeError,
) -> None:
    """Raise ``error`` unless ``value`` is callable (or ``None`` when ``optional``).

    Args:
        name: The setting, as the message names it.
        value: What was given.
        what: What it should be, for the message ("a zero-argument callable").
        optional: Whether ``None`` is accepted.
        error: Raised for a value that is not callable.
    """
    if not callable(value) and not (optional and value is None):
        raise error(f"{name} must be {what}, got {type(value).__name__}")
