"""LMDBStorage: a durable cache directory shared by the processes of one host.

The package, one job per module:

- ``storage``: :class:`LMDBStorage`, the public class (keys, reads, writes, views).
- ``_process``: one environment per directory and process (``_Backend``), the
  registry, write transactions, fork hooks and recovery from a damaged store.
- ``_files``: opening the files, allocating them, map sizes across processes, and
  moving a damaged store aside.
- ``_format``: the databases, the expiry index and the byte total, and the
  transaction bodies that keep them in step.
- ``_inspect``: :func:`inspect_store` and :func:`purge_store` (``python -m swr``).

How it works
------------
A directory holds one LMDB environment with four named databases:

- ``swr-entries``: storage key -> record (the layout of :mod:`storage._record`).
- ``swr-expiry``: the expiry index, ``sortable(expires_at) + storage key`` -> empty.
  Its last key, ``_TOTAL_KEY``, holds the running byte total of the entries. Read
  from the front, the index lists the entries already dead first, then those closest
  to their end of life: eviction and the sweep only ever touch what they remove.
- ``swr-leases``: storage key -> 16-byte token + expiry (a little-endian double).
- ``swr-meta``: the layout version, written once when the store is created.

Each process opens the environment once (py-lmdb refuses a second open of the same
files in one process) in a ``_Backend``, shared by every :class:`LMDBStorage` on that
directory in the process and by their serializer views. Every change is one LMDB write
transaction, atomic across processes and crashes, so these always hold after a commit:

- each record has one index key, built from its own ``expires_at`` (a record whose
  header is unreadable may leave a stale index key; the index walk drops it);
- the byte total is the sum of ``len(key) + len(record)`` over the entries;
- after a write that adds bytes, the total is at most ``max_bytes``.

Reads take one read transaction (py-lmdb reuses one reset transaction per process,
which spares the reader-table mutex all processes share) and one ``get``. Decoded
entries are kept in a small per-view cache keyed by the caller's key and validated
against the stored bytes on every read, so a value changed by any process is never
served from it (once full, it keeps a key on its second recent read and evicts its
oldest eighth at once); the engines read through a view that decodes into their own entries
(``with_entry_factory``), so a hit allocates nothing.

Threads of a process write one at a time (``_Backend.wlock``); growing the map happens
under that lock, and py-lmdb invalidates read transactions racing it, which the read
path retries.

Commits write pages straight into the memory map (LMDB's ``writemap``), about three
times cheaper than writing them through the file. Two rules keep that safe, both kept
under an ``flock`` of the data file that orders map size changes across processes
(:func:`_remap`): the file is allocated on disk up to the end of the map before the map
is used (a hole written on a full disk would be a SIGBUS, not an error), and no process
ever maps less than the whole file (LMDB truncates the file to the size a process maps,
which would cut off pages another process maps). On copy-on-write filesystems, where
allocating up front reserves nothing, LMDB writes through the file instead.

Around ``os.fork()`` the process waits for in-flight transactions to end, so the child
can close the inherited environment safely and reopen its own on first use.

Damage (``MDB_CORRUPTED``, ``MDB_PAGE_NOTFOUND``, a layout record that does not parse)
found at open or by any operation moves the directory aside and creates a new store
(``_files._move_aside``, ``_process._recover``); the operation then runs again on the
new store. Other processes notice the new data file at the path (its inode) within a
second and reopen it. Walks over every record (``summary``, ``inspect``) run in a
child process: LMDB aborts a process whose cursor steps onto a damaged page.
"""

from swr.storage.lmdb._inspect import StoreSummary, inspect_store, purge_store
from swr.storage.lmdb.storage import LMDBStorage

__all__ = ["LMDBStorage", "StoreSummary", "inspect_store", "purge_store"]
