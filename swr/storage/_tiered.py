"""Every decision of the tiered storages, without I/O: what to ask L2, what to copy to L1.

The storages are written once, as asyncio code, in :mod:`swr.storage._async.tiered`;
the thread twin is generated from it. See :mod:`swr.storage.tiered`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from swr.storage._log import logger
from swr.storage._views import add_tier_stats, as_async
from swr.storage.base import CounterEntry, Entry
from swr.storage.errors import StorageUnavailableError

if TYPE_CHECKING:
    from swr.storage._async.tiered import AsyncTieredStorage

__all__ = [
    "SyncTwin",
    "_TieredBase",
    "adopt_clock_in",
    "invalidation_notice",
    "read_notice",
    "start_thread",
]


def invalidation_notice(origin: str, keys: Sequence[str] | None) -> bytes:
    """The pub/sub message announcing that ``keys`` (``None``: every key) left L2."""
    return json.dumps({"origin": origin, "keys": keys}, separators=(",", ":")).encode()


def read_notice(origin: str, data: bytes | str) -> list[str] | None:
    """The keys a message announces (``None``: all); ``[]`` for our own or unreadable ones.

    An unreadable message clears nothing but is logged: only a tiered storage of this
    library publishes on the channel.
    """
    try:
        notice = json.loads(data)
        sender, keys = notice["origin"], notice["keys"]
    except (ValueError, TypeError, KeyError):
        logger.warning("invalidation_unreadable", backend="tiered", data=repr(data)[:200])
        return []
    if sender == origin:
        return []  # our own: applied before it was published
    if keys is None:
        return None
    return [key for key in keys if isinstance(key, str)]


def start_thread(target: Callable[[], None]) -> threading.Thread:
    """Run ``target`` in a daemon thread (the sync storage's pub/sub listener)."""
    thread = threading.Thread(target=target, name="swr-tiered-invalidations", daemon=True)
    thread.start()
    return thread


Clock = Callable[[], float]


def adopt_clock_in(stores: Iterable[Any], clock: Clock | None) -> Clock | None:
    """Have each of ``stores`` (or the storage an asyncio adapter wraps) adopt ``clock``.

    Returns:
        An explicit clock of one of them that is not ``clock`` (the engine then refuses
        the mix), else any explicit clock, else ``None``.
    """
    from swr.storage.adapters import AsyncAdapter  # noqa: PLC0415 - import cycle

    found: Clock | None = None
    for store in stores:
        inner = store.sync if isinstance(store, AsyncAdapter) else store
        adopt = getattr(inner, "adopt_clock", None)
        if adopt is None:
            continue
        own = adopt(clock)
        if own is not None and (found is None or own != clock):
            found = own
    return found


class _TieredBase:
    """Counters and the routing decisions shared by both tiered storages."""

    def _setup(self, l1: Any, l2: Any, channel: str | None = None) -> None:
        if l1 is l2:
            raise ValueError("l1 and l2 must be two different storages")
        if channel is not None:
            if not channel:
                raise TypeError(f"channel must be a non-empty str, got {channel!r}")
            client = getattr(l2, "client", None)
            if not callable(getattr(l2, "publish", None)) or getattr(l2, "_cluster", True):
                raise TypeError(
                    f"channel needs a standalone Redis storage as L2 (pub/sub), got {l2!r}"
                )
            if not callable(getattr(client, "pubsub", None)):  # pragma: no cover - redis-py
                raise TypeError(f"the client of {l2!r} has no pub/sub")
        self._channel = channel
        self._origin = uuid.uuid4().hex
        self._listen_due = channel is not None
        self._listen_lock = threading.Lock()
        self._listener: Any = None
        self._stop_listening = False
        self._stopped = threading.Event()
        self._subscribed = False
        self._dropped = 0
        self._feed_losses = 0
        self._renewed = False
        self.l1 = l1
        self.l2 = l2
        self._closed = False
        self._l1_hits = 0
        self._l2_hits = 0
        self._misses = 0
        self._l2_store_release = callable(getattr(l2, "set_and_release", None))

    def adopt_clock(self, clock: Clock | None) -> Clock | None:
        """Pass an engine's clock to both tiers (see ``ClockAdoption``)."""
        return adopt_clock_in((self.l1, self.l2), clock)

    @property
    def listening(self) -> bool:
        """Whether this storage is subscribed to its channel now (announcements apply)."""
        return self._subscribed

    def _feed_renewed(self, connection: object) -> None:
        """redis-py reconnected the subscription (a connect callback: no I/O here)."""
        self._renewed = True
        self._feed_lost(ConnectionError(f"subscription renewed on {connection!r}"))

    def _feed_lost(self, exc: BaseException) -> None:
        self._feed_losses += 1
        logger.warning("invalidation_feed_lost", backend="tiered", error=repr(exc))

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailableError(f"{type(self).__name__} is closed")

    @staticmethod
    def _missing(entries: Sequence[Entry | None]) -> list[int]:
        """Indexes of the L1 batch answers that must be asked of L2."""
        return [i for i, entry in enumerate(entries) if entry is None]

    def _merge(
        self,
        keys: Sequence[str],
        entries: list[Entry | None],
        missing: list[int],
        found: Sequence[Entry | None],
    ) -> dict[str, Entry]:
        """Fill L2's answers into ``entries``; return the hits to copy into L1."""
        copies: dict[str, Entry] = {}
        for i, entry in zip(missing, found, strict=True):
            entries[i] = entry
            if entry is not None:
                self._l2_hits += 1
                if type(entry) is not CounterEntry:  # its death only L2 knows
                    copies[keys[i]] = entry
        self._l1_hits += len(keys) - len(missing)
        self._misses += sum(1 for i in missing if entries[i] is None)
        return copies

    def stats(self) -> dict[str, int]:
        """``l1_hits``, ``l2_hits`` and ``misses`` of reads, then each tier's own counters
        (prefixed ``l1_`` and ``l2_``). Counts are approximate under heavy threading.
        """  # noqa: D205 - the list of counters is the summary
        stats = {"l1_hits": self._l1_hits, "l2_hits": self._l2_hits, "misses": self._misses}
        if self._channel is not None:
            stats["l1_dropped_by_others"] = self._dropped
            stats["invalidation_feed_losses"] = self._feed_losses
        return add_tier_stats(stats, {"l1": self.l1, "l2": self.l2})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1!r}, l2={self.l2!r})"


class SyncTwin:
    """What only the synchronous storage has: :meth:`as_async`, its asyncio twin."""

    l1: Any
    l2: Any

    def as_async(self) -> AsyncTieredStorage:
        """The asyncio twin over each tier's asyncio view."""
        from swr.storage._async.tiered import AsyncTieredStorage  # noqa: PLC0415 - cycle

        channel: str | None = getattr(self, "_channel", None)
        return AsyncTieredStorage(as_async(self.l1), as_async(self.l2), channel=channel)
