"""The logger of the engine side: the storage layer's one definition, re-exported.

See :mod:`swr.storage._log` for where events go (stdlib ``logging`` unless the
application configured structlog) and the list of events.
"""

from __future__ import annotations

from swr.storage._log import Logger, ThrottledLog, get_logger, logger

__all__ = ["Logger", "ThrottledLog", "get_logger", "logger"]
