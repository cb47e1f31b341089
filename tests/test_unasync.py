"""The generator of the sync twins: its substitutions, its pragmas and its --check."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_generator():
    spec = importlib.util.spec_from_file_location("unasync", ROOT / "tools" / "unasync.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["unasync"] = module
    spec.loader.exec_module(module)
    return module


unasync = load_generator()

SOURCE = """\
from swr._async.primitives import AsyncFlight, async_sleep


class AsyncThing:
    async def get(self, fetch: Callable[[], Awaitable[int]]) -> int:
        async with self._lock:
            await async_sleep(0)
            return await fetch()

    async def aclose(self) -> None:
        self.loop = asyncio.get_running_loop()  # unasync: sync=self.loop = None
        await self._refresher.aclose()  # unasync: remove

    async def connect(self) -> None:
        self.client = redis.asyncio.Redis()
"""

EXPECTED = """\
from swr._sync.primitives import Flight, sleep


class Thing:
    def get(self, fetch: Callable[[], Awaitable[int]]) -> int:
        with self._lock:
            sleep(0)
            return fetch()

    def close(self) -> None:
        self.loop = None

    def connect(self) -> None:
        self.client = redis.Redis()
"""


def test_convert_applies_the_table_and_the_pragmas():
    used: set[int] = set()
    assert unasync.convert(SOURCE, used) == EXPECTED
    assert used  # the rules that fired are recorded


def make_tree(tmp_path: Path, source: str) -> Path:
    (tmp_path / "swr" / "_async").mkdir(parents=True)
    (tmp_path / "swr" / "_async" / "thing.py").write_text(source)
    return tmp_path


def test_generate_fails_on_a_rule_no_source_uses(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(unasync, "ROOT", make_tree(tmp_path, "async def f() -> None: ...\n"))
    assert unasync.main([]) == 2
    assert "unused rules" in capsys.readouterr().err


def full_source() -> str:
    # One line per rule, so that every rule of the table fires.
    return (
        SOURCE
        + "\n\nfrom swr._async import other\n"
        + "\n\nasync def pages() -> None:\n    async for page in source():\n        print(page)\n"
        + "\n\nasync def relay(t, r) -> None:\n"
        + "    async for chunk in (await t.handle_async_request(r)).aiter_raw():\n"
        + "        print(chunk)\n"
    )


def test_check_fails_on_a_hand_edited_twin_and_on_an_orphan(tmp_path, monkeypatch, capsys):
    root = make_tree(tmp_path, full_source())
    monkeypatch.setattr(unasync, "ROOT", root)
    assert unasync.main([]) == 0
    twin = root / "swr" / "_sync" / "thing.py"
    assert twin.read_text().startswith("# Generated from swr/_async/thing.py by tools/unasync.py")
    assert "class Thing:" in twin.read_text()
    assert unasync.main(["--check"]) == 0

    twin.write_text(twin.read_text() + "# edited by hand\n")
    assert unasync.main(["--check"]) == 1
    assert "swr/_sync/thing.py" in capsys.readouterr().err
    assert unasync.main([]) == 0  # regenerating repairs it
    assert unasync.main(["--check"]) == 0

    (root / "swr" / "_sync" / "gone.py").write_text("x = 1\n")
    assert unasync.main(["--check"]) == 1
    assert "gone.py (no source)" in capsys.readouterr().err


def test_the_repository_twins_are_up_to_date():
    # The same check CI runs: every generated module matches its asyncio source.
    assert unasync.main(["--check"]) == 0


def test_httpx_names_without_an_async_prefix_are_converted():
    used: set[int] = set()
    source = "async for c in (await t.handle_async_request(r)).aiter_raw():\n"
    assert unasync.convert(source, used) == "for c in (t.handle_request(r)).iter_raw():\n"
