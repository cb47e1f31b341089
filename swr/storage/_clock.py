"""The one reading of the clock: an injected one, else ``time.time`` looked up now.

In the storage layer so that storages and the engine (``swr._core`` re-exports it) read
time the same way.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Clock", "now"]

Clock: TypeAlias = "Callable[[], float] | None"
"""Zero-argument callable returning epoch seconds, or ``None`` for ``time.time``."""


def now(clock: Callable[[], float] | None) -> float:
    """Epoch seconds by ``clock``, or by ``time.time`` looked up at each call.

    Looking ``time.time`` up at each call (not binding it once) is what lets freezegun
    move the time of an engine made before the freeze. The hit paths (the engines', the
    storages' reads) inline this one expression; everything else calls it.
    """
    return clock() if clock is not None else _time.time()
