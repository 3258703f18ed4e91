"""Transaction-scoped locks on a name, for a rule that spans rows no single row lock covers
(a vehicle's live purchases, checked and then added to; the factory's outage, read and then
started).

PostgreSQL: an advisory lock held until the transaction ends, keyed by a stable 64-bit hash
of the name (a collision only makes two names wait on each other). SQLite needs none: its
write transactions are serialized whole (``store/db.py``).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text

_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def key_of(name: str) -> int:
    """The lock's key: the same name gives the same key in every process and every run."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


async def hold(conn, name: str) -> None:
    """Until ``conn``'s transaction ends, every other transaction holding ``name`` waits here."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_LOCK, {"key": key_of(name)})
