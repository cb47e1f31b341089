"""Every Python block of README.md and docs/ runs, as a reader would type it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_blocks import blocks

ROOT = Path(__file__).resolve().parent.parent


def needs_redis(path: Path) -> bool:
    return any("redis://" in source for runs, source in blocks(path.read_text()) if runs)


PAGES = sorted(
    path
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    if any(runs for runs, _ in blocks(path.read_text()))
)


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=[pytest.mark.redis] if needs_redis(p) else []) for p in PAGES],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_every_block_of_the_page_runs(page, tmp_path, request):
    env = dict(os.environ)
    if needs_redis(page):
        env["SWR_TEST_REDIS_URL"] = request.getfixturevalue("redis_server").url
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs_blocks.py"), str(page)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "ran " in done.stderr


def test_no_run_blocks_say_why():
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        for runs, source in blocks(page.read_text()):
            if not runs:
                assert source.lstrip().startswith("#"), (page, source[:60])


def test_a_failing_block_fails_the_page(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\n```python\nassert x == 2, 'x'\n```\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs_blocks.py"), str(page)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "AssertionError: x" in done.stderr
