"""The swr command line on LMDB stores, its help, its version and its exit statuses.

The same commands on Redis are in ``tests/cli/test_redis.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

import swr
import swr.cli
from swr.__main__ import main
from swr.storage import Entry, LMDBStorage

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["inspect", "get", "delete", "purge", "stats", "watch"]


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


def run_json(capsys, *argv: str) -> object:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


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
    assert out["kind"] == "lmdb"
    with LMDBStorage(store_path, sweep_interval=None) as store:
        stats = store.stats()
    assert out["bytes used"].startswith(f"{stats['bytes']} B")
    assert f"({stats['map_size']} B)" in out["map size"]
    assert out["store"] == str(store_path.resolve())


def test_inspect_json_has_the_counts_and_sizes(store_path, capsys):
    data = run_json(capsys, "inspect", str(store_path))
    with LMDBStorage(store_path, sweep_interval=None) as store:
        stats = store.stats()
    assert data == {
        "store": str(store_path.resolve()),
        "kind": "lmdb",
        "entries": 7,
        "bytes": stats["bytes"],
        "fresh": 2,
        "stale": 1,
        "expired": 1,
        "dead": 3,
        "corrupt": 0,
        "leases": 1,
        "file_bytes": (store_path / "data.mdb").stat().st_size,
        "map_size": stats["map_size"],
    }


def test_inspect_keys_lists_entries_with_windows_and_sizes(store_path, capsys):
    data = run_json(capsys, "inspect", str(store_path), "--keys")
    keys = {row["key"]: row for row in data["keys"]}
    assert sorted(keys) == ["dead0", "dead1", "dead2", "expired0", "fresh0", "fresh1", "stale0"]
    assert [keys[k]["window"] for k in ("fresh0", "stale0", "expired0", "dead1")] == [
        "fresh",
        "stale",
        "expired",
        "dead",
    ]
    assert sum(row["size"] for row in data["keys"]) == data["bytes"]
    assert (
        keys["fresh0"]["stored_at"] < keys["fresh0"]["fresh_until"] < keys["fresh0"]["expires_at"]
    )
    assert data["truncated"] is False

    assert main(["inspect", str(store_path), "--keys"]) == 0
    table = capsys.readouterr().out.split("\n\n")[1].splitlines()
    assert table[0].split()[:3] == ["key", "window", "bytes"]
    assert [row.split()[:2] for row in table[1:3]] == [["dead0", "dead"], ["dead1", "dead"]]


def test_inspect_keys_match_and_limit(store_path, capsys):
    data = run_json(capsys, "inspect", str(store_path), "--keys", "--match", "fresh")
    assert [row["key"] for row in data["keys"]] == ["fresh0", "fresh1"]
    assert data["entries"] == 7  # the counts stay those of the whole store
    data = run_json(capsys, "inspect", str(store_path), "--keys", "--limit", "2")
    assert [row["key"] for row in data["keys"]] == ["dead0", "dead1"]
    assert data["truncated"] is True
    assert main(["inspect", str(store_path), "--keys", "--limit", "2"]) == 0
    assert "(first 2 shown" in capsys.readouterr().out


def test_inspect_keys_shows_long_keys_whole(tmp_path, capsys):
    key = "report:" + "x" * 1000
    now = time.time()
    with LMDBStorage(tmp_path / "s", sweep_interval=None) as store:
        store.set(key, Entry([1], now, now + 10, now + 20, now + 30))
    data = run_json(capsys, "inspect", str(tmp_path / "s"), "--keys")
    assert [row["key"] for row in data["keys"]] == [key]
    assert main(["inspect", str(tmp_path / "s"), "--keys"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) < 200


def test_get_prints_the_value_as_json_with_its_windows(store_path, capsys):
    now = time.time()
    with LMDBStorage(store_path, sweep_interval=None) as store:
        store.set("user:1", Entry({"id": 1, "tags": ["a"]}, now - 5, now + 55, now + 60, now + 90))
        store.set("odd", Entry({1, 2}, now - 5, now - 1, now + 60, now + 90))
    data = run_json(capsys, "get", str(store_path), "user:1")
    assert data["value"] == {"id": 1, "tags": ["a"]} and data["json"] is True
    assert data["window"] == "fresh"
    assert data["stored_at"] == pytest.approx(now - 5)
    assert data["expires_at"] == pytest.approx(now + 90)
    assert 4 < data["age"] < 60
    data = run_json(capsys, "get", str(store_path), "odd")
    assert (data["value"], data["json"], data["window"]) == ("{1, 2}", False, "stale")
    assert main(["get", str(store_path), "user:1"]) == 0
    out = lines(capsys.readouterr().out)
    assert json.loads(out["value"]) == {"id": 1, "tags": ["a"]}
    assert out["window"] == "fresh"


def test_get_never_removes_an_entry_it_cannot_decode(tmp_path, capsys):
    from swr.storage.serializers import JSONSerializer

    now = time.time()
    path = tmp_path / "json"
    with LMDBStorage(path, serializer=JSONSerializer(), sweep_interval=None) as store:
        store.set("k", Entry({"a": 1}, now, now + 10, now + 20, now + 30))
    assert main(["get", str(path), "k"]) == 1
    err = capsys.readouterr().err
    assert "does not decode with the default serializer (left in place)" in err
    with LMDBStorage(path, serializer=JSONSerializer(), sweep_interval=None) as store:
        assert store.get("k").value == {"a": 1}


def test_get_shows_dead_entries_and_long_keys(tmp_path, capsys):
    now = time.time()
    path = tmp_path / "s"
    long_key = "k" * 2000
    with LMDBStorage(path, sweep_interval=None) as store:
        store.set("dead", Entry(1, now - 30, now - 20, now - 10, now - 5))
        store.set(long_key, Entry(3, now, now + 10, now + 20, now + 30))
    assert run_json(capsys, "get", str(path), "dead")["window"] == "dead"
    assert run_json(capsys, "get", str(path), long_key)["value"] == 3


def test_get_and_delete_of_a_missing_key_exit_1(store_path, capsys):
    for command in ("get", "delete"):
        assert main([command, str(store_path), "nope"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no entry under 'nope'" in err


def test_delete_removes_one_entry(store_path, capsys):
    assert run_json(capsys, "delete", str(store_path), "fresh0") == {
        "key": "fresh0",
        "deleted": True,
    }
    with LMDBStorage(store_path, sweep_interval=None) as store:
        assert store.get("fresh0") is None
        assert store.get("fresh1") is not None
    assert main(["delete", str(store_path), "fresh0"]) == 1


def test_commands_leave_a_small_store_its_size(tmp_path, capsys):
    now = time.time()
    path = tmp_path / "small"
    with LMDBStorage(path, max_bytes=1 << 19, sweep_interval=None) as store:
        store.set("k", Entry(1, now, now + 10, now + 20, now + 30))
        store.set("j", Entry(2, now, now + 10, now + 20, now + 30))
    size = (path / "data.mdb").stat().st_size
    for argv in (["get", str(path), "k"], ["stats", str(path)], ["delete", str(path), "k"]):
        assert main(argv) == 0
        assert (path / "data.mdb").stat().st_size == size, argv
    capsys.readouterr()


def test_purge_expired_only_keeps_the_live(store_path, capsys):
    assert main(["purge", str(store_path), "--expired-only"]) == 0
    assert "removed 3 dead entries" in capsys.readouterr().out
    main(["inspect", str(store_path)])
    out = lines(capsys.readouterr().out)
    assert (out["entries"], out["dead"].split()[0]) == ("4", "0")


def test_purge_empties_the_store(store_path, capsys):
    data = run_json(capsys, "purge", str(store_path))
    assert data == {"store": str(store_path.resolve()), "removed": 7, "expired_only": False}
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


def test_stats_prints_the_storages_stats(store_path, capsys):
    data = run_json(capsys, "stats", str(store_path))
    with LMDBStorage(store_path, sweep_interval=None) as store:
        stats = store.stats()
    assert data == stats
    assert data["entries"] == 7
    assert main(["stats", str(store_path)]) == 0
    table = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert table["entries"] == "7" and table["bytes"] == str(stats["bytes"])


class ScriptedTime:
    """Time for ``swr watch``: each sleep moves the clock and runs the next step."""

    def __init__(self, monkeypatch, steps):
        self.now = time.time()
        self.steps = list(steps)
        self.slept: list[float] = []
        monkeypatch.setattr(swr.cli, "sleep", self.sleep)
        monkeypatch.setattr(swr.cli, "now", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.steps:
            self.steps.pop(0)(self.now)


def test_watch_prints_counts_and_writes_per_interval(store_path, capsys, monkeypatch):
    store = LMDBStorage(store_path, sweep_interval=None)

    def write(n):
        def step(now):
            for i in range(n):
                store.set(f"new{now}-{i}", Entry("v", now, now + 100, now + 200, now + 300))

        return step

    clock = ScriptedTime(monkeypatch, [write(0), write(4), write(2)])
    try:
        assert main(["watch", str(store_path), "--interval", "2", "--count", "3", "--json"]) == 0
    finally:
        store.close()
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert clock.slept == [2.0, 2.0, 2.0]
    assert [row["entries"] for row in rows] == [7, 11, 13]
    assert [row["fresh"] for row in rows] == [2, 6, 8]
    assert [row["written_per_second"] for row in rows] == [0.0, 2.0, 1.0]
    assert [row["dead"] for row in rows] == [3, 3, 3]


def test_watch_table_has_one_row_per_interval(store_path, capsys, monkeypatch):
    ScriptedTime(monkeypatch, [])
    assert main(["watch", str(store_path), "--interval", "0.5", "--count", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "time",
        "entries",
        "bytes",
        "fresh",
        "stale",
        "expired",
        "dead",
        "written/s",
    ]
    assert len(out) == 3
    assert [row.split()[1:7:5] for row in out[1:]] == [["7", "3"], ["7", "3"]]


@pytest.fixture
def not_stores(tmp_path):
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
    return [
        (missing, "no such directory"),
        (afile, "not a directory"),
        (empty, "no data.mdb"),
        (foreign, "not an swr LMDB store"),
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_paths_that_are_not_stores_get_a_clear_message(not_stores, command, capsys):
    extra = {"get": ["k"], "delete": ["k"], "watch": ["--count", "1", "--interval", "0.01"]}
    for path, reason in not_stores:
        assert main([command, str(path), *extra.get(command, [])]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"swr {command}: ") and err.count("\n") == 1
        assert str(path) in err and reason in err and "Traceback" not in err
    missing, empty = not_stores[0][0], not_stores[2][0]
    assert not missing.exists()
    assert not (empty / "data.mdb").exists()


def test_a_host_and_port_without_a_scheme_is_named_as_such(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "localhost:6379"]) == 1
    err = capsys.readouterr().err
    assert "neither a Redis URL (redis://, rediss://, unix://) nor an existing LMDB store" in err
    assert list(tmp_path.iterdir()) == []


def test_redis_options_on_an_lmdb_path_are_a_usage_error(store_path, capsys):
    assert main(["inspect", str(store_path), "--prefix", "app:"]) == 2
    assert "--prefix and --cluster apply to Redis URLs only" in capsys.readouterr().err
    assert main(["stats", str(store_path), "--cluster"]) == 2


def test_bad_arguments_are_usage_errors(store_path, capsys):
    for argv in (
        ["inspect"],
        ["frobnicate", str(store_path)],
        ["inspect", str(store_path), "--keys", "--limit", "0"],
        ["watch", str(store_path), "--interval", "-1"],
        ["get", str(store_path)],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2, argv
        assert "usage: swr" in capsys.readouterr().err


def test_bare_swr_prints_the_help_and_exits_2(capsys):
    assert main([]) == 2
    assert capsys.readouterr().out == swr.cli._parser().format_help()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"swr {swr.__version__}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: swr {command} ") and "--json" in out and "STORE" in out


def readme_help() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"```text\n\$ swr --help\n(.*?)```", text, re.DOTALL)
    assert found, "README.md shows `swr --help` in a ```text block starting `$ swr --help`"
    return found.group(1)


def test_the_readme_shows_the_real_help():
    assert readme_help() == swr.cli._parser().format_help()


def console_script() -> str:
    return str(Path(sys.executable).with_name("swr"))


@pytest.mark.slow
def test_the_console_script_and_python_dash_m_swr(store_path):
    for command in ([console_script()], [sys.executable, "-m", "swr"]):
        done = subprocess.run(
            [*command, "inspect", str(store_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert lines(done.stdout)["entries"] == "7"
        done = subprocess.run(
            [*command, "inspect", str(store_path / "nope")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1 and "is not an swr LMDB store" in done.stderr
        assert "Traceback" not in done.stderr
        done = subprocess.run([*command], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2 and done.stdout.startswith("usage: swr")


def test_the_tested_package_is_the_one_expected():
    """CI runs the suite a second time against the installed wheel (SWR_EXPECT_INSTALLED=1)."""
    where = Path(swr.__file__).resolve()
    if os.environ.get("SWR_EXPECT_INSTALLED") == "1":
        assert "site-packages" in where.parts
        assert not where.is_relative_to(ROOT)
    else:
        assert where == ROOT / "swr" / "__init__.py"
