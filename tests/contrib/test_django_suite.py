"""Django's own cache test suite (``BaseCacheTests``) against LMDBCache and RedisCache.

The suite is not vendored: the sdist of the installed Django is downloaded from PyPI
(``pip download``) into a cache directory on first use, its ``tests/`` extracted, and
``tests/contrib/django_suite.py`` copied into its ``cache`` package, then Django's own
``runtests.py`` runs it. Without network the test skips, except in CI (``CI=true``),
where that is a failure.

Left out, as Django leaves them out for its Redis backend: the ``cull`` and
``zero_cull`` caches, so ``test_cull``, ``test_zero_cull`` and
``test_cull_delete_when_store_empty`` skip themselves (the storages bound themselves
by bytes, not by a count of entries). The test checks that nothing else skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

django = pytest.importorskip("django")

pytestmark = pytest.mark.slow

SUITE = Path(__file__).with_name("django_suite.py")
CULLING = {"test_cull", "test_zero_cull", "test_cull_delete_when_store_empty"}
CLASSES = ("SWRLMDBCacheTests", "SWRRedisCacheTests")


def _cache_root() -> Path:
    base = os.environ.get("SWR_TEST_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "swr-tests"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run Django's cache suite", pytrace=False)
    pytest.skip(reason)


def django_tests_dir() -> Path:
    """The ``tests/`` folder of the installed Django's sdist, downloaded once."""
    version = django.__version__
    target = _cache_root() / f"django-{version}"
    tests = target / f"django-{version}" / "tests"
    if (tests / "runtests.py").exists():
        return tests
    target.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--no-binary", ":all:", f"django=={version}", "-d", str(target),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        _unavailable(f"pip download of the Django {version} sdist timed out")
    sdists = sorted(target.glob(f"[dD]jango-{version}.tar.gz"))
    if done.returncode != 0 or not sdists:
        _unavailable(f"cannot download the Django {version} sdist: {done.stderr.strip()[-500:]}")
    partial = target / "extracting"
    shutil.rmtree(partial, ignore_errors=True)
    prefix = f"django-{version}/tests/"
    with tarfile.open(sdists[0]) as archive:
        members = [m for m in archive.getmembers() if m.name.lower().startswith(prefix)]
        for member in members:  # the archive's own casing of its top folder
            member.name = prefix + member.name[len(prefix) :]
        if hasattr(tarfile, "data_filter"):
            archive.extractall(partial, members=members, filter="data")
        else:  # pragma: no cover - Python before 3.10.12
            archive.extractall(partial, members=members)
    (partial / f"django-{version}").rename(target / f"django-{version}")
    shutil.rmtree(partial, ignore_errors=True)
    return tests


def test_django_base_cache_tests_pass_on_both_backends(redis_server, tmp_path):
    tests = django_tests_dir()
    shutil.copyfile(SUITE, tests / "cache" / "test_swr_backends.py")
    env = {
        **os.environ,
        "SWR_DJANGO_LMDB": str(tmp_path / "lmdb"),
        "SWR_DJANGO_REDIS": redis_server.url,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "runtests.py", "cache.test_swr_backends", "--parallel", "2", "-v", "2"],
        cwd=tests,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    ran = re.search(r"^Ran (\d+) tests?", output, re.MULTILINE)
    assert ran is not None, output[-3000:]
    outcomes = re.findall(r"^(test_\w+) \(cache\.test_swr_backends\.(\w+)\.\w+\)", output, re.M)
    assert {cls for _, cls in outcomes} == set(CLASSES), output[-3000:]
    skipped = set(
        re.findall(
            r"^(test_\w+) \(cache\.test_swr_backends\.(\w+)\.\w+\) \.\.\. skipped", output, re.M
        )
    )
    assert skipped == {(name, cls) for name in CULLING for cls in CLASSES}, output[-3000:]
    # Every other test of BaseCacheTests ran, on both backends.
    assert int(ran.group(1)) == len(outcomes) >= 100
