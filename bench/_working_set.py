"""The working set of issue 14 shared by the bench scripts: 100_000 keys, two orders.

``orders(n)`` gives ``n`` reads of ``KEYS`` (ten times the other caches the benches
measure) in a Zipf (s = 1.0) and in a uniform order, seeded; ``RECORD`` is a ~200-byte
user record and ``DOCUMENT`` a ~4 KiB JSON-like document (past the compression
threshold of the byte storages).
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

__all__ = ["DOCUMENT", "KEYS", "RECORD", "WORKING_SET", "orders"]

WORKING_SET = 100_000
KEYS = [f"user:{i:08d}" for i in range(WORKING_SET)]

RECORD: dict[str, Any] = {
    "id": 123456,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "plan": "enterprise",
    "created": "2024-01-01T00:00:00Z",
    "roles": ["admin", "billing", "support"],
    "flags": {"beta": True, "mfa": True},
    "quota": 1_000_000,
    "region": "eu-west-1",
}

DOCUMENT: dict[str, Any] = {
    "id": "order-000123",
    "customer": RECORD,
    "lines": [
        {"sku": f"SKU-{i:05d}", "title": f"Item number {i} of the order", "qty": i % 7 + 1}
        | {"price": {"amount": 1999 + i, "currency": "EUR"}, "tags": ["gift", "fragile"]}
        for i in range(24)
    ],
    "notes": "Leave at the door. " * 10,
}


def orders(n: int, seed: int = 1) -> dict[str, list[str]]:
    """``n`` reads of ``KEYS``: Zipf (s = 1.0, hot keys spread out) and uniform, seeded."""
    keys = list(KEYS)
    rng = random.Random(seed)
    rng.shuffle(keys)  # the hot keys are not the first ones written
    ranks = range(WORKING_SET)
    weights = list(itertools.accumulate(1 / (r + 1) for r in ranks))
    zipf = rng.choices(ranks, cum_weights=weights, k=n)
    return {
        "zipf": [keys[r] for r in zipf],
        "uniform": [keys[rng.randrange(WORKING_SET)] for _ in range(n)],
    }


if __name__ == "__main__":
    print(len(json.dumps(RECORD)), len(json.dumps(DOCUMENT)))
