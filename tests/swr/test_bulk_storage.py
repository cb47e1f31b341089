"""MemoryStorage's bulk verbs and tag index, directly and through its asyncio view."""

from __future__ import annotations

import asyncio

import pytest

from swr.storage import AsyncAdapter, MemoryStorage
from swr.storage.adapters import (
    async_bulk_verbs_of,
    async_tag_index_of,
    bulk_verbs_of,
    tag_index_of,
)
from swr.storage.base import (
    AsyncBulkVerbs,
    AsyncTagIndex,
    BulkVerbs,
    Entry,
    EntryTimes,
    StorageMixin,
    TagIndex,
)
from swr.storage.errors import StorageUnavailableError

NOW = 1_000.0


def entry(value: object, life: float = 100.0) -> Entry:
    return Entry(value, NOW, NOW + life / 4, NOW + life / 2, NOW + life)


@pytest.fixture
def store() -> MemoryStorage:
    return MemoryStorage(clock=lambda: NOW)


def test_memory_declares_the_capabilities(store: MemoryStorage) -> None:
    assert isinstance(store, BulkVerbs)
    assert isinstance(store, TagIndex)
    assert bulk_verbs_of(store) is store
    assert tag_index_of(store) is store
    view = store.as_async()
    assert async_bulk_verbs_of(view) is view
    assert async_tag_index_of(view) is view


def test_delete_many_counts_what_was_there(store: MemoryStorage) -> None:
    store.set_many({"a": entry(1), "b": entry(2), "c": entry(3)})
    assert store.delete_many(["a", "b", "zz"]) == 2
    assert store.get("a") is None
    assert store.get("c") is not None


def test_exists_does_not_count_dead_entries(store: MemoryStorage) -> None:
    store.set("live", entry(1))
    store.set("dead", Entry(1, 0.0, 1.0, 2.0, 3.0))
    assert store.exists("live")
    assert not store.exists("dead")
    assert not store.exists("absent")


def test_touch_renews_windows_and_keeps_the_value_object(store: MemoryStorage) -> None:
    value = {"big": "payload"}
    store.set("k", entry(value))
    times = EntryTimes(NOW + 1, NOW + 50, NOW + 60, NOW + 70)
    assert store.touch("k", times)
    got = store.get("k")
    assert got is not None
    assert got.value is value
    assert (got.stored_at, got.fresh_until, got.stale_until, got.expires_at) == tuple(times)
    assert not store.touch("absent", times)


def test_scan_is_literal_and_skips_dead_entries(store: MemoryStorage) -> None:
    store.set_many({"u:1": entry(1), "u:2": entry(2), "u*": entry(3), "v:1": entry(4)})
    store.set("u:dead", Entry(1, 0.0, 1.0, 2.0, 3.0))
    assert sorted(store.scan("u:")) == ["u:1", "u:2"]
    assert list(store.scan("u*")) == ["u*"]
    assert len(list(store.scan())) == 4


def test_tags_follow_rewrites_deletes_and_evictions() -> None:
    store = MemoryStorage(max_entries=3, clock=lambda: NOW)
    store.set_tagged("a", entry(1), ["t1", "t2", "t1"])
    store.set_tagged("b", entry(2), ["t2"])
    store.set("a", entry(1))  # rewritten untagged: no longer under t1/t2
    assert store.invalidate_tags(["t1"]) == 0
    store.set_tagged("c", entry(3), ["t3"])
    store.delete("c")
    store.set("c", entry(3))
    assert store.invalidate_tags(["t3"]) == 0
    store.set_tagged("d", entry(4), ["t2"])
    store.set_many({"e": entry(5), "f": entry(6), "g": entry(7)})  # evicts b and d
    assert store.invalidate_tags(["t2"]) == 0
    assert store._tagged == {}
    assert store._tags_of == {}


def test_invalidate_tags_removes_every_entry_carrying_one(store: MemoryStorage) -> None:
    store.set_tagged("a", entry(1), ["user:1", "org:7"])
    store.set_tagged("b", entry(2), ["org:7"])
    store.set_tagged("c", entry(3), ["user:3"])
    assert store.invalidate_tags(["org:7", "none"]) == 2
    assert store.get("a") is None
    assert store.get("c") is not None
    assert store.invalidate_tags(["user:1"]) == 0


def test_clear_and_close_drop_the_tag_index(store: MemoryStorage) -> None:
    store.set_tagged("a", entry(1), ["t"])
    store.clear()
    assert len(store) == 0
    assert store.invalidate_tags(["t"]) == 0
    store.close()
    with pytest.raises(StorageUnavailableError):
        store.delete_many(["a"])
    with pytest.raises(StorageUnavailableError):
        list(store.scan())


@pytest.mark.parametrize("inline", [True, False])
def test_the_asyncio_view_offers_every_verb(inline: bool) -> None:
    sync = MemoryStorage(clock=lambda: NOW)
    view = AsyncAdapter(sync, inline=inline)

    async def main() -> None:
        assert isinstance(view, AsyncBulkVerbs)
        assert isinstance(view, AsyncTagIndex)
        await view.set_tagged("a", entry(1), ["t"])
        await view.set("b", entry(2))
        assert await view.exists("a")
        assert sorted([key async for key in view.scan("")]) == ["a", "b"]
        assert await view.touch("b", EntryTimes(NOW, NOW + 1, NOW + 2, NOW + 3))
        assert await view.invalidate_tags(["t"]) == 1
        assert await view.delete_many(["b"]) == 1
        await view.set("c", entry(3))
        await view.clear()
        assert len(sync) == 0

    asyncio.run(main())


class _Plain(StorageMixin):
    def get(self, key: str) -> Entry | None:
        return None

    def set(self, key: str, entry: Entry) -> None:
        pass

    def delete(self, key: str) -> bool:
        return False


def test_the_asyncio_view_of_a_storage_without_verbs_refuses_them() -> None:
    view = AsyncAdapter(_Plain())
    assert async_bulk_verbs_of(view) is None
    assert async_tag_index_of(view) is None

    async def main() -> None:
        with pytest.raises(TypeError, match="does not offer delete_many"):
            await view.delete_many(["a"])
        with pytest.raises(TypeError, match="does not offer scan"):
            [key async for key in view.scan("")]
        with pytest.raises(TypeError, match="does not offer exists"):
            await view.exists("a")
        with pytest.raises(TypeError, match="does not offer invalidate_tags"):
            await view.invalidate_tags(["t"])

    asyncio.run(main())


def test_wants_entry_reads_the_arity_of_every_kind_of_callable() -> None:
    import functools

    from swr._bulk import wants_entry

    def none() -> int:
        return 1

    def one_arg(entry: object) -> int:
        return 1

    def two(a: object, b: object) -> int:
        return 1

    def star(*args: object) -> int:
        return 1

    class Upstream:
        def fetch(self, entry: object) -> int:
            return 1

        def __call__(self) -> int:
            return 1

    assert not wants_entry(none)
    assert wants_entry(one_arg)
    assert not wants_entry(lambda x=1: x)
    assert wants_entry(functools.partial(two, 1))
    assert not wants_entry(functools.partial(two, 1, 2))
    assert not wants_entry(functools.partial(two, b=2, a=1))
    assert not wants_entry(star)
    assert wants_entry(Upstream().fetch)
    assert not wants_entry(Upstream())
    assert not wants_entry(dict)
