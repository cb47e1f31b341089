"""A MemoryPool against a plain model: random registrations, writes, reads, deletes,
clock moves and GC passes; after every step both hold the same keys in the same queue
order (second chance: a hit marks its key, which the next eviction passing it moves to
the back, unmarked) with the same values and counters.

The model is written from the eviction rules alone, with lists and linear scans:
it knows nothing of deques, heaps or lazy records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from swr.storage import MemoryPool, PoolCapacityError
from swr.testing import FakeClock

KEYS = st.integers(min_value=0, max_value=5)


@dataclass
class ModelEntry:
    value: int
    deadline: float
    seq: int  # write order, breaking deadline ties


@dataclass
class ModelCache:
    name: str
    index: int
    min: int
    max: int | None
    ttl: float | None
    priority: int
    limit: int = 0
    entries: list[tuple[int, ModelEntry]] = field(default_factory=list)  # queue order
    marked: set[int] = field(default_factory=set)  # hit since queued
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0

    def find(self, key: int) -> int | None:
        for i, (k, _) in enumerate(self.entries):
            if k == key:
                return i
        return None

    def earliest_expired(self, now: float) -> tuple[float, int] | None:
        due = [(e.deadline, e.seq) for _, e in self.entries if e.deadline <= now]
        return min(due) if due else None

    def drop_earliest_expired(self, now: float) -> bool:
        first = self.earliest_expired(now)
        if first is None:
            return False
        self.marked -= {k for k, e in self.entries if (e.deadline, e.seq) == first}
        self.entries = [(k, e) for k, e in self.entries if (e.deadline, e.seq) != first]
        self.expirations += 1
        return True

    def evict_lru(self) -> None:
        for _ in range(len(self.entries)):  # at most one round of second chances
            if self.entries[0][0] not in self.marked:
                break
            self.marked.discard(self.entries[0][0])
            self.entries.append(self.entries.pop(0))
        self.marked.discard(self.entries.pop(0)[0])
        self.evictions += 1


class Model:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.caches: list[ModelCache] = []
        self.seq = 0

    @property
    def used(self) -> int:
        return sum(len(c.entries) for c in self.caches)

    def fits(self, new: ModelCache) -> bool:
        caches = [*self.caches, new]
        mins = sum(c.min for c in caches)
        if mins > self.capacity:
            return False
        return all(c.max is None or c.max <= self.capacity - (mins - c.min) for c in caches)

    def register(self, cache: ModelCache, now: float) -> None:
        self.caches.append(cache)
        self.relimit(now)

    def relimit(self, now: float) -> None:
        mins = sum(c.min for c in self.caches)
        for c in self.caches:
            c.limit = c.max if c.max is not None else self.capacity - (mins - c.min)
            while len(c.entries) > c.limit:
                if not c.drop_earliest_expired(now):
                    c.evict_lru()

    def set(self, cache: ModelCache, key: int, value: int, now: float) -> None:
        self.seq += 1
        deadline = now + cache.ttl if cache.ttl is not None else math.inf
        new = ModelEntry(value, deadline, self.seq)
        i = cache.find(key)
        if i is not None:
            cache.entries.pop(i)
            cache.entries.append((key, new))
            return
        if len(cache.entries) >= cache.limit:
            if cache.limit == 0:
                return
            if not cache.drop_earliest_expired(now):
                cache.evict_lru()
        elif self.used >= self.capacity:
            self.make_room(cache, now)
        cache.entries.append((key, new))

    def make_room(self, writer: ModelCache, now: float) -> None:
        due = [(c.earliest_expired(now), c.index, c) for c in self.caches]
        due = [d for d in due if d[0] is not None]
        if due:
            min(due, key=lambda d: (d[0][0], d[1]))[2].drop_earliest_expired(now)
            return
        for priority in sorted({c.priority for c in self.caches}):
            group = [c for c in self.caches if c.priority == priority]
            over = [(len(c.entries) - c.min, -c.index, c) for c in group]
            best = max(over, key=lambda o: (o[0], o[1]))
            if best[0] > 0:
                best[2].evict_lru()
                return
        writer.evict_lru()

    def get(self, cache: ModelCache, key: int, now: float) -> int | None:
        i = cache.find(key)
        if i is None:
            cache.misses += 1
            return None
        e = cache.entries[i][1]
        if e.deadline <= now:
            cache.entries.pop(i)
            cache.marked.discard(key)
            cache.expirations += 1
            cache.misses += 1
            return None
        cache.marked.add(key)
        cache.hits += 1
        return e.value

    def delete(self, cache: ModelCache, key: int) -> bool:
        i = cache.find(key)
        if i is None:
            return False
        cache.entries.pop(i)
        cache.marked.discard(key)
        return True

    def collect(self, now: float) -> int:
        dropped = 0
        for c in self.caches:
            while c.drop_earliest_expired(now):
                dropped += 1
        return dropped


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.pool: MemoryPool | None = None
        self.model: Model | None = None
        self.real: dict[str, object] = {}
        self.counter = 0

    @initialize(capacity=st.integers(min_value=1, max_value=8))
    def make_pool(self, capacity: int) -> None:
        self.pool = MemoryPool(capacity=capacity, gc_interval=None, clock=self.clock)
        self.model = Model(capacity)

    @precondition(lambda self: len(self.model.caches) < 4)
    @rule(
        low=st.integers(min_value=0, max_value=4),
        extra=st.one_of(st.none(), st.integers(min_value=0, max_value=6)),
        ttl=st.one_of(st.none(), st.sampled_from([1.0, 2.0, 3.0])),
        priority=st.integers(min_value=0, max_value=2),
    )
    def register(self, low: int, extra: int | None, ttl: float | None, priority: int) -> None:
        name = f"c{self.counter}"
        self.counter += 1
        high = None if extra is None else low + extra
        candidate = ModelCache(name, self.counter, low, high, ttl, priority)
        try:
            cache = self.pool.register(name, min=low, max=high, ttl=ttl, priority=priority)
        except PoolCapacityError:
            assert not self.model.fits(candidate)
            return
        assert self.model.fits(candidate)
        self.real[name] = cache
        self.model.register(candidate, self.clock())
        self.check_same()

    def pick(self, data: st.DataObject) -> tuple[ModelCache, object]:
        cache = data.draw(st.sampled_from(self.model.caches))
        return cache, self.real[cache.name]

    @precondition(lambda self: self.model.caches)
    @rule(data=st.data(), key=KEYS)
    def set(self, data: st.DataObject, key: int) -> None:
        cache, real = self.pick(data)
        self.counter += 1
        now = self.clock()
        before = {c.name: {k for k, e in c.entries if e.deadline > now} for c in self.model.caches}
        sizes = {c.name: len(c.entries) for c in self.model.caches}
        real.set(key, self.counter)
        self.model.set(cache, key, self.counter, now)
        self.check_same()
        # No cache loses a live entry to another cache's write while at or below its min.
        for other in self.model.caches:
            if other is cache:
                continue
            lost_live = before[other.name] - set(self.real[other.name].keys())
            if lost_live:
                assert sizes[other.name] > other.min

    @precondition(lambda self: self.model.caches)
    @rule(data=st.data(), key=KEYS)
    def get(self, data: st.DataObject, key: int) -> None:
        cache, real = self.pick(data)
        assert real.get(key) == self.model.get(cache, key, self.clock())

    @precondition(lambda self: self.model.caches)
    @rule(data=st.data(), key=KEYS)
    def delete(self, data: st.DataObject, key: int) -> None:
        cache, real = self.pick(data)
        assert real.delete(key) == self.model.delete(cache, key)

    @precondition(lambda self: self.model.caches)
    @rule(data=st.data())
    def close_cache(self, data: st.DataObject) -> None:
        cache, real = self.pick(data)
        real.close()
        self.model.caches.remove(cache)
        del self.real[cache.name]
        self.model.relimit(self.clock())

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 10.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def collect(self) -> None:
        assert self.pool.collect() == self.model.collect(self.clock())

    def check_same(self) -> None:
        for c in self.model.caches:
            real = self.real[c.name]
            assert real.keys() == [k for k, _ in c.entries], c.name
            assert real._marked == c.marked, c.name

    @invariant()
    def same_contents_and_counters(self) -> None:
        if self.pool is None:
            return
        self.check_same()
        stats = self.pool.stats()
        assert stats.used == self.model.used <= self.pool.capacity
        for c in self.model.caches:
            got = stats.caches[c.name]
            assert (got.size, got.hits, got.misses, got.evictions, got.expirations) == (
                len(c.entries),
                c.hits,
                c.misses,
                c.evictions,
                c.expirations,
            ), c.name
            assert got.size <= c.limit
            # Values of live entries, read without counting or touching them.
            live = {k: e.value for k, e in c.entries if e.deadline > self.clock()}
            assert {k: self.real[c.name]._peek(k) for k in live} == live

    def teardown(self) -> None:
        if self.pool is not None:
            self.pool.close()


PoolMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_pool_matches_the_model = PoolMachine.TestCase
