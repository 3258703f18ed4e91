"""The private parts of aiosqlite that ``store.inline_sqlite`` and
``Database.run_sqlite_transaction`` rely on are still there and still mean the same.

aiosqlite has no public way to run its calls in place; ``InlineConnection`` subclasses
``aiosqlite.Connection`` and replaces what its thread does (see the module's docstring).
A release that renames or reshapes one of those parts would otherwise show up as odd
failures deep in the store's tests (or as a silent thread per connection): here it fails
first, saying which part changed. When it does: adapt ``inline_sqlite`` (and
``Database.run_sqlite_transaction``), check these tests again, then move the upper bound
of aiosqlite in pyproject.toml."""

import asyncio
import inspect
import sqlite3
import threading

import aiosqlite
import pytest
from sqlalchemy import text

from caas_core.store.db import Database
from caas_core.store.inline_sqlite import AIOSQLITE_INTERNALS, InlineConnection

VERSION = getattr(aiosqlite, "__version__", "?")


def _changed(what: str) -> str:
    return (f"aiosqlite {VERSION} changed {what}, which caas_core.store.inline_sqlite relies on "
            "(see AIOSQLITE_INTERNALS there): adapt it, then the upper bound of aiosqlite in pyproject.toml")


def test_the_constructor_still_takes_a_connector_and_a_chunk_size():
    parameters = list(inspect.signature(aiosqlite.Connection.__init__).parameters)
    assert parameters[1:3] == ["connector", "iter_chunk_size"], _changed(f"Connection.__init__{parameters}")


def test_a_connection_still_has_the_private_attributes_and_methods_relied_on():
    connection = aiosqlite.Connection(lambda: sqlite3.connect(":memory:"), 64)  # not awaited: no thread, no file
    missing = [name for name in AIOSQLITE_INTERNALS if not hasattr(type(connection), name)
               and name not in vars(connection)]
    assert not missing, _changed(f"the names {missing} (gone)")
    assert connection._running is True and connection._connection is None, _changed("_running or _connection")
    assert callable(connection._connector), _changed("_connector")
    assert callable(getattr(connection._tx, "put_nowait", None)), _changed("_tx (no put_nowait)")
    for name in ("_execute", "_connect", "close"):
        assert inspect.iscoroutinefunction(getattr(aiosqlite.Connection, name)), _changed(f"{name} (not async)")
    assert isinstance(inspect.getattr_static(aiosqlite.Connection, "_conn"), property), _changed("_conn")
    with pytest.raises(ValueError):
        connection._conn  # noqa: B018  (no connection yet: aiosqlite's own ValueError, which SQLAlchemy maps)


async def test_every_call_and_every_cursor_call_goes_through_execute_on_the_loops_thread():
    calls: list[int] = []

    class Recording(InlineConnection):
        async def _execute(self, fn, *args, **kwargs):
            calls.append(threading.get_ident())
            return await super()._execute(fn, *args, **kwargs)

    threads = set(threading.enumerate())
    connection = await Recording(lambda: sqlite3.connect(":memory:", isolation_level=None))
    try:
        await connection.execute("CREATE TABLE t (n INTEGER)")
        await connection.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        async with connection.execute("SELECT sum(n) FROM t") as cursor:  # aiosqlite.Cursor: conn._execute
            before = len(calls)
            assert await cursor.fetchone() == (3,)
            assert len(calls) > before, _changed("how Cursor runs its calls (no longer Connection._execute)")
        assert calls and set(calls) == {threading.get_ident()}, _changed("Connection's calls (not via _execute)")
        assert set(threading.enumerate()) <= threads, _changed("how a connection starts its thread (in __init__?)")
    finally:
        await connection.close()
    with pytest.raises(ValueError):  # "no active connection": SQLAlchemy maps it
        await connection.execute("SELECT 1")


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "threaded"])
async def test_sqlalchemys_isolation_level_and_run_sqlite_transaction_reach_the_sqlite_connection(tmp_path, inline):
    """SQLAlchemy's dialect sets isolation_level through ``_tx`` (``_RunAtOnce`` inline);
    ``run_sqlite_transaction`` runs through ``_execute`` on ``_conn`` (an in-memory
    database, on aiosqlite's own thread, when not inline)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}" if inline else "sqlite+aiosqlite://"
    threads = set(threading.enumerate())
    async with await Database.open(url, sqlite_inline=inline) as db:
        async with db.engine.connect() as conn:
            adapted = (await conn.get_raw_connection()).dbapi_connection

            def set_level(_sync) -> str | None:
                adapted.isolation_level = "DEFERRED"  # SQLAlchemy: _connection._tx.put_nowait((future, work))
                level = adapted.isolation_level
                adapted.isolation_level = None
                return level

            assert await asyncio.wait_for(conn.run_sync(set_level), 5) == "DEFERRED", _changed("_tx or _conn")
            await conn.rollback()
        assert await db.run_sqlite_transaction(lambda sqlite: sqlite.execute("SELECT 41 + 1").fetchone()[0]) == 42
        async with db.transaction(readonly=True) as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
    for thread in set(threading.enumerate()) - threads:  # aiosqlite's, ending: not a later test's count
        thread.join(5)
