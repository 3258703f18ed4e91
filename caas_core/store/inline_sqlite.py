"""aiosqlite's connection, run on the event loop's own thread: for virtual-time worlds.

aiosqlite runs every call (each statement, cursor, BEGIN and COMMIT) on a thread of its
own and hands the result back through the event loop. In a world on a virtual clock that
hop is nearly all the cost: an empty transaction took about 0.9 ms of CPU and a one-row
SELECT 0.7 ms more, where SQLite itself needs microseconds, and a month-long journey was
two thirds thread hops. Here the same calls run in place, so SQLAlchemy's aiosqlite
dialect works unchanged on top.

Only for a database that nothing outside this process writes (a scenario's world, a test
world), the default of a stack on a virtual clock (``CoreSettings.sqlite_inline``): a
statement waiting on SQLite's busy timeout would stall the whole event loop. Inside the
process writers never wait on each other, since ``Database`` serializes SQLite
transactions itself. A real server keeps the threads: there a commit's fsync must not
hold every request.

Private parts of aiosqlite this relies on (``AIOSQLITE_INTERNALS``). aiosqlite has no
public way to run its calls in place, and SQLAlchemy's own aiosqlite dialect already
reaches into the same parts (it puts work on ``_tx`` and reads ``_conn`` and
``_connection``), so a stand-in that did not subclass would depend on them just the same.
They are the same, in name and meaning, in aiosqlite 0.20.0, 0.21.0, 0.22.0 and 0.22.1
(0.22 moved the worker thread out of the class, and 0.22.1 added ``stop``, around them);
``tests/core/store/test_store_inline_internals.py`` fails, naming what changed, on a
release where they differ, and pyproject.toml caps aiosqlite below the next minor.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL

#: What ``InlineConnection`` (and ``Database.run_sqlite_transaction``) use of
#: ``aiosqlite.Connection`` beyond its public API: the constructor's
#: ``(connector, iter_chunk_size)``; the attributes ``_running``, ``_connection``,
#: ``_connector`` and ``_tx`` (a queue of ``(future, work)`` that SQLAlchemy's dialect
#: puts work on); ``_execute(fn, *args, **kwargs)``, through which every public method
#: and ``aiosqlite.Cursor`` run their calls; ``_connect``; and the ``_conn`` property.
AIOSQLITE_INTERNALS = ("_running", "_connection", "_connector", "_tx", "_execute", "_connect", "_conn")


class _RunAtOnce:
    """Stands in for aiosqlite's queue to its thread: SQLAlchemy's dialect puts work on it
    directly (to set ``isolation_level``) and awaits the future."""

    def put_nowait(self, item: tuple[asyncio.Future | None, Callable[[], Any]]) -> None:
        future, work = item
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001  (handed to the awaiting caller, as aiosqlite does)
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An ``aiosqlite.Connection`` that never starts its thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int = 64) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _RunAtOnce()  # type: ignore[assignment]

    async def _execute(self, fn, *args, **kwargs):
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self):
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def creator(url: URL, connect_args: dict[str, Any]) -> Callable[[], Any]:
    """``create_async_engine(async_creator=...)`` for ``url``: the arguments SQLAlchemy's
    dialect would give ``aiosqlite.connect``, plus ours. ``isolation_level=None`` from the
    start: we emit BEGIN ourselves (see ``store.db``)."""
    args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(url)
    kwargs = {**kwargs, **connect_args, "isolation_level": None, "check_same_thread": False}

    async def connect() -> InlineConnection:
        return await InlineConnection(lambda: sqlite3.connect(*args, **kwargs))

    return connect
