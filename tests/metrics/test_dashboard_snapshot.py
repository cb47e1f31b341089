"""examples/dashboard_snapshot.py asks Prometheus each panel's own query, as Grafana would.

No Prometheus server here (CI has none): a stub of its HTTP API on 127.0.0.1 records the
queries and answers with canned series. The real run is in docs/observability.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dashboard_snapshot", ROOT / "examples" / "dashboard_snapshot.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


snap = load_example()


def test_grafana_variables_are_replaced_as_grafana_does():
    assert snap.rate_interval(1, 1) == "4s"  # 4 x the scrape interval at least
    assert snap.rate_interval(60, 15) == "75s"  # step + scrape interval when larger
    expr = 'rate(swr_requests_total{engine=~"$engine"}[$__rate_interval])'
    assert snap.expand(expr, rate_window="4s") == 'rate(swr_requests_total{engine=~".*"}[4s])'
    assert snap.legend("{{engine}} {{ node }}", {"engine": "c", "node": "a:1"}) == "c a:1"
    assert snap.legend("", {"b": "2", "a": "1"}) == '{a="1", b="2"}'
    assert "targets: ['127.0.0.1:9100']" in snap.prometheus_config("127.0.0.1:9100")


class StubPrometheus(BaseHTTPRequestHandler):
    """``/api/v1/query_range``: records each query, answers one series of two points."""

    queries: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        assert url.path == "/api/v1/query_range"
        params = dict(urllib.parse.parse_qsl(url.query))
        self.queries.append(params)
        start = float(params["start"])
        body = {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [
                    {
                        "metric": {"engine": "catalog", "status": "hit"},
                        "values": [[start, "1"], [start + 1, "0.5"]],
                    }
                ],
            },
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stub_prometheus():
    StubPrometheus.queries = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubPrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_every_panel_query_goes_to_prometheus_verbatim(stub_prometheus):
    results = snap.evaluate(DASHBOARD, stub_prometheus, 1000, 1090)
    asked = [q["query"] for q in StubPrometheus.queries]
    expected = [
        snap.expand(t["expr"], rate_window="4s")
        for p in DASHBOARD["panels"]
        for t in p.get("targets", ())
    ]
    assert asked == expected
    assert all(q["start"] == "1000" and q["end"] == "1090" for q in StubPrometheus.queries)
    assert {q["step"] for q in StubPrometheus.queries} == {"1"}
    assert not any("$" in q for q in asked)  # no Grafana variable left for Prometheus
    with_targets = {str(p["id"]) for p in DASHBOARD["panels"] if p.get("targets")}
    assert set(results) == with_targets
    first = results["2"][0]
    assert first["legend"] == "{{status}}"
    assert first["series"] == [
        {"labels": {"engine": "catalog", "status": "hit"}, "points": [[1000.0, 1.0], [1001.0, 0.5]]}
    ]


def test_it_draws_every_panel(stub_prometheus, tmp_path):
    pytest.importorskip("matplotlib")
    results = snap.evaluate(DASHBOARD, stub_prometheus, 1000, 1002)
    results["18"] = [{**results["18"][0], "series": []}]  # a panel with no data
    info = {
        "start": 1000,
        "end": 1002,
        "annotations": [
            {"from": 1000.5, "to": 1001.5, "text": "upstream failing", "color": "#f2495c"}
        ],
        "prometheus": "stub",
        "scrape_interval": 1,
        "targets": [{"url": "http://127.0.0.1:1/metrics", "health": "up"}],
    }
    out = tmp_path / "dashboard.png"
    snap.render(DASHBOARD, results, info, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_service_it_scrapes_runs_and_says_when_it_started(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "metrics_service.py"),
            "--duration",
            "4",
            "--lmdb",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first, *rest = done.stdout.splitlines()
    assert first.startswith("serving http://127.0.0.1:")
    float(first.split(" from ")[1].split()[0])  # the unix time the snapshot aligns on
    assert rest[0].split()[:2] == ["t", "hit"]
    assert len(rest) >= 2  # one line per scrape window
