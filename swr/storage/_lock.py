"""Taking a lock held by another thread without starting a lock convoy under the GIL.

The memory storages guard critical sections of a microsecond with a ``threading.Lock``.
When the GIL is taken from a thread while it holds such a lock, the next thread to run
finds the lock held. Queueing on it (a blocking ``acquire``) hands the lock over at the
OS level: the holder's ``release`` wakes the waiter, who now owns the lock but still
needs the GIL, so the holder's next write blocks in turn, and so on. Every write then
costs a thread switch (on a quiet two-core machine, ``bench/pool_path.py`` measured
about 150 switches per 1,000 writes and writes twice as slow on two threads as on one).

:func:`take` is the slow path of ``if not lock.acquire(False): take(lock)``: it gives
the GIL back (``time.sleep(0)``) so that the holder finishes its short critical
section, and tries again; the holder releases a lock nobody queues on, and keeps
running. Only after many tries (a holder doing long work, such as ``clear``) does it
queue on the lock like a plain ``acquire``.
"""

from __future__ import annotations

import threading
import time as _time

__all__ = ["take"]

# Yields of the GIL before queueing on the lock: each lets the holder run to the end of
# a critical section that is normally a few microseconds long.
_YIELDS = 64


def take(lock: threading.Lock) -> None:
    """Acquire ``lock`` (already tried once without blocking), yielding the GIL first."""
    sleep = _time.sleep
    acquire = lock.acquire
    for _ in range(_YIELDS):
        sleep(0)
        if acquire(False):
            return
    acquire()
