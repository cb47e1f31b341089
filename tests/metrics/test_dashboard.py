"""docs/grafana-dashboard.json queries only series that PrometheusMetrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swr import CacheTTL, StaleEngine
from swr.metrics.prometheus import PrometheusMetrics
from swr.storage import MemoryStorage
from tests.metrics import scenario as sc

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
SERIES = re.compile(r"\b(swr_[a-z_]+)\b")


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [p for p in load()["panels"] if p["type"] != "row"]


class ClusterLike(MemoryStorage):
    """A storage reporting its masters, as a Redis Cluster storage does."""

    def nodes(self) -> list[dict[str, object]]:
        return [{"address": "10.0.0.1:7000", "up": True}, {"address": "10.0.0.2:7000", "up": False}]


def exposition(clock, perf) -> str:
    """The scraped text after the scripted scenario, plus an engine on a cluster."""
    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry)
    _driver, release = sc.run_scenario(hook, clock, perf)
    cluster = StaleEngine(ClusterLike(), ttl=CacheTTL(fresh=60), name="sessions", metrics=hook)
    try:
        cluster.execute("k", lambda: 1)
        return generate_latest(registry).decode()
    finally:
        cluster.close()
        release()
        hook.close()


def exported_series(clock, perf) -> set[str]:
    text = exposition(clock, perf)
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


def test_a_panel_per_cluster_node(clock, perf):
    nodes = next(p for p in panels() if p["title"] == "Redis Cluster nodes")
    (target,) = nodes["targets"]
    assert "swr_storage_node_up" in target["expr"]
    assert "by (engine, node)" in target["expr"]
    assert target["legendFormat"] == "{{engine}} {{node}}"
    mapping = nodes["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert (mapping["0"]["text"], mapping["1"]["text"]) == ("down", "up")
    # what the query groups by is what the adapter exports, one series per master
    text = exposition(clock, perf)
    up = {
        s.labels["node"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "swr_storage_node_up"
    }
    assert up == {"10.0.0.1:7000": 1.0, "10.0.0.2:7000": 0.0}


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
