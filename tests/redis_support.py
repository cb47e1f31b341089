"""Real Redis servers for tests: one node or a 3-master cluster on free loopback ports.

Every server is a ``redis-server`` child process started here, with no persistence, on
127.0.0.1 and a port chosen free at start; it is stopped by its pid. Nothing here ever
touches port 6379.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
FORBIDDEN_PORT = 6379


def require_redis() -> None:
    """Skip the calling test when redis-server is missing, or fail when ``CI=true``."""
    if REDIS_SERVER and REDIS_CLI:
        return
    reason = "redis-server and redis-cli are not installed (apt-get install redis-server)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the Redis tests", pytrace=False)
    pytest.skip(reason)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_bus: bool = False) -> int:
    """A free loopback port (and port + 10000 free too for a cluster node's bus)."""
    for _ in range(200):
        port = random.randint(20000, 29999) if with_bus else random.randint(30000, 60000)
        if port == FORBIDDEN_PORT:
            continue
        if _bindable(port) and (not with_bus or _bindable(port + 10000)):
            return port
    raise RuntimeError("no free loopback port found")


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, stoppable and restartable by pid."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        assert self.port != FORBIDDEN_PORT
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 10.0) -> RedisServer:
        assert REDIS_SERVER is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            *self.extra,
        ]
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            if self.cli("PING", check=False) == "PONG":
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def cli(self, *args: str, check: bool = True) -> str:
        assert REDIS_CLI is not None
        done = subprocess.run(
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"redis-cli {args} failed: {done.stderr}")
        return done.stdout.strip()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL by pid), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server by pid (SIGTERM, then SIGKILL if it lingers)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.kill(process.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
        except ProcessLookupError:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class RedisCluster:
    """Master nodes (three by default) joined with ``redis-cli --cluster create``.

    ``replicas`` per master (the nodes after the masters replicate them);
    ``node_timeout`` in ms (how soon a dead master is failed over); ``full_coverage``:
    whether the cluster refuses every key while one slot has no live master.
    """

    def __init__(
        self,
        directory: Path,
        size: int = 3,
        *,
        replicas: int = 0,
        node_timeout: int = 2000,
        full_coverage: bool = True,
    ) -> None:
        self.replicas = replicas
        size *= 1 + replicas
        ports: list[int] = []
        while len(ports) < size:
            port = free_port(with_bus=True)
            if port not in ports:
                ports.append(port)
        self.nodes = [
            RedisServer(
                directory / f"node-{port}",
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(node_timeout),
                "--cluster-require-full-coverage",
                "yes" if full_coverage else "no",
            )
            for port in ports
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> RedisCluster:
        for node in self.nodes:
            node.start()
        assert REDIS_CLI is not None
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and every replica
        has synced its master (so a failover keeps the data)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
            if all("cluster_state:ok" in node.cli("CLUSTER", "INFO") for node in running) and all(
                "master_link_status:up" in info or "role:master" in info
                for info in (node.cli("INFO", "replication") for node in running)
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis cluster did not reach cluster_state:ok")

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters now."""
        return [
            node
            for node in self.nodes
            if node.process is not None
            and node.process.poll() is None
            and "role:master" in node.cli("INFO", "replication")
        ]

    def node_of(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def flush(self) -> None:
        for node in self.nodes:
            node.cli("FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
