"""docs/grafana-dashboard.json queries only series that PrometheusMetrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swr.metrics.prometheus import PrometheusMetrics
from tests.metrics import scenario as sc

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
SERIES = re.compile(r"\b(swr_[a-z_]+)\b")


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [p for p in load()["panels"] if p["type"] != "row"]


def exported_series(clock, perf) -> set[str]:
    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry)
    _driver, release = sc.run_scenario(hook, clock, perf)
    try:
        text = generate_latest(registry).decode()
    finally:
        release()
        hook.close()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_every_query_names_an_exported_series(clock, perf):
    exported = exported_series(clock, perf)
    queried = {name for p in panels() for t in p["targets"] for name in SERIES.findall(t["expr"])}
    assert queried, "no query found"
    assert queried - exported == set()
    # and every family the adapter exports has a panel
    families = {re.sub(r"_(bucket|count|sum|created|total)$", "", n) for n in exported}
    shown = {re.sub(r"_(bucket|count|sum|created|total)$", "", n) for n in queried}
    assert families - shown == set()


def test_the_panels_the_issue_asks_for():
    titles = {p["title"] for p in panels()}
    assert {"Answers by status", "Hit ratio", "Foreground fetch latency", "Circuit state"} <= titles
    latency = next(p for p in panels() if p["title"] == "Foreground fetch latency")
    assert [t["legendFormat"] for t in latency["targets"]] == ["p50", "p95", "p99"]


def test_every_query_follows_the_engine_variable():
    variables = {v["name"] for v in load()["templating"]["list"]}
    assert variables == {"datasource", "engine"}
    for p in panels():
        for target in p["targets"]:
            assert 'engine=~"$engine"' in target["expr"], (p["title"], target["expr"])


def test_layout_is_sound():
    ids = [p["id"] for p in load()["panels"]]
    assert len(ids) == len(set(ids))
    for p in load()["panels"]:
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, p["title"]
