"""The engine's rules, pure: values in, values out, ``now`` passed in.

No I/O, no locks, no logging. The engines (``swr/_async/engine.py``, its generated
twin, ``swr/_engine.py``) and the circuit breaker call these; every branch is
unit-tested in ``tests/swr/test_core.py`` without I/O.

- :mod:`~swr._core.windows`: ``Status``, ``Result``, ``classify`` (which window).
- :mod:`~swr._core.ttl`: ``CacheTTL``, the TTL of a value, building its entry.
- :mod:`~swr._core.backoff`: per-key delays after failed refreshes.
- :mod:`~swr._core.breaker`: the circuit breaker's ``transition(state, event, now)``.
- :mod:`~swr._core.plans`: serve, refresh, fall back or raise.
- :mod:`~swr._core.validate`, :mod:`~swr._core.clock`: the validators, ``now()``.
"""

from swr._core.backoff import Backoff
from swr._core.breaker import BreakerEvent, BreakerRules, BreakerState, transition
from swr._core.clock import Clock, now
from swr._core.plans import Plan, live, plan_failure, plan_stale
from swr._core.ttl import (
    CachedEntry,
    CacheTTL,
    TTLSpec,
    check_call_ttl,
    make_entry,
    resolve_ttl,
    validate_ttl_spec,
)
from swr._core.validate import check_callable, check_int, check_key, check_seconds
from swr._core.windows import Result, Status, classify, classify_inline

__all__ = [
    "Backoff",
    "BreakerEvent",
    "BreakerRules",
    "BreakerState",
    "CacheTTL",
    "CachedEntry",
    "Clock",
    "Plan",
    "Result",
    "Status",
    "TTLSpec",
    "check_call_ttl",
    "check_callable",
    "check_int",
    "check_key",
    "check_seconds",
    "classify",
    "classify_inline",
    "live",
    "make_entry",
    "now",
    "plan_failure",
    "plan_stale",
    "resolve_ttl",
    "transition",
    "validate_ttl_spec",
]
