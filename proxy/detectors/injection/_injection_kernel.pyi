from typing import TypeVar

_T = TypeVar("_T", bound=tuple[str, int, int])

def segments(text: str, max_segment: int, cls: type[_T], /) -> list[_T]: ...
