"""Fixtures for the core: every database test runs against SQLite AND PostgreSQL.

PostgreSQL is required, not optional: when it cannot be reached the ``db`` fixture
FAILS (never skips), so CI cannot go green having tested only SQLite. Each test gets a
schema of its own in the ``test`` database, so parallel xdist workers never collide.
Override the server with CAAS_TEST_POSTGRES_URL.
"""

import os
import uuid

import pytest
from sqlalchemy import text

from caas_core.store.db import Database, create_engine, create_schema
from caas_core.store.schema import metadata

POSTGRES_URL = os.environ.get(
    "CAAS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _postgres_missing(exc: BaseException):
    pytest.fail(
        f"PostgreSQL is required for the store tests and is not usable at {POSTGRES_URL} "
        f"({type(exc).__name__}: {exc}). Start it, or point CAAS_TEST_POSTGRES_URL at one. "
        "These tests fail rather than skip on purpose.",
        pytrace=False,
    )


class Target:
    """One fresh database (a SQLite file or a PostgreSQL schema); ``open()`` gives
    further independent ``Database`` handles on it, as several core processes would."""

    def __init__(self, kind: str, url: str, engine_kwargs: dict):
        self.kind, self.url, self.engine_kwargs = kind, url, engine_kwargs
        self._opened: list[Database] = []

    async def open(self) -> Database:
        db = Database(create_engine(self.url, **self.engine_kwargs))
        self._opened.append(db)
        return db

    async def close_all(self) -> None:
        for db in self._opened:
            await db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def target(request, tmp_path):
    if request.param == "sqlite":
        tgt = Target("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'caas.db'}", {})
        first = await tgt.open()
        await create_schema(first.engine)
        yield tgt
        await tgt.close_all()
        return
    schema = f"test_{uuid.uuid4().hex[:16]}"
    # search_path may name a schema that does not exist yet: PostgreSQL resolves it per
    # statement, so one connection creates the schema and then the tables inside it.
    tgt = Target("postgresql", POSTGRES_URL,
                 {"connect_args": {"server_settings": {"search_path": schema}}})
    first = await tgt.open()
    try:
        async with first.engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(metadata.create_all, checkfirst=False)  # fewer round trips
    except Exception as exc:  # noqa: BLE001  refused, DNS, auth, missing database...
        await tgt.close_all()
        _postgres_missing(exc)
    try:
        yield tgt
    finally:
        for db in tgt._opened[1:]:
            await db.close()
        async with first.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await first.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path):
    """The URL of a fresh database for a whole core (it creates its own tables): a SQLite
    file, or a throw-away PostgreSQL database dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
        return
    import asyncpg

    name = f"caas_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
    except (OSError, asyncpg.PostgresError) as exc:
        _postgres_missing(exc)
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.close()


@pytest.fixture
def postgres_url() -> str:
    return POSTGRES_URL


@pytest.fixture
async def db(target) -> Database:
    return target._opened[0]
