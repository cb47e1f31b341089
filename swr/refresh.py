"""Bounded background refresh executors: worker threads, or asyncio tasks.

Both keep the same promises:

- At most one job per key is queued or running at a time (``submit`` of a key that
  is pending returns ``DUPLICATE`` and does nothing).
- At most ``max_workers`` jobs run at once. A job holds its slot until it really
  returns, so a hung upstream never sees more than ``max_workers`` calls from here.
- At most ``queue_size`` jobs wait; beyond that ``submit`` returns ``DROPPED`` at once.
  ``submit`` never blocks on a running job and never grows threads or memory beyond
  these bounds.
- ``close`` stops taking work, forgets queued jobs and waits a bounded time for the
  running ones; ``unfinished`` then says how many were still running at the deadline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from swr._log import logger

__all__ = ["Submit", "TaskRefresher", "ThreadRefresher"]


class Submit(Enum):
    """What became of a submitted job."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"
    CLOSED = "closed"


class ThreadRefresher:
    """Runs refresh jobs on at most ``max_workers`` threads, started lazily.

    Workers are daemon threads: a fetch that never returns cannot keep the
    interpreter from exiting. Idle workers wait on a condition and cost nothing.

    Args:
        max_workers: Most jobs running at once (>= 1).
        queue_size: Most jobs waiting for a worker (>= 0).
        name: Prefix of the worker threads' names.
    """

    def __init__(self, max_workers: int, queue_size: int, name: str = "swr-refresh") -> None:
        self.max_workers = max_workers
        self.queue_size = queue_size
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[tuple[str, Callable[..., Any], tuple[Any, ...]]] = deque()
        # Keys queued or running. Read without the lock as a fast pre-check.
        self.pending: set[str] = set()
        self._workers = 0
        self._idle = 0
        self._running = 0
        self._closed = False
        self.unfinished = 0  # jobs still running when close() gave up waiting

    @property
    def running(self) -> int:
        """Jobs running now."""
        return self._running

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker now."""
        return len(self._queue)

    def submit(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Submit:
        """Queue ``fn(*args)`` as the refresh of ``key``; never blocks."""
        if key in self.pending:  # racy pre-check; repeated under the lock
            return Submit.DUPLICATE
        with self._lock:
            if self._closed:
                return Submit.CLOSED
            if key in self.pending:
                return Submit.DUPLICATE
            if self._idle == 0 and self._workers < self.max_workers:
                self._workers += 1
                self._start_worker_locked()
            elif len(self._queue) - self._idle >= self.queue_size:
                return Submit.DROPPED
            self.pending.add(key)
            self._queue.append((key, fn, args))
            self._wake.notify()
        return Submit.ACCEPTED

    def _start_worker_locked(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{self._workers}", daemon=True
        )
        thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._wake.wait()
                    self._idle -= 1
                if self._closed:
                    self._workers -= 1
                    self._wake.notify_all()
                    return
                key, fn, args = self._queue.popleft()
                self._running += 1
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - a worker must survive any job
                logger.exception("refresh_job_crashed", key=key)
            finally:
                with self._lock:
                    self._running -= 1
                    self.pending.discard(key)
                    self._wake.notify_all()

    def close(self, timeout: float) -> bool:
        """Stop taking jobs, drop queued ones, wait up to ``timeout`` s for running ones.

        Returns:
            Whether every running job finished in time.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            for key, _, _ in self._queue:
                self.pending.discard(key)
            self._queue.clear()
            self._wake.notify_all()
            while self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.unfinished = self._running
                    return False
                self._wake.wait(remaining)
        return True


class TaskRefresher:
    """Runs refresh jobs as at most ``max_workers`` asyncio tasks.

    A task is created only when a job arrives and no task is free; a task that finishes
    its job takes the next queued one, so there are no idle tasks. Jobs belong to the
    event loop that submitted them: if the engine is used from a new loop (the old one
    closed), state from the old loop is discarded.

    Args:
        max_workers: Most jobs running at once (>= 1).
        queue_size: Most jobs waiting (>= 0).
        name: Prefix of the tasks' names.
    """

    def __init__(self, max_workers: int, queue_size: int, name: str = "swr-refresh") -> None:
        self.max_workers = max_workers
        self._name = name
        self.queue_size = queue_size
        self._queue: deque[tuple[str, Callable[..., Awaitable[Any]], tuple[Any, ...]]] = deque()
        self.pending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.unfinished = 0  # jobs still running when aclose() gave up (then cancelled)

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._tasks)

    @property
    def queued(self) -> int:
        """Jobs waiting now."""
        return len(self._queue)

    def submit(self, key: str, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Submit:
        """Queue ``await fn(*args)`` as the refresh of ``key``; never blocks."""
        if self._closed:
            return Submit.CLOSED
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is None or self._loop.is_closed():
                # Jobs of a closed loop will never run: forget them.
                self._queue.clear()
                self.pending.clear()
                self._tasks.clear()
            self._loop = loop
        if key in self.pending:
            return Submit.DUPLICATE
        if len(self._tasks) < self.max_workers:
            self.pending.add(key)
            task = loop.create_task(self._drain(key, fn, args), name=f"{self._name}-{key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return Submit.ACCEPTED
        if len(self._queue) >= self.queue_size:
            return Submit.DROPPED
        self.pending.add(key)
        self._queue.append((key, fn, args))
        return Submit.ACCEPTED

    async def _drain(
        self, key: str, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        while True:
            try:
                await fn(*args)
            except asyncio.CancelledError:
                self.pending.discard(key)
                raise
            except Exception:  # noqa: BLE001 - a worker must survive any job
                logger.exception("refresh_job_crashed", key=key)
            self.pending.discard(key)
            if self._closed or not self._queue:
                return
            key, fn, args = self._queue.popleft()

    async def aclose(self, timeout: float) -> bool:
        """Stop taking jobs, drop queued ones, wait up to ``timeout`` s, cancel the rest.

        Returns:
            Whether every running job finished in time.
        """
        self._closed = True
        for key, _, _ in self._queue:
            self.pending.discard(key)
        self._queue.clear()
        tasks = [t for t in self._tasks if t.get_loop() is asyncio.get_running_loop()]
        if not tasks:
            return True
        _, still_running = await asyncio.wait(tasks, timeout=timeout)
        self.unfinished = len(still_running)
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.wait(still_running)
        return not still_running
