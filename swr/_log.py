"""The structlog logger of swr and the names of the events it emits.

The library never configures structlog; applications decide where events go.
Event names are snake_case and past tense; keys appear in events, never in metrics.
"""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ["logger"]

logger: Any = structlog.get_logger("swr")

# Events, for reference (tests assert them with structlog.testing.capture_logs):
#   fetch_failed           a foreground fetch raised (fallback served or error raised)
#   fetch_timed_out        waiting for a shared foreground fetch outlived refresh_timeout
#   refresh_failed         a background refresh raised
#   refresh_timed_out      a background refresh outlived refresh_timeout
#   refresh_dropped        the refresh queue was full
#   storage_read_failed    storage.get raised; read as a miss
#   storage_write_failed   storage.set raised; the value was still returned
#   lease_failed           taking or releasing a cross-process lease raised
