"""The on-disk format of an swr LMDB store: its databases, index keys and key checks."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import lmdb

from swr.storage.errors import (
    CorruptEntryError,
)

if TYPE_CHECKING:
    from swr.storage.lmdb._files import _Options

_ENTRIES: Final = b"swr-entries"
_EXPIRY: Final = b"swr-expiry"
_LEASES: Final = b"swr-leases"
_META: Final = b"swr-meta"
# Tag -> the storage keys recorded under it (a dupsort database: one sorted set of keys
# per tag). Created on first open by this version; older stores gain it then.
_TAGS: Final = b"swr-tags"
_OUR_DBS: Final = frozenset((_ENTRIES, _EXPIRY, _LEASES, _META, _TAGS))
_LAYOUT_KEY: Final = b"layout"
_LAYOUT_VERSION: Final = 1
# Sorts after every index key: the largest sortable finite double starts 0xffef.
_TOTAL_KEY: Final = b"\xff\xffbytes"
_STAMP: Final = 8  # bytes of sortable expires_at in front of an index key
_LOW_WATER: Final = 0.9  # eviction frees down to this share of max_bytes: batches, not one-by-one
_BATCH: Final = 256  # most removals per sweep transaction
_I64: Final = struct.Struct("<q")
_U64: Final = struct.Struct(">Q")
_F64: Final = struct.Struct(">d")
_PACK_F64: Final = _F64.pack
_LEASE: Final = struct.Struct("<16sd")
_EXPIRES: Final = struct.Struct("<d")
_TIMES: Final = struct.Struct("<4d")
_TIMES_OFFSET: Final = 4  # magic, version, flags, then the four times
_EXPIRES_OFFSET: Final = 28  # magic, version, flags, then stored/fresh/stale (8 bytes each)
_HEADER_END: Final = 38
_CHECK_MAX: Final = 0xFFFF  # longest key check a record holds (a 16-bit length)
_SIGN: Final = 1 << 63
_ALL_BITS: Final = (1 << 64) - 1


def _long_key_check(raw: bytes) -> bytes:
    """The key check of a key longer than a record can hold (its length is 16 bits).

    Such a key is stored under its prefix and BLAKE2b-256 digest (:func:`digest_key`);
    the record holds its length and SHA-512 digest instead of the key itself, so two
    keys could only be confused by colliding in both digests at once. The leading
    0xff byte never starts a UTF-8 key, so this never equals a short key's check.
    """
    return b"\xff" + len(raw).to_bytes(8, "big") + hashlib.sha512(raw).digest()


def _stamp(expires_at: float) -> bytes:
    """Return 8 bytes whose byte order is the numeric order of ``expires_at``.

    A number > 0 (every real expiry) keeps its big-endian bits with the sign bit set:
    exactly the bits of its negation, packed in one call.
    """
    if expires_at > 0.0:
        return _PACK_F64(-expires_at)
    (bits,) = _U64.unpack(_F64.pack(expires_at))
    return _U64.pack(bits ^ _ALL_BITS if bits & _SIGN else bits | _SIGN)


def _index_key(record: bytes, kb: bytes) -> bytes:
    """The index key of ``record`` stored under ``kb``; empty if its header is unreadable.

    Reads ``expires_at`` straight from its offset in the header (see storage._record):
    deleting a wrong index key is harmless, so this needs none of decode's checks.
    """
    if len(record) < _HEADER_END or record[:2] != b"SW":
        return b""
    return _stamp(_EXPIRES.unpack_from(record, _EXPIRES_OFFSET)[0]) + kb


class _Index:
    """The transaction bodies that keep the entries, the index and the byte total in step.

    Mixed into the backend, which provides the database handles, ``times`` (reads a
    record header) and ``options``. Each method runs inside one write transaction.
    """

    entries: lmdb._Database
    expiry: lmdb._Database
    leases: lmdb._Database
    tags: lmdb._Database
    options: _Options
    times: Callable[[bytes], tuple[float, float, float, float]]

    @staticmethod
    def total(txn: lmdb.Transaction[bytes], expiry: lmdb._Database) -> int:
        raw = txn.get(_TOTAL_KEY, db=expiry)
        return _I64.unpack(raw)[0] if raw is not None and len(raw) == _I64.size else 0

    def put(self, txn: lmdb.Transaction[bytes], items: list[tuple[bytes, bytes, bytes]]) -> int:
        """Store ``(key, record, index key)`` items, evict if over the bound; return evictions.

        A write that adds no bytes (a record replaced by one of the same size, the
        common refresh) leaves the byte total alone: one B-tree fewer to touch.
        """
        entries, expiry = self.entries, self.expiry
        added = 0
        for kb, record, ikey in items:
            old = txn.replace(kb, record, db=entries)
            if old is None:
                added += len(kb) + len(record)
            else:
                added += len(record) - len(old)
                old_ikey = _index_key(old, kb)
                if old_ikey == ikey:
                    continue  # same expiry: the index already holds this key
                if old_ikey:
                    txn.delete(old_ikey, db=expiry)
            txn.put(ikey, b"", db=expiry)
        if not added:
            return 0
        total = self.total(txn, expiry) + added
        evicted = 0
        limit = self.options.max_bytes
        if total > limit:
            total, evicted = self._evict(txn, total, int(limit * _LOW_WATER), items)
            if total > limit:  # a batch bigger than the bound: its own shortest-lived go too
                total, more = self._evict(txn, total, limit, ())
                evicted += more
        txn.put(_TOTAL_KEY, _I64.pack(max(total, 0)), db=expiry)
        return evicted

    def _evict(
        self,
        txn: lmdb.Transaction[bytes],
        total: int,
        target: int,
        keep: Sequence[tuple[bytes, bytes, bytes]],
    ) -> tuple[int, int]:
        """Remove entries from the front of the index until ``total <= target``.

        The ``(key, record, index key)`` items of ``keep`` (just written) stay: their
        index keys are out of the index meanwhile. Every removal finds the front
        afresh with ``first()``, a search LMDB checks page by page (a damaged page is
        an error); stepping a cursor to the next page asserts instead (SIGABRT).
        """
        entries, expiry = self.entries, self.expiry
        for _, _, ikey in keep:
            txn.delete(ikey, db=expiry)
        cursor = txn.cursor(db=expiry)
        evicted = 0
        while total > target:
            ikey = cursor.key() if cursor.first() else b""
            if not ikey or ikey == _TOTAL_KEY:
                # Nothing left to evict: the total counted more than is stored (it was
                # damaged); what remains is about what was just written.
                total = sum(len(kb) + len(record) for kb, record, _ in keep)
                break
            freed = self._drop_indexed(txn, entries, ikey[_STAMP:], ikey)
            txn.delete(ikey, db=expiry)
            if freed:
                total -= freed
                evicted += 1
        for _, _, ikey in keep:
            txn.put(ikey, b"", db=expiry)
        return total, evicted

    def _drop_indexed(
        self, txn: lmdb.Transaction[bytes], entries: lmdb._Database, kb: bytes, ikey: bytes
    ) -> int:
        """Delete the record the index key ``ikey`` points at, if it still does.

        Returns the bytes freed (0 for a stale index key). The caller deletes ``ikey``.
        """
        record = txn.get(kb, db=entries)
        if record is None:
            return 0
        try:
            current = _stamp(self.times(record)[3])
        except CorruptEntryError:
            current = b""  # unreadable header: the record goes too
        if current and current != ikey[:_STAMP]:
            return 0  # the key was rewritten with another expiry: a stale index key
        txn.delete(kb, db=entries)
        return len(kb) + len(record)

    def sweep_batch(self, txn: lmdb.Transaction[bytes], stamp: bytes) -> tuple[int, bool]:
        """Remove up to ``_BATCH`` entries whose expiry is at or before ``stamp``.

        Returns ``(removed, more)`` where ``more`` says the batch limit was reached.
        """
        expiry = self.expiry
        total = self.total(txn, expiry)
        cursor = txn.cursor(db=expiry)
        removed = seen = 0
        while seen < _BATCH:
            ikey = cursor.key() if cursor.first() else b""  # checked search, see _evict
            if not ikey or ikey == _TOTAL_KEY or ikey[:_STAMP] > stamp:
                break
            seen += 1
            freed = self._drop_indexed(txn, self.entries, ikey[_STAMP:], ikey)
            txn.delete(ikey, db=expiry)
            if freed:
                total -= freed
                removed += 1
        txn.put(_TOTAL_KEY, _I64.pack(max(total, 0)), db=expiry)
        return removed, seen >= _BATCH

    def sweep_leases(self, txn: lmdb.Transaction[bytes], now: float) -> int:
        """Remove the leases past their expiry (left by holders that died)."""
        cursor = txn.cursor(db=self.leases)
        removed = 0
        positioned = cursor.first()
        while positioned and cursor.key():
            value = cursor.value()
            if len(value) != _LEASE.size or _LEASE.unpack(value)[1] <= now:
                positioned = cursor.delete()
                removed += 1
            else:
                positioned = cursor.next()
        return removed

    def drop_if_same(self, txn: lmdb.Transaction[bytes], kb: bytes, data: bytes) -> bool:
        """Delete the record of ``kb`` only if it still holds ``data`` (a corrupt record)."""
        if txn.get(kb, db=self.entries) != data:
            return False
        txn.delete(kb, db=self.entries)
        ikey = _index_key(data, kb)
        if ikey:
            txn.delete(ikey, db=self.expiry)
        total = self.total(txn, self.expiry) - len(kb) - len(data)
        txn.put(_TOTAL_KEY, _I64.pack(max(total, 0)), db=self.expiry)
        return True

    def delete(self, txn: lmdb.Transaction[bytes], kb: bytes) -> bool:
        old = txn.pop(kb, db=self.entries)
        if old is None:
            return False
        ikey = _index_key(old, kb)
        if ikey:
            txn.delete(ikey, db=self.expiry)
        total = self.total(txn, self.expiry) - len(kb) - len(old)
        txn.put(_TOTAL_KEY, _I64.pack(max(total, 0)), db=self.expiry)
        return True

    def purge(self, txn: lmdb.Transaction[bytes], leases: bool) -> int:
        """Remove every entry, and every lease if ``leases``; return the entries removed."""
        count = txn.stat(self.entries)["entries"]
        txn.drop(self.entries, delete=False)
        txn.drop(self.expiry, delete=False)
        txn.drop(self.tags, delete=False)  # every key they name is gone
        if leases:
            txn.drop(self.leases, delete=False)
        txn.put(_TOTAL_KEY, _I64.pack(0), db=self.expiry)
        return count

    def put_and_release(
        self,
        txn: lmdb.Transaction[bytes],
        items: list[tuple[bytes, bytes, bytes]],
        kb: bytes,
        token: bytes,
    ) -> int:
        """:meth:`put` and :meth:`release` in one transaction; return the evictions."""
        evicted = self.put(txn, items)
        self.release(txn, kb, token)
        return evicted

    def acquire(
        self, txn: lmdb.Transaction[bytes], kb: bytes, token: bytes, now: float, until: float
    ) -> bool:
        held = txn.get(kb, db=self.leases)
        if held is not None and len(held) == _LEASE.size and _LEASE.unpack(held)[1] > now:
            return False
        txn.put(kb, _LEASE.pack(token, until), db=self.leases)
        return True

    def release(self, txn: lmdb.Transaction[bytes], kb: bytes, token: bytes) -> None:
        held = txn.get(kb, db=self.leases)
        if held is not None and held[:16] == token:
            txn.delete(kb, db=self.leases)

    def delete_many(self, txn: lmdb.Transaction[bytes], kbs: Sequence[bytes]) -> int:
        """Delete the records of ``kbs``; return how many were there."""
        return sum(self.delete(txn, kb) for kb in dict.fromkeys(kbs))

    def touch(self, txn: lmdb.Transaction[bytes], kb: bytes, times: bytes, now: float) -> bool:
        """Replace the four times of the live record of ``kb`` with the packed ``times``.

        The payload bytes are copied as they are (never decoded or re-encoded); the
        expiry index follows the new ``expires_at``. Returns whether a live record was
        there.
        """
        record = txn.get(kb, db=self.entries)
        if record is None or len(record) < _HEADER_END or record[:2] != b"SW":
            return False
        if _EXPIRES.unpack_from(record, _EXPIRES_OFFSET)[0] <= now:
            return False
        end = _TIMES_OFFSET + _TIMES.size
        renewed = b"".join((record[:_TIMES_OFFSET], times, record[end:]))
        expires = _TIMES.unpack(times)[3]
        self.put(txn, [(kb, renewed, _stamp(expires) + kb)])
        return True

    def put_tagged(
        self,
        txn: lmdb.Transaction[bytes],
        items: list[tuple[bytes, bytes, bytes]],
        tags: Sequence[bytes],
    ) -> int:
        """:meth:`put` one item and record its key under each of ``tags``; return evictions."""
        evicted = self.put(txn, items)
        kb = items[0][0]
        for tag in tags:
            txn.put(tag, kb, db=self.tags)  # dupsort: a pair already there is kept once
        return evicted

    def invalidate(self, txn: lmdb.Transaction[bytes], tags: Sequence[bytes]) -> int:
        """Delete every record named under one of ``tags`` and the tags' rows.

        A key recorded under a tag and later rewritten without it still goes: an
        invalidation may remove more than needed (a miss), never less. Returns the
        records deleted.
        """
        cursor = txn.cursor(db=self.tags)
        kbs: dict[bytes, None] = {}
        for tag in tags:
            if cursor.set_key(tag):
                kbs.update(dict.fromkeys(cursor.iternext_dup()))
                txn.delete(tag, db=self.tags)  # the tag with all its keys
        return sum(self.delete(txn, kb) for kb in kbs)
