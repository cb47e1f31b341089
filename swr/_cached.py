"""What both ``@engine.cached`` decorators share: the key builder and the wrapping.

``AsyncCachedFunction`` is written in ``swr/_async/cached.py``; ``CachedFunction`` is
its generated twin in ``swr/_sync/cached.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:
    from swr.policy import TTLSpec

__all__ = ["CachedBase", "default_key"]

P = ParamSpec("P")
T = TypeVar("T")

_SCALARS = (str, int, float, bool, bytes, type(None), Enum)
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})
"""The argument types of most calls, passed without building a message for the check."""


def _check_key_part(value: object, where: str) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (tuple, list, frozenset)):
        for item in value:
            _check_key_part(item, where)
        return
    raise TypeError(
        f"cannot derive a cache key from {where} of type {type(value).__name__}: its repr "
        "may differ between processes; pass key=lambda ...: '...' to @cached"
    )


def _check_positional(args: tuple[Any, ...]) -> None:
    for index, arg in enumerate(args):
        _check_key_part(arg, f"positional argument {index}")


def default_key(func: Callable[..., Any]) -> Callable[..., str]:
    """Return the key builder used when ``@cached`` gets no ``key``.

    The key is the function's module and qualified name followed by the ``repr`` of the
    arguments. Only simple arguments (str, int, float, bool, bytes, None, enums and
    tuples/lists/frozensets of them) are accepted, because the ``repr`` of other objects
    (an instance, ``self`` of a method) may change from one process to the next and
    would silently defeat a persistent cache.
    """
    prefix = f"{func.__module__}.{func.__qualname__}"

    def make_key(*args: Any, **kwargs: Any) -> str:
        for arg in args:
            if type(arg) not in _PLAIN:
                _check_positional(args)
                break
        for name, arg in kwargs.items():
            if type(arg) not in _PLAIN:
                _check_key_part(arg, f"argument {name!r}")
        if kwargs:
            return f"{prefix}{args!r}{sorted(kwargs.items())!r}"
        return f"{prefix}{args!r}"

    return make_key


class CachedBase(Generic[P, T]):
    """What both decorators share: the engine, the key builder, the ttl, the wrapping."""

    __call__: Callable[..., Any]  # each subclass defines how a call goes through

    def __init__(
        self,
        engine: Any,
        func: Callable[P, Any],
        key: Callable[..., str] | None,
        ttl: TTLSpec | None,
    ) -> None:
        self.engine = engine
        self.func = func
        self.key_for: Callable[..., str] = key if key is not None else default_key(func)
        self.ttl = ttl
        functools.update_wrapper(self, func)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # Decorating a method: bind the instance like a plain function would.
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)
