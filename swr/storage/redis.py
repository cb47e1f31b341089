r"""RedisStorage and AsyncRedisStorage: entries in Redis or Redis Cluster, shared by hosts.

How it works: each entry is one Redis string under ``prefix + key`` holding the record
of :mod:`storage._record` (a fixed header with the entry's windows, then the value as
msgpack by default), written with ``PX`` equal to the entry's whole remaining lifetime
(until ``expires_at``), so Redis drops dead entries on its own. A counter written by
``incr`` is a native Redis integer instead (what ``INCRBY`` writes: digits, never the
record's magic ``SW``), read as an ``int`` entry fresh until its own TTL removes it.
A read is one ``GET`` and one decode; ``get_many`` is one ``MGET`` (per-slot ``MGET`` in
one pipeline on a cluster); ``set_many`` is one pipeline. Leases for singleflight across hosts are
``SET \xfflease:<prefix+key> <token> NX PX <ttl>``, released by a compare-and-delete script,
so only the owner releases and a dead owner's lease expires by itself.

Health, the state machine shared by both classes (:class:`_Health`)::

    HEALTHY --a connection error or timeout--> DOWN --a background PING answers--> HEALTHY

While DOWN every call raises :class:`~storage.errors.StorageUnavailableError` at once,
without touching the network, so a dead or hung Redis costs one socket timeout, not one
per request. A background probe (a thread for :class:`RedisStorage`, a task for
:class:`AsyncRedisStorage`) sends ``PING`` after ``backoff_initial`` seconds, doubling
the wait after each failed probe up to ``backoff_max``; the first answer re-opens the
storage, so traffic returns to Redis by itself.

Every decision (keys, record encoding, expiry to ``PX``, error mapping, health) lives
in :mod:`swr.storage._redis`. The asyncio class is written once in
:mod:`swr.storage._async.redis`; the thread class is generated from it into
:mod:`swr.storage._sync.redis` by ``tools/unasync.py``; the probe (a thread or a task)
is one of the few primitives written twice, in :mod:`swr.storage._primitives`.

``redis`` is an optional dependency (``pip install "swr[redis]"``): it is imported when a
storage is created, never when :mod:`storage` is imported.
"""

from __future__ import annotations

from swr.storage._async.redis import AsyncRedisStorage
from swr.storage._redis import PX_MAX, describe_error, lease_key
from swr.storage._sync.redis import RedisStorage

__all__ = ["PX_MAX", "AsyncRedisStorage", "RedisStorage", "describe_error", "lease_key"]
