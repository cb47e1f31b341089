"""A real HTTP origin for the tests: stdlib ``http.server`` in a thread on 127.0.0.1.

Each route is a function of the request returning a :class:`Reply`; every request is
recorded (method, path, headers) so tests count upstream calls and inspect validators.
A route that raises :class:`Drop` closes the connection without answering (an origin
that is down, as the client sees it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Iterable[bytes] | None = None  # sent chunked, one write per chunk


class Drop(Exception):
    """Close the connection without a response."""


Route = Callable[[Seen], Reply]


class Origin:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                seen = Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                )
                with origin._lock:
                    origin.seen.append(seen)
                route = origin.routes.get(self.path.split("?")[0])
                try:
                    reply = route(seen) if route is not None else Reply(404, body=b"no route")
                except Drop:
                    self.close_connection = True
                    return
                # A route's own Date replaces the server's (send_response would add one).
                self.send_response_only(reply.status)
                self.send_header("Server", self.version_string())
                if not any(name.lower() == "date" for name in reply.headers):
                    self.send_header("Date", self.date_time_string())
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in reply.chunks:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if reply.status != 304:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD" and reply.status != 304:
                    self.wfile.write(reply.body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def calls(self, path: str, method: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.seen
                if s.path.split("?")[0] == path and (method is None or s.method == method)
            ]

    def count(self, path: str, method: str | None = "GET") -> int:
        return len(self.calls(path, method))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
