"""The httpx transport as asyncio code: the only copy written by hand.

``tools/unasync.py`` generates its thread twin in ``swr/http/_sync/``.
"""
