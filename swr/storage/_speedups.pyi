from collections.abc import Callable
from typing import Any

from swr.storage.base import Entry

class PlainDecoder:
    max_size: int
    def __init__(
        self,
        unpackb: Callable[..., Any],
        ext_hook: Any,
        max_size: int,
        factory: Callable[[Any, float, float, float, float], Entry],
        none_slots: tuple[str, ...] | None,
    ) -> None: ...
    def decode(self, data: bytes) -> Entry | None: ...
    def decode_batch(
        self,
        keys: list[str],
        records: list[bytes | None],
        known: dict[str, Any],
        now: float,
        seen: set[str] | None,
        span: int,
    ) -> tuple[list[Entry | None], list[int], list[int]]: ...

def wants(cache: Any, key: str) -> bool: ...
