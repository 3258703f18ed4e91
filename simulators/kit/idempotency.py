"""``Idempotency-Key`` on creating POSTs, as public payment APIs do it.

Same key and body: the first response is replayed. Same key, another body: 422.
Same key while the first request is still running: 409. Keys expire after a
day of clock time, and past ``KEYS_KEPT`` keys the oldest are forgotten whatever
their age: a core sends a key with every creating POST, so a load of a few hundred
requests a second would otherwise hold millions. An entry is kept as bytes (its plain
values, marshalled) under a string: held as objects, each full collection walked every
one of them (110-200 ms passes after 200,000 keys), and a dict holding only strings and
bytes is one the collector stops tracking, so that its entries are not even visited.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple

from .retention import Retention
from .untracked import RecordStore

KEY_TTL = 86400.0
#: Keys held at most: a replay is asked for seconds or minutes after the first request.
KEYS_KEPT = 100_000


class Stored(NamedTuple):
    fingerprint: str
    created: float
    status: int | None = None  # None while the first request is in flight
    body: bytes = b""
    content_type: str = "application/json"
    location: str | None = None  # the answer's Location header


class IdempotencyStore:
    def __init__(self, now: Callable[[], float], ttl: float = KEY_TTL, keep: int = KEYS_KEPT):
        self._now = now
        self._ttl = ttl
        self._keys: RecordStore[Stored] = RecordStore.of(Stored)
        self._retention = Retention(now, period=ttl, keep=keep)

    def __len__(self) -> int:
        return len(self._keys)

    @staticmethod
    def fingerprint(method: str, path: str, body: bytes) -> str:
        return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()

    def begin(self, scope: str, key: str, fingerprint: str) -> tuple[str, Stored]:
        """Returns ("new"|"replay"|"conflict"|"mismatch", entry)."""
        self._forget_expired()
        now, scoped_key = self._now(), _scoped(scope, key)
        entry = self._keys.get(scoped_key)
        if entry is not None and now - entry.created > self._ttl:
            entry = None
        if entry is None:
            entry = self._keys[scoped_key] = Stored(fingerprint, now)
            self._retention.touched(scoped_key)
            return "new", entry
        if entry.fingerprint != fingerprint:
            return "mismatch", entry
        return ("conflict" if entry.status is None else "replay"), entry

    def complete(self, scope: str, key: str, status: int, body: bytes, content_type: str,
                 location: str | None) -> None:
        scoped_key = _scoped(scope, key)
        entry = self._keys.get(scoped_key)
        if entry is not None:
            self._keys[scoped_key] = Stored(entry.fingerprint, entry.created, status, body, content_type, location)

    def abandon(self, scope: str, key: str) -> None:
        """The request failed before producing an answer worth replaying: allow a retry."""
        scoped_key = _scoped(scope, key)
        self._keys.pop(scoped_key, None)
        self._retention.forget(scoped_key)

    def clear(self) -> None:
        self._keys.clear()
        self._retention.clear()

    def _forget_expired(self) -> None:
        for scoped_key in self._retention.due():
            entry = self._keys.get(scoped_key)
            if entry is not None and entry.status is None:  # in flight: looked at again later
                self._retention.touched(scoped_key)
            else:
                self._keys.pop(scoped_key, None)


def _scoped(scope: str, key: str) -> str:
    return f"{scope} {key}"  # an operation id has no space
