"""The asyncio leaderboards, written once; ``../_sync`` holds their generated twins."""
