"""The engines and decorators as asyncio code: the only copy written by hand.

``tools/unasync.py`` generates their thread twins in ``swr/_sync/``.
"""
