"""The one reading of the clock, shared with the storage layer (``swr.storage._clock``)."""

from __future__ import annotations

from swr.storage._clock import Clock, now

__all__ = ["Clock", "now"]
