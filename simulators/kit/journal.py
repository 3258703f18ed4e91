"""Journal: every exchange in and out of a service, in a bounded ring buffer.

Entries carry a sequence number so readers page with ``?since=seq``; the ring
drops the oldest entries and readers are told how many they missed. An
optional JSON-lines sink keeps everything for later analysis.

An entry is kept as a tuple of its header and its fields as JSON bytes, not as
dicts: a full ring then costs a few MB, and the garbage collector does not track
it (a ring of dicts was ten thousand long-lived containers it walked on every
full pass). Entries become dicts again when read.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from .clock import isoformat, wall_isoformat
from .entities import resolve
from .packed import packed as pack

CORRELATION_HEADER = "X-Correlation-Id"


class Journal:
    def __init__(self, service: str, now: Callable[[], float], *, capacity: int = 10_000,
                 jsonl_path: str | Path | None = None, observer: Callable[[str, str, dict], None] | None = None):
        self.service = service
        self._observer = observer  # told (kind, direction, fields) of every entry appended (the metrics)
        self._now = now
        # (seq, vt, wall, kind, direction, fields as JSON bytes, or the dict when not JSON)
        self._entries: collections.deque[tuple] = collections.deque(maxlen=capacity)
        self._next_seq = 1
        self._cleared_through = 0  # entries up to this seq were cleared on purpose, not dropped
        # Open for the journal's lifetime; close() ends it (the app's cleanup calls it).
        self._sink: IO[bytes] | None = open(jsonl_path, "ab") if jsonl_path else None  # noqa: SIM115

    def record(self, kind: str, direction: str, **fields: Any) -> None:
        self.append(kind, direction, {key: value for key, value in fields.items() if value is not None})

    def append(self, kind: str, direction: str, fields: dict) -> None:
        """``record`` for the hot path: ``fields`` holds no None and is not copied."""
        # Times stay floats here and become ISO text when read: formatting
        # them on every request would cost more than the rest of the entry.
        seq, vt, wall = self._next_seq, self._now(), time.time()
        self._next_seq += 1
        try:
            packed = pack(fields)
        except TypeError:  # not JSON (a test's odd value): kept as it is
            packed = dict(fields)
        self._entries.append((seq, vt, wall, kind, direction, packed))
        if self._observer is not None:
            self._observer(kind, direction, fields)
        if self._sink is not None:
            self._sink.write(orjson.dumps(self._render((seq, vt, wall, kind, direction, packed))) + b"\n")
            self._sink.flush()

    def event(self, name: str, entities: dict[str, str] | None = None, **detail: Any) -> None:
        """A domain event (activation completed, vehicle woke up...) for per-entity timelines."""
        fields: dict[str, Any] = {"event": name}  # as ``record`` would keep them, without its copy
        if entities:
            fields["entities"] = entities
        if detail:
            fields["detail"] = detail
        self.append("event", "internal", fields)

    def read(self, since: int = 0, limit: int = 1000) -> dict:
        since = min(since, self._next_seq)  # a reader ahead of the journal just gets nothing yet
        first = self._entries[0][0] if self._entries else self._next_seq
        dropped = max(0, first - max(since, self._cleared_through) - 1)
        # Entries are contiguous by seq, so index arithmetic finds the start.
        start = max(0, since + 1 - first)
        entries = [self._render(e) for e in itertools.islice(self._entries, start, start + limit)]
        nxt = entries[-1]["seq"] if entries else max(since, first - 1)
        return {"entries": entries, "next": nxt, "dropped": dropped}

    def entries(self) -> list[dict]:
        return [self._render(e) for e in self._entries]

    def violations(self) -> list[dict]:
        return [self._render(e) for e in self._entries if e[3] == "violation"]

    def clear(self) -> int:
        removed = len(self._entries)
        self._entries.clear()
        self._cleared_through = self._next_seq - 1
        return removed

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None


    def _render(self, entry: tuple) -> dict:
        seq, vt, wall, kind, direction, packed = entry
        fields = resolve(orjson.loads(packed) if isinstance(packed, bytes) else packed)
        return {"seq": seq, "vt": isoformat(vt), "wall": wall_isoformat(wall), "service": self.service,
                "kind": kind, "direction": direction, **fields}
