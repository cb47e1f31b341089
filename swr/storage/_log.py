"""The one logger of swr: quiet until the application decides where events go.

Every module of swr, engine side and storage layer alike, logs through a :class:`Logger`
from :func:`get_logger` (the engine side imports it from ``swr._log``; the storage layer
never imports the engine side, so the definition lives here). Each call names an event
(snake_case, past tense) and its context as keyword fields::

    logger.warning("fetch_failed", engine="default", key="user:1", error="...")

Where an event goes is decided per call, by the application's configuration:

- The application configured structlog (``structlog.is_configured()``): the event goes
  through structlog's configuration, as ``event`` plus the fields, exactly as
  ``structlog.get_logger(name).warning(event, **fields)`` would send it.
- Otherwise it goes to the stdlib :mod:`logging` logger of that name (``"swr"`` or a
  child such as ``"swr.storage.lmdb"``). The record's message reads
  ``fetch_failed engine='default' key='user:1' error=...``; the event name and the fields
  are on the record as ``record.swr_event`` (a str) and ``record.swr_fields`` (a dict),
  for filters and formatters. With no handler anywhere (an application that configured
  neither), Python's last-resort handler prints warnings and errors on stderr and drops
  the rest. Nothing is ever written to stdout by the library.

The library never calls ``logging.basicConfig``, never adds a handler and never configures
structlog. A disabled level costs one ``isEnabledFor`` check (cached by :mod:`logging`):
no record, no message is built.

:class:`ThrottledLog` logs repeated failures of one key once per step (e.g. per backoff
step) with the count of the ones it held back, in bounded memory.

Events, for reference (tests assert them with ``structlog.testing.capture_logs``):

Engine side: ``fetch_failed``, ``fetch_timed_out``, ``refresh_failed``,
``refresh_timed_out``, ``refresh_dropped``, ``refresh_job_crashed``,
``storage_read_failed``, ``storage_write_failed``, ``lease_failed``, ``close_timed_out``,
``circuit_opened``, ``circuit_half_open``, ``circuit_closed``.

Storage layer: ``corrupt_entry``, ``corrupt_entry_not_deleted``, ``redis_unavailable``,
``redis_recovered``, ``redis_probe_failed``, ``redis_close_failed``, ``fallback_serving``,
``lmdb_sweep_failed``, ``lmdb_map_grown``, ``lmdb_store_recreated``, ``lmdb_reopen_failed``,
``pool_gc_failed``.

``docs/logging.md`` lists them with their levels (a test checks it names every event).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Final

import structlog

from swr.storage._validate import check_int

__all__ = ["Logger", "ThrottledLog", "get_logger", "logger"]

_is_configured = structlog.is_configured

# stacklevel for the stdlib record's caller: 1 is _emit, 2 the level method, 3 its caller.
_CALLER: Final = 3


class Logger:
    """A named swr logger: stdlib ``logging`` unless the application configured structlog.

    Use :func:`get_logger` to get one. The methods take the event name and its fields as
    keywords, as structlog's do; ``exc_info`` is honoured by both routes. Thread-safe;
    every call looks at the configuration again, so an application may configure
    logging after importing swr.
    """

    __slots__ = ("_stdlib", "_structlog", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._stdlib = logging.getLogger(name)
        self._structlog: Any = structlog.get_logger(name)

    def __repr__(self) -> str:
        return f"<swr Logger {self.name!r}>"

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` with ``fields`` at DEBUG."""
        self._emit(logging.DEBUG, "debug", event, fields, _CALLER)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` with ``fields`` at INFO."""
        self._emit(logging.INFO, "info", event, fields, _CALLER)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` with ``fields`` at WARNING."""
        self._emit(logging.WARNING, "warning", event, fields, _CALLER)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` with ``fields`` at ERROR."""
        self._emit(logging.ERROR, "error", event, fields, _CALLER)

    def exception(self, event: str, **fields: Any) -> None:
        """Log ``event`` with ``fields`` at ERROR with the exception being handled."""
        fields.setdefault("exc_info", True)
        self._emit(logging.ERROR, "error", event, fields, _CALLER)

    def is_enabled_for(self, level: int) -> bool:
        """Whether an event at ``level`` would reach the stdlib route's handlers.

        Always true while structlog is configured: structlog's own filtering decides then.
        """
        return _is_configured() or self._stdlib.isEnabledFor(level)

    def _emit(
        self, level: int, method: str, event: str, fields: dict[str, Any], stacklevel: int
    ) -> None:
        if _is_configured():
            getattr(self._structlog, method)(event, **fields)
            return
        stdlib = self._stdlib
        if not stdlib.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", None)
        stdlib.log(
            level,
            _message(event, fields),
            exc_info=exc_info,
            extra={"swr_event": event, "swr_fields": fields},
            stacklevel=stacklevel,
        )


def _message(event: str, fields: dict[str, Any]) -> str:
    """``event key=value ...``: what a reader of a plain log (or of stderr) sees."""
    if not fields:
        return event
    return event + " " + " ".join(f"{name}={value!r}" for name, value in fields.items())


_loggers: dict[str, Logger] = {}
_loggers_lock = threading.Lock()


def get_logger(name: str = "swr") -> Logger:
    """The :class:`Logger` named ``name``: ``"swr"`` or a child of it (``"swr.engine"``).

    Args:
        name: The stdlib logger name, which is also passed to ``structlog.get_logger``.

    Returns:
        The same object for the same name.

    Raises:
        ValueError: ``name`` is neither ``"swr"`` nor starts with ``"swr."``.
    """
    found = _loggers.get(name)
    if found is not None:
        return found
    given: object = name  # checked as any object: a caller may pass anything
    if not (isinstance(given, str) and (given == "swr" or given.startswith("swr."))):
        raise ValueError(f"swr logger names are 'swr' or start with 'swr.', got {name!r}")
    with _loggers_lock:
        return _loggers.setdefault(name, Logger(name))


logger: Final = get_logger("swr")


class ThrottledLog:
    """Logs repeated events of one key once per step, with how many it held back.

    A key failing on every call (a fetch or a refresh) would otherwise log one line per
    call. The caller names a *step* with each event: the first event of a key at a new
    step is logged, with ``suppressed=N`` counting the events of that key held back since
    the previous line; further events at the same step are only counted. The engine passes
    the key's backoff step (its consecutive failures), so a failing key logs about once per
    backoff delay. A caller with no backoff can pass a coarse time bucket, e.g.
    ``int(now // 60)``, for at most one line a minute per key.

    Memory is bounded: at most ``max_keys`` keys are remembered, the least recently seen
    forgotten first (a forgotten key's next event is logged again, its held-back count
    lost). Thread-safe; cheap enough for failure paths, not meant for hot paths.

    Example::

        failures = ThrottledLog(get_logger("swr.engine"))
        failures.warning("fetch_failed", key="user:1", step=3, error="...")

    Args:
        logger: Where admitted events go.
        max_keys: How many keys to remember (>= 1).

    Raises:
        ValueError: ``max_keys`` is not a positive int.
    """

    __slots__ = ("_keys", "_lock", "logger", "max_keys")

    def __init__(self, logger: Logger, *, max_keys: int = 10_000) -> None:
        check_int("ThrottledLog max_keys", max_keys, 1, type_error=ValueError)
        self.logger = logger
        self.max_keys = max_keys
        # key -> {event -> [step last logged, events held back since]}
        self._keys: OrderedDict[str, dict[str, list[Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def admit(self, event: str, key: str, step: Hashable) -> int | None:
        """Count one ``event`` of ``key`` at ``step``; say whether to log it.

        Returns:
            ``None`` when the event is held back (this key already logged ``event`` at
            ``step``); otherwise the number of events held back since the last one logged,
            which the caller reports as ``suppressed``.
        """
        with self._lock:
            events = self._keys.get(key)
            if events is None:
                events = self._keys[key] = {}
                while len(self._keys) > self.max_keys:
                    self._keys.popitem(last=False)
            else:
                self._keys.move_to_end(key)
            seen = events.get(event)
            if seen is None:
                events[event] = [step, 0]
                return 0
            if seen[0] == step:
                seen[1] += 1
                return None
            held: int = seen[1]
            seen[0] = step
            seen[1] = 0
            return held

    def forget(self, key: str) -> int:
        """Forget ``key`` (after a success): its next event is logged at once.

        Returns:
            How many events of ``key`` were held back since its last line (0 if unknown).
        """
        with self._lock:
            events = self._keys.pop(key, None)
        if not events:
            return 0
        return sum(seen[1] for seen in events.values())

    def warning(self, event: str, *, key: str, step: Hashable, **fields: Any) -> bool:
        """Log ``event`` at WARNING unless ``key`` already logged it at ``step``.

        The line carries ``key`` and ``suppressed`` (events held back since the previous
        line of this key) besides ``fields``.

        Returns:
            Whether the event was logged.
        """
        return self._log(logging.WARNING, "warning", event, key, step, fields)

    def error(self, event: str, *, key: str, step: Hashable, **fields: Any) -> bool:
        """Log ``event`` at ERROR unless ``key`` already logged it at ``step``.

        Returns:
            Whether the event was logged.
        """
        return self._log(logging.ERROR, "error", event, key, step, fields)

    def _log(
        self,
        level: int,
        method: str,
        event: str,
        key: str,
        step: Hashable,
        fields: dict[str, Any],
    ) -> bool:
        held = self.admit(event, key, step)
        if held is None:
            return False
        fields["key"] = key
        fields["suppressed"] = held
        # One frame more than a direct call: the caller of warning()/error() is reported.
        self.logger._emit(level, method, event, fields, _CALLER + 1)
        return True
