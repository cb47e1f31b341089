# Generated from swr/_async/cached.py by tools/unasync.py:
# edit that file, not this one.
"""The function ``@engine.cached`` returns: its results go through the engine.

``tools/unasync.py`` generates the thread twin ``swr/_sync/cached.py`` from this file.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from swr._cached import CachedBase
from swr._primitives import Function

if TYPE_CHECKING:
    from swr._sync.engine import StaleEngine
    from swr.policy import Result

__all__ = ["CachedFunction"]

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
        result = self.result(*args, **kwargs)
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
