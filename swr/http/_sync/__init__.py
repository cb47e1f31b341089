# Generated from swr/http/_async/__init__.py by tools/unasync.py:
# edit that file, not this one.
"""The httpx transport as asyncio code: the only copy written by hand.

``tools/unasync.py`` generates its thread twin in ``swr/http/_sync/``.
"""
