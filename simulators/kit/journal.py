"""Journal: every exchange in and out of a service, in a bounded ring buffer.

Entries carry a sequence number so readers page with ``?since=seq``; the ring
drops the oldest entries and readers are told how many they missed. An
optional JSON-lines sink keeps everything for later analysis.
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

CORRELATION_HEADER = "X-Correlation-Id"


class Journal:
    def __init__(self, service: str, now: Callable[[], float], *, capacity: int = 10_000,
                 jsonl_path: str | Path | None = None, observer: Callable[[dict], None] | None = None):
        self.service = service
        self._observer = observer  # told of every entry as it is appended (the metrics)
        self._now = now
        self._entries: collections.deque[dict] = collections.deque(maxlen=capacity)
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
        entry = {"seq": self._next_seq, "vt": self._now(), "wall": time.time(), "service": self.service,
                 "kind": kind, "direction": direction, **fields}
        self._next_seq += 1
        self._entries.append(entry)
        if self._observer is not None:
            self._observer(entry)
        if self._sink is not None:
            self._sink.write(orjson.dumps(_render(entry)) + b"\n")
            self._sink.flush()

    def event(self, name: str, entities: dict[str, str] | None = None, **detail: Any) -> None:
        """A domain event (activation completed, vehicle woke up...) for per-entity timelines."""
        self.record("event", "internal", event=name, entities=entities or None,
                           detail=detail or None)

    def read(self, since: int = 0, limit: int = 1000) -> dict:
        since = min(since, self._next_seq)  # a reader ahead of the journal just gets nothing yet
        first = self._entries[0]["seq"] if self._entries else self._next_seq
        dropped = max(0, first - max(since, self._cleared_through) - 1)
        # Entries are contiguous by seq, so index arithmetic finds the start.
        start = max(0, since + 1 - first)
        entries = [_render(e) for e in itertools.islice(self._entries, start, start + limit)]
        nxt = entries[-1]["seq"] if entries else max(since, first - 1)
        return {"entries": entries, "next": nxt, "dropped": dropped}

    def entries(self) -> list[dict]:
        return [_render(e) for e in self._entries]

    def violations(self) -> list[dict]:
        return [_render(e) for e in self._entries if e["kind"] == "violation"]

    def clear(self) -> int:
        removed = len(self._entries)
        self._entries.clear()
        self._cleared_through = self._next_seq - 1
        return removed

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None


def _render(entry: dict) -> dict:
    return {**entry, "vt": isoformat(entry["vt"]), "wall": wall_isoformat(entry["wall"])}
