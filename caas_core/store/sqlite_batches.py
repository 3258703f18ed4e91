"""Batch transactions on a SQLite file, run on the event loop's thread (webhook group commit).

A batch of webhooks is a handful of plain statements (``Database.run_sqlite_transaction``).
On aiosqlite's thread each batch cost a hop there and back through the event loop, about
an eighth of a webhook's CPU on an ingesting core (docs/benchmarks.md). Here a
batch runs in place, on a ``sqlite3`` connection of its own. What would make that stall
every request of the process is kept off the loop:

- **Checkpoints.** SQLite copies the write-ahead log into the database (and syncs it)
  inside the commit that crosses ``wal_autocheckpoint``. That is off on this connection;
  a passive checkpoint, which never blocks a writer, runs on a worker thread every
  ``CHECKPOINT_EVERY`` commits instead (``Checkpoints``, shared with the write transactions
  that ``sqlite_writes`` runs on the loop's thread). Connections on aiosqlite's threads
  keep theirs.
- **Another process's write lock.** ``BEGIN IMMEDIATE`` is tried without waiting; when
  another process holds the lock, the batch runs on a worker thread, waiting on the busy
  timeout there, as before. Inside the process writers never meet: ``Database``
  serializes SQLite transactions.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

#: What every connection to a SQLite file of the core sets (``db`` sets them on the pool's).
#: WAL: readers do not block the writer nor the writer the readers; NORMAL: durable at
#: checkpoints in WAL.
FILE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")

#: Commits between passive checkpoints. A webhook batch's commit logs about eight pages
#: (the right edges of two tables and four indexes), so this is near SQLite's own
#: default of a checkpoint per 1,000 logged pages.
CHECKPOINT_EVERY = 128


def in_transaction(sqlite: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], *, begun: bool = False) -> T:
    """``work(sqlite)`` in a write transaction (``BEGIN IMMEDIATE`` unless ``begun``), committed;
    rolled back on any error, which propagates."""
    if not begun:
        sqlite.execute("BEGIN IMMEDIATE")
    try:
        result = work(sqlite)
        sqlite.execute("COMMIT")
    except BaseException:
        if sqlite.in_transaction:
            sqlite.execute("ROLLBACK")
        raise
    return result


class Checkpoints:
    """Passive checkpoints of one SQLite file on a worker thread, one per ``CHECKPOINT_EVERY``
    commits of the connections that run with ``wal_autocheckpoint=0`` on the event loop's
    thread (the batch writer here, ``sqlite_writes.InlineWriter``): a checkpoint copies the
    log into the database and syncs it, which must not hold every request of the process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.commits = 0
        self._checkpointer: sqlite3.Connection | None = None
        self.running: asyncio.Future | None = None

    def committed(self) -> None:
        """One more commit logged; every ``CHECKPOINT_EVERY``, a checkpoint on a thread."""
        self.commits += 1
        if self.commits % CHECKPOINT_EVERY == 0 and self.running is None:
            self.running = asyncio.ensure_future(asyncio.to_thread(self._checkpoint))
            self.running.add_done_callback(self._checkpointed)

    def _checkpoint(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = connect(self.path)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _checkpointed(self, done: asyncio.Future) -> None:
        self.running = None
        if not done.cancelled() and done.exception() is not None:  # the next one catches up: nothing is lost
            log.warning("WAL checkpoint of %s failed: %s", self.path, done.exception())

    async def close(self) -> None:
        if self.running is not None:
            await asyncio.wait([self.running])
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None


def connect(path: str) -> sqlite3.Connection:
    # check_same_thread=False: the contended path and checkpoints use a worker thread,
    # one at a time.
    sqlite = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in FILE_PRAGMAS:
        sqlite.execute(pragma)
    return sqlite


class BatchConnection:
    """One SQLite file's batch writer. Not safe for concurrent use: the caller holds the
    database's writer lock around ``run``. ``checkpoints``: shared with the file's other
    writers on the loop's thread (its own otherwise)."""

    def __init__(self, path: str, busy_timeout_ms: int, checkpoints: Checkpoints | None = None) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.checkpoints = checkpoints or Checkpoints(path)
        self._own_checkpoints = checkpoints is None
        self._sqlite = connect(path)
        self._sqlite.execute("PRAGMA busy_timeout=0")  # in place: never wait on another process
        self._sqlite.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on a thread (see above)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT``; its result once
        committed. Any error rolls back and propagates."""
        try:
            self._sqlite.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            result = await asyncio.to_thread(self._run_waiting, work)
        else:
            result = in_transaction(self._sqlite, work, begun=True)
        self.checkpoints.committed()
        return result

    def _run_waiting(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self._sqlite.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        try:
            return in_transaction(self._sqlite, work)
        finally:
            self._sqlite.execute("PRAGMA busy_timeout=0")

    async def close(self) -> None:
        if self._own_checkpoints:
            await self.checkpoints.close()
        self._sqlite.close()
