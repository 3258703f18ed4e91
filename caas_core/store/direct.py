"""The hot path's prebuilt statements, run on PostgreSQL straight through asyncpg.

Through SQLAlchemy's ``AsyncConnection.execute`` a prebuilt statement costs about 100 µs of
CPU more than the same statement through asyncpg (a greenlet hop, an execution context, a
buffered result): on PostgreSQL, most of what an OTA activation costs the core
(docs/benchmarks.md). ``execute`` runs one statement on the asyncpg connection under the
caller's ``AsyncConnection``, inside SQLAlchemy's transaction (begun here if it was not yet,
as SQLAlchemy begins it lazily itself), with the SQL SQLAlchemy compiles for it, compiled
once per statement and set of parameter names. Its errors are SQLAlchemy's, as
``conn.execute`` raises them (``IntegrityError``, a disconnect invalidating the connection).

Anything else runs through ``conn.execute`` as before: SQLite, a statement with an
expanding ``IN`` or a type whose values SQLAlchemy converts on the way out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection


class Rows:
    """What a statement answered: its rows (as mappings) and how many it changed."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list, rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def all(self) -> list:
        return self.rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalars(self) -> list:
        """The first column of every row."""
        return [row[0] for row in self.rows]


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    #: per positional parameter: the caller's key, or None for a value fixed in the statement
    keys: tuple[str | None, ...]
    fixed: tuple[Any, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    returns_rows: bool


_MISSING = object()
_plans: dict[tuple[int, frozenset[str]], _Plan | None] = {}


def _plan(stmt: Any, dialect: Any, keys: frozenset[str]) -> _Plan | None:
    """How ``stmt`` runs with parameters named ``keys``; None when only SQLAlchemy can run it."""
    compiled = stmt.compile(dialect=dialect, column_keys=sorted(keys))
    binds = compiled.binds
    if any(bind.expanding for bind in binds.values()) or compiled.positiontup is None:
        return None
    if not all(_as_driver_reads(column[3]) for column in compiled._result_columns):
        return None
    names = compiled.positiontup
    processors = compiled._bind_processors
    plan_keys, fixed = [], []
    for name in names:
        bind = binds[name]
        if bind.key in keys:
            plan_keys.append(bind.key)
            fixed.append(_MISSING)
        elif bind.callable is None and not bind.required:
            plan_keys.append(None)
            fixed.append(bind.value)
        else:
            return None
    return _Plan(compiled.string, tuple(plan_keys), tuple(fixed), tuple(processors.get(n) for n in names),
                 bool(compiled._result_columns))


def _as_driver_reads(type_: Any) -> bool:
    """asyncpg reads a value of ``type_`` as SQLAlchemy answers it (JSON: by the codec
    SQLAlchemy sets on each connection)."""
    if isinstance(type_, Float):
        return not type_.asdecimal
    return isinstance(type_, String | Integer | Boolean | JSON)


async def execute(conn: AsyncConnection, stmt: Any, params: Mapping[str, Any]) -> Any:
    """Run ``stmt`` with ``params`` on ``conn`` (a ``Rows`` on PostgreSQL, SQLAlchemy's
    result elsewhere: both answer ``first``, ``one``, ``all``, ``scalar`` and ``rowcount``;
    rows are read by column name)."""
    if conn.dialect.name != "postgresql" or not isinstance(conn, AsyncConnection):  # (or a test's stand-in)
        return _Result(await conn.execute(stmt, params))
    index = (id(stmt), frozenset(params))
    plan = _plans.get(index, _MISSING)
    if plan is _MISSING:
        plan = _plans[index] = _plan(stmt, conn.dialect, index[1])
    if plan is None:
        return _Result(await conn.execute(stmt, params))
    args = [params[key] if key is not None else value for key, value in zip(plan.keys, plan.fixed, strict=True)]
    args = [value if process is None or value is None else process(value)
            for value, process in zip(args, plan.processors, strict=True)]
    adapted = conn.sync_connection.connection.dbapi_connection
    try:
        if adapted._transaction is None:
            await adapted._start_transaction()  # SQLAlchemy's own lazy BEGIN (none in autocommit)
        driver = adapted._connection
        if plan.returns_rows:
            rows = await driver.fetch(plan.sql, *args)
            return Rows(rows, len(rows))
        status = await driver.execute(plan.sql, *args)
    except Exception as exc:
        raise await _as_sqlalchemy_error(conn, adapted, plan.sql, args, exc) from exc
    return Rows([], int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else -1)


async def _as_sqlalchemy_error(conn: AsyncConnection, adapted: Any, sql: str, args: list,
                               exc: Exception) -> BaseException:
    """``exc`` as ``conn.execute`` would have raised it: the driver's error as SQLAlchemy's,
    the connection invalidated when the server is gone (any other error raises as it is)."""
    error_class = conn.dialect.loaded_dbapi.Error
    try:
        adapted._handle_exception(exc)  # raises the DBAPI error (and forgets a dead transaction)
    except error_class as dbapi_error:
        invalidated = conn.dialect.is_disconnect(dbapi_error, adapted, None)
        if invalidated:
            await conn.invalidate(dbapi_error)
        return DBAPIError.instance(sql, args, dbapi_error, error_class, connection_invalidated=invalidated)
    return exc


class _Result:
    """SQLAlchemy's result answering as ``Rows``: rows as mappings."""

    __slots__ = ("_result", "rowcount")

    def __init__(self, result: Any) -> None:
        self._result, self.rowcount = result, result.rowcount

    def first(self) -> Any:
        return self._result.mappings().first() if self._result.returns_rows else None

    def one(self) -> Any:
        return self._result.mappings().one()

    def all(self) -> list:
        return self._result.mappings().all() if self._result.returns_rows else []

    def scalar(self) -> Any:
        return self._result.scalar() if self._result.returns_rows else None

    def scalars(self) -> list:
        return list(self._result.scalars().all()) if self._result.returns_rows else []
