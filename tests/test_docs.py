"""Every Python block of README.md and docs/ runs, as a reader would type it."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.docs_blocks import blocks

ROOT = Path(__file__).resolve().parent.parent


def needs_redis(path: Path) -> bool:
    return any("redis://" in source for runs, source in blocks(path.read_text()) if runs)


def needs_cluster(path: Path) -> bool:
    return any(":7000" in source for runs, source in blocks(path.read_text()) if runs)


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
    if needs_cluster(page):
        env["SWR_TEST_CLUSTER_URL"] = request.getfixturevalue("redis_cluster").url
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


def run_page(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    page = tmp_path / "page.md"
    page.write_text(text)
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs_blocks.py"), str(page)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_block_naming_a_host_off_this_machine_is_refused(tmp_path):
    done = run_page(tmp_path, '```python\nurl = "redis://10.1.2.3:6379/0"\n```\n')
    assert done.returncode != 0
    assert "10.1.2.3" in done.stderr


def test_a_failing_block_fails_the_page(tmp_path):
    done = run_page(tmp_path, "```python\nx = 1\n```\n\n```python\nassert x == 2, 'x'\n```\n")
    assert done.returncode != 0
    assert "AssertionError: x" in done.stderr


PUBLIC_MODULES = [
    "swr",
    "swr.errors",
    "swr.metrics",
    "swr.serializers",
    "swr.storage",
    "swr.storage.errors",
    "swr.testing",
]


def reference_targets() -> set[str]:
    pages = (ROOT / "docs" / "reference").glob("*.md")
    return {
        line.removeprefix("::: ").strip()
        for page in pages
        for line in page.read_text().splitlines()
        if line.startswith("::: ")
    }


def attribute_docstrings(module: ModuleType) -> set[str]:
    """Names assigned at a module's top level with a string literal right after them."""
    tree = ast.parse(inspect.getsource(module))
    documented = set()
    for node, following in zip(tree.body, tree.body[1:], strict=False):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        doc = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if doc and isinstance(following.value.value, str):
            documented |= {t.id for t in targets if isinstance(t, ast.Name)}
    return documented


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_module_has_a_reference_page(name):
    assert name in reference_targets(), f"docs/reference has no '::: {name}'"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(name):
    module = importlib.import_module(name)
    missing = []
    for public in module.__all__:
        obj = getattr(module, public)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not (obj.__doc__ or "").strip():
                missing.append(public)
        elif not any(
            public in attribute_docstrings(importlib.import_module(m))
            for m in {name, *(sub for sub in sys.modules if sub.startswith(name + "."))}
            if m in sys.modules
        ):
            missing.append(public)
    assert not missing, f"{name}: no docstring for {missing}"
