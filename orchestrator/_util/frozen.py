"""An immutable, hashable mapping, so that frozen specs holding one stay hashable. Pure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """An immutable, hashable mapping (so specs holding one stay hashable)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[K, V] | Sequence[tuple[K, V]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._data: dict[K, V] = dict(pairs)
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def freeze_str_map(items: Mapping[str, str] | Sequence[tuple[str, str]]) -> FrozenMap[str, str]:
    """A FrozenMap of strings from a mapping or pairs (an attrs converter)."""
    return items if isinstance(items, FrozenMap) else FrozenMap(items)
