"""swr's logs respect the application: stdlib logging, structlog, or only stderr warnings."""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

import swr
from swr import StaleEngine
from swr._log import Logger, ThrottledLog, get_logger
from swr._log import logger as engine_logger
from swr.storage import MemoryStorage
from swr.storage._log import logger as storage_logger
from swr.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent
# The package under test: the source tree, or the installed wheel in CI's second run.
PACKAGE = Path(swr.__file__).resolve().parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


class Records(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self) -> list[str]:
        return [getattr(r, "swr_event", None) for r in self.records]


@pytest.fixture
def unconfigured_structlog() -> Iterator[None]:
    """structlog as an application that never configured it sees it (conftest configures it)."""
    saved = structlog.get_config()
    was_configured = structlog.is_configured()
    structlog.reset_defaults()
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


@pytest.fixture
def swr_records(unconfigured_structlog: None) -> Iterator[Records]:
    """A handler on the stdlib ``swr`` logger, at DEBUG, removed afterwards."""
    handler = Records()
    std = logging.getLogger("swr")
    level = std.level
    std.addHandler(handler)
    std.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        std.removeHandler(handler)
        std.setLevel(level)


def broken_fetch() -> str:
    raise ConnectionError("upstream down")


def fail_one_fetch() -> None:
    with StaleEngine(MemoryStorage(), clock=FakeClock()) as engine:
        with pytest.raises(ConnectionError):
            engine.execute("user:1", broken_fetch)


def run_python(code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


# -- one definition ---------------------------------------------------------------------


def test_the_engine_side_and_the_storage_layer_share_one_logger():
    assert engine_logger is storage_logger
    assert isinstance(engine_logger, Logger)
    assert engine_logger.name == "swr"
    assert get_logger("swr.storage.lmdb") is get_logger("swr.storage.lmdb")


@pytest.mark.parametrize("name", ["", "app", "swrx", "storage.lmdb", None])
def test_logger_names_outside_swr_are_refused(name):
    with pytest.raises(ValueError, match="swr logger names"):
        get_logger(name)


# Modules being rewritten in parallel, which adopt the one logger when merged (a one-line
# change each); strict, so this set must shrink as they do.


def swr_modules() -> list[object]:
    modules: list[object] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_log.py":
            continue
        modules.append(path)
    return modules


@pytest.mark.parametrize("path", swr_modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_defines_a_logger_of_its_own(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = (
                func.value.id
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                else ""
            )
            assert not (called == "get_logger" and owner == "structlog"), (path, node.lineno)
            assert not (called == "getLogger" and owner == "logging"), (path, node.lineno)


# -- the stdlib route -------------------------------------------------------------------


def test_stdlib_handler_receives_engine_events_with_their_fields(swr_records):
    fail_one_fetch()

    [record] = [r for r in swr_records.records if r.swr_event == "fetch_failed"]
    assert record.levelno == logging.WARNING
    assert record.name == "swr"
    assert record.swr_fields["key"].endswith("user:1")
    assert record.swr_fields["error"] == "ConnectionError('upstream down')"
    message = record.getMessage()
    assert message.startswith("fetch_failed ")
    assert "error=\"ConnectionError('upstream down')\"" in message
    # The record points at the engine's code that logged, not at the logger's plumbing.
    assert Path(record.pathname).name != "_log.py"
    assert Path(record.pathname).resolve().is_relative_to(PACKAGE)


def test_child_loggers_reach_handlers_on_swr(swr_records):
    log = get_logger("swr.storage.lmdb")
    log.info("lmdb_map_grown", path="/tmp/x", map_size=1 << 20)

    [record] = swr_records.records
    assert record.name == "swr.storage.lmdb"
    assert record.levelno == logging.INFO
    assert record.swr_event == "lmdb_map_grown"
    assert record.swr_fields == {"path": "/tmp/x", "map_size": 1 << 20}
    assert record.getMessage() == "lmdb_map_grown path='/tmp/x' map_size=1048576"
    assert record.funcName == "test_child_loggers_reach_handlers_on_swr"
    assert record.pathname == __file__


def test_every_level_maps_to_its_stdlib_level(swr_records):
    log = get_logger("swr.test")
    log.debug("a_debugged")
    log.info("a_noted")
    log.warning("a_warned")
    log.error("a_failed")
    try:
        raise KeyError("boom")
    except KeyError:
        log.exception("a_crashed", key="k")

    levels = [(r.swr_event, r.levelno) for r in swr_records.records]
    assert levels == [
        ("a_debugged", logging.DEBUG),
        ("a_noted", logging.INFO),
        ("a_warned", logging.WARNING),
        ("a_failed", logging.ERROR),
        ("a_crashed", logging.ERROR),
    ]
    crashed = swr_records.records[-1]
    assert crashed.exc_info is not None
    assert crashed.exc_info[0] is KeyError
    assert crashed.swr_fields == {"key": "k"}  # exc_info is not a field
    assert swr_records.records[0].getMessage() == "a_debugged"


class Spy:
    def __init__(self) -> None:
        self.reprs = 0

    def __repr__(self) -> str:
        self.reprs += 1
        return "spy"


def test_a_disabled_level_builds_no_record(swr_records):
    logging.getLogger("swr").setLevel(logging.WARNING)
    spy = Spy()
    get_logger("swr.test").debug("chatter", value=spy)
    get_logger("swr.test").info("chatter", value=spy)
    assert spy.reprs == 0
    assert swr_records.records == []

    get_logger("swr.test").warning("trouble", value=spy)
    assert spy.reprs == 1
    assert swr_records.events() == ["trouble"]


def test_is_enabled_for_follows_the_stdlib_level_until_structlog_is_configured(swr_records):
    log = get_logger("swr.test")
    logging.getLogger("swr").setLevel(logging.WARNING)
    assert not log.is_enabled_for(logging.INFO)
    assert log.is_enabled_for(logging.WARNING)
    with capture_logs():
        assert log.is_enabled_for(logging.INFO)  # structlog's own filtering decides


def test_stdlib_route_prints_nothing_on_stdout(swr_records, capsys):
    fail_one_fetch()
    out = capsys.readouterr()
    assert out.out == ""
    assert "fetch_failed" in swr_records.events()


# -- the structlog route ----------------------------------------------------------------


def test_configured_structlog_receives_the_events_and_stdlib_does_not():
    handler = Records()
    std = logging.getLogger("swr")
    std.addHandler(handler)
    try:
        with capture_logs() as logs:  # configures structlog, as an application would
            fail_one_fetch()
    finally:
        std.removeHandler(handler)

    [event] = [e for e in logs if e["event"] == "fetch_failed"]
    assert event["log_level"] == "warning"
    assert event["key"].endswith("user:1")
    assert event["error"] == "ConnectionError('upstream down')"
    assert handler.records == []


def test_configuring_structlog_after_import_switches_the_route(swr_records):
    log = get_logger("swr.test")
    log.warning("before_configured")
    with capture_logs() as logs:
        log.warning("after_configured", n=1)
    assert swr_records.events() == ["before_configured"]
    assert logs == [{"event": "after_configured", "n": 1, "log_level": "warning"}]


def test_structlog_route_keeps_exc_info():
    with capture_logs() as logs:
        try:
            raise KeyError("boom")
        except KeyError:
            get_logger("swr.test").exception("a_crashed", key="k")
    assert logs == [{"event": "a_crashed", "key": "k", "exc_info": True, "log_level": "error"}]


def test_structlog_filtering_applies_to_swr_events():
    saved = structlog.get_config()
    try:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
        with capture_logs() as logs:
            get_logger("swr.test").warning("filtered_out")
            get_logger("swr.test").error("kept")
    finally:
        structlog.configure(**saved)
    assert [e["event"] for e in logs] == ["kept"]


# -- an application that configured neither ---------------------------------------------


def test_unconfigured_application_sees_warnings_on_stderr_and_nothing_on_stdout(tmp_path):
    code = textwrap.dedent(
        """
        from swr._log import get_logger
        from swr import StaleEngine

        log = get_logger("swr.engine")
        log.debug("quiet_debug", a=1)
        log.info("quiet_info", a=1)
        log.warning("loud_warning", a=1)
        log.error("loud_error", a=2)

        def broken():
            raise ConnectionError("upstream down")

        with StaleEngine() as engine:
            try:
                engine.execute("user:1", broken)
            except ConnectionError:
                pass
        """
    )
    done = run_python(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert "loud_warning a=1" in lines
    assert "loud_error a=2" in lines
    assert any(line.startswith("fetch_failed ") for line in lines), lines
    assert "quiet" not in done.stderr


def test_quickstart_prints_no_log_line_on_stdout():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "fetch_failed" not in done.stdout
    assert "[warning" not in done.stdout
    table = [line for line in done.stdout.splitlines() if line.startswith("t=")]
    assert len(table) == 8
    # The upstream outage is still reported, where warnings belong.
    assert "fetch_failed" in done.stderr


# -- throttled repeated failures --------------------------------------------------------


def test_throttle_admits_the_first_event_of_each_step_with_the_held_back_count():
    throttle = ThrottledLog(get_logger("swr.test"))
    assert throttle.admit("fetch_failed", "k", 1) == 0
    assert throttle.admit("fetch_failed", "k", 1) is None
    assert throttle.admit("fetch_failed", "k", 1) is None
    assert throttle.admit("fetch_failed", "k", 2) == 2
    assert throttle.admit("fetch_failed", "k", 2) is None
    assert throttle.admit("fetch_failed", "k", 1) == 1  # any change of step is a new step


def test_throttle_counts_each_key_and_event_apart():
    throttle = ThrottledLog(get_logger("swr.test"))
    assert throttle.admit("fetch_failed", "a", 1) == 0
    assert throttle.admit("fetch_failed", "b", 1) == 0
    assert throttle.admit("refresh_failed", "a", 1) == 0
    assert throttle.admit("fetch_failed", "a", 1) is None
    assert throttle.admit("refresh_failed", "a", 2) == 0
    assert throttle.admit("fetch_failed", "b", 2) == 0
    assert throttle.admit("fetch_failed", "a", 2) == 1


def test_throttle_forget_returns_the_held_back_count_and_logs_the_next_at_once():
    throttle = ThrottledLog(get_logger("swr.test"))
    throttle.admit("fetch_failed", "k", 1)
    throttle.admit("fetch_failed", "k", 1)
    throttle.admit("refresh_failed", "k", 1)
    throttle.admit("refresh_failed", "k", 1)
    throttle.admit("refresh_failed", "k", 1)
    assert throttle.forget("k") == 3
    assert throttle.forget("k") == 0
    assert throttle.admit("fetch_failed", "k", 1) == 0


def test_throttle_memory_is_bounded_least_recently_seen_first():
    throttle = ThrottledLog(get_logger("swr.test"), max_keys=2)
    throttle.admit("fetch_failed", "a", 1)
    throttle.admit("fetch_failed", "b", 1)
    throttle.admit("fetch_failed", "a", 1)  # a is now the most recent
    throttle.admit("fetch_failed", "c", 1)  # b goes
    assert len(throttle) == 2
    assert throttle.admit("fetch_failed", "a", 1) is None
    assert throttle.admit("fetch_failed", "b", 1) == 0  # forgotten: logged again


def test_throttle_memory_stays_bounded_under_many_keys():
    throttle = ThrottledLog(get_logger("swr.test"), max_keys=100)
    for i in range(10_000):
        throttle.admit("fetch_failed", f"k{i}", 1)
    assert len(throttle) == 100


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True, None])
def test_throttle_refuses_a_bad_bound(bad):
    with pytest.raises(ValueError, match="max_keys"):
        ThrottledLog(get_logger("swr.test"), max_keys=bad)


def test_throttled_warnings_log_once_per_step_with_suppressed(swr_records):
    failures = ThrottledLog(get_logger("swr.engine"))
    logged = [
        failures.warning("fetch_failed", key="k", step=step, engine="e", error="E")
        for step in [1, 1, 1, 1, 2, 2, 3]
    ]
    assert logged == [True, False, False, False, True, False, True]
    lines = [(r.swr_event, r.swr_fields) for r in swr_records.records]
    assert lines == [
        ("fetch_failed", {"engine": "e", "error": "E", "key": "k", "suppressed": 0}),
        ("fetch_failed", {"engine": "e", "error": "E", "key": "k", "suppressed": 3}),
        ("fetch_failed", {"engine": "e", "error": "E", "key": "k", "suppressed": 1}),
    ]
    assert all(r.levelno == logging.WARNING for r in swr_records.records)
    # The line points at the caller of warning(), not at the throttle.
    assert {r.pathname for r in swr_records.records} == {__file__}


def test_throttled_errors_go_through_structlog_when_configured():
    failures = ThrottledLog(get_logger("swr.engine"))
    with capture_logs() as logs:
        for _ in range(5):
            failures.error("refresh_failed", key="k", step=7)
    assert logs == [{"event": "refresh_failed", "key": "k", "suppressed": 0, "log_level": "error"}]


def test_throttle_counts_every_event_from_many_threads():
    throttle = ThrottledLog(get_logger("swr.test"))
    admitted: list[int | None] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(500):
            held = throttle.admit("fetch_failed", "k", 1)
            if held is not None:
                with lock:
                    admitted.append(held)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert admitted == [0]
    assert throttle.admit("fetch_failed", "k", 2) == 8 * 500 - 1


# -- the docs ---------------------------------------------------------------------------

DOCS = ROOT / "docs" / "logging.md"


def docs_blocks() -> list[str]:
    return re.findall(r"```python\n(.+?)```", DOCS.read_text(), flags=re.DOTALL)


def test_the_docs_have_a_recipe_per_route():
    blocks = docs_blocks()
    assert len(blocks) >= 5
    joined = "\n".join(blocks)
    assert "JSONFormatter" in joined
    assert "JSONRenderer" in joined
    assert "structlog.configure" in joined
    assert "logging.basicConfig" in joined


@pytest.mark.parametrize("index", range(len(docs_blocks())))
def test_docs_code_blocks_run_as_written(index, tmp_path):
    block = docs_blocks()[index]
    done = run_python(block, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # every recipe keeps stdout for the application
    if "execute(" in block:
        assert "fetch_failed" in done.stderr, done.stderr


def logged_events() -> set[str]:
    """Every event name a module of swr logs (the first argument of a level method)."""
    events: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and node.args
            ):
                for part in ast.walk(node.args[0]):
                    if (
                        isinstance(part, ast.Constant)
                        and isinstance(part.value, str)
                        and re.fullmatch(r"[a-z]+(_[a-z]+)+", part.value)
                    ):
                        events.add(part.value)
    return events


def test_docs_list_every_event_swr_logs():
    events = logged_events()
    assert {"fetch_failed", "refresh_failed", "refresh_timed_out", "corrupt_entry"} <= events
    table = DOCS.read_text().split("## Events", 1)[1]
    missing = sorted(e for e in events if f"`{e}`" not in table)
    assert not missing, f"docs/logging.md does not list {missing}"
