from collections.abc import Callable
from typing import Any

class EngineHit:
    __wrapped__: Callable[..., Any]
    def __init__(
        self,
        execute: Callable[..., Any],
        wall: Callable[[], float],
        entry_type: type,
        result_type: type,
        hit: object,
    ) -> None: ...
    def __set_name__(self, owner: type, name: str) -> None: ...
    def __get__(self, obj: object, owner: type | None = None) -> Any: ...
    def __call__(self, engine: Any, key: Any, fetch: Any, /) -> Any: ...
