"""Bulk loads, loaders and per-call control: the parts that need no engine I/O.

The engines' bulk methods (``execute_many``, ``loader``, ``refresh``, invalidation)
are written once in ``swr/_async/bulk.py`` (thread twin generated into
``swr/_sync/bulk.py``). This module holds what both share: the ``NotModified``
marker, :class:`BatchFetchError`, the checks of the arguments, the wrapper that carries
a call's ``tags`` and ``should_cache`` to its fetch, and the two loaders
(:class:`Loader` for threads, :class:`AsyncLoader` for asyncio), which differ in how
they wait.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeAlias, TypeVar

from swr import _core
from swr.errors import SWRError
from swr.storage._validate import check_int, check_seconds

if TYPE_CHECKING:
    from swr.policy import Result
    from swr.storage import Entry

__all__ = [
    "AsyncLoader",
    "BatchFetchError",
    "Controlled",
    "Loader",
    "Missing",
    "NotModified",
    "Plan",
    "ShouldCache",
    "check_fetch_many",
    "check_keys",
    "check_mapping",
    "check_missing",
    "check_tags",
    "is_not_modified",
    "not_returned",
    "wants_entry",
]

T = TypeVar("T")

ShouldCache: TypeAlias = Callable[[Any], bool]
"""A predicate on a fetched value: ``False`` returns the value without storing it."""

Missing: TypeAlias = Literal["omit", "raise"]

INVALIDATE_BATCH: Final = 500
"""How many keys ``clear`` and ``invalidate_prefix`` delete per ``delete_many`` call."""


class NotModified:
    """Returned by a conditional fetch: the cached value still holds.

    A ``fetch`` taking one argument receives the entry being refreshed (its ``value``,
    ``stored_at`` and windows, or ``None`` when nothing is cached); returning
    ``NotModified`` (the class, or an instance) keeps that value and renews its windows
    (``touch``, no payload rewrite).
    """

    __slots__ = ()


def is_not_modified(value: object) -> bool:
    """Whether a fetch returned the :class:`NotModified` marker (the class or an instance)."""
    return value is NotModified or type(value) is NotModified


class BatchFetchError(SWRError):
    """``fetch_many`` failed and some keys had nothing cached to serve instead.

    Attributes:
        results: The results of the other keys (hits, stale, and FALLBACK for the
            keys that had an entry), by key.
        failed: The keys without a result, in the order asked.

    ``__cause__`` is the exception ``fetch_many`` raised.
    """

    def __init__(self, results: dict[str, Result[Any]], failed: list[str]) -> None:
        shown = ", ".join(repr(k) for k in failed[:5]) + (", ..." if len(failed) > 5 else "")
        super().__init__(
            f"fetch_many failed; nothing cached to serve for {len(failed)} keys: {shown}"
        )
        self.results = results
        self.failed = failed


@dataclass(frozen=True, slots=True)
class Controlled:
    """A fetch with the per-call ``tags`` and ``should_cache`` of its ``execute``."""

    fetch: Callable[..., Any]
    tags: tuple[str, ...] | None
    should_cache: ShouldCache | None


@dataclass(slots=True)
class Plan:
    """How a fetched value is stored when it is not the plain case.

    Attributes:
        previous: The entry a conditional fetch was given (``None``: nothing cached).
        conditional: Whether the fetch was given ``previous`` (it may return NotModified).
        tags: The storage's tag names to record the entry under, or ``None``.
        should_cache: The predicate deciding whether the value is stored, or ``None``.
    """

    previous: Entry | None
    conditional: bool
    tags: tuple[str, ...] | None
    should_cache: ShouldCache | None


_FUNCTION = types.FunctionType


def wants_entry(fetch: Callable[..., Any]) -> bool:
    """Whether ``fetch`` takes exactly one required positional argument (the entry).

    Plain functions, bound methods and partials of them without keywords are judged
    from their code object (no ``inspect.signature`` on the miss path).
    """
    if type(fetch) is _FUNCTION and not fetch.__code__.co_argcount:
        return False  # the common fetch, a function of no argument (every miss asks)
    bound = 0
    inner: Any = fetch
    if type(fetch) is functools.partial and not fetch.keywords:
        inner, bound = fetch.func, len(fetch.args)
    code = getattr(inner, "__code__", None)
    if code is not None and not isinstance(inner, type):
        if code.co_flags & inspect.CO_VARARGS:
            return False
        required = code.co_argcount - len(getattr(inner, "__defaults__", None) or ()) - bound
        if inspect.ismethod(inner):
            required -= 1
        return bool(required == 1)
    try:
        params = inspect.signature(fetch).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]
    return len(required) == 1 and all(p.kind is not p.VAR_POSITIONAL for p in params)


def check_keys(keys: Iterable[str]) -> list[str]:
    """The caller's keys, each checked, duplicates dropped (first order kept).

    Raises:
        TypeError: ``keys`` is a single string, or a key is not a str.
        ValueError: a key is empty.
    """
    if isinstance(keys, (str, bytes)):
        raise TypeError("keys must be an iterable of str keys, not a single str")
    try:
        unique = list(dict.fromkeys(keys))
    except TypeError:  # an unhashable key: named below
        unique = list(keys)
    for key in unique:
        if type(key) is not str or not key:
            _core.check_key(key)
    return unique


def check_missing(missing: str) -> None:
    """Raises ``ValueError`` unless ``missing`` is ``"omit"`` or ``"raise"``."""
    if missing not in ("omit", "raise"):
        raise ValueError(f"missing must be 'omit' or 'raise', got {missing!r}")


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The tags, checked (non-empty strings), duplicates dropped.

    Raises:
        TypeError: ``tags`` is a single string, or a tag is not a str.
        ValueError: a tag is empty.
    """
    if isinstance(tags, (str, bytes)):
        raise TypeError("tags must be an iterable of str tags, e.g. ('user:1',), not a str")
    checked = []
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"a tag must be a str, got {type(tag).__name__}")
        if not tag:
            raise ValueError("a tag must be a non-empty str")
        checked.append(tag)
    return tuple(dict.fromkeys(checked))


def check_mapping(values: object, what: str) -> Mapping[str, Any]:
    """``values`` if it is a mapping; ``TypeError`` naming ``what`` returned it otherwise."""
    if not isinstance(values, Mapping):
        raise TypeError(
            f"{what} returned {type(values).__name__}; it must return a mapping of key to value"
        )
    return values


def check_fetch_many(fetch_many: object) -> None:
    if not callable(fetch_many):
        raise TypeError(
            f"fetch_many must be a callable taking a list of keys, got {type(fetch_many).__name__}"
        )


def _check_loader(fetch_many: object, max_wait: object, max_batch: object) -> None:
    """A loader's settings: its ``fetch_many``, its wait and its batch size."""
    check_fetch_many(fetch_many)
    check_seconds("max_wait", max_wait, positive=False, type_error=ValueError)
    check_int("max_batch", max_batch, 1, type_error=ValueError)


def not_returned(key: str) -> KeyError:
    return KeyError(f"fetch_many did not return the key {key!r}")


class _Batch:
    """The keys one thread-loader call of ``fetch_many`` collects, then its outcome."""

    __slots__ = ("done", "error", "full", "keys", "values")

    def __init__(self) -> None:
        self.keys: dict[str, None] = {}
        self.full = threading.Event()
        self.done = threading.Event()
        self.values: Mapping[str, Any] = {}
        self.error: BaseException | None = None


class Loader:
    """Collects the misses of concurrent ``execute`` calls into one ``fetch_many``.

    Made by ``engine.loader(fetch_many)`` and passed as the ``fetch`` of
    ``engine.execute(key, loader)``. The first thread to miss opens a batch and waits
    ``max_wait`` seconds (less if ``max_batch`` keys arrive first) for others to add
    their keys; it then calls ``fetch_many(keys)`` once and every thread of the batch
    takes its value from the mapping. A key the mapping lacks raises ``KeyError``.
    """

    __slots__ = ("_batch", "_fetch_many", "_lock", "max_batch", "max_wait")

    def __init__(
        self, fetch_many: Callable[[list[str]], Mapping[str, Any]], max_wait: float, max_batch: int
    ) -> None:
        _check_loader(fetch_many, max_wait, max_batch)
        self._fetch_many = fetch_many
        self.max_wait = max_wait
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._batch: _Batch | None = None

    def load(self, key: str) -> Any:
        """The value of ``key``, fetched in one batch with the keys of concurrent callers."""
        with self._lock:
            batch = self._batch
            leader = batch is None
            if batch is None:
                batch = self._batch = _Batch()
            batch.keys[key] = None
            if len(batch.keys) >= self.max_batch:
                self._batch = None  # full: later keys go to a new batch
                batch.full.set()
        if leader:
            batch.full.wait(self.max_wait)
            with self._lock:
                if self._batch is batch:
                    self._batch = None
            try:
                batch.values = check_mapping(self._fetch_many(list(batch.keys)), "fetch_many")
            except BaseException as exc:
                batch.error = exc
                raise
            finally:
                batch.done.set()
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        if key not in batch.values:
            raise not_returned(key)
        return batch.values[key]

    def __call__(self) -> Any:
        raise TypeError("a loader is called by the engine: pass it as engine.execute(key, loader)")


class _AsyncBatch(Generic[T]):
    """The keys one asyncio-loader call of ``fetch_many`` collects, a future per key."""

    __slots__ = ("futures", "started")

    def __init__(self) -> None:
        self.futures: dict[str, asyncio.Future[T]] = {}
        self.started = False


class AsyncLoader:
    """The asyncio twin of :class:`Loader`.

    The batch is sent at the end of the current turn of the event loop when
    ``max_wait`` is 0, else ``max_wait`` seconds after its first key (at once when
    ``max_batch`` keys are in). ``fetch_many`` is a coroutine function.
    """

    __slots__ = ("_batch", "_fetch_many", "_running", "max_batch", "max_wait")

    def __init__(
        self,
        fetch_many: Callable[[list[str]], Awaitable[Mapping[str, Any]]],
        max_wait: float,
        max_batch: int,
    ) -> None:
        _check_loader(fetch_many, max_wait, max_batch)
        self._fetch_many = fetch_many
        self.max_wait = max_wait
        self.max_batch = max_batch
        self._batch: _AsyncBatch[Any] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def load(self, key: str) -> Any:
        """The value of ``key``, fetched in one batch with the keys of concurrent callers."""
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None:
            batch = self._batch = _AsyncBatch()
            if self.max_wait:
                loop.call_later(self.max_wait, self._dispatch, batch)
            else:
                loop.call_soon(self._dispatch, batch)
        future = batch.futures.get(key)
        if future is None:
            future = batch.futures[key] = loop.create_future()
        if len(batch.futures) >= self.max_batch:
            self._dispatch(batch)
        return await asyncio.shield(future)

    def _dispatch(self, batch: _AsyncBatch[Any]) -> None:
        if batch.started:
            return
        batch.started = True
        if self._batch is batch:
            self._batch = None
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: _AsyncBatch[Any]) -> None:
        futures = batch.futures
        try:
            values = check_mapping(await self._fetch_many(list(futures)), "fetch_many")
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a caller may have stopped waiting
            return
        for key, future in futures.items():
            if future.done():
                continue
            if key in values:
                future.set_result(values[key])
            else:
                future.set_exception(not_returned(key))
                future.exception()

    def __call__(self) -> Any:
        raise TypeError("a loader is called by the engine: pass it as engine.execute(key, loader)")
