"""Integrations of swr with frameworks (import each submodule on its own)."""

__all__: list[str] = []
