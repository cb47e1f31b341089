"""The HIT path with a metrics hook installed, against the same engine without one.

Run: python bench/metrics_path.py   (needs the test extra for prometheus_client and
the OpenTelemetry SDK: pip install -e ".[test]")

Prints ns per HIT, measured in the same run, for:
- StaleEngine.execute HIT with no hook (the baseline)
- the same with PrometheusMetrics (a private registry)
- the same with OpenTelemetryMetrics (an SDK MeterProvider with an in-memory reader)
- the same with a hand-written hook calling prometheus_client's Counter.labels().inc()
  on every answer (what the adapters avoid)
- AsyncStaleEngine.execute HIT with no hook, with PrometheusMetrics and with
  OpenTelemetryMetrics

- beside the hot key, the working set of issue 14 (bench/_working_set.py): sync HITs
  over 100_000 cached ~200-byte records read in a Zipf (s = 1.0) and in a uniform
  order, with no hook and with each adapter

Target: each adapter within 1.3x of no hook, on the hot key and in each order.

Times are this thread's CPU time (``time.thread_time_ns``), not wall time: the added
cost is a few tens of nanoseconds, and on a shared machine wall time moves more than
that whenever the scheduler runs someone else. The best of interleaved rounds counts.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable
from typing import Any

from _harness import Case, Target, report
from _working_set import KEYS, RECORD, orders
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from swr import AsyncStaleEngine, CacheTTL, StaleEngine, Status
from swr.metrics import BaseMetrics, MetricsHook
from swr.metrics.opentelemetry import OpenTelemetryMetrics
from swr.metrics.prometheus import PrometheusMetrics

KEY = "user:42"
VALUE = {"id": 42, "name": "Ada"}
TTL = CacheTTL(fresh=3600, stale=3600)


def fetch() -> dict[str, object]:
    return VALUE


async def afetch() -> dict[str, object]:
    return VALUE


class NaiveCounterHook(BaseMetrics):
    """One prometheus_client counter increment per answer, labels looked up each time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = PromCounter(
            "naive_requests", "answers", ["engine", "status"], registry=registry
        )

    def record_status(self, engine: str, status: Status) -> None:
        self.requests.labels(engine, status.value).inc()


def measure_cpu(cases: dict[str, Case], n: int, rounds: int = 25) -> dict[str, float]:
    """Best CPU ns/op of each case over interleaved rounds (the first round warms up)."""
    best = dict.fromkeys(cases, float("inf"))
    gc.disable()
    try:
        for round_no in range(rounds + 1):
            for name, run in cases.items():
                started = time.thread_time_ns()
                run(n)
                if round_no:
                    best[name] = min(best[name], (time.thread_time_ns() - started) / n)
    finally:
        gc.enable()
    return best


def sync_case(metrics: MetricsHook | None) -> tuple[Callable[[int], None], StaleEngine]:
    engine = StaleEngine(ttl=TTL, name="bench", metrics=metrics)
    engine.execute(KEY, fetch)
    assert engine.execute(KEY, fetch).status is Status.HIT

    def run(n: int) -> None:
        execute = engine.execute
        for _ in range(n):
            execute(KEY, fetch)

    return run, engine


def working_set_case(
    metrics: MetricsHook | None, sequence: list[str]
) -> tuple[Callable[[int], None], StaleEngine]:
    """HITs over the 100_000 keys of the working set, in the order of ``sequence``."""
    engine = StaleEngine(ttl=TTL, name="bench", metrics=metrics)
    for key in KEYS:
        engine.set(key, RECORD)

    def fetch_record() -> dict[str, object]:
        return RECORD

    assert engine.execute(sequence[0], fetch_record).status is Status.HIT

    def run(n: int) -> None:
        execute = engine.execute
        for key in sequence[:n]:
            execute(key, fetch_record)

    return run, engine


def async_case(
    loop: asyncio.AbstractEventLoop, metrics: MetricsHook | None
) -> tuple[Callable[[int], None], AsyncStaleEngine]:
    engine = AsyncStaleEngine(ttl=TTL, name="bench-async", metrics=metrics)
    loop.run_until_complete(engine.execute(KEY, afetch))

    async def hits(n: int) -> None:
        execute = engine.execute
        for _ in range(n):
            await execute(KEY, afetch)

    def run(n: int) -> None:
        loop.run_until_complete(hits(n))

    return run, engine


def main() -> int:
    n = 100_000
    registry = CollectorRegistry()
    prometheus = PrometheusMetrics(registry)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel = OpenTelemetryMetrics(provider)
    naive = NaiveCounterHook(registry)
    loop = asyncio.new_event_loop()

    engines: list[Any] = []
    cases: dict[str, Case] = {}
    for label, hook in (
        ("sync HIT, no hook", None),
        ("sync HIT, PrometheusMetrics", prometheus),
        ("sync HIT, OpenTelemetryMetrics", otel),
        ("sync HIT, Counter.labels().inc()", naive),
    ):
        cases[label], sync_engine = sync_case(hook)
        engines.append(sync_engine)
    for label, hook in (
        ("async HIT, no hook", None),
        ("async HIT, PrometheusMetrics", prometheus),
        ("async HIT, OpenTelemetryMetrics", otel),
    ):
        cases[label], async_engine = async_case(loop, hook)
        engines.append(async_engine)

    working_targets = []
    for order, sequence in orders(n).items():
        for label, hook in (
            ("no hook", None),
            ("PrometheusMetrics", prometheus),
            ("OpenTelemetryMetrics", otel),
        ):
            cases[f"sync HIT, 100_000 keys {order}, {label}"], sync_engine = working_set_case(
                hook, sequence
            )
            engines.append(sync_engine)
        working_targets += [
            Target(
                f"sync {adapter} / no hook, 100_000 keys {order}",
                f"sync HIT, 100_000 keys {order}, {adapter}Metrics",
                f"sync HIT, 100_000 keys {order}, no hook",
                1.3,
            )
            for adapter in ("Prometheus", "OpenTelemetry")
        ]

    results = measure_cpu(cases, n)
    # The counts really reached both libraries.
    assert (
        registry.get_sample_value("swr_requests_total", {"engine": "bench", "status": "hit"})
        == prometheus.status_counts()["bench", "hit"]
    )
    assert reader.get_metrics_data() is not None

    met = report(
        "HIT path with metrics hooks (CPU time)",
        results,
        [
            Target(
                "sync Prometheus / no hook",
                "sync HIT, PrometheusMetrics",
                "sync HIT, no hook",
                1.3,
            ),
            Target(
                "sync OpenTelemetry / no hook",
                "sync HIT, OpenTelemetryMetrics",
                "sync HIT, no hook",
                1.3,
            ),
            Target(
                "async Prometheus / no hook",
                "async HIT, PrometheusMetrics",
                "async HIT, no hook",
                1.3,
            ),
            Target(
                "async OpenTelemetry / no hook",
                "async HIT, OpenTelemetryMetrics",
                "async HIT, no hook",
                1.3,
            ),
            *working_targets,
        ],
    )
    ratio = results["sync HIT, Counter.labels().inc()"] / results["sync HIT, no hook"]
    print(f"info  sync Counter.labels().inc() / no hook: {ratio:.2f}x (no target)")
    for engine in engines:
        if isinstance(engine, StaleEngine):
            engine.close()
        else:
            loop.run_until_complete(engine.aclose())
    loop.close()
    prometheus.close()
    provider.shutdown()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
