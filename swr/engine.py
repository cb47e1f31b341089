"""StaleEngine and AsyncStaleEngine: serve from cache, refresh in the background.

``AsyncStaleEngine`` is written in ``swr/_async/engine.py``; ``StaleEngine`` is its
thread twin, generated into ``swr/_sync/engine.py`` by ``tools/unasync.py``. What needs
no I/O is in :mod:`swr._engine` and :mod:`swr._core`; the few primitives that differ
between threads and tasks are in :mod:`swr._primitives`.
"""

from __future__ import annotations

from swr._async.cached import AsyncCachedFunction
from swr._async.engine import AsyncStaleEngine
from swr._sync.cached import CachedFunction
from swr._sync.engine import StaleEngine

__all__ = ["AsyncCachedFunction", "AsyncStaleEngine", "CachedFunction", "StaleEngine"]
