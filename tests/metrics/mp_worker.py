"""A worker process of the multiprocess tests: ``python -m tests.metrics.mp_worker MODE N [LMDB]``.

PROMETHEUS_MULTIPROC_DIR is set by the test before this process imports
prometheus_client, as gunicorn's config would set it.

Modes:
    serve N    one miss and N - 1 hits, flush, print "ready", then obey stdin: "role"
               prints "reporter" when this process reports a shared storage's size
               ("other" if not), "close" closes the adapter, "forget" closes and drops
               the engine, an empty line exits (the exit hook flushes again)
    thread N   the same without flushing: the flush thread must write the counts
    fork N     one miss here, then a forked child answers N hits and flushes; both exit

The cache is in memory (one per process), or in the LMDB environment at LMDB (shared).
"""

from __future__ import annotations

import gc
import os
import sys

from prometheus_client import CollectorRegistry

from swr import CacheTTL, StaleEngine
from swr.metrics.prometheus import _SIZE_REPORTERS, PrometheusMetrics
from swr.storage import LMDBStorage, MemoryStorage


def main(mode: str, n: int, lmdb: str | None = None) -> int:
    interval = 0.02 if mode == "thread" else 3600.0
    metrics = PrometheusMetrics(CollectorRegistry(), flush_interval=interval)
    assert metrics.multiprocess
    storage = LMDBStorage(lmdb) if lmdb else MemoryStorage()
    engine = StaleEngine(storage, ttl=CacheTTL(fresh=3600), name="web", metrics=metrics)
    metrics.watch(engine)
    engine.execute("k", lambda: 1)
    if mode == "fork":
        metrics.flush()
        pid = os.fork()
        if pid == 0:
            for _ in range(n):
                engine.execute("k", lambda: 1)
            metrics.flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    for _ in range(n - 1):
        engine.execute("k", lambda: 1)
    if mode == "serve":
        metrics.flush()
    print("ready", flush=True)
    for line in sys.stdin:  # commands, until an empty line
        if line.strip() == "role":
            role = "reporter" if _SIZE_REPORTERS.reporting() else "other"
            print(role, flush=True)
        elif line.strip() == "close":
            metrics.close()
            print("closed", flush=True)
        elif line.strip() == "forget":  # the engine closed and collected, the adapter kept
            engine.close()
            del engine
            gc.collect()
            metrics.flush()
            print("forgotten", flush=True)
        else:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4]))
