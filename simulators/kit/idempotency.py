"""``Idempotency-Key`` on creating POSTs, as public payment APIs do it.

Same key and body: the first response is replayed. Same key, another body: 422.
Same key while the first request is still running: 409. Keys expire after a
day of clock time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

KEY_TTL = 86400.0


@dataclass(slots=True)
class Stored:
    fingerprint: str
    created: float
    status: int | None = None  # None while the first request is in flight
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class IdempotencyStore:
    def __init__(self, now: Callable[[], float], ttl: float = KEY_TTL):
        self._now = now
        self._ttl = ttl
        self._keys: dict[tuple[str, str], Stored] = {}

    @staticmethod
    def fingerprint(method: str, path: str, body: bytes) -> str:
        return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()

    def begin(self, scope: str, key: str, fingerprint: str) -> tuple[str, Stored]:
        """Returns ("new"|"replay"|"conflict"|"mismatch", entry)."""
        now = self._now()
        entry = self._keys.get((scope, key))
        if entry is not None and now - entry.created > self._ttl:
            entry = None
        if entry is None:
            entry = self._keys[(scope, key)] = Stored(fingerprint, now)
            return "new", entry
        if entry.fingerprint != fingerprint:
            return "mismatch", entry
        return ("conflict" if entry.status is None else "replay"), entry

    def complete(self, scope: str, key: str, status: int, body: bytes, content_type: str,
                 headers: tuple[tuple[str, str], ...]) -> None:
        entry = self._keys.get((scope, key))
        if entry is not None:
            entry.status, entry.body, entry.content_type, entry.headers = status, body, content_type, headers

    def abandon(self, scope: str, key: str) -> None:
        """The request failed before producing an answer worth replaying: allow a retry."""
        self._keys.pop((scope, key), None)

    def clear(self) -> None:
        self._keys.clear()
