"""swr's httpx transport against hishel's, one run, one local origin on 127.0.0.1.

Run: python bench/http_path.py   (needs the bench and http extras)

1. A cached GET (a fresh 1 KiB JSON response, ``max-age=3600``) through
   ``httpx.Client`` with swr's ``SWRTransport`` (on LMDB and on memory) and with
   hishel's ``CacheTransport`` (RFC mode, its SQLite storage): microseconds per GET,
   the best of interleaved rounds, and the ratios.
2. A 10 s origin outage: each client sends GETs back to back (with a 2 ms pause) for
   a URL whose response says ``max-age=1, stale-while-revalidate=2,
   stale-if-error=600``; the origin answers 503 during the outage. Printed: requests
   sent, upstream calls during the outage, and what the clients got (200 or 503).
   swr serves the stored response and only retries the origin on its backoff (engine
   backoff in the stale window, the transport's in the stale-if-error window).
3. Revalidation with 304 of a 256 KiB response (``ETag``, ``max-age=0``: every GET
   sends ``If-None-Match`` and gets a ``304``), swr on LMDB: a 304 that confirms the
   stored headers (renewed with ``touch``, the body is not written again) against one
   that brings a new header value (the record, body included, is rewritten), same
   run, same origin; hishel on the same confirming 304s is printed for reference
   (swr's revalidation also takes and releases the key's lease: two more LMDB write
   transactions than a bare renewal).
"""

from __future__ import annotations

import multiprocessing
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import hishel
import httpx
from _harness import Target, measure, report
from hishel.httpx import CacheTransport

from swr import StaleEngine
from swr.http import SWRTransport
from swr.storage import LMDBStorage

BODY = b'{"items": [' + b",".join(b'{"id": %d, "name": "item"}' % i for i in range(40)) + b"]}"
OUTAGE = 10.0
# A large body that does not compress to nothing (zstd would shrink a repeated pattern).
BIG = bytes((i * 2654435761 >> 13) & 0xFF for i in range(256 * 1024))


class _Origin:
    """An origin that counts calls per path and can be switched to 503."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.down = False
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                origin.calls[self.path] += 1
                if self.path.startswith("/reval"):
                    self._revalidated()
                    return
                if origin.down:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                cc = (
                    "max-age=3600"
                    if self.path.startswith("/hot")
                    else ("max-age=1, stale-while-revalidate=2, stale-if-error=600")
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", cc)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

            def _revalidated(self) -> None:
                # /reval/same: 304s confirm the stored headers; /reval/new: each 304
                # brings a new X-Seq value, which the cache must store (RFC 9111 4.3.4).
                conditional = self.headers.get("If-None-Match") == '"big"'
                self.send_response(304 if conditional else 200)
                self.send_header("ETag", '"big"')
                self.send_header("Cache-Control", "max-age=0")
                if "/new" in self.path:
                    self.send_header("X-Seq", str(origin.calls[self.path]))
                if conditional:
                    self.end_headers()
                    return
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(BIG)))
                self.end_headers()
                self.wfile.write(BIG)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"


def _hishel_transport(directory: Path, allow_stale: bool = False) -> CacheTransport:
    name = f"hishel-{allow_stale}.db"
    storage = hishel.SqliteStorage(database_path=directory / name)
    options = hishel.CacheOptions(shared=False, allow_stale=allow_stale)
    return CacheTransport(httpx.HTTPTransport(), storage, rfc=options)


def _hishel_client(directory: Path, allow_stale: bool = False) -> httpx.Client:
    return httpx.Client(transport=_hishel_transport(directory, allow_stale))


def _swr_client(engine: StaleEngine) -> httpx.Client:
    return httpx.Client(transport=SWRTransport(engine))


def _getter(client: httpx.Client, url: str) -> Callable[[int], object]:
    def run(n: int) -> None:
        get = client.get
        for _ in range(n):
            response = get(url)
            if len(response.content) != len(BODY):
                raise AssertionError("unexpected body")

    return run


def _big_getter(client: httpx.Client, url: str) -> Callable[[int], object]:
    def run(n: int) -> None:
        get = client.get
        for _ in range(n):
            if len(get(url).content) != len(BIG):
                raise AssertionError("unexpected body")

    return run


def _direct(transport: httpx.BaseTransport, request: httpx.Request) -> Callable[[int], object]:
    def run(n: int) -> None:
        handle = transport.handle_request
        for _ in range(n):
            response = handle(request)
            if len(response.read()) != len(BODY):
                raise AssertionError("unexpected body")

    return run


def cached_get(origin: _Origin, directory: Path) -> bool:
    lmdb_storage = LMDBStorage(directory / "swr")
    lmdb_engine = StaleEngine(lmdb_storage, namespace="bench")
    memory_engine = StaleEngine(namespace="bench")
    alone: dict[str, httpx.BaseTransport] = {
        "swr transport alone, LMDB": SWRTransport(lmdb_engine),
        "hishel transport alone, SQLite": _hishel_transport(directory),
    }
    clients = {
        "swr transport, LMDB": httpx.Client(transport=alone["swr transport alone, LMDB"]),
        "swr transport, memory": _swr_client(memory_engine),
        "hishel transport, SQLite": httpx.Client(transport=alone["hishel transport alone, SQLite"]),
        "no cache (origin each time)": httpx.Client(),
    }
    cases = {}
    for index, (name, client) in enumerate(clients.items()):
        url = origin.url(f"/hot/{index}")
        client.get(url).read()  # stored
        cases[name] = _getter(client, url)
    # The same transports alone, without httpx.Client's own work around them.
    for index, (name, transport) in enumerate(alone.items()):
        cases[name] = _direct(transport, httpx.Request("GET", origin.url(f"/hot/{index * 2}")))
    results = {name: ns / 1000 for name, ns in measure(cases, n=300, rounds=7).items()}
    calls = {p: n for p, n in origin.calls.items() if p.startswith("/hot")}
    cached_calls = sum(n for p, n in calls.items() if p != f"/hot/{len(clients) - 1}")
    ok = report(
        "cached GET through httpx.Client, same origin",
        results,
        [
            Target("swr LMDB / hishel", "swr transport, LMDB", "hishel transport, SQLite", 1.0),
            Target("swr memory / hishel", "swr transport, memory", "hishel transport, SQLite", 1.0),
            Target(
                "transports alone, swr LMDB / hishel",
                "swr transport alone, LMDB",
                "hishel transport alone, SQLite",
                1.0,
            ),
        ],
        unit="us/GET",
    )
    print(f"upstream calls through the caches: {cached_calls} (the first GET of each)")
    for client in clients.values():
        client.close()
    lmdb_engine.close()
    memory_engine.close()
    lmdb_storage.close()  # an engine closes only a storage it made itself
    return ok


def _drive(client: httpx.Client, url: str, stop_at: float) -> Counter[int]:
    codes: Counter[int] = Counter()
    while time.monotonic() < stop_at:
        try:
            codes[client.get(url).status_code] += 1
        except httpx.HTTPError:
            codes[0] += 1
        time.sleep(0.002)
    return codes


def outage(origin: _Origin, directory: Path) -> dict[str, Any]:
    storage = LMDBStorage(directory / "swr-outage")
    engine = StaleEngine(storage, namespace="outage", ttl=None)
    clients = {
        "swr": _swr_client(engine),
        "hishel": _hishel_client(directory),
        "hishel allow_stale": _hishel_client(directory, allow_stale=True),
    }
    urls = {name: origin.url(f"/flaky/{name.replace(' ', '-')}") for name in clients}
    for name, client in clients.items():
        client.get(urls[name]).read()
    before = dict(origin.calls)
    origin.down = True
    results: dict[str, Counter[int]] = {}
    threads = []
    stop_at = time.monotonic() + OUTAGE
    for name, client in clients.items():

        def run(name: str = name, client: httpx.Client = client) -> None:
            results[name] = _drive(client, urls[name], stop_at)

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    origin.down = False
    paths = {name: f"/flaky/{name.replace(' ', '-')}" for name in clients}
    upstream = {name: origin.calls[p] - before.get(p, 0) for name, p in paths.items()}
    print(f"\n{OUTAGE:.0f} s origin outage (503), responses: max-age=1, swr=2, stale-if-error=600")
    print(f"{'client':<18} {'requests':>9} {'upstream calls':>15}  answers (status: count)")
    for name in clients:
        codes = results[name]
        answers = ", ".join(f"{code}: {count}" for code, count in sorted(codes.items()))
        print(f"{name:<18} {sum(codes.values()):>9} {upstream[name]:>15}  {answers}")
    if upstream["swr"]:
        ratio = upstream["hishel"] / upstream["swr"]
        print(f"upstream calls, hishel (RFC mode) / swr: {ratio:.0f}x")
    print(
        "hishel with allow_stale=True served its stale response without asking the origin; "
        "hishel in RFC mode asked the origin on each request once stale and passed its "
        "503s on (stale-if-error is not applied)"
    )
    for client in clients.values():
        client.close()
    engine.close()
    storage.close()
    return {"upstream": upstream, "answers": results}


def _origin_process(conn: Connection) -> None:
    """Run an origin in this (child) process: its port out, its call counts back at the end."""
    origin = _Origin()
    conn.send(origin.url(""))
    conn.recv()  # told to stop
    conn.send(dict(origin.calls))
    origin.server.shutdown()


def revalidation(directory: Path) -> bool:
    # Every GET reaches the origin here: it runs in its own process, so that its thread
    # does not compete for this process's GIL.
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_origin_process, args=(child,))
    process.start()
    base = parent.recv()
    storage = LMDBStorage(directory / "swr-reval")
    engine = StaleEngine(storage, namespace="reval")
    clients = {
        "swr, 304 confirms (touch)": (_swr_client(engine), "/reval/same"),
        "swr, 304 with a new header (rewrite)": (_swr_client(engine), "/reval/new"),
        "hishel, 304 confirms": (_hishel_client(directory), "/reval/same-hishel"),
    }
    cases = {}
    for name, (client, path) in clients.items():
        client.get(base + path).read()  # stored
        cases[name] = _big_getter(client, base + path)
    results = {name: ns / 1000 for name, ns in measure(cases, n=20, rounds=7).items()}
    parent.send("stop")
    calls = parent.recv()
    process.join(10)
    conditional = sum(calls.get(p, 0) - 1 for _, p in clients.values())
    ok = report(
        f"revalidation with 304 of a {len(BIG) // 1024} KiB response (swr on LMDB)",
        results,
        [
            Target(
                "swr touch / swr rewrite",
                "swr, 304 confirms (touch)",
                "swr, 304 with a new header (rewrite)",
                1.0,
            ),
        ],
        unit="us/GET",
    )
    ratio = results["swr, 304 confirms (touch)"] / results["hishel, 304 confirms"]
    print(f"swr touch / hishel (reported, no target): {ratio:.2f}x")
    print(f"conditional requests answered 304 during the measure: {conditional}")
    for client, _ in clients.values():
        client.close()
    engine.close()
    storage.close()
    return ok


def main() -> None:
    origin = _Origin()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cached_get(origin, directory)
        outage(origin, directory)
        revalidation(directory)
    origin.server.shutdown()


if __name__ == "__main__":
    main()
