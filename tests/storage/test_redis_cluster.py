"""RedisStorage on a real Redis Cluster under faults: per-node health, one short timeout.

One cluster for the module (3 masters + 3 replicas on free loopback ports, node timeout
1 s, ``cluster-require-full-coverage no``), started here and stopped by pid. The tests
run in file order: each leaves the cluster healthy for the next, and the one that kills
every master runs last. Callers are ``StaleEngine.execute`` calls over
``FallbackStorage(RedisStorage, MemoryStorage)``, from 4 threads; each test reports the
exceptions reaching callers (must be 0), the hit rate of the healthy masters' keys, the
slowest call and the upstream fetches.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from swr import CacheTTL, StaleEngine, Status
from swr.storage import (
    AsyncRedisStorage,
    FallbackStorage,
    MemoryStorage,
    RedisStorage,
    StorageUnavailableError,
)
from tests.helpers import wait_until
from tests.redis_support import REDIS_CLI, RedisCluster, RedisServer, require_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SOCKET_TIMEOUT = 0.25
# The bound on one call: one socket timeout, plus slack for a loaded CI machine.
SLOWEST = SOCKET_TIMEOUT + 0.2
TTL = CacheTTL(fresh=3600, stale=3600, expired=3600)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    require_redis()
    nodes = RedisCluster(
        tmp_path_factory.mktemp("cluster-faults"),
        replicas=1,
        node_timeout=1000,
        full_coverage=False,
    )
    try:
        yield nodes.start()
    finally:
        nodes.stop()


@dataclass
class Run:
    """What the callers saw during one driven period."""

    calls: int = 0
    errors: list[BaseException] = field(default_factory=list)
    healthy_calls: int = 0
    healthy_hits: int = 0
    slowest: float = 0.0
    wrong_values: int = 0


class Rig:
    """Keys spread over the masters, an engine over Fallback(Redis, memory), an upstream."""

    def __init__(self, cluster: RedisCluster, count: int = 90) -> None:
        self.cluster = cluster
        self.store = RedisStorage.from_url(
            cluster.url,
            cluster=True,
            prefix=f"c{uuid.uuid4().hex[:6]}:",
            socket_timeout=SOCKET_TIMEOUT,
            connect_timeout=SOCKET_TIMEOUT,
            backoff_initial=0.05,
            backoff_max=0.2,
        )
        self.safe = FallbackStorage(self.store, MemoryStorage())
        self.engine = StaleEngine(self.safe, ttl=TTL)
        self.fetches = 0
        self.lock = threading.Lock()
        self.keys = [f"key-{i}" for i in range(count)]
        for key in self.keys:  # warm: every key stored in Redis (and copied locally)
            assert self.call(key) == key

    def fetch(self, key: str) -> str:
        with self.lock:
            self.fetches += 1
        return key

    def call(self, key: str) -> object:
        return self.engine.execute(key, lambda: self.fetch(key)).value

    def owner(self, key: str) -> int:
        """The port of the master owning ``key`` now."""
        node = self.store.client.get_node_from_key(self.store.prefix + key)
        return int(node.port)

    def victim(self) -> RedisServer:
        """A master owning some of the keys."""
        return self.cluster.node_of(self.owner(self.keys[0]))

    def drive(self, seconds: float, unhealthy: set[int], threads: int = 4) -> Run:
        """Call every key from ``threads`` threads for ``seconds``; keys of masters whose
        port is in ``unhealthy`` (judged at the start) are not counted as healthy."""
        owners = {key: self.owner(key) for key in self.keys}
        run = Run()
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def worker(offset: int) -> None:
            local = Run()
            i = offset
            while time.monotonic() < stop:
                key = self.keys[i % len(self.keys)]
                i += 1
                started = time.monotonic()
                try:
                    result = self.engine.execute(key, lambda key=key: self.fetch(key))
                except Exception as exc:
                    local.errors.append(exc)
                    continue
                finally:
                    local.slowest = max(local.slowest, time.monotonic() - started)
                local.calls += 1
                local.wrong_values += result.value != key
                if owners[key] not in unhealthy:
                    local.healthy_calls += 1
                    local.healthy_hits += result.status is Status.HIT
            with lock:
                run.calls += local.calls
                run.errors += local.errors
                run.healthy_calls += local.healthy_calls
                run.healthy_hits += local.healthy_hits
                run.slowest = max(run.slowest, local.slowest)
                run.wrong_values += local.wrong_values

        pool = [threading.Thread(target=worker, args=(n * 7,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return run

    def close(self) -> None:
        self.engine.close()
        self.safe.close()  # closes the Redis storage too: its node probes end


def hit_rate(run: Run) -> float:
    return run.healthy_hits / max(1, run.healthy_calls)


def redis_values(rig: Rig, keys: list[str]) -> list[object]:
    return [None if (e := rig.store.get(key)) is None else e.value for key in keys]


@pytest.fixture
def rig(cluster: RedisCluster) -> Iterator[Rig]:
    cluster.wait_ok()
    made = Rig(cluster)
    try:
        yield made
    finally:
        made.close()


def test_one_master_killed_its_replica_takes_over_and_the_node_rejoins(rig, cluster):
    victim = rig.victim()
    victim_keys = [k for k in rig.keys if rig.owner(k) == victim.port]
    fetches = rig.fetches
    victim.kill()
    run = rig.drive(1.0, {victim.port})
    assert run.errors == []
    assert run.wrong_values == 0
    assert hit_rate(run) >= 0.99  # the healthy masters keep serving at full speed
    assert run.slowest <= SLOWEST
    assert rig.fetches == fetches  # the dead master's keys came from the warm copy
    assert rig.safe.stats()["served_by_fallback"] > 0
    node_stats = rig.store.stats()
    assert node_stats[f"node 127.0.0.1:{victim.port} up"] == 0
    assert node_stats["nodes_down"] == 1
    assert rig.store.available  # two masters of three still serve
    with pytest.raises(StorageUnavailableError):  # a batch touching the dead node
        rig.store.get_many(rig.keys)
    assert [e.value for e in rig.safe.get_many(rig.keys)] == rig.keys  # the fallback's copy
    # The replica is promoted: the dead master's keys hit again in Redis, with their data.
    wait_until(lambda: redis_values_or_none(rig, victim_keys) == victim_keys, timeout=15)
    assert f"node 127.0.0.1:{victim.port} up" not in rig.store.stats()  # it left
    victim.start()  # rejoins as a replica of its successor
    cluster.wait_ok()
    run = rig.drive(0.5, set())
    assert run.errors == []
    assert hit_rate(run) >= 0.99


def redis_values_or_none(rig: Rig, keys: list[str]) -> list[object] | None:
    try:
        return redis_values(rig, keys)
    except StorageUnavailableError:
        return None


def test_a_hung_master_costs_one_socket_timeout_and_spares_the_others(rig, cluster):
    victim = rig.victim()
    fetches = rig.fetches
    victim.pause()  # SIGSTOP: connections stay open, nothing answers
    try:
        run = rig.drive(0.8, {victim.port})
    finally:
        victim.resume()
    assert run.errors == []
    assert run.wrong_values == 0
    assert hit_rate(run) >= 0.99
    assert run.slowest <= SLOWEST  # one timeout, never redis-py's retries and sleeps
    assert rig.fetches == fetches
    cluster.wait_ok()
    wait_until(lambda: redis_values_or_none(rig, rig.keys) == rig.keys, timeout=15)


def test_the_async_twin_judges_nodes_alone_too(rig, cluster):
    async def scenario() -> None:
        twin = AsyncRedisStorage.from_url(
            cluster.url,
            cluster=True,
            prefix=rig.store.prefix,
            socket_timeout=SOCKET_TIMEOUT,
            backoff_initial=0.05,
            backoff_max=0.2,
        )
        assert (await twin.get(rig.keys[0])).value == rig.keys[0]  # connected, slot map read
        victim = rig.victim()
        victim.pause()
        try:
            healthy = [k for k in rig.keys if rig.owner(k) != victim.port]
            sick = [k for k in rig.keys if rig.owner(k) == victim.port]
            started = time.monotonic()
            for key in sick:
                with pytest.raises(StorageUnavailableError):
                    await twin.get(key)
            assert time.monotonic() - started <= SLOWEST  # one timeout, then refused
            assert [(await twin.get(k)).value for k in healthy] == healthy
            assert twin.available
        finally:
            victim.resume()
        await twin.aclose()

    asyncio.run(scenario())
    cluster.wait_ok()


def test_reading_while_4096_slots_move_costs_no_exception(rig, cluster):
    assert REDIS_CLI is not None
    source = rig.victim()
    target = next(n for n in cluster.masters() if n.port != source.port)
    ids = {
        int(line.split()[1].split(":")[1].split("@")[0]): line.split()[0]
        for line in source.cli("CLUSTER", "NODES").splitlines()
    }
    reshard = subprocess.Popen(
        [
            REDIS_CLI,
            "--cluster",
            "reshard",
            f"127.0.0.1:{source.port}",
            "--cluster-from",
            ids[source.port],
            "--cluster-to",
            ids[target.port],
            "--cluster-slots",
            "4096",
            "--cluster-yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fetches = rig.fetches
    runs = []
    while reshard.poll() is None:
        runs.append(rig.drive(0.3, set()))
    assert reshard.wait(60) == 0
    runs.append(rig.drive(0.3, set()))
    assert all(run.errors == [] for run in runs)
    assert sum(run.wrong_values for run in runs) == 0
    calls = sum(run.healthy_calls for run in runs)
    assert sum(run.healthy_hits for run in runs) / calls >= 0.99
    assert rig.fetches == fetches
    assert redis_values(rig, rig.keys) == rig.keys  # every value moved with its slot


def test_a_master_restarted_empty_costs_a_refetch_not_an_exception(rig, cluster):
    victim = rig.victim()
    victim_keys = [k for k in rig.keys if rig.owner(k) == victim.port]
    victim.kill()
    victim.start()  # back before any failover, with no data (no persistence)
    cluster.wait_ok()
    client = redis.Redis(port=victim.port)
    wait_until(lambda: client.dbsize() == 0 or "role:slave" in str(client.info()), timeout=10)
    client.close()
    rig.engine.close()  # no local copies either: what is gone must be fetched
    rig.safe = FallbackStorage(rig.store, MemoryStorage(), warm_reads=False)
    rig.engine = StaleEngine(rig.safe, ttl=TTL)
    fetches = rig.fetches
    run = rig.drive(0.8, {victim.port})
    assert run.errors == []
    assert run.wrong_values == 0
    assert hit_rate(run) >= 0.99
    assert rig.fetches - fetches <= 2 * len(victim_keys)  # about one refetch per key
    assert redis_values(rig, victim_keys) == victim_keys  # stored again


def test_every_master_down_serves_the_warm_copy_and_marks_the_storage_down(rig, cluster):
    masters = cluster.masters()
    fetches = rig.fetches
    for master in masters:
        master.kill()
    run = rig.drive(1.0, {m.port for m in masters})
    assert run.errors == []
    assert run.wrong_values == 0
    assert run.slowest <= SLOWEST
    assert rig.fetches == fetches  # every key served from the fallback's warm copy
    assert not rig.store.available
    assert rig.store.stats()["available"] == 0
    assert rig.safe.stats()["primary_available"] == 0
    for key in rig.keys[:5]:  # the storage itself: inside swr's error tree, refused fast
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            rig.store.get(key)
        assert time.monotonic() - started < 0.05
