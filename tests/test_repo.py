"""The repository's own rules: layering, exports, and CI running the README's command."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import swr

ROOT = Path(__file__).resolve().parent.parent
# The package under test: the source tree, or the installed wheel in CI's second run.
PACKAGE = Path(swr.__file__).resolve().parent


def python_files(package: str) -> list[Path]:
    return sorted((PACKAGE.parent / package).rglob("*.py"))


@pytest.mark.parametrize("path", python_files("swr/storage"), ids=lambda p: p.name)
def test_the_storage_layer_never_imports_the_engine_side(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        engine_side = [
            n for n in names if (n == "swr" or n.startswith("swr.")) and not _in_storage(n)
        ]
        assert not engine_side, (path, engine_side)


def _in_storage(module: str) -> bool:
    return module == "swr.storage" or module.startswith("swr.storage.")


@pytest.mark.parametrize("package", ["swr", "swr.storage", "swr.serializers", "swr.metrics"])
def test_all_is_sorted_and_importable(package):
    module = importlib.import_module(package)
    exported = module.__all__

    def isort_style(name: str) -> tuple[int, str]:
        # Constants, then classes, then functions: the order ruff's RUF022 keeps.
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert exported == sorted(exported, key=isort_style)
    for name in exported:
        assert hasattr(module, name), name


def test_public_contract_names():
    from swr import AsyncStaleEngine, CacheTTL, Result, StaleEngine, Status  # noqa: F401
    from swr.storage import AsyncStorage, MemoryStorage, Storage  # noqa: F401

    assert [s.value for s in Status] == ["hit", "stale", "expired", "miss", "fallback"]


def test_py_typed_markers():
    assert (PACKAGE / "py.typed").exists()
    assert (PACKAGE / "storage" / "py.typed").exists()


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_opens_with_the_demo_and_the_test_command():
    demo, tests = readme_commands()[:2]
    assert demo.endswith("examples/quickstart.py")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    tests = readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_the_version_is_written_once():
    import importlib.metadata

    import tomllib

    import swr

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert importlib.metadata.version("swr") == swr.__version__


def test_the_license_ships_with_the_package():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert "MIT License" in (ROOT / project["license-files"][0]).read_text()
