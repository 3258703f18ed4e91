"""A dict of records (NamedTuples) kept as plain tuples, out of the collector's sight.

CPython's cyclic garbage collector stops tracking a tuple once it finds it holds only
atomic values (strings, numbers, None, other such tuples), but only an exact tuple: a
NamedTuple stays tracked for life. A simulator keeping a record per vehicle or request
would have every full pass walk all of them (hundreds of milliseconds for a few hundred
thousand). Stored as plain tuples, they cost the passes nothing; callers still read and
write NamedTuples.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

R = TypeVar("R")
_MISSING: Any = object()


class RecordStore(MutableMapping, Generic[R]):
    __slots__ = ("_dump", "_load", "_raw")

    def __init__(self, load: Callable[[tuple], R], dump: Callable[[R], tuple] = tuple):
        self._raw: dict[Hashable, tuple] = {}
        self._load, self._dump = load, dump

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
