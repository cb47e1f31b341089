"""A FastAPI service with two uvicorn workers sharing an LMDB cache, in front of a slow,
sometimes failing upstream. Everything runs on 127.0.0.1, on free ports.

Run: python examples/http_service.py   (needs: pip install -e ".[http,asgi]" fastapi uvicorn)

- The upstream (a stdlib HTTP server in this process) takes 20-80 ms per call, answers
  503 to one call in ten, and is down (503 to everything) from t=3 s to t=6 s
  (the middle third of the run; ``SWR_EXAMPLE_SECONDS`` sets its length). Its
  responses say ``max-age=1, stale-while-revalidate=5, stale-if-error=60``.
- The service (``uvicorn --workers 2``) calls it through ``AsyncSWRTransport``; both
  workers share one LMDB store, so what one fetched the other serves, and the store's
  leases let only one of them fetch a key at a time. Its ``/report`` page is cached by
  ``CacheMiddleware`` too.
- A bounded load (4 threads, at most 3,000 requests or 9 s) asks for 20 items.

Printed: the statuses the service's calls got from the cache, the upstream calls, the
answers clients got, and latency percentiles.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from swr import AsyncStaleEngine, CacheTTL
from swr.asgi import CacheMiddleware
from swr.http import AsyncSWRTransport, CachePolicy
from swr.storage import LMDBStorage

ITEMS = 20
THREADS = 4
MAX_REQUESTS = 3000
MAX_SECONDS = float(os.environ.get("SWR_EXAMPLE_SECONDS", "9"))
OUTAGE = (MAX_SECONDS / 3, MAX_SECONDS * 2 / 3)


# -- the service (imported by each uvicorn worker) ------------------------------------


def create_app() -> FastAPI:
    """The service (``uvicorn --factory`` calls this in each worker).

    ``/items/{id}`` goes to the upstream through the cached client; ``/report`` is
    cached whole by ``CacheMiddleware``. Both engines share the worker's LMDB store,
    which both workers share.
    """
    storage = LMDBStorage(os.environ["SWR_EXAMPLE_CACHE"])
    engine = AsyncStaleEngine(storage, namespace="upstream")
    pages = AsyncStaleEngine(storage, namespace="pages")
    upstream = httpx.AsyncClient(
        transport=AsyncSWRTransport(engine, policy=CachePolicy(shared=True)),
        base_url=os.environ["SWR_EXAMPLE_UPSTREAM"],
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await upstream.aclose()
        await engine.aclose()
        await pages.aclose()
        storage.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        response = await upstream.get(f"/items/{item_id}")
        return {
            "status": response.status_code,
            "cache": response.extensions["swr"].status.value,
            "body": response.json() if response.status_code == 200 else None,
        }

    @app.get("/report")
    async def report() -> dict[str, Any]:
        response = await upstream.get("/items/0")
        return {"pid": os.getpid(), "first": response.json() if response.is_success else None}

    app.add_middleware(
        CacheMiddleware,
        engine=pages,
        ttl=CacheTTL(fresh=2, stale=10, expired=60),
        paths=["/report"],
    )
    return app


# -- the upstream ---------------------------------------------------------------------


class Upstream:
    """Slow, sometimes failing, and down for a while."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.calls = 0
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with upstream.lock:
                    upstream.calls += 1
                time.sleep(random.uniform(0.02, 0.08))
                elapsed = time.monotonic() - upstream.started
                failing = OUTAGE[0] <= elapsed < OUTAGE[1] or random.random() < 0.1
                body = b"" if failing else b'{"path": "%s"}' % self.path.encode()
                self.send_response(503 if failing else 200)
                self.send_header("Content-Type", "application/json")
                cc = "max-age=1, stale-while-revalidate=5, stale-if-error=60"
                self.send_header("Cache-Control", cc)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


# -- the load ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the service exited while starting")
        try:
            httpx.get(url + "/docs", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the service did not start within 30 s")


def drive(base: str, started: float) -> tuple[Counter[str], Counter[str], list[float]]:
    """Send the bounded load; return cache statuses, client answers and latencies (ms)."""
    cache: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    sent = 0

    def worker(seed: int) -> None:
        nonlocal sent
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=10) as client:
            while time.monotonic() - started < MAX_SECONDS:
                with lock:
                    if sent >= MAX_REQUESTS:
                        return
                    sent += 1
                path = "/report" if rng.random() < 0.1 else f"/items/{rng.randrange(ITEMS)}"
                begun = time.perf_counter()
                response = client.get(path)
                elapsed = (time.perf_counter() - begun) * 1000
                data = response.json() if response.status_code == 200 else {}
                with lock:
                    latencies.append(elapsed)
                    if path == "/report":
                        cache[f"report {response.headers.get('x-cache', '?').lower()}"] += 1
                        answers[f"report {response.status_code}"] += 1
                    else:
                        cache[f"upstream {data.get('cache', 'error')}"] += 1
                        answers[f"items {data.get('status', response.status_code)}"] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return cache, answers, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        upstream = Upstream()
        port = _free_port()
        env = {
            **os.environ,
            "SWR_EXAMPLE_CACHE": str(Path(tmp) / "cache"),
            "SWR_EXAMPLE_UPSTREAM": upstream.url,
        }
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "http_service:create_app",
            "--app-dir", str(Path(__file__).resolve().parent),
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--log-level", "warning",
        ]  # fmt: skip
        service = subprocess.Popen(command, env=env)  # noqa: S603 - our own command line
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, service)
            upstream.calls = 0
            started = time.monotonic()
            upstream.started = started  # the outage is timed from the load's start
            cache, answers, latencies = drive(base, started)
            took = time.monotonic() - started
        finally:
            service.terminate()
            service.wait(15)
            upstream.server.shutdown()
    print(f"{len(latencies)} requests in {took:.1f} s, 2 workers, {THREADS} client threads")
    print(f"upstream calls: {upstream.calls} (outage from {OUTAGE[0]:.0f} s to {OUTAGE[1]:.0f} s)")
    print("cache statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(cache.items())))
    print("answers:        " + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items())))
    print(
        "latency ms:     "
        + ", ".join(f"p{int(q * 100)} {_percentile(latencies, q):.1f}" for q in (0.5, 0.9, 0.99))
    )


if __name__ == "__main__":
    main()
