# Generated from swr/storage/pool/_async/__init__.py by tools/unasync.py:
# edit that file, not this one.
"""The pool's batch loader: the asyncio source in ``_async``, its thread twin in ``_sync``."""
