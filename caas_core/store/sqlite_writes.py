"""Write transactions on a SQLite file, on the event loop's thread while the lock is free.

Through aiosqlite every statement, BEGIN and COMMIT of a transaction is a hop to the
driver's thread and back through the event loop: a one-row SELECT cost ~400 µs of CPU
that way and ~60 µs in place, and a webhook's processing job was mostly hops (see
docs/benchmarks.md). ``Database.transaction`` runs its write transactions here instead,
on one SQLAlchemy connection of an inline engine (``inline_sqlite``), kept checked out.
What would stall every request of the process stays off the loop, as for the webhook
batches (``sqlite_batches``):

- **Another process's write lock.** This connection never waits (``busy_timeout=0``):
  when ``BEGIN IMMEDIATE`` finds the lock taken, ``begin`` says so and the transaction runs
  on aiosqlite's threads, waiting on the busy timeout there. Once the lock is held, no
  statement of the transaction waits on anyone (WAL: readers never block the writer).
- **Checkpoints.** Off on this connection (``wal_autocheckpoint=0``); the file's shared
  ``Checkpoints`` run a passive one on a worker thread every so many commits.

Reads (``transaction(readonly=True)``) stay on aiosqlite's threads: a long one (an audit)
must not hold the loop, and they take no lock to wait on. Inside the process writers
never meet: ``Database`` serializes SQLite write transactions.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .sqlite_batches import Checkpoints


def _never_wait(dbapi_connection: Any, _record: Any) -> None:
    """After the engine's own connect hook (which sets the busy timeout of the others)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    finally:
        cursor.close()


def _busy(exc: DBAPIError) -> bool:
    orig = exc.orig
    return isinstance(orig, sqlite3.OperationalError) and getattr(orig, "sqlite_errorcode", None) in (
        sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineWriter:
    """The write transactions of one ``Database`` on a SQLite file. Not safe for concurrent
    use: the caller holds the database's writer lock around ``transaction``."""

    def __init__(self, engine: AsyncEngine, checkpoints: Checkpoints) -> None:
        """``engine``: an inline engine on the file (``create_engine(url, sqlite_inline=True)``)."""
        self.engine = engine
        self.checkpoints = checkpoints
        event.listen(engine.sync_engine, "connect", _never_wait)
        self._conn: AsyncConnection | None = None
        #: Transactions run here, and handed to aiosqlite's threads (the lock was taken).
        self.inline = self.contended = 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection | None]:
        """A connection inside ``BEGIN IMMEDIATE``, committed on exit and rolled back on error;
        None (nothing begun) when another process holds the write lock."""
        if self._conn is None:
            self._conn = await self.engine.connect()
        conn = self._conn
        try:
            trans = await conn.begin()
        except DBAPIError as exc:
            await self._drop()  # a BEGIN that failed in SQLAlchemy's hook: start afresh next time
            if not _busy(exc):
                raise
            self.contended += 1
            yield None
            return
        try:
            yield conn
        except BaseException:
            await self._end(trans.rollback)
            raise
        await self._end(trans.commit)
        self.inline += 1
        self.checkpoints.committed()

    async def _end(self, finish) -> None:
        try:
            await finish()
        except BaseException:
            await self._drop()  # whatever state it is in, the next transaction gets a fresh one
            raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
        await self.engine.dispose()
