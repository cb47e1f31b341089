# Generated from swr/_async/cached.py by tools/unasync.py:
# edit that file, not this one.
"""The function ``@engine.cached`` returns: its results go through the engine.

``tools/unasync.py`` generates the thread twin ``swr/_sync/cached.py`` from this file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from swr._bulk import check_mapping
from swr._cached import CachedBase, default_key
from swr._primitives import Function

if TYPE_CHECKING:
    from swr._bulk import ShouldCache
    from swr._sync.bulk import BulkMixin
    from swr._sync.engine import StaleEngine
    from swr.policy import Result, TTLSpec

__all__ = ["CachedFunction", "CachedManyFunction"]

P = ParamSpec("P")
T = TypeVar("T")


class CachedFunction(CachedBase[P, T]):
    """A function whose results are served through an engine.

    Calling it returns the value (not the :class:`~swr.Result`); the asyncio
    engine's calls are awaited. ``result(...)`` returns the full result,
    ``invalidate(...)`` deletes the entry of those arguments and ``key_for(...)`` shows
    the key they map to.
    """

    engine: StaleEngine
    func: Function[P, T]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        # result(), inline: one call less on every call of the function.
        result = self.engine.execute(
            self.key_for(*args, **kwargs),
            functools.partial(self.func, *args, **kwargs),
            ttl=self.ttl,
        )
        return result.value

    def result(self, *args: P.args, **kwargs: P.kwargs) -> Result[T]:
        """Return the :class:`~swr.Result` of a call with these arguments."""
        return self.engine.execute(
            self.key_for(*args, **kwargs),
            functools.partial(self.func, *args, **kwargs),
            ttl=self.ttl,
        )

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the cached entry of these arguments; return whether one existed."""
        return self.engine.delete(self.key_for(*args, **kwargs))


class CachedManyFunction:
    """A function of a list of ids whose values are served through an engine, by id.

    Calling it with ids returns ``{id: value}``: the cached ids are not passed to the
    function, the others are, in one call (``engine.execute_many``). ``results(ids)``
    returns the full results, ``invalidate(ids)`` deletes their entries and
    ``key_for(id)`` shows the key of one id.
    """

    def __init__(
        self,
        engine: BulkMixin,
        func: Callable[[list[Any]], Any],
        key: Callable[[Any], str] | None,
        ttl: TTLSpec | None,
        should_cache: ShouldCache | None,
    ) -> None:
        self.engine = engine
        self.func = func
        self.key_for: Callable[[Any], str] = key if key is not None else default_key(func)
        self.ttl = ttl
        self.should_cache = should_cache
        functools.update_wrapper(self, func)

    def __call__(self, ids: Iterable[Any]) -> dict[Any, Any]:
        results = self.results(ids)
        return {ident: result.value for ident, result in results.items()}

    def results(self, ids: Iterable[Any]) -> dict[Any, Result[Any]]:
        """Return the :class:`~swr.Result` of each id (ids the function left out omitted)."""
        by_key: dict[str, Any] = {}
        for ident in ids:
            by_key.setdefault(self.key_for(ident), ident)
        key_for = self.key_for
        func = self.func
        name = getattr(func, "__qualname__", "the function")

        def fetch_many(keys: list[str]) -> dict[str, Any]:
            values = check_mapping(func([by_key[k] for k in keys]), name)
            return {key_for(ident): value for ident, value in values.items()}

        got = self.engine.execute_many(
            list(by_key), fetch_many, ttl=self.ttl, should_cache=self.should_cache
        )
        return {by_key[key]: result for key, result in got.items()}

    def invalidate(self, ids: Iterable[Any]) -> int:
        """Delete the cached entries of ``ids``; return how many existed."""
        return self.engine.delete_many([self.key_for(ident) for ident in ids])
