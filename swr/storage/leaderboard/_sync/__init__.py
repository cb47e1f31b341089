# Generated from swr/storage/leaderboard/_async/__init__.py by tools/unasync.py:
# edit that file, not this one.
"""The asyncio leaderboards, written once; ``../_sync`` holds their generated twins."""
