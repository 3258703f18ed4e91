"""A dict of records kept as plain values, out of the collector's sight.

A simulator keeping a record per vehicle, request or order as an object would have every
full pass of CPython's cyclic garbage collector walk all of them (hundreds of milliseconds
for a few hundred thousand). Kept as bytes (the record's values, marshalled), they cost the
passes nothing, and a dict of strings and bytes is one the collector stops tracking (it no
longer visits its entries). A tuple of plain values is untracked too, but only once a pass
has looked at it, and the dict it goes into is tracked again. Callers read and write records;
the store keeps what ``dump`` makes of them.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Hashable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

R = TypeVar("R")
_MISSING: Any = object()


class RecordStore(MutableMapping, Generic[R]):
    __slots__ = ("_dump", "_load", "_raw")

    def __init__(self, load: Callable[[Any], R], dump: Callable[[R], Any] = tuple):
        self._raw: dict[Hashable, Any] = {}
        self._load, self._dump = load, dump

    @classmethod
    def of(cls, record: Any) -> RecordStore:
        """Records of a NamedTuple of plain values, each kept as its values marshalled."""
        return cls(lambda packed: record._make(marshal.loads(packed)), lambda value: marshal.dumps(tuple(value)))

    def __getitem__(self, key: Hashable) -> R:
        return self._load(self._raw[key])

    def get(self, key: Hashable, default: Any = None) -> Any:
        raw = self._raw.get(key)
        return default if raw is None else self._load(raw)

    def __setitem__(self, key: Hashable, value: R) -> None:
        self._raw[key] = self._dump(value)

    def __delitem__(self, key: Hashable) -> None:
        del self._raw[key]

    def pop(self, key: Hashable, default: Any = _MISSING) -> Any:
        raw = self._raw.pop(key, _MISSING)
        if raw is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return self._load(raw)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def clear(self) -> None:
        self._raw.clear()

    def raw(self, key: Hashable) -> Any:
        """What is stored for ``key``, unloaded (None if absent): a question one field answers."""
        return self._raw.get(key)

    def raw_values(self):
        """What is stored, unloaded: a scan that reads a field or two of each."""
        return self._raw.values()

    def compact(self) -> None:
        """Give back the room of removed records (a dict keeps its largest table)."""
        self._raw = dict(self._raw)

    def __repr__(self) -> str:
        return f"RecordStore({len(self._raw)} records)"


def flagged(flag: bool, values: Any) -> bytes:
    """``values`` marshalled after a byte that answers one question of the record (is it
    finished, has it a step ahead) without unmarshalling it: forgetting asks it of the
    oldest records on every call, where unmarshalling each cost a call ~0.1-0.2 ms."""
    return (b"1" if flag else b"0") + marshal.dumps(values)


def flag_of(packed: bytes) -> bool:
    return packed[:1] == b"1"


def flagged_values(packed: bytes) -> Any:
    return marshal.loads(memoryview(packed)[1:])
