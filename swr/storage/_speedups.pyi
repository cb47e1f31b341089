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
        seen: set[str] | SeenKeys | None,
        span: int,
    ) -> tuple[list[Entry | None], list[int], list[int]]: ...

def wants(cache: Any, key: str) -> bool: ...

class SeenKeys:
    def __init__(self, span: int) -> None: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def add(self, key: str, /) -> None: ...
    def discard(self, key: str, /) -> None: ...
    def clear(self) -> None: ...
