"""The structlog logger of the storage layer (the same ``"swr"`` logger as the engine).

The library never configures structlog; applications decide where events go.
Events of the storage layer: ``corrupt_entry``, ``redis_unavailable``,
``redis_recovered``, ``redis_probe_failed``, ``fallback_write_failed``.
"""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ["logger"]

logger: Any = structlog.get_logger("swr")
