"""The engine's validators: the storage layer's, raising ``ConfigError`` when out of range.

The rules and messages live once, in ``swr.storage._validate`` (the storage layer may not
import the engine side, so the engine binds them to its error here): a wrong type raises
``TypeError``, a value out of range ``ConfigError`` (a ``ValueError``).
"""

from __future__ import annotations

from swr.errors import ConfigError
from swr.storage import _validate
from swr.storage._validate import check_callable

# The storage contract refuses keys the same way: the engine checks them with its rule.
from swr.storage._verbs import check_key

__all__ = ["check_callable", "check_int", "check_key", "check_seconds"]


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``.

    Raises:
        TypeError: ``value`` is not an int.
        ConfigError: ``value < minimum`` (a ``ValueError``).
    """
    return _validate.check_int(name, value, minimum, error=ConfigError)


def check_seconds(
    name: str, value: object, *, positive: bool = True, timedeltas: bool = False
) -> float:
    """Return ``value`` as finite float seconds, ``> 0`` (or ``>= 0`` when not ``positive``).

    Raises:
        TypeError: ``value`` is not a number of seconds (or a ``timedelta`` when
            ``timedeltas``).
        ConfigError: ``value`` is out of range or not finite (a ``ValueError``).
    """
    return _validate.check_seconds(
        name, value, positive=positive, timedeltas=timedeltas, error=ConfigError
    )
