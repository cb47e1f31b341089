"""The swr command line on Redis: every command, and the errors an operator meets."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from swr.__main__ import main
from swr.storage import Entry, RedisStorage
from tests.redis_support import free_port
from tests.test_cli import ScriptedTime

pytestmark = pytest.mark.redis

COMMANDS = ["inspect", "get", "delete", "purge", "stats", "watch"]
EXTRA = {"get": ["k"], "delete": ["k"], "watch": ["--count", "1", "--interval", "0.01"]}


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def store(redis_server, prefix):
    """2 fresh, 1 stale and 1 expired entries under ``prefix``, a dead one, and a lease.

    The dead entry is written by a storage whose clock runs 1000 s behind, so Redis
    still holds it after its ``expires_at``.
    """
    now = time.time()
    windows = {
        "fresh": (now - 1, now + 100, now + 200, now + 300),
        "stale": (now - 100, now - 50, now + 200, now + 300),
        "expired": (now - 300, now - 200, now - 100, now + 300),
    }
    counts = {"fresh": 2, "stale": 1, "expired": 1}
    with RedisStorage.from_url(redis_server.url, prefix=prefix) as storage:
        for window, count in counts.items():
            for i in range(count):
                storage.set(f"{window}{i}", Entry({"n": i}, *windows[window]))
        storage.acquire_lease("fresh0", 60)
    with RedisStorage.from_url(redis_server.url, prefix=prefix, clock=lambda: now - 1000) as late:
        late.set("dead0", Entry("old", now - 300, now - 200, now - 100, now - 1))
    # Another application's entries, under another prefix: never counted or touched.
    with RedisStorage.from_url(redis_server.url, prefix="other:" + prefix) as other:
        other.set("fresh0", Entry("theirs", *windows["fresh"]))
    return storage


def run(capsys, *argv: str, status: int = 0) -> object:
    assert main([*argv, "--json"]) == status
    return json.loads(capsys.readouterr().out)


def test_inspect_counts_the_prefix_by_window(redis_server, store, prefix, capsys):
    data = run(capsys, "inspect", redis_server.url, "--prefix", prefix)
    assert data["kind"] == "redis"
    assert data["store"] == f"{redis_server.url} prefix {prefix!r}"
    assert [data[w] for w in ("entries", "fresh", "stale", "expired", "dead", "corrupt")] == [
        5,
        2,
        1,
        1,
        1,
        0,
    ]
    assert data["leases"] == 1
    client = store.client
    expected = sum(len(k) + len(client.get(k)) for k in client.scan_iter(match=f"{prefix}*"))
    assert data["bytes"] == expected
    assert main(["inspect", redis_server.url, "--prefix", prefix]) == 0
    out = capsys.readouterr().out
    assert "entries     5" in out and "kind        redis" in out


def test_inspect_keys(redis_server, store, prefix, capsys):
    data = run(capsys, "inspect", redis_server.url, "--prefix", prefix, "--keys")
    assert [(row["key"], row["window"]) for row in data["keys"]] == [
        ("dead0", "dead"),
        ("expired0", "expired"),
        ("fresh0", "fresh"),
        ("fresh1", "fresh"),
        ("stale0", "stale"),
    ]
    assert sum(row["size"] for row in data["keys"]) == data["bytes"]
    data = run(capsys, "inspect", redis_server.url, "--prefix", prefix, "--keys", "--match", "fr")
    assert [row["key"] for row in data["keys"]] == ["fresh0", "fresh1"]
    data = run(capsys, "inspect", redis_server.url, "--prefix", prefix, "--keys", "--limit", "1")
    assert [row["key"] for row in data["keys"]] == ["dead0"] and data["truncated"] is True


def test_a_prefix_with_glob_characters_is_literal(redis_server, capsys):
    now = time.time()
    with RedisStorage.from_url(redis_server.url, prefix="a*[") as storage:
        storage.set("k", Entry(1, now, now + 10, now + 20, now + 30))
    with RedisStorage.from_url(redis_server.url, prefix="ab[") as storage:
        storage.set("k", Entry(1, now, now + 10, now + 20, now + 30))
    assert run(capsys, "inspect", redis_server.url, "--prefix", "a*[")["entries"] == 1


def test_get_delete(redis_server, store, prefix, capsys):
    data = run(capsys, "get", redis_server.url, "--prefix", prefix, "stale0")
    assert (data["value"], data["json"], data["window"]) == ({"n": 0}, True, "stale")
    assert main(["get", redis_server.url, "--prefix", prefix, "nope"]) == 1
    assert "no entry under 'nope'" in capsys.readouterr().err
    assert run(capsys, "delete", redis_server.url, "--prefix", prefix, "stale0")["deleted"]
    assert main(["delete", redis_server.url, "--prefix", prefix, "stale0"]) == 1
    capsys.readouterr()
    assert store.client.get(f"{prefix}stale0") is None
    assert store.client.get(f"{prefix}fresh0") is not None


def test_get_never_removes_an_entry_it_cannot_decode(redis_server, prefix, capsys):
    from swr.storage.serializers import JSONSerializer

    now = time.time()
    with RedisStorage.from_url(redis_server.url, prefix=prefix, serializer=JSONSerializer()) as s:
        s.set("k", Entry({"a": 1}, now, now + 10, now + 20, now + 30))
        assert main(["get", redis_server.url, "--prefix", prefix, "k"]) == 1
        assert "left in place" in capsys.readouterr().err
        assert s.client.get(f"{prefix}k") is not None
    with RedisStorage.from_url(redis_server.url, prefix=prefix) as s:
        s.set("forever", Entry(2, now, float("inf"), float("inf"), float("inf")))
    data = run(capsys, "get", redis_server.url, "--prefix", prefix, "forever")
    assert (data["window"], data["expires_at"], data["value"]) == ("fresh", None, 2)
    assert main(["get", redis_server.url, "--prefix", prefix, "forever"]) == 0
    assert "expires at  never" in capsys.readouterr().out


def test_purge_expired_only_then_everything(redis_server, store, prefix, capsys):
    data = run(capsys, "purge", redis_server.url, "--prefix", prefix, "--expired-only")
    assert data["removed"] == 1
    assert run(capsys, "inspect", redis_server.url, "--prefix", prefix)["entries"] == 4
    assert run(capsys, "purge", redis_server.url, "--prefix", prefix)["removed"] == 4
    after = run(capsys, "inspect", redis_server.url, "--prefix", prefix)
    assert (after["entries"], after["leases"]) == (0, 0)
    # The other application's entry is still there.
    assert store.client.get(f"other:{prefix}fresh0") is not None


def test_stats(redis_server, store, prefix, capsys):
    data = run(capsys, "stats", redis_server.url, "--prefix", prefix)
    assert data["available"] == 1
    assert set(data) >= {"corrupt_entries", "unavailable_errors", "refused", "recoveries"}


def test_watch(redis_server, store, prefix, capsys, monkeypatch):
    def write(now):
        for i in range(3):
            store_key = f"w{i}"
            with RedisStorage.from_url(redis_server.url, prefix=prefix) as storage:
                storage.set(store_key, Entry(i, now, now + 100, now + 200, now + 300))

    ScriptedTime(monkeypatch, [write])
    assert main(["watch", redis_server.url, "--prefix", prefix, "--count", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["entries"] for row in rows] == [8, 8]
    assert [row["written_per_second"] for row in rows] == [3.0, 0.0]


def test_a_cluster_url_with_cluster(redis_cluster, capsys):
    now = time.time()
    prefix = f"c{uuid.uuid4().hex[:6]}:"
    with RedisStorage.from_url(redis_cluster.url, prefix=prefix, cluster=True) as storage:
        for i in range(20):  # spread over the three masters
            storage.set(f"k{i}", Entry(i, now, now + 10, now + 20, now + 30))
    data = run(capsys, "inspect", redis_cluster.url, "--prefix", prefix, "--cluster", "--keys")
    assert data["entries"] == 20 and len(data["keys"]) == 20
    assert (
        run(capsys, "get", redis_cluster.url, "--prefix", prefix, "--cluster", "k7")["value"] == 7
    )
    assert run(capsys, "purge", redis_cluster.url, "--prefix", prefix, "--cluster")["removed"] == 20


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreachable_redis_exits_3_with_one_line(command, capsys):
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main([command, url, "--timeout", "0.5", *EXTRA.get(command, [])]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"swr {command}: cannot reach Redis at {url}: ")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_password_exits_4_without_showing_it(redis_server, command, capsys):
    user = f"u{uuid.uuid4().hex[:6]}"
    client = RedisStorage.from_url(redis_server.url)
    try:
        client.client.acl_setuser(
            user, enabled=True, passwords=["+right-pw"], keys=["*"], commands=["+@all"]
        )
        url = f"redis://{user}:wrong-pw-123@127.0.0.1:{redis_server.port}/0"
        assert main([command, url, *EXTRA.get(command, [])]) == 4
        err = capsys.readouterr().err
        assert err.startswith(f"swr {command}: Redis at redis://127.0.0.1:")
        assert "refused the credentials" in err
        assert "wrong-pw" not in err and err.count("\n") == 1
        good = f"redis://{user}:right-pw@127.0.0.1:{redis_server.port}/0"
        assert main(["inspect", good, "--prefix", "none-here:"]) == 0
        assert "right-pw" not in capsys.readouterr().out
    finally:
        client.client.acl_deluser(user)
        client.close()


def test_no_password_for_a_protected_server_exits_4(own_redis, capsys):
    own_redis.cli("CONFIG", "SET", "requirepass", "s3cret-pw")
    assert main(["inspect", own_redis.url]) == 4
    err = capsys.readouterr().err
    assert "refused the credentials" in err and err.count("\n") == 1
    url = f"redis://:s3cret-pw@127.0.0.1:{own_redis.port}/0"
    assert main(["stats", url]) == 0
    assert "s3cret" not in capsys.readouterr().out


def test_a_bad_redis_url_is_a_usage_error(capsys):
    assert main(["inspect", "redis://127.0.0.1:notaport/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swr inspect: bad Redis URL") and err.count("\n") == 1
