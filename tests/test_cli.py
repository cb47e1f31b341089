"""python -m swr inspect / purge on LMDB stores."""

from __future__ import annotations

import subprocess
import sys
import time

import lmdb
import pytest

from swr.__main__ import main
from swr.storage import Entry, LMDBStorage


@pytest.fixture
def store_path(tmp_path):
    """A store holding 2 fresh, 1 stale, 1 expired and 3 dead entries, and a lease."""
    path = tmp_path / "cache"
    now = time.time()
    windows = {
        "fresh": (now - 1, now + 100, now + 200, now + 300),
        "stale": (now - 100, now - 50, now + 200, now + 300),
        "expired": (now - 300, now - 200, now - 100, now + 300),
        "dead": (now - 300, now - 200, now - 100, now - 1),
    }
    counts = {"fresh": 2, "stale": 1, "expired": 1, "dead": 3}
    # Written 10 s in the past, so the dead ones are still alive when written (an entry
    # written dead is not kept); the commands then judge them by real time.
    with LMDBStorage(path, sweep_interval=None, clock=lambda: now - 10) as store:
        for window, count in counts.items():
            for i in range(count):
                store.set(f"{window}{i}", Entry("v", *windows[window]))
        store.acquire_lease("fresh0", 60)
    return path


def lines(text: str) -> dict[str, str]:
    """Label -> value of each output line (labels take the first 12 columns)."""
    return {line[:12].strip(): line[12:] for line in text.splitlines() if line}


def test_inspect_prints_size_and_counts_by_window(store_path, capsys):
    assert main(["inspect", str(store_path)]) == 0
    out = lines(capsys.readouterr().out)
    assert out["entries"] == "7"
    assert [out[w].split()[0] for w in ("fresh", "stale", "expired", "dead")] == [
        "2",
        "1",
        "1",
        "3",
    ]
    assert out["leases"] == "1"
    with LMDBStorage(store_path, sweep_interval=None) as store:
        stats = store.stats()
    assert out["bytes used"].startswith(f"{stats['bytes']} B")
    assert f"({stats['map_size']} B)" in out["map size"]
    assert out["store"] == str(store_path.resolve())


def test_purge_expired_only_keeps_the_live(store_path, capsys):
    assert main(["purge", str(store_path), "--expired-only"]) == 0
    assert "removed 3 dead entries" in capsys.readouterr().out
    main(["inspect", str(store_path)])
    out = lines(capsys.readouterr().out)
    assert (out["entries"], out["dead"].split()[0]) == ("4", "0")


def test_purge_empties_the_store(store_path, capsys):
    assert main(["purge", str(store_path)]) == 0
    assert "removed 7 entries" in capsys.readouterr().out
    with LMDBStorage(store_path, sweep_interval=None) as store:
        assert store.stats()["entries"] == 0
        assert store.stats()["bytes"] == 0
        assert store.acquire_lease("fresh0", 1) is not None  # leases went too


def test_purge_while_a_storage_is_open_in_the_same_process(store_path, capsys):
    with LMDBStorage(store_path, sweep_interval=None) as store:
        assert store.get("fresh0") is not None
        assert main(["purge", str(store_path)]) == 0
        assert store.get("fresh0") is None
        capsys.readouterr()


def test_paths_that_are_not_stores_get_a_clear_message(tmp_path, capsys):
    missing = tmp_path / "missing"
    afile = tmp_path / "file"
    afile.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    foreign = tmp_path / "foreign"
    env = lmdb.open(str(foreign))
    with env.begin(write=True) as txn:
        txn.put(b"their", b"data")
    env.close()
    for path, reason in [
        (missing, "no such directory"),
        (afile, "not a directory"),
        (empty, "no data.mdb"),
        (foreign, "not an swr LMDB store"),
    ]:
        for command in (["inspect", str(path)], ["purge", str(path)]):
            assert main(command) == 1
            err = capsys.readouterr().err
            assert str(path) in err and reason in err and "Traceback" not in err
    assert not missing.exists()
    assert not (empty / "data.mdb").exists()


@pytest.mark.slow
def test_python_dash_m_swr_runs_the_commands(store_path):
    done = subprocess.run(
        [sys.executable, "-m", "swr", "inspect", str(store_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert lines(done.stdout)["entries"] == "7"
    done = subprocess.run(
        [sys.executable, "-m", "swr", "inspect", str(store_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "is not an swr LMDB store" in done.stderr
