"""Lease tokens: unique among the processes sharing a store, without a getrandom() each.

A token is 8 random bytes drawn once per process (drawn again in a forked child) and a
counter. Memory, pool and LMDB leases take theirs here: a uuid4 per lease cost a system
call for its random bytes on every miss.
"""

from __future__ import annotations

import itertools
import os
import struct
from typing import Final

__all__ = ["new_token"]

_TOKEN: Final = struct.Struct("<8sQ").pack
_prefix = os.urandom(8)
_serial = itertools.count()


def _forked() -> None:
    global _prefix, _serial  # noqa: PLW0603 - process-wide state after fork
    _prefix = os.urandom(8)
    _serial = itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def new_token() -> bytes:
    """A new 16-byte lease token."""
    return _TOKEN(_prefix, next(_serial))
