"""Engines and transactions: a SQLite file by default, PostgreSQL by URL, same code.

SQLite needs three adjustments to behave like a real transactional store under
asyncio, all made here so that nothing above this module knows which database it has:

1. **We emit BEGIN ourselves.** Python's sqlite3 (and so aiosqlite) starts transactions
   lazily and only before DML, which breaks SAVEPOINT and lets a SELECT run outside the
   transaction. The documented SQLAlchemy recipe: ``isolation_level = None`` on the
   driver connection and a ``begin`` event that emits BEGIN.
2. **Write transactions are BEGIN IMMEDIATE.** A deferred transaction that reads and
   then writes can fail with SQLITE_BUSY at the write, immediately and regardless of the
   busy timeout, when another connection committed in between (WAL snapshot conflict).
   Taking the write lock up front makes writers queue on the busy timeout instead; that
   is also what makes ``jobs.claim_due`` atomic on SQLite. ``transaction(readonly=True)``
   opts out for pure reads, which WAL lets run beside a writer.
3. **One writer at a time per process.** A ``:memory:`` database lives in a single
   connection (StaticPool), so two coroutines would interleave statements in one
   transaction; file databases would block a pool thread on the busy timeout. An
   ``asyncio.Lock`` in ``Database`` serializes SQLite transactions in-process (for
   ``:memory:`` reads too); across processes the busy timeout does the queueing. On a
   file, a write transaction runs on the event loop's thread while the write lock is free
   (``sqlite_writes``: an aiosqlite thread hop per statement was most of a job's CPU).

PostgreSQL needs none of that: READ COMMITTED, row locks and ``SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Self, TypeVar

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    NoSuchModuleError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from . import inline_sqlite
from .schema import metadata
from .sqlite_batches import FILE_PRAGMAS, BatchConnection, Checkpoints, in_transaction
from .sqlite_writes import InlineWriter

DEFAULT_URL = "sqlite+aiosqlite:///caas.db"
BUSY_TIMEOUT_MS = 10_000
PG_CONNECT_TIMEOUT_S = 10.0
#: Connections per process (opened as needed, then kept), and prepared statements kept per
#: connection.
PG_POOL_SIZE = 48
PG_STATEMENT_CACHE = 1024

# Plain scheme names are accepted and mapped onto the async drivers we ship.
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}

T = TypeVar("T")

# execution option read by the SQLite ``begin`` hook: "IMMEDIATE" or "DEFERRED"
_BEGIN_OPTION = "caas_sqlite_begin"


class DatabaseUnavailable(RuntimeError):
    """The URL names no database we can use, or the database cannot be reached.

    Carries the URL with its password masked, so it is safe to log and to show.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database unavailable at {url}: {reason}")
        self.url = url
        self.reason = reason


def safe_url(url: str | URL) -> str:
    """The URL with any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _reason(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's 'background on this error' text."""
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip() or type(exc).__name__
    return message.splitlines()[0]


def parse_url(url: str) -> URL:
    """``url`` as a SQLAlchemy ``URL`` on the async driver we ship for its scheme.

    Plain schemes are accepted and mapped (``sqlite://`` to ``sqlite+aiosqlite://``,
    ``postgresql://`` and ``postgres://`` to ``postgresql+asyncpg://``): what
    ``create_engine`` connects with, for a caller that builds its own engine (an
    administrative connection that creates or drops a database, say).

    Raises ``DatabaseUnavailable`` (password masked) for a string that is not a database
    URL or names a scheme we have no driver for.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(safe_url(url), "not a database URL") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise DatabaseUnavailable(
            safe_url(parsed),
            f"unsupported scheme {parsed.drivername!r} "
            "(use sqlite+aiosqlite:///path or postgresql+asyncpg://...)",
        )
    return parsed.set(drivername=driver)


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def create_engine(
    url: str = DEFAULT_URL, *, connect_args: dict[str, Any] | None = None, sqlite_inline: bool = False,
    **kwargs: Any
) -> AsyncEngine:
    """An ``AsyncEngine`` for ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``.

    Lazy: nothing connects until first use (see ``Database.open`` to check reachability).
    ``sqlite_inline``: SQLite calls run on the event loop's thread (``store.inline_sqlite``:
    for a database no other process writes). Extra keyword arguments go to SQLAlchemy's
    ``create_async_engine``.
    """
    parsed = parse_url(url)
    connect_args = dict(connect_args or {})
    # JSON columns (job payloads, notifications, webhook bodies) on every hot path: orjson
    # is several times faster than the json module SQLAlchemy uses by default.
    kwargs.setdefault("json_serializer", _json_text)
    kwargs.setdefault("json_deserializer", orjson.loads)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, connect_args, kwargs, inline=sqlite_inline)
        connect_args.setdefault("timeout", PG_CONNECT_TIMEOUT_S)
        # The job runner's lanes, webhook group commits and requests together hold more than
        # SQLAlchemy's default 5 (+10 overflow). No overflow at all: an overflow connection is
        # closed at its checkin, so under load connections were opened and closed per
        # transaction (a new backend each, every statement prepared again: 155 of them in
        # 25 s of the OTA bench). The bound is as before; the connections are kept.
        kwargs.setdefault("pool_size", PG_POOL_SIZE)
        kwargs.setdefault("max_overflow", 0)
        connect_args.setdefault("prepared_statement_cache_size", PG_STATEMENT_CACHE)
        engine = create_async_engine(parsed, connect_args=connect_args, **kwargs)
        event.listen(engine.sync_engine, "checkout", _replace_if_closed)
        return engine
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseUnavailable(safe_url(parsed), f"driver not installed: {exc}") from None


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _replace_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server closed (PostgreSQL restarted, backend terminated) is
    replaced at checkout, at no cost: asyncpg already knows its socket is gone.

    SQLAlchemy's ``pool_pre_ping`` would also catch a connection that died unnoticed, but
    its ping is three round trips (BEGIN, a statement, ROLLBACK) per checkout: a third of
    an OTA activation's round trips. What it alone would catch fails one transaction
    instead (503 or a job retry), and SQLAlchemy then recycles the whole pool.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("connection closed by the server")


def _sqlite_engine(url: URL, connect_args: dict, kwargs: dict, *, inline: bool) -> AsyncEngine:
    memory = _is_memory(url)
    if memory:
        # one connection holds the whole in-memory database; every checkout must get it
        kwargs.setdefault("poolclass", StaticPool)
        connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", BUSY_TIMEOUT_MS / 1000)
    if inline:
        kwargs["async_creator"] = inline_sqlite.creator(url, connect_args)
    engine = create_async_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection.isolation_level is not None:
            dbapi_connection.isolation_level = None  # we emit BEGIN (see module docstring)
        cursor = dbapi_connection.cursor()
        try:
            for pragma in () if memory else FILE_PRAGMAS:
                cursor.execute(pragma)
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


async def create_schema(engine: AsyncEngine) -> None:
    """Create the tables that do not exist yet (idempotent)."""
    async with _guarded(engine) as conn:
        await conn.run_sync(metadata.create_all)
        await conn.commit()


async def drop_schema(engine: AsyncEngine) -> None:
    """Drop every table of the core (tests and ``/__admin/reset``)."""
    async with _guarded(engine) as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.commit()


async def _connect(engine: AsyncEngine) -> AsyncConnection:
    """Check out a connection, turning 'cannot reach it' into ``DatabaseUnavailable``.

    Only the connect step is translated: errors of statements are the caller's.
    """
    try:
        return await engine.connect()
    except (OSError, DBAPIError) as exc:  # refused, DNS, timeout, auth, no such database
        raise DatabaseUnavailable(safe_url(engine.url), _reason(exc)) from exc


@contextlib.asynccontextmanager
async def _guarded(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    conn = await _connect(engine)
    try:
        yield conn
    except DBAPIError as exc:
        if exc.connection_invalidated:  # the server went away mid-transaction
            raise DatabaseUnavailable(safe_url(engine.url), _reason(exc)) from exc
        raise
    finally:
        await conn.close()


class Database:
    """The core's handle on its database: an engine plus the transaction discipline."""

    def __init__(self, engine: AsyncEngine, *, private: bool = False) -> None:
        """``private``: no other process writes this database (a SQLite file of a world in
        virtual time), so that ``writes`` tells when it may have changed."""
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._memory = self._sqlite and _is_memory(engine.url)
        self.private = private and self._sqlite
        #: Write transactions ended in this process. With ``private``, the database is as it
        #: was while this count is unchanged (what a reader may cache on: ``JobRunner.next_due``).
        self.writes = 0
        if self.private:
            event.listen(engine.sync_engine, "commit", self._count_write)
            event.listen(engine.sync_engine, "rollback", self._count_write)
        self._lock = asyncio.Lock() if self._sqlite else None
        self._owner: asyncio.Task | None = None  # the task holding _lock
        self._batch_conn: AsyncConnection | None = None  # see _batch_driver
        self._batches: BatchConnection | None = None  # see run_sqlite_transaction
        # A SQLite file served on aiosqlite's threads: its writes run on the loop's thread
        # while the lock is free (``sqlite_writes``), checkpointed with the batches'.
        self._file = self._sqlite and not self._memory and not self.private
        self._checkpoints = Checkpoints(engine.url.database) if self._file else None
        self._writer: InlineWriter | None = None

    @classmethod
    async def open(
        cls, url: str = DEFAULT_URL, *, create: bool = True, **engine_kwargs: Any
    ) -> Database:
        """Build the engine, check the database answers, and create missing tables.

        Raises ``DatabaseUnavailable`` right away rather than at the first request.
        """
        db = cls(create_engine(url, **engine_kwargs), private=engine_kwargs.get("sqlite_inline", False))
        try:
            await db.ping()
            if create:
                await create_schema(db.engine)
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The URL with its password masked."""
        return safe_url(self.engine.url)

    async def ping(self) -> None:
        async with self.transaction(readonly=True) as conn:
            await conn.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def transaction(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction: commits on exit, rolls back on error.

        ``readonly=True`` promises no writes: on SQLite the transaction starts deferred (it
        does not take the write lock); on PostgreSQL it runs in autocommit, which at READ
        COMMITTED sees what a transaction would (a snapshot per statement) without the
        BEGIN and COMMIT round trips.
        """
        async with self._serialized(readonly):
            if self._file and not readonly:
                async with self._inline_writer().transaction() as conn:
                    if conn is not None:  # else another process holds the lock: wait on a thread below
                        yield conn
                        return
            async with self._transaction(readonly) as conn:
                yield conn

    def _inline_writer(self) -> InlineWriter:
        if self._writer is None:
            self._writer = InlineWriter(create_engine(self.engine.url, sqlite_inline=True), self._checkpoints)
        return self._writer

    @contextlib.asynccontextmanager
    async def _transaction(self, readonly: bool) -> AsyncIterator[AsyncConnection]:
        async with _guarded(self.engine) as conn:
            if self._sqlite:
                mode = "DEFERRED" if readonly else "IMMEDIATE"
                conn = await conn.execution_options(**{_BEGIN_OPTION: mode})
            elif readonly:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            async with conn.begin():
                yield conn

    def _count_write(self, conn: Any) -> None:
        if conn.get_execution_options().get(_BEGIN_OPTION) != "DEFERRED":  # reads change nothing
            self.writes += 1

    async def run_sqlite_transaction(self, work: Callable[[Any], T]) -> T:
        """SQLite only: ``work(sqlite3_connection)`` inside one ``BEGIN IMMEDIATE`` ..
        ``COMMIT``, all in one call; its result once committed.

        For hot paths made of a few plain statements (webhook group commit): through
        SQLAlchemy and aiosqlite every statement, BEGIN and COMMIT is a hop to the
        driver's thread and back through the event loop, which costs far more CPU than
        SQLite itself (see docs/benchmarks.md). A file runs the whole
        transaction on the event loop's thread (``sqlite_batches``); a private or
        in-memory database on its pooled connection, one hop at most. Same discipline
        as ``transaction``: the in-process writer lock is held, and any error rolls back
        and propagates.
        """
        if not self._sqlite:
            raise RuntimeError("run_sqlite_transaction needs a SQLite database")
        async with self._serialized(False):
            try:
                if not self._memory and not self.private:  # a file served on aiosqlite's threads
                    if self._batches is None:
                        self._batches = BatchConnection(self.engine.url.database, BUSY_TIMEOUT_MS, self._checkpoints)
                    return await self._batches.run(work)
                driver = await self._batch_driver()
                # aiosqlite's own "run this on the connection's thread" (in place for an
                # inline connection): not public, pinned by a test.
                return await driver._execute(lambda: in_transaction(driver._conn, work))
            finally:
                self.writes += 1

    async def _batch_driver(self) -> Any:
        """The aiosqlite connection of ``run_sqlite_transaction`` on an in-memory or inline
        database, checked out of the pool once and kept until ``close``: a checkout per
        batch cost a pool reset (a ROLLBACK) at every check-in."""
        if self._batch_conn is None:
            conn = await _connect(self.engine)
            self._batch_conn = conn
        return (await self._batch_conn.get_raw_connection()).driver_connection

    @contextlib.asynccontextmanager
    async def _serialized(self, readonly: bool) -> AsyncIterator[None]:
        if self._lock is None or (readonly and not self._memory):
            yield
            return
        task = asyncio.current_task()
        if self._owner is task:
            # would wait on itself forever: say so instead of hanging
            raise RuntimeError(
                "nested Database.transaction() in one task deadlocks on SQLite; "
                "pass the open connection down instead"
            )
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None

    async def close(self) -> None:
        if self._batches is not None:
            batches, self._batches = self._batches, None
            await batches.close()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        if self._checkpoints is not None:
            await self._checkpoints.close()
        if self._batch_conn is not None:
            conn, self._batch_conn = self._batch_conn, None
            await conn.close()
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
