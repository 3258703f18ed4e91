"""JSON bytes to keep: ``orjson.dumps`` in a bytes object of its own size.

orjson writes into a buffer of a few kilobytes and hands that buffer over as the
bytes object, length set, capacity kept: a body stored for later (a journal entry, an
idempotent answer, a webhook awaiting its retry) would hold ~4 KB for a hundred bytes.
A copy costs ~0.2 µs.
"""

from __future__ import annotations

from typing import Any

import orjson


def packed(value: Any) -> bytes:
    return bytes(memoryview(orjson.dumps(value)))
