"""A cached service under load whose upstream fails for a while, scraped like Prometheus would.

Run: python examples/metrics_service.py [--duration 40] [--port 9100]
(needs the prometheus extra: pip install -e ".[prometheus]")

Four client threads ask a StaleEngine for 100 product keys, a few of them much more
often than the rest. The upstream answers in about 20 ms, and fails outright from 35 %
to 65 % of the run: refreshes fail, stale and expired entries are served as FALLBACK,
the circuit breaker opens, half-opens and closes again. The engine's metrics are served
on http://127.0.0.1:PORT/metrics by prometheus_client, and a scraper thread reads that
page every second, as a Prometheus server would. At the end the example prints one line
per scrape window. examples/dashboard_snapshot.py runs it under a real Prometheus server
and draws docs/grafana-dashboard.json's panels from what that server scraped.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from swr import CacheTTL, CircuitBreaker, CircuitOpenError, RefreshOptions, StaleEngine
from swr.metrics.prometheus import PrometheusMetrics
from swr.storage import LMDBStorage, MemoryStorage, RedisStorage

KEYS = [f"product:{i}" for i in range(100)]
SESSION_KEYS = [f"session:{i}" for i in range(100)]
WEIGHTS = [1 / (i + 1) for i in range(len(KEYS))]  # a few hot keys, a long tail
STATUSES = ("hit", "stale", "expired", "miss", "fallback")

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Upstream:
    """About 20 ms an answer; raises while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def fetch(self, key: str) -> dict[str, object]:
        self.calls += 1
        time.sleep(min(0.2, random.lognormvariate(math.log(0.02), 0.5)))
        if self.down:
            raise ConnectionError("upstream unavailable")
        return {"key": key, "price": random.randint(1, 100)}


@dataclass
class Scrape:
    at: float  # seconds since the start
    samples: Series


def scrape(url: str) -> Series:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own 127.0.0.1
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Series, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def rate(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    seconds = after.at - before.at
    return (total(after.samples, name, **labels) - total(before.samples, name, **labels)) / seconds


def quantile(q: float, before: Scrape, after: Scrape, name: str, **match: str) -> float | None:
    """``histogram_quantile(q, increase(name_bucket{match}[window]))``, as PromQL computes it."""
    bounds: dict[float, float] = {}
    wanted = set(match.items())
    for (n, labels), value in after.samples.items():
        if n == f"{name}_bucket" and wanted <= labels:
            le = float(dict(labels)["le"])
            old = before.samples.get((n, labels), 0.0)
            bounds[le] = bounds.get(le, 0.0) + value - old
    ordered = sorted(bounds.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            share = (rank - lower_count) / width if width else 0.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def run(
    duration: float, port: int, lmdb: str | None = None, redis_cluster: str | None = None
) -> list[Scrape]:
    """Serve under load for ``duration`` seconds; return what the scraper read.

    The ``catalog`` engine caches in memory, or in an LMDB environment at ``lmdb``
    (which reports its bytes). With ``redis_cluster`` (a node's URL), a second engine,
    ``sessions``, caches in that Redis Cluster and reports each master's health.
    """
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    breaker = CircuitBreaker(failure_threshold=5, success_threshold=2, reset_timeout=3)
    storage = LMDBStorage(lmdb) if lmdb else MemoryStorage()
    engine = StaleEngine(
        storage,
        ttl=CacheTTL(fresh=2, stale=5, expired=60),
        name="catalog",
        metrics=metrics,
        breaker=breaker,
        refresh=RefreshOptions(timeout=0.5, backoff_initial=0.5, backoff_max=2),
    )
    engines = [(engine, KEYS)] * 4  # four client threads on the catalog
    cluster = None
    if redis_cluster:
        cluster = RedisStorage.from_url(redis_cluster, cluster=True, prefix="example:")
        sessions = StaleEngine(
            cluster,
            ttl=CacheTTL(fresh=2, stale=5, expired=60),
            name="sessions",
            metrics=metrics,
            refresh=RefreshOptions(timeout=0.5, backoff_initial=0.5, backoff_max=2),
        )
        engines += [(sessions, SESSION_KEYS)] * 2
    # The engine registers its gauges with the hook and times its own fetches.
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    upstream = Upstream()
    stop = threading.Event()
    print(f"serving {url} from {time.time():.3f} (unix time)", flush=True)
    started = time.monotonic()

    def client(engine: StaleEngine, keys: list[str]) -> None:
        while not stop.is_set():
            key = random.choices(keys, WEIGHTS)[0]
            try:
                engine.execute(key, functools.partial(upstream.fetch, key))
            except (ConnectionError, CircuitOpenError):
                pass  # the caller's own error path; the metrics count it
            time.sleep(0.002)

    scrapes: list[Scrape] = []

    def scraper() -> None:
        while not stop.wait(1.0 - (time.monotonic() - started) % 1.0):
            scrapes.append(Scrape(time.monotonic() - started, scrape(url)))

    threads = [threading.Thread(target=client, args=pair, daemon=True) for pair in engines]
    threads.append(threading.Thread(target=scraper, daemon=True))
    scrapes.append(Scrape(0.0, scrape(url)))
    for thread in threads:
        thread.start()
    while (elapsed := time.monotonic() - started) < duration:
        upstream.down = 0.35 * duration <= elapsed < 0.65 * duration
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
    for each in {id(e): e for e, _ in engines}.values():
        each.close()
    storage.close()
    if cluster is not None:
        cluster.close()
    server.shutdown()
    server.server_close()
    metrics.close()
    return scrapes


def windows(scrapes: Sequence[Scrape], width: int = 3) -> list[tuple[Scrape, Scrape]]:
    """Sliding windows of ``width`` scrape intervals, like ``rate(...[3s])``."""
    return [(scrapes[i - width], scrapes[i]) for i in range(width, len(scrapes))]


def summary(scrapes: Sequence[Scrape]) -> None:
    """One line per window of the catalog engine's answers, hit ratio, p95 and circuit."""
    print(f"{'t':>5}  " + "  ".join(f"{s:>8}" for s in STATUSES) + "  hit-ratio  p95-ms  circuit")
    for before, after in windows(scrapes):
        rates = [
            rate(before, after, "swr_requests_total", status=s, engine="catalog") for s in STATUSES
        ]
        answered = sum(rates)
        ratio = (rates[0] + rates[1]) / answered if answered else 0.0
        p95 = quantile(0.95, before, after, "swr_fetch_duration_seconds", engine="catalog")
        state = int(total(after.samples, "swr_circuit_state", engine="catalog"))
        print(
            f"{after.at:5.0f}  "
            + "  ".join(f"{r:8.0f}" for r in rates)
            + f"  {ratio:9.3f}  {p95 * 1000 if p95 is not None else float('nan'):6.1f}"
            + f"  {('closed', 'half-open', 'open')[state]}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of load")
    parser.add_argument("--port", type=int, default=0, help="metrics port (0: any free)")
    parser.add_argument("--lmdb", help="cache in an LMDB environment in this directory")
    parser.add_argument("--redis-cluster", help="URL of a Redis Cluster node: a second engine")
    args = parser.parse_args(argv)
    # The engine logs every failed fetch; this demo shows metrics instead.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(50))
    scrapes = run(args.duration, args.port, args.lmdb, args.redis_cluster)
    summary(scrapes)


if __name__ == "__main__":
    main()
