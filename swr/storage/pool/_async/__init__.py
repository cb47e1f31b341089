"""The pool's batch loader: the asyncio source in ``_async``, its thread twin in ``_sync``."""
