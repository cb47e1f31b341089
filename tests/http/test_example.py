"""The HTTP example runs end to end: two uvicorn workers, one LMDB store, a flaky upstream."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_http_service_example_runs_and_rides_out_the_outage():
    env = {**os.environ, "SWR_EXAMPLE_SECONDS": "3"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "http_service.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    requests = int(re.search(r"^(\d+) requests in", out, re.M).group(1))
    upstream = int(re.search(r"^upstream calls: (\d+)", out, re.M).group(1))
    assert requests > 0
    assert upstream < requests  # the shared cache answered most calls
    assert re.search(r"upstream hit: \d+", out)
    assert re.search(r"^latency ms: +p50 [\d.]+, p90 [\d.]+, p99 [\d.]+$", out, re.M)
