"""The function ``@engine.cached`` returns: its results go through the engine.

``tools/unasync.py`` generates the thread twin ``swr/_sync/cached.py`` from this file.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from swr._cached import CachedBase
from swr._primitives import AsyncFunction

if TYPE_CHECKING:
    from swr._async.engine import AsyncStaleEngine
    from swr.policy import Result

__all__ = ["AsyncCachedFunction"]

P = ParamSpec("P")
T = TypeVar("T")


class AsyncCachedFunction(CachedBase[P, T]):
    """A function whose results are served through an engine.

    Calling it returns the value (not the :class:`~swr.Result`); the asyncio
    engine's calls are awaited. ``result(...)`` returns the full result,
    ``invalidate(...)`` deletes the entry of those arguments and ``key_for(...)`` shows
    the key they map to.
    """

    engine: AsyncStaleEngine
    func: AsyncFunction[P, T]

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        result = await self.result(*args, **kwargs)
        return result.value

    async def result(self, *args: P.args, **kwargs: P.kwargs) -> Result[T]:
        """Return the :class:`~swr.Result` of a call with these arguments."""
        return await self.engine.execute(
            self.key_for(*args, **kwargs),
            functools.partial(self.func, *args, **kwargs),
            ttl=self.ttl,
        )

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the cached entry of these arguments; return whether one existed."""
        return await self.engine.delete(self.key_for(*args, **kwargs))
