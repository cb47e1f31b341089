# Generated from swr/storage/_async/redis.py by tools/unasync.py:
# edit that file, not this one.
"""RedisStorage: entries in Redis or Redis Cluster, over ``redis``.

Written once: the thread twin in ``swr/storage/_sync/`` is generated from this file by
``tools/unasync.py``. Every decision (keys, records, expiry, errors, health) lives in
:mod:`swr.storage._redis`; this class only performs the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from swr.storage import _atomic
from swr.storage._log import logger
from swr.storage._primitives import Lock, Probe, node_command
from swr.storage._redis import (
    _CAS_SCRIPT,
    _CAS_SHA,
    _INCR_EXISTING_SCRIPT,
    _INCR_EXISTING_SHA,
    _INCR_TTL_SCRIPT,
    _INCR_TTL_SHA,
    _INVALIDATE_SCRIPT,
    _INVALIDATE_SHA,
    _RELEASE_SCRIPT,
    _RELEASE_SHA,
    _STORE_RELEASE_SCRIPT,
    _STORE_RELEASE_SHA,
    _TAG_SCRIPT,
    _TAG_SHA,
    _TOUCH_SCRIPT,
    _TOUCH_SHA,
    BATCH,
    CAS_ATTEMPTS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    LEASE_MARK,
    SyncTwin,
    _import_redis,
    _RedisBase,
    board_key,
    connect,
    describe_error,
    glob_escape,
    header_live,
    in_int64,
    native_int,
    wrong_client,
)
from swr.storage._verbs import check_key
from swr.storage.base import Entry, EntryTimes, StorageMixin
from swr.storage.errors import CorruptEntryError, StorageError, StorageUnavailableError
from swr.storage.leaderboard._sync.redis import RedisLeaderboard
from swr.storage.serializers import Serializer

__all__ = ["RedisStorage"]

R = TypeVar("R")
# What an atomic step stores: an entry, or (value, PX) for a native counter.
Stored = Entry | tuple[int, int | str | None]
Step = Callable[[Entry | None, bytes | None, float], tuple[Stored | None, R]]
# Answers of _counter_call besides the server's reply.
_REFUSED: Final = object()  # the server refused the counter operation
_NO_SCRIPT: Final = object()  # the script is not loaded (NOSCRIPT)


class RedisStorage(
    _RedisBase,
    SyncTwin,
    StorageMixin,
):
    """Entries in Redis or Redis Cluster, shared by every process and host using it.

    Example::

        store = RedisStorage.from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
        with StaleEngine(store, ttl=CacheTTL(fresh=60, stale=600)) as engine:
            result = engine.execute("user:1", lambda: fetch_user(1))

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster`` (it
            keeps its own timeouts and retries; :meth:`from_url` sets short ones). Not
            closed by :meth:`close` unless ``owns_client``.
        prefix: Prepended to every key in Redis (e.g. ``"myapp:"``).
        serializer: Encodes values; zstd over msgpack by default. Never pickle unless
            you pass :class:`~swr.storage.serializers.PickleSerializer` yourself.
        clock: Zero-argument callable returning epoch seconds, for ``PX`` and for the
            expiry check on reads; ``time.time`` at each call by default.
        backoff_initial: Seconds after a failure before the first background ``PING``.
        backoff_max: Largest wait between probes; the wait doubles up to it.
        owns_client: Whether :meth:`close` closes ``client``.
        read_cache: Most decoded entries kept (records up to 64 KiB); 0 decodes every
            read. A read still fetches the record and hands out the kept entry only if
            it was decoded from the very same bytes, so a value written by any host is
            seen at once; readers then share the value object (treat it as read-only,
            as with :class:`~swr.storage.MemoryStorage`).

    Raises:
        ImportError: redis-py is not installed (``pip install "swr[redis]"``).
        TypeError, ValueError: a setting has the wrong type or is out of range.

    The thread twin (over ``redis``) is safe to share between threads, its probe a
    daemon thread; the asyncio one is used from one event loop, its probe a task on
    the loop where Redis failed. After ``fork()`` redis-py reconnects in the child and
    a lost probe is restarted on the next call.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "",
        serializer: Serializer | None = None,
        clock: Callable[[], float] | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        owns_client: bool = False,
        read_cache: int = 1024,
        _twin_options: dict[str, Any] | None = None,
    ) -> None:
        redis = _import_redis()
        cluster_class = redis.cluster.RedisCluster
        if not isinstance(client, (redis.Redis, cluster_class)):
            raise wrong_client(client)
        self._setup(
            client,
            prefix=prefix,
            serializer=serializer,
            clock=clock,
            cluster=isinstance(client, cluster_class),
            owns_client=owns_client,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            read_cache=read_cache,
            twin_options=_twin_options,
        )
        self._probe = Probe(self._health, self._ping, self._probe_answered, self._driver_errors)
        self._probe_class = Probe
        # redis's cluster client races when its first commands run concurrently
        # (a connection is closed under a command still connecting): the first call
        # initializes it alone, behind one lock. The thread client is ready at once.
        self._ready = True
        self._ready_lock = Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "",
        cluster: bool = False,
        serializer: Serializer | None = None,
        clock: Callable[[], float] | None = None,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        read_cache: int = 1024,
        **redis_options: Any,
    ) -> RedisStorage:
        """Connect to ``url`` with short timeouts; the storage owns (and closes) the client.

        ``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS and
        ``unix://`` work as in redis-py; AUTH, ACL user names and TLS settings pass
        through to it, as do ``redis_options`` (e.g. ``ssl_ca_certs``,
        ``max_connections``).

        Args:
            url: The server's URL (any node of the cluster when ``cluster``).
            prefix: Prepended to every key.
            cluster: Connect to a Redis Cluster (``redis.cluster.RedisCluster``).
            serializer: See the class.
            clock: See the class.
            socket_timeout: Seconds a command may wait for its reply.
            connect_timeout: Seconds a new connection may take.
            backoff_initial: See the class.
            backoff_max: See the class.
            read_cache: See the class.
            **redis_options: More keyword arguments for redis-py's ``from_url``.

        Raises:
            ImportError: redis-py is not installed.
            ValueError: a timeout is not a positive number of seconds.
            StorageUnavailableError: ``cluster`` and no node answers (the thread
                client reads the slot map at once).
        """
        redis = _import_redis()
        client, twin = connect(
            url,
            redis,
            cluster=cluster,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            options=redis_options,
        )
        return cls(
            client,
            prefix=prefix,
            serializer=serializer,
            clock=clock,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            owns_client=True,
            read_cache=read_cache,
            _twin_options=twin,
        )

    def _enter(self) -> None:
        """Refuse a call while closed or DOWN; initialize a cluster client on first use."""
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            self._prepare()

    def _prepare(self) -> None:
        with self._ready_lock:
            if self._ready:
                return
            try:
                self._client.initialize()
            except self._driver_errors as exc:
                raise self._failure(exc) from exc
            self._ready = True

    # -- the hot path -----------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """Return the live entry under ``key``: one ``GET`` and one decode.

        Raises:
            ValueError: ``key`` is not valid UTF-8.
            StorageUnavailableError: Redis is unreachable, hung or DOWN, or the storage
                is closed.
            StorageError: Redis refused the command (the server's reason in the message).
        """
        if self._health.blocked:
            raise self._refused()
        if not self._ready:
            self._prepare()
        skey = self.prefix + key
        if self._cluster:
            data = self._on_node(skey, ("GET", skey))
        else:
            try:
                data = self._command("GET", skey)
            except self._driver_errors as exc:
                raise self._failure(exc) from exc
        if data is None:
            return None
        try:
            return self._entry(skey, data)
        except CorruptEntryError as exc:
            counter = self._counter(data)  # a native counter (incr) is not a record
            if counter is not None:
                return counter
            self._drop_corrupt(skey, exc)
            return None

    def _call(self, skey: str | bytes, *args: Any) -> Any:
        """Run one command on the server, or on the cluster node owning ``skey``.

        Raises:
            StorageUnavailableError, StorageError, ValueError: the mapped driver error.
        """
        if self._cluster:
            return self._on_node(skey, args)
        try:
            return self._command(*args)
        except self._no_script:
            raise
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    def _on_node(self, skey: str | bytes, args: tuple[Any, ...]) -> Any:
        """Run one command on the master owning ``skey``'s slot, straight to that node.

        No cluster retries and no redis-py sleeps: a dead, hung or CLUSTERDOWN node
        costs one socket timeout at most and turns DOWN alone; while DOWN its keys are
        refused without a network call. A redirection (ASK, TRYAGAIN) is followed by
        the cluster client for this call; MOVED (a failover, a reshard) updates its
        slot map on the way.
        """
        node, health = self._owner(skey)
        try:
            try:
                return node_command(self._client, node, args)
            except self._redirect:
                return self._client.execute_command(*args)
        except self._no_script:
            raise
        except self._driver_errors as exc:
            raise self._node_failure(node.name, health, exc) from exc

    def _probe_node(self, name: str) -> None:
        """Return once node ``name`` serves again, or serves no slot any more; else raise.

        The slot map is read again first: after a failover or a reshard the node's keys
        belong to another master, whose own health decides.
        """
        try:
            self._client.nodes_manager.initialize()
        except self._driver_errors:
            pass  # no node answered: the node's own check below fails too
        if name not in self._masters():
            return
        node = self._client.get_node(node_name=name)
        info = node_command(self._client, node, ("CLUSTER", "INFO"))
        if b"cluster_state:ok" not in info:
            raise self._redis.exceptions.ClusterDownError(f"node {name} reports {info!r}")

    def _drop_corrupt(self, skey: str, exc: CorruptEntryError) -> None:
        self._corrupt_found(skey, exc)
        try:
            self._call(skey, "DEL", skey)
        except StorageError:
            pass  # the record stays; it reads as a miss again

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return the live entries of ``keys`` in order, in one round trip (per node).

        Raises:
            ValueError, StorageUnavailableError, StorageError: as :meth:`get`.
        """
        self._enter()
        if not keys:
            return []
        prefix = self.prefix
        skeys = [prefix + key for key in keys]
        if self._cluster:
            values: list[bytes | None] = [None] * len(skeys)
            for indexes in self._slot_groups(skeys).values():
                slot_keys = [skeys[index] for index in indexes]
                found = self._on_node(slot_keys[0], ("MGET", *slot_keys))
                for index, value in zip(indexes, found, strict=True):
                    values[index] = value
        else:
            values = self._call("", "MGET", *skeys)
        entries, corrupt = self._entries(skeys, values)
        for index, error in corrupt:
            counter = self._counter(values[index])  # a native counter (incr)
            if counter is not None:
                entries[index] = counter
            else:
                self._drop_corrupt(skeys[index], error)
        return entries

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` with ``PX`` = its remaining lifetime; a dead entry removes the key.

        An entry with ``expires_at = inf`` (or beyond :data:`~swr.storage._redis.PX_MAX`)
        is stored without a TTL.

        Raises:
            ValueError: the entry's times are NaN or out of order, or ``key`` is not
                valid UTF-8 (nothing is written).
            SerializationError: the value cannot be encoded (nothing is written).
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        self._enter()
        data, px = self._record(entry)
        skey = self.prefix + check_key(key)
        if px is None:
            self._call(skey, "SET", skey, data)
        elif px > 0:
            self._call(skey, "SET", skey, data, "PX", px)
        else:
            self._call(skey, "DEL", skey)

    def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries in one pipeline (one round trip per node).

        Raises:
            ValueError, SerializationError: as :meth:`set` (nothing is written).
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        self._enter()
        if not entries:
            return
        prefix = self.prefix
        records = [
            (prefix + check_key(key), *self._record(entry)) for key, entry in entries.items()
        ]
        if self._cluster:  # one call per key, each on its own node
            for skey, data, px in records:
                if px is None or px > 0:
                    self._call(skey, "SET", skey, data, *(() if px is None else ("PX", px)))
                else:
                    self._call(skey, "DEL", skey)
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for skey, data, px in records:
                if px is None or px > 0:
                    pipe.set(skey, data, px=px)
                else:
                    pipe.delete(skey)
            pipe.execute()
        except self._driver_errors as exc:
            raise self._failure(exc) from exc

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether Redis held it. Idempotent.

        Raises:
            ValueError, StorageUnavailableError, StorageError: as :meth:`get`.
        """
        self._enter()
        skey = self.prefix + key
        return bool(self._call(skey, "DEL", skey))

    # -- leases -----------------------------------------------------------------------

    def acquire_lease(self, key: str, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds (``SET NX PX``); ``None`` if held.

        Raises:
            ValueError: ``ttl`` is not a positive number of seconds, or ``key`` is not
                valid UTF-8.
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        lkey, token, px = self._lease_request(key, ttl)
        self._enter()
        taken = self._call(lkey, "SET", lkey, token, "NX", "PX", px)
        return token if taken else None

    def release_lease(self, key: str, token: str) -> None:
        """Release the lease on ``key`` if ``token`` still owns it (compare-and-delete).

        Raises:
            StorageUnavailableError, StorageError: as :meth:`get`; the lease then
                expires on its own.
        """
        self._enter()
        self._script(_RELEASE_SHA, _RELEASE_SCRIPT, (self._lease_key(key),), (token,))

    def set_and_release(self, key: str, entry: Entry, token: str) -> None:
        """Store ``entry`` and release the lease ``token`` on ``key``: one round trip.

        One Lua script writes the record (as :meth:`set` does) and deletes the lease if
        ``token`` still owns it. On a cluster, a key whose lease sits in another slot
        (a stray ``}`` and no hash tag) takes two calls, :meth:`set` then
        :meth:`release_lease`.

        Raises:
            ValueError, SerializationError: as :meth:`set` (nothing is written and the
                lease is kept; it expires on its own).
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        self._enter()
        script = self._store_release(key, entry, token)
        if script is None:
            self.set(key, entry)
            self.release_lease(key, token)
            return
        self._script(_STORE_RELEASE_SHA, _STORE_RELEASE_SCRIPT, *script)

    def _script(
        self, sha: str, script: str, keys: Sequence[str | bytes], args: Sequence[object]
    ) -> Any:
        """Run a Lua script by its SHA, loading it on ``NOSCRIPT`` (a flushed cache)."""
        try:
            return self._call(keys[0], "EVALSHA", sha, len(keys), *keys, *args)
        except self._no_script:
            return self._call(keys[0], "EVAL", script, len(keys), *keys, *args)

    # -- bulk verbs and tags ------------------------------------------------------------

    def _unlink(self, skeys: Sequence[str | bytes]) -> int:
        """``UNLINK`` ``skeys``: one round trip per batch of ``BATCH`` keys; return removed.

        On a cluster a command may only name keys of one hash slot: each batch costs one
        ``UNLINK`` per slot it covers, each sent straight to the slot's master.
        """
        removed = 0
        for start in range(0, len(skeys), BATCH):
            batch = skeys[start : start + BATCH]
            if not self._cluster:
                removed += self._call("", "UNLINK", *batch)
                continue
            groups: dict[int, list[str | bytes]] = {}
            keyslot = self._client.keyslot
            for skey in batch:
                groups.setdefault(keyslot(skey), []).append(skey)
            for group in groups.values():
                removed += self._on_node(group[0], ("UNLINK", *group))
        return removed

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` with ``UNLINK`` (one round trip per batch of 1000 keys).

        Returns:
            How many of them Redis held.

        Raises:
            ValueError, StorageUnavailableError, StorageError: as :meth:`get`.
        """
        self._enter()
        prefix = self.prefix
        return self._unlink(list(dict.fromkeys(prefix + key for key in keys)))

    def exists(self, key: str) -> bool:
        """Whether a live entry is under ``key``: reads its 38-byte header (``GETRANGE``).

        A native counter (written by :meth:`incr`) is live until Redis removes it.

        The value is neither sent back nor decoded; expiry is judged by this storage's
        clock, as :meth:`get` does.

        Raises:
            ValueError, StorageUnavailableError, StorageError: as :meth:`get`.
        """
        self._enter()
        skey = self.prefix + key
        head = self._call(skey, "GETRANGE", skey, 0, 37)
        return header_live(head, self._now()) or native_int(head) is not None

    def touch(self, key: str, times: EntryTimes) -> bool:
        """Give the live entry under ``key`` new instants and a new ``PX``: one round trip.

        A Lua script checks the record's header and overwrites its four times in place
        (``SETRANGE``): the payload is neither read nor rewritten. A native counter
        (written by :meth:`incr`) gets only the new ``PX``.

        Returns:
            Whether a live entry was there.

        Raises:
            TypeError, ValueError: ``times`` is not four ordered instants, or a bad key.
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        args = self._touch_args(times)
        self._enter()
        skey = self.prefix + key
        self._cache.pop(skey, None)
        return bool(self._script(_TOUCH_SHA, _TOUCH_SCRIPT, (skey,), args))

    def _pages(self, pattern: str | bytes, kind: str) -> Iterator[list[bytes]]:
        """The pages of a ``SCAN`` of keys of type ``kind`` matching ``pattern``.

        Never ``KEYS``: each ``SCAN`` call walks about ``BATCH`` slots of the keyspace, so
        Redis is never blocked. On a cluster, every master is scanned in turn.
        """
        self._enter()
        args = ("MATCH", pattern, "COUNT", BATCH, "TYPE", kind)
        if not self._cluster:
            cursor: Any = 0
            while True:
                cursor, page = self._call("", "SCAN", cursor, *args)
                if page:
                    yield page
                if int(cursor) == 0:
                    return
        for node in self._client.get_primaries():
            cursor = 0
            while True:
                try:
                    reply = node_command(self._client, node, ("SCAN", cursor, *args))
                except self._driver_errors as exc:
                    raise self._failure(exc) from exc
                cursor, page = reply
                if page:
                    yield page
                if int(cursor) == 0:
                    break

    def scan(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys of entries starting with the literal ``prefix`` (``SCAN``).

        Pattern characters in ``prefix`` are escaped: ``"a*"`` lists keys starting with
        ``a*``. A key may be listed twice (``SCAN`` guarantees at-least-once for keys
        present throughout), and one whose entry is dead by this storage's clock but not
        yet dropped by Redis may be listed.

        Raises:
            TypeError: ``prefix`` is not a str.
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        pattern = self._scan_pattern(prefix)
        for page in self._pages(pattern, "string"):
            for key in self._scanned(page):
                if key.startswith(prefix):
                    yield key

    def clear(self) -> None:
        """Remove every entry under this storage's prefix, and its tag sets.

        ``SCAN`` pages then one ``UNLINK`` per page (per node on a cluster); leases stay
        (they expire). Not atomic: an entry written meanwhile may survive.

        Raises:
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        pattern = glob_escape(self.prefix) + "*"
        for page in self._pages(pattern, "string"):
            self._unlink([skey for skey in page if skey[:1] != LEASE_MARK])
        tags = LEASE_MARK + b"tag:{*}:" + pattern.encode()
        for page in self._pages(tags, "set"):
            self._unlink(page)
        self._cache.items.clear()

    def set_tagged(self, key: str, entry: Entry, tags: Sequence[str]) -> None:
        """Store ``entry`` and add its key to one Redis set per tag.

        Each tag's set lives at least as long as its longest-lived entry (its ``PX`` only
        grows; an entry without TTL makes it persistent), so the index expires with its
        entries. Standalone: one Lua script, one round trip, atomic. Cluster: a tag's set
        sits in a hash slot of its own (see :func:`~swr.storage._redis.tag_key`), so the
        entry is written first, then each set with its own call.

        Raises:
            TypeError: ``tags`` is not a sequence of non-empty str.
            ValueError, SerializationError, StorageUnavailableError, StorageError: as
                :meth:`set`.
        """
        tag_keys = self._tag_keys(tags)
        self._enter()
        data, px = self._record(entry)
        skey = self.prefix + key
        if px is not None and px <= 0:  # dead already: nothing to record
            self._call(skey, "DEL", skey)
            return
        pxs = "" if px is None else str(px)
        if not self._cluster:
            self._script(_TAG_SHA, _TAG_SCRIPT, (skey, *tag_keys), (data, pxs, skey, "1"))
            return
        self._call(skey, "SET", skey, data, *(() if px is None else ("PX", px)))
        for tkey in tag_keys:
            self._script(_TAG_SHA, _TAG_SCRIPT, (tkey,), (b"", pxs, skey, "0"))

    def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry recorded under one of ``tags``; return how many were removed.

        Each tag's set is emptied by batches of 1000 keys: standalone, one Lua script per
        batch (``SPOP`` then ``UNLINK``: one round trip); on a cluster, an ``SPOP`` on the
        set's node then one ``UNLINK`` per hash slot of the batch. Every host sharing the
        Redis sees the entries gone; an entry recorded under a tag and later rewritten
        without it goes too (a miss, never a stale hit).

        Raises:
            TypeError: ``tags`` is not a sequence of non-empty str.
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        removed, _ = self._invalidate(tags)
        return removed

    def _invalidate(self, tags: Sequence[str]) -> tuple[int, list[str]]:
        """:meth:`invalidate_tags`, also returning the keys taken out of the tags' sets."""
        tag_keys = self._tag_keys(tags)
        self._enter()
        removed = 0
        taken: list[bytes] = []
        for tkey in tag_keys:
            left = 1
            while left:
                if self._cluster:
                    batch = self._call(tkey, "SPOP", tkey, BATCH)
                    removed += self._unlink(batch)
                    left = len(batch) == BATCH
                else:
                    count, batch, left = self._script(
                        _INVALIDATE_SHA, _INVALIDATE_SCRIPT, (tkey,), (BATCH,)
                    )
                    removed += count
                taken += batch
        keys = self._scanned(taken)
        for key in keys:
            self._cache.pop(self.prefix + key, None)
        return removed, keys

    def publish(self, channel: str, message: bytes) -> int:
        """``PUBLISH`` ``message`` on ``channel``; return how many subscribers got it.

        Raises:
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        self._enter()
        received: int = self._call(channel, "PUBLISH", channel, message)
        return received

    # -- atomic operations (AtomicOps) ----------------------------------------------------

    def _change(self, key: str, step: Step[R]) -> R:
        """Read the record, decide with ``step``, store by compare-and-set; retry on conflict.

        ``step(live entry or None, stored record or None, now)`` returns ``(what to
        store or None, result)``: an entry, or ``(int, PX)`` for a native counter (see
        :meth:`_changed`). The store succeeds only if the key still holds the record
        read (one script on one key: atomic across hosts, cluster-safe); else the key
        is read again.

        Raises:
            StorageError: more than ``CAS_ATTEMPTS`` writes by others in between.
        """
        self._enter()
        skey = self.prefix + key
        for _ in range(CAS_ATTEMPTS):
            data = self._call(skey, "GET", skey)
            now = self._now()
            new, result = step(self._live(data, now), data, now)
            if new is None:
                return result
            record, px = self._changed(new, data)
            if isinstance(px, int) and px <= 0:
                continue  # died while deciding: decide again
            args = (data or b"", record, "" if px is None else px)
            if self._script(_CAS_SHA, _CAS_SCRIPT, (skey,), args):
                return result
        raise StorageError(f"gave up changing {key!r} after {CAS_ATTEMPTS} conflicting writes")

    def _counter_call(self, skey: str, *args: Any) -> Any:
        """:meth:`_call`, or ``_REFUSED`` when the server refuses it as a counter operation.

        ``INCRBY`` refuses a key holding anything but a native integer (a record, a
        non-canonical number) and a result beyond int64: the caller then decides in
        Python. Unavailability and every other failure raise as in :meth:`_call`.
        """
        try:
            return self._call(skey, *args)
        except self._no_script:
            return _NO_SCRIPT
        except StorageUnavailableError:
            raise
        except StorageError as exc:
            if isinstance(exc.__cause__, self._redis.exceptions.ResponseError):
                return _REFUSED
            raise

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add ``delta`` to the ``int`` under ``key`` atomically; return the new value.

        An absent or dead key starts at 0 and lives ``ttl`` seconds (``None``: no TTL);
        a live key keeps its windows (and its Redis TTL). A counter is a native Redis
        integer: without ``ttl`` one ``INCRBY``; with one, a two-command script (``SET NX
        PX`` then ``INCRBY``), one round trip either way, atomic and cluster-safe (one
        key). Every read understands it (:func:`~swr.storage._redis.counter_entry`).
        An swr record holding an ``int`` (written by ``set``), a dead record and a
        result beyond int64 go through a compare-and-set in Python (:meth:`_change`).

        Raises:
            TypeError: ``delta`` or the stored value is not an ``int``.
            ValueError: ``ttl`` is not a finite number of seconds > 0 (or ``None``).
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        if ttl is None and type(delta) is int and not self._cluster and in_int64(delta):
            # The common call, inlined: one INCRBY (a standalone client needs no setup).
            if self._health.blocked:
                raise self._refused()
            skey = self.prefix + key
            try:
                return int(self._command("INCRBY", skey, delta))
            except self._redis.exceptions.ResponseError:
                pass  # not a native counter (or past int64): decided in Python below
            except self._driver_errors as exc:
                raise self._failure(exc) from exc
        delta = _atomic.check_delta(delta)
        ttl = _atomic.check_ttl(ttl)
        px = self._counter_px(ttl)
        if in_int64(delta) and (px is not None or self._cluster):
            self._enter()
            skey = self.prefix + key
            if px is None:
                value = self._counter_call(skey, "INCRBY", skey, delta)
            else:
                args = (_INCR_TTL_SHA, 1, skey, delta, px)
                value = self._counter_call(skey, "EVALSHA", *args)
                if value is _NO_SCRIPT:
                    value = self._counter_call(skey, "EVAL", _INCR_TTL_SCRIPT, *args[1:])
            if value is not _REFUSED:
                return int(value)

        def step(entry: Entry | None, data: bytes | None, now: float) -> tuple[Stored, int]:
            if entry is None and in_int64(delta):  # absent, dead or corrupt: a new counter
                return (delta, px), delta
            new = _atomic.incremented(entry, delta, now, ttl)
            if native_int(data) is not None and in_int64(new.value):
                return (new.value, "keep"), new.value
            return new, new.value

        return self._change(key, step)

    def incr_existing(self, key: str, delta: int = 1) -> int | None:
        """:meth:`incr` of a live key only; ``None`` (nothing created) when absent or dead.

        One script (``EXISTS`` then ``INCRBY``) on a native counter. A live record
        holding an ``int`` whose windows are all one instant (what Django's backend
        writes) becomes a native counter keeping its Redis TTL, so the next call is one
        round trip; another record stays a record (its windows kept).

        Raises:
            TypeError: ``delta`` or the stored value is not an ``int``.
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        delta = _atomic.check_delta(delta)
        if in_int64(delta):
            self._enter()
            skey = self.prefix + key
            args = ("EVALSHA", _INCR_EXISTING_SHA, 1, skey, delta)
            value = self._counter_call(skey, *args)
            if value is _NO_SCRIPT:
                value = self._counter_call(skey, "EVAL", _INCR_EXISTING_SCRIPT, 1, skey, delta)
            if value is None:
                return None
            if value is not _REFUSED:
                return int(value)

        def step(
            entry: Entry | None, data: bytes | None, now: float
        ) -> tuple[Stored | None, int | None]:
            if entry is None:
                return None, None
            new = _atomic.incremented(entry, delta, now, None)
            plain = entry.fresh_until == entry.stale_until == entry.expires_at
            if plain and in_int64(new.value):
                return (new.value, "keep"), new.value
            return new, new.value

        return self._change(key, step)

    def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """:meth:`incr` by ``-delta``."""
        return self.incr(key, -_atomic.check_delta(delta), ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent or dead; exactly one racer wins.

        Raises:
            ValueError, SerializationError: a bad ``ttl``, or the value cannot be encoded.
            StorageUnavailableError, StorageError: as :meth:`get`.
        """
        ttl = _atomic.check_ttl(ttl)

        def step(entry: Entry | None, _: bytes | None, now: float) -> tuple[Entry | None, bool]:
            if entry is not None:
                return None, False
            return _atomic.created(value, now, ttl), True

        return self._change(key, step)

    def get_versioned(self, key: str) -> tuple[Entry, Any] | None:
        """The live entry under ``key`` and its version (the record's bytes), or ``None``."""
        self._enter()
        skey = self.prefix + key
        data = self._call(skey, "GET", skey)
        entry = self._live(data, self._now())
        return None if entry is None else (entry, data)

    def replace_if(self, key: str, version: Any, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` if ``key`` still holds the record ``version`` and is live.

        The new value keeps the windows, or lives ``ttl`` seconds from now when given.
        """
        ttl = _atomic.check_ttl(ttl)

        def step(entry: Entry | None, data: bytes | None, now: float) -> tuple[Entry | None, bool]:
            if entry is None or data != version:
                return None, False
            if ttl is None:
                return _atomic.replaced(entry, value), True
            return _atomic.created(value, now, ttl), True

        return self._change(key, step)

    def append(self, key: str, data: bytes | str, ttl: float | None = None) -> int:
        """Append ``data`` to the ``bytes`` or ``str`` under ``key``; return the new length."""
        data = _atomic.check_data(data)
        ttl = _atomic.check_ttl(ttl)

        def step(entry: Entry | None, _: bytes | None, now: float) -> tuple[Entry, int]:
            new = _atomic.appended(entry, data, now, ttl)
            return new, len(new.value)

        return self._change(key, step)

    def leaderboard(self, name: str, *, max_size: int | None = None) -> RedisLeaderboard:
        """The leaderboard ``name``: one sorted set under this storage's prefix.

        Its key starts with the byte 0xFE (see :func:`~swr.storage._redis.board_key`),
        so it never collides with an entry or a lease. Every host using the same prefix
        sees the same leaderboard; on a cluster it lives on one node. Its commands go
        through this storage, as the entries' do: refused while the storage (on a
        cluster, the node owning the leaderboard) is DOWN, sent straight to that node,
        failures raised as :class:`~swr.storage.errors.StorageError`.
        """
        key = board_key(self.prefix, name)
        return RedisLeaderboard(self._client, key, max_size=max_size, call=self._board_call)

    def _board_call(self, skey: str | bytes, *args: Any) -> Any:
        """One leaderboard command: :meth:`_call` once the storage is open and up."""
        self._enter()
        return self._call(skey, *args)

    # -- health probe, views, closing ---------------------------------------------------

    def _ping(self) -> None:
        self._client.ping()

    def with_serializer(self, serializer: Serializer) -> RedisStorage:
        """Return a view of the same Redis (client, health, counters) using ``serializer``."""
        return self._view(serializer)

    def close(self) -> None:
        """Stop the probe and close the client if this storage owns it. Idempotent.

        Later calls raise ``StorageUnavailableError``.
        """
        if not self._health.close():
            return
        self._probe.cancel()
        self._close_nodes()
        if self._owns_client:
            try:
                self._client.close()
            except self._driver_errors as exc:  # pragma: no cover - closing sockets
                logger.debug("redis_close_failed", backend="redis", error=describe_error(exc))
