"""Draw docs/dashboard.png from a real run, scraped by a real Prometheus server.

Run: python examples/dashboard_snapshot.py [--duration 90] [--out docs/dashboard.png]
Needs the ``prometheus`` server binary (Debian: ``apt-get install prometheus``), the
extras ``prometheus`` and ``redis`` (``pip install -e ".[prometheus,redis]"``),
matplotlib, and for the Redis Cluster part ``redis-server`` and ``redis-cli``
(``--no-redis`` without them).

What it does, in order:

1. starts a Prometheus server on 127.0.0.1 (a temporary config and data directory)
   scraping ``examples/metrics_service.py`` every second, and three Redis Cluster
   masters on 127.0.0.1;
2. runs that example for ``--duration`` seconds: the ``catalog`` engine (LMDB, four
   client threads) and the ``sessions`` engine (the Redis Cluster, two client
   threads) in front of an upstream that fails from 35 % to 65 % of the run; one
   Redis master is paused (SIGSTOP) from 72 % to 86 % of it;
3. evaluates every query of every panel of ``docs/grafana-dashboard.json``, verbatim,
   through Prometheus's HTTP API (``/api/v1/query_range``, one point per second) with
   Grafana's variables replaced as Grafana would: ``$engine`` by its "All" value
   ``.*`` and ``$__rate_interval`` by ``max(step + scrape interval, 4 x scrape
   interval)``, i.e. ``4s``;
4. draws the dashboard's panels at their ``gridPos`` with matplotlib (time series,
   state timelines, the stat, Grafana's dark colours), the outage and the pause
   marked as region annotations.

No Grafana server draws it (no package registry this project uses ships one): the data
are Prometheus's, the queries and layout the dashboard's, the drawing this script's.
``--data FILE`` keeps the query results as JSON; ``--from-data FILE`` redraws from them
without running anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
SERVICE = ROOT / "examples" / "metrics_service.py"
SCRAPE_INTERVAL = 1  # seconds, also the query step
OUTAGE = (0.35, 0.65)  # share of the run the upstream fails (see metrics_service.py)
PAUSE = (0.72, 0.86)  # share of the run one Redis master is paused

# {panel id: [{"refId", "legend", "series": [{"labels", "points": [[t, v], ...]}]}]}
Results = dict[str, list[dict[str, Any]]]


# -- Grafana's side of a query --------------------------------------------------------------


def rate_interval(step: float, scrape: float) -> str:
    """Grafana's ``$__rate_interval``: ``max($__interval + scrape, 4 * scrape)``."""
    return f"{max(step + scrape, 4 * scrape):g}s"


def expand(expr: str, *, rate_window: str, engine: str = ".*") -> str:
    """A panel's PromQL with the dashboard's variables replaced as Grafana does."""
    return expr.replace("$__rate_interval", rate_window).replace("$engine", engine)


def legend(fmt: str, labels: Mapping[str, str]) -> str:
    """Grafana's legend format: ``{{name}}`` replaced by the series' label value.

    Each series is named in the legend: a blank name becomes its label set.
    """
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    if not text.strip():  # no format, or only labels the series lacks: its label set
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return text


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard["panels"])


# -- running it -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prometheus_config(target: str) -> str:
    return (
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}s\n"
        f"  scrape_timeout: {SCRAPE_INTERVAL}s\n"
        "scrape_configs:\n"
        "  - job_name: swr-example\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - 127.0.0.1
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def wait_for_target(api: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{api}/api/v1/targets", timeout=5) as response:  # noqa: S310
            if json.load(response)["data"]["activeTargets"]:
                return
        time.sleep(0.2)
    raise TimeoutError("Prometheus did not pick up the scrape target")


def query_range(api: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{api}/api/v1/query_range?{query}", timeout=30) as response:  # noqa: S310
        body = json.load(response)
    if body["status"] != "success":
        raise RuntimeError(f"{expr}: {body}")
    return [
        {"labels": s["metric"], "points": [[float(t), float(v)] for t, v in s["values"]]}
        for s in body["data"]["result"]
    ]


def evaluate(dashboard: Mapping[str, Any], api: str, start: float, end: float) -> Results:
    """Every target of every panel, through Prometheus, as Grafana would ask for it."""
    window = rate_interval(SCRAPE_INTERVAL, SCRAPE_INTERVAL)
    results: Results = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", ()):
            expr = expand(target["expr"], rate_window=window)
            series = query_range(api, expr, start, end, SCRAPE_INTERVAL)
            results.setdefault(str(panel["id"]), []).append(
                {
                    "refId": target["refId"],
                    "expr": expr,
                    "legend": target.get("legendFormat", ""),
                    "series": series,
                }
            )
    return results


class Cluster:
    """Three Redis Cluster masters on 127.0.0.1 (``redis-server``, ``redis-cli``)."""

    def __init__(self, directory: Path, server: str, cli: str) -> None:
        self.cli = cli
        self.ports: list[int] = []
        while len(self.ports) < 3:  # each node also listens on port + 10000 (its bus)
            port = free_port()
            if port + 10000 < 65536 and port not in self.ports and bindable(port + 10000):
                self.ports.append(port)
        self.nodes: list[subprocess.Popen[bytes]] = []
        for port in self.ports:
            home = directory / f"node-{port}"
            home.mkdir()
            self.nodes.append(
                subprocess.Popen(  # noqa: S603 - our own arguments
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(home),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--cluster-require-full-coverage",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def ask(self, port: int, *args: str) -> str:
        done = subprocess.run(  # noqa: S603
            [self.cli, "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout

    def start(self) -> str:
        """Join the nodes; the URL of the first."""
        deadline = time.monotonic() + 30
        while not all("PONG" in self.ask(port, "PING") for port in self.ports):
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start")
            time.sleep(0.1)
        subprocess.run(  # noqa: S603
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        while not all("cluster_state:ok" in self.ask(p, "CLUSTER", "INFO") for p in self.ports):
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis cluster did not form")
            time.sleep(0.1)
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def pause(self, i: int) -> None:
        self.nodes[i].send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self.nodes[i].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for node in self.nodes:
            node.send_signal(signal.SIGCONT)
            node.terminate()
        for node in self.nodes:
            node.wait(timeout=30)


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run(
    duration: float, prometheus: str, redis: tuple[str, str] | None
) -> tuple[Results, dict[str, Any]]:
    """Prometheus scraping the example for ``duration`` seconds; the panels' results.

    With ``redis`` (the ``redis-server`` and ``redis-cli`` binaries), the example's
    second engine caches in a 3-master Redis Cluster, one master of which is paused
    (SIGSTOP) from 72 % to 86 % of the run.
    """
    dashboard = json.loads(DASHBOARD.read_text())
    service_port, prom_port = free_port(), free_port()
    api = f"http://127.0.0.1:{prom_port}"
    with tempfile.TemporaryDirectory(prefix="swr-dashboard-") as tmp, ExitStack() as stack:
        config = Path(tmp, "prometheus.yml")
        config.write_text(prometheus_config(f"127.0.0.1:{service_port}"))
        log = stack.enter_context(Path(tmp, "prometheus.log").open("w"))
        server = subprocess.Popen(  # noqa: S603 - our own arguments
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={Path(tmp, 'data')}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        stack.callback(server.wait, timeout=30)
        stack.callback(server.terminate)
        command = [
            sys.executable,
            str(SERVICE),
            "--duration",
            str(duration),
            "--port",
            str(service_port),
            "--lmdb",
            str(Path(tmp, "cache")),
        ]
        cluster = None
        if redis:
            cluster = Cluster(Path(tmp), *redis)
            stack.callback(cluster.stop)
            command += ["--redis-cluster", cluster.start()]
        wait_ready(f"{api}/-/ready")
        wait_for_target(api)  # Prometheus hands new targets to its scraper every 5 s
        service = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
        if service.stdout is None:
            raise RuntimeError("no pipe")
        first = service.stdout.readline()  # "serving URL from UNIX-TIME (unix time)"
        start = float(first.split(" from ")[1].split()[0])
        annotations: list[dict[str, Any]] = [
            {
                "from": start + OUTAGE[0] * duration,
                "to": start + OUTAGE[1] * duration,
                "text": "upstream failing",
                "color": "#f2495c",
            },
        ]
        if cluster is not None:
            pause_from, pause_to = (start + share * duration for share in PAUSE)
            paused = {
                "from": pause_from,
                "to": pause_to,
                "text": f"Redis master 127.0.0.1:{cluster.ports[-1]} paused",
                "color": "#5794f2",
            }
            time.sleep(max(0.0, pause_from - time.time()))
            cluster.pause(-1)
            time.sleep(max(0.0, pause_to - time.time()))
            cluster.resume(-1)
            annotations.append(paused)
        summary = service.stdout.read()
        if service.wait() != 0:
            raise RuntimeError(f"{SERVICE.name} failed: {first}{summary}")
        end = start + duration
        time.sleep(2 * SCRAPE_INTERVAL)  # the last scrape lands
        results = evaluate(dashboard, api, math.floor(start), math.ceil(end))
        with urllib.request.urlopen(f"{api}/api/v1/targets", timeout=10) as response:  # noqa: S310
            targets = json.load(response)["data"]["activeTargets"]
        with urllib.request.urlopen(f"{api}/api/v1/status/buildinfo", timeout=10) as response:  # noqa: S310
            build = json.load(response)["data"]
    run_info = {
        "start": start,
        "end": end,
        "duration": duration,
        "annotations": annotations,
        "prometheus": build.get("version", "?"),
        "scrape_interval": SCRAPE_INTERVAL,
        "targets": [{"url": t["scrapeUrl"], "health": t["health"]} for t in targets],
        "service_summary": first + summary,
    }
    return results, run_info


# -- drawing --------------------------------------------------------------------------------

BG, PANEL, GRIDC, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#d8d9da", "#8e8e8e"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9"]
NAMED = {"green": "#73bf69", "yellow": "#fade2a", "red": "#f2495c", "orange": "#ff9830"}
STATUS_COLORS = {
    "hit": "#73bf69",
    "stale": "#8ab8ff",
    "expired": "#f2cc0c",
    "miss": "#ff780a",
    "fallback": "#f2495c",
}
COLOR_NAMES = {"#f2495c": "red", "#5794f2": "blue"}
HEADER = 2.2  # grid rows above the panels
ROW_INCHES = 0.34  # one grid row (Grafana: 30 px)

Line = tuple[str, list[list[float]]]  # legend, [[unix time, value], ...]


def format_value(value: float, unit: str | None) -> str:
    """A tick label in the panel's unit, abbreviated the way Grafana does."""
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(value) >= scale or scale == 1e-6:
                return f"{value / scale:.3g} {name}"
    if unit == "bytes":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {name}"
        return f"{value:.0f} B"
    suffix = {"reqps": " req/s", "ops": " ops/s"}.get(unit or "", "")
    if abs(value) >= 1000:
        return f"{value / 1000:.3g} K{suffix}"
    return f"{value:.3g}{suffix}"


def lines_of(panel: Mapping[str, Any], results: Results) -> list[Line]:
    """The panel's series, each with its legend, in the order of its targets."""
    return [
        (legend(target["legend"], series["labels"]), series["points"])
        for target in results.get(str(panel["id"]), [])
        for series in target["series"]
    ]


def utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


class Drawing:
    """The dashboard drawn on one matplotlib figure, panel by panel."""

    def __init__(self, dashboard: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        import matplotlib as mpl  # noqa: PLC0415 - only for drawing

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        self.mpl, self.plt = mpl, plt
        self.dashboard, self.info = dashboard, info
        self.rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels(dashboard))
        height = (self.rows + HEADER) * ROW_INCHES
        self.fig = plt.figure(figsize=(20.0, height), facecolor=BG)
        targets = ", ".join(t["url"] for t in info["targets"])
        self.fig.text(
            0.008,
            1 - 0.2 / height,
            dashboard.get("title", ""),
            color=TEXT,
            fontsize=15,
            weight="bold",
            va="top",
        )
        self.fig.text(
            0.008,
            1 - 0.55 / height,
            f"Engine: All    {utc(info['start']):%Y-%m-%d %H:%M:%S} to "
            f"{utc(info['end']):%H:%M:%S} UTC    data: Prometheus {info['prometheus']} "
            f"scraping {targets} every {info['scrape_interval']}s    "
            + "    ".join(
                f"{n['text']}: {COLOR_NAMES.get(n['color'], n['color'])} band"
                for n in info["annotations"]
            )
            + "    drawn by examples/dashboard_snapshot.py (not by Grafana)",
            color=MUTED,
            fontsize=9.5,
            va="top",
        )

    def box(self, grid: Mapping[str, int], pad: float = 0.004) -> tuple[float, ...]:
        """Figure coordinates (left, bottom, width, height) of a grid position."""
        total = self.rows + HEADER
        top = 1 - (grid["y"] + HEADER) / total
        height = grid["h"] / total
        return (
            grid["x"] / 24 + pad,
            top - height + 0.006,
            grid["w"] / 24 - 2 * pad,
            height - 0.012,
        )

    def panel(self, panel: Mapping[str, Any], lines: list[Line]) -> None:
        left, bottom, width, height = self.box(panel["gridPos"])
        if panel["type"] == "row":
            self.fig.text(
                left,
                bottom + height / 2,
                panel["title"],
                color=TEXT,
                fontsize=12,
                weight="bold",
                va="center",
            )
            return
        frame = self.fig.add_axes((left, bottom, width, height), facecolor=PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(GRIDC)
        frame.text(
            0.01,
            0.985,
            panel["title"],
            transform=frame.transAxes,
            color=TEXT,
            fontsize=10.5,
            weight="bold",
            va="top",
        )
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if not any(points for _, points in lines):
            frame.text(
                0.5,
                0.45,
                "No data",
                transform=frame.transAxes,
                color=MUTED,
                fontsize=12,
                ha="center",
                va="center",
            )
        elif panel["type"] == "stat":
            self.stat(frame, defaults, lines)
        else:
            columns = max(1, min(len(lines), panel["gridPos"]["w"] // 3))
            rows = math.ceil(len(lines) / columns) if panel["type"] == "timeseries" else 1
            lift = height * (0.12 + 0.075 * rows)  # room for the time axis and the legend
            scale = 24 / panel["gridPos"]["w"]
            ax = self.fig.add_axes(
                (
                    left + 0.065 * scale * width,
                    bottom + lift,
                    width * (1 - 0.085 * scale),
                    height * 0.86 - lift,
                ),
                facecolor=PANEL,
            )
            self.time_axis(ax, panel["gridPos"]["w"])
            if panel["type"] == "state-timeline":
                self.state_timeline(ax, defaults, lines)
            else:
                self.timeseries(ax, defaults, lines)
            ax.legend(
                loc="upper left",
                bbox_to_anchor=(0, -0.1 * height / (height * 0.86 - lift)),
                ncol=columns if panel["type"] == "timeseries" else 4,
                frameon=False,
                fontsize=8,
                labelcolor=TEXT,
            )

    def stat(self, frame: Any, defaults: Mapping[str, Any], lines: list[Line]) -> None:
        """Grafana's stat panel: the last value, coloured by the thresholds."""
        value = next(v for _, v in reversed(lines[0][1]) if not math.isnan(v))
        color = TEXT
        for step in defaults.get("thresholds", {}).get("steps", []):
            if step["value"] is None or value >= step["value"]:
                color = NAMED.get(step["color"], step["color"])
        frame.text(
            0.5,
            0.45,
            format_value(value, defaults.get("unit")),
            transform=frame.transAxes,
            color=color,
            fontsize=30,
            weight="bold",
            ha="center",
            va="center",
        )
        frame.text(
            0.5, 0.2, "last value", transform=frame.transAxes, color=MUTED, fontsize=9, ha="center"
        )

    def time_axis(self, ax: Any, columns: int) -> None:
        import matplotlib.dates as mdates  # noqa: PLC0415

        ax.tick_params(colors=MUTED, labelsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.grid(color=GRIDC, linewidth=0.6)
        ax.set_xlim(utc(self.info["start"]), utc(self.info["end"]))
        untyped: Any = mdates  # DateFormatter and AutoDateLocator lack annotations
        ax.xaxis.set_major_locator(untyped.AutoDateLocator(minticks=2, maxticks=columns // 2))
        ax.xaxis.set_major_formatter(untyped.DateFormatter("%H:%M:%S", tz=datetime.UTC))
        for note in self.info["annotations"]:  # Grafana's region annotations
            span = (utc(note["from"]), utc(note["to"]))
            ax.axvspan(*span, color=note["color"], alpha=0.08, linewidth=0)
            for edge in span:
                ax.axvline(edge, color=note["color"], alpha=0.5, linewidth=0.8, linestyle="--")

    def state_timeline(self, ax: Any, defaults: Mapping[str, Any], lines: list[Line]) -> None:
        """One band per series, each stretch coloured by the value mappings."""
        mapping = defaults.get("mappings", [{}])[0].get("options", {})
        for row, (_, points) in enumerate(lines):
            ends = [*points[1:], [points[-1][0] + self.info["scrape_interval"], 0.0]]
            for (t0, value), (t1, _) in zip(points, ends, strict=True):
                color = mapping.get(f"{value:g}", {}).get("color", "")
                ax.barh(
                    row,
                    utc(t1) - utc(t0),
                    left=utc(t0),
                    height=0.8,
                    color=NAMED.get(color, MUTED),
                    linewidth=0,
                )
        ax.set_yticks(range(len(lines)), [name for name, _ in lines])
        ax.invert_yaxis()
        ax.grid(visible=False)
        for entry in mapping.values():
            ax.bar(0, 0, color=NAMED.get(entry["color"], entry["color"]), label=entry["text"])

    def timeseries(self, ax: Any, defaults: Mapping[str, Any], lines: list[Line]) -> None:
        """Lines (stacked areas when the panel stacks), in the panel's unit and scale."""
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415

        custom = defaults.get("custom", {})
        stacked = custom.get("stacking", {}).get("mode") == "normal"
        floor: list[float] | None = None
        for i, (name, points) in enumerate(lines):
            xs = [utc(t) for t, _ in points]
            ys = [v for _, v in points]
            color = STATUS_COLORS.get(name, PALETTE[i % len(PALETTE)])
            if stacked:  # series of one query share its timestamps
                below = floor if floor is not None and len(floor) == len(ys) else [0.0] * len(ys)
                top = [b + (0.0 if math.isnan(y) else y) for b, y in zip(below, ys, strict=True)]
                ax.fill_between(xs, below, top, color=color, alpha=0.55, linewidth=0)
                ax.plot(xs, top, color=color, linewidth=1, label=name)
                floor = top
            else:
                ax.plot(xs, ys, color=color, linewidth=1.4, label=name)
        if custom.get("scaleDistribution", {}).get("type") == "log":
            ax.set_yscale("log")
            low, high = ax.get_ylim()
            wide = math.log10(high / low) > 2  # more than two decades: one tick a decade
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_formatter(NullFormatter())
        if "min" in defaults or "max" in defaults:
            ax.set_ylim(defaults.get("min"), defaults.get("max"))
        unit = defaults.get("unit")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_value(v, unit)))

    def save(self, out: str) -> None:
        self.fig.savefig(out, dpi=80, facecolor=BG)
        self.plt.close(self.fig)


def render(
    dashboard: Mapping[str, Any], results: Results, info: Mapping[str, Any], out: str
) -> None:
    """The dashboard's panels at their grid positions, from ``results``, into ``out``."""
    drawing = Drawing(dashboard, info)
    for panel in panels(dashboard):
        drawing.panel(panel, lines_of(panel, results))
    drawing.save(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of load")
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    parser.add_argument(
        "--prometheus",
        default=shutil.which("prometheus") or "prometheus",
        help="the Prometheus server binary",
    )
    parser.add_argument(
        "--no-redis",
        action="store_true",
        help="no Redis Cluster engine (by default one runs when redis-server is found)",
    )
    parser.add_argument("--data", help="also write the query results here (JSON)")
    parser.add_argument("--from-data", help="draw from results written by --data; run nothing")
    args = parser.parse_args(argv)
    dashboard = json.loads(DASHBOARD.read_text())
    if args.from_data:
        saved = json.loads(Path(args.from_data).read_text())
        results, info = saved["results"], saved["run"]
    else:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        redis = None if args.no_redis or server is None or cli is None else (server, cli)
        results, info = run(args.duration, args.prometheus, redis)
        if args.data:
            Path(args.data).write_text(json.dumps({"run": info, "results": results}, indent=1))
    render(dashboard, results, info, args.out)
    print(info["service_summary"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
