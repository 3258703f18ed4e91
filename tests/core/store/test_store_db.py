import asyncio
import subprocess
import sys
import threading

import pytest
from sqlalchemy import BigInteger, insert, inspect, make_url, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from caas_core.store import jobs
from caas_core.store.db import (
    DEFAULT_URL,
    Database,
    DatabaseUnavailable,
    create_engine,
    create_schema,
    drop_schema,
)
from caas_core.store.schema import metadata, purchases

T = 1_767_600_000.0
TABLES = {
    "jobs", "webhook_inbox", "customers", "vehicles", "purchases", "payments", "refunds",
    "collection_cases", "notifications", "support_tickets", "audit_log", "sales", "sale_events", "invoices", "system_state",
}


@pytest.mark.parametrize(
    "url,reason",
    [
        ("mysql+aiomysql://root:hunter2@db/caas", "unsupported scheme 'mysql+aiomysql'"),
        ("oracle://scott:hunter2@db/caas", "unsupported scheme"),
        ("definitely not a url", "not a database URL"),
    ],
)
def test_unsupported_urls_are_a_clear_error_without_the_password(url, reason):
    with pytest.raises(DatabaseUnavailable) as err:
        create_engine(url)
    assert reason in err.value.reason and "hunter2" not in str(err.value)
    assert "database unavailable at" in str(err.value)


@pytest.mark.parametrize(
    "case,reason",
    [
        ("refused", "Connect call failed"),
        ("no database", "does not exist"),
        ("no directory", "unable to open database file"),
    ],
)
async def test_an_unreachable_database_is_a_clear_error(case, reason, postgres_url):
    server = make_url(postgres_url)
    url = {
        "refused": server.set(drivername="postgresql", password="hunter2", port=1),
        "no database": server.set(database="no_such_db_caas"),
        "no directory": "sqlite+aiosqlite:////nonexistent-dir/caas.db",
    }[case]
    url = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnavailable) as err:
        await Database.open(url)
    assert reason in err.value.reason and "hunter2" not in str(err.value)
    assert err.value.url.startswith(url.split("://")[0])
    await _aiosqlite_threads_finished()


async def _aiosqlite_threads_finished():
    """aiosqlite 0.22 stops the worker thread of a failed connect without awaiting it;
    the thread then posts to the loop, which pytest closes after the test (a noisy
    "Event loop is closed" warning on a later test). Let it finish first."""
    for _ in range(200):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.005)


def test_plain_schemes_map_to_the_async_drivers_and_the_default_is_a_sqlite_file():
    assert create_engine("postgresql://u@h/d").url.drivername == "postgresql+asyncpg"
    assert create_engine("postgres://u@h/d").url.drivername == "postgresql+asyncpg"
    engine = create_engine()  # lazy: no file is created by building it
    assert DEFAULT_URL == "sqlite+aiosqlite:///caas.db"
    assert (engine.url.drivername, engine.url.database) == ("sqlite+aiosqlite", "caas.db")


async def test_schema_has_the_tables_and_create_drop_are_idempotent(db):
    await create_schema(db.engine)  # again: a no-op
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert TABLES <= names
        cols = await conn.run_sync(lambda c: {x["name"]: x for x in inspect(c).get_columns("payments")})
    assert isinstance(cols["amount_minor"]["type"], BigInteger)
    assert set(metadata.tables) == TABLES
    await drop_schema(db.engine)
    async with db.engine.connect() as conn:
        assert not TABLES & await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await create_schema(db.engine)


async def test_money_and_defaults_round_trip(db):
    async with db.transaction() as conn:
        await conn.execute(insert(purchases).values(
            id="p-1", customer_id="c-1", vin="WVWZZZ1JZXW000001", service_id="heated-seats",
            duration_type="monthly", price_minor=9_999_999_999_99, currency="EUR",
            status="pending", created_at=T, updated_at=T,
        ))
    async with db.transaction(readonly=True) as conn:
        row = (await conn.execute(select(purchases))).mappings().one()
    assert row["price_minor"] == 9_999_999_999_99 and isinstance(row["price_minor"], int)
    assert (row["refunded_minor"], row["risk_flag"], row["attempts"]) == (0, False, 0)
    assert row["created_at"] == T and row["expiry"] is None
    with pytest.raises(IntegrityError):  # the currency is three letters on both databases
        async with db.transaction() as conn:
            await conn.execute(insert(purchases).values(
                id="p-2", customer_id="c", vin="v", service_id="s", duration_type="d",
                price_minor=1, currency="EU", status="s", created_at=T, updated_at=T))


async def test_a_transaction_commits_or_rolls_back_as_a_whole(db):
    assert db.dialect in ("sqlite", "postgresql")
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as conn:
            await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
            raise ZeroDivisionError
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
        async with conn.begin_nested() as sp:  # savepoints work on SQLite too
            await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
            await sp.rollback()
    assert await jobs.count(db) == 1


async def test_sqlite_file_runs_in_wal_with_a_busy_timeout(tmp_path):
    async with await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}") as db:
        async with db.transaction(readonly=True) as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 10_000
        assert db.url.endswith("x.db") and db.dialect == "sqlite"


async def test_sqlite_memory_works_and_serializes_concurrent_transactions():
    async with await Database.open("sqlite+aiosqlite:///:memory:") as db:
        assert isinstance(db.engine.pool, StaticPool)

        async def enqueue_then_yield(i):
            async with db.transaction() as conn:
                await jobs.enqueue(conn, "k", {"i": i}, run_at=T + i, now=T)
                await asyncio.sleep(0)  # another task would interleave on the one connection

        await asyncio.gather(*(enqueue_then_yield(i) for i in range(20)))
        batches = await asyncio.gather(*(jobs.claim_due(db, now=T + 20, worker=f"w{i}", limit=3)
                                         for i in range(4)))
        claimed = [j.id for b in batches for j in b]
        assert len(claimed) == len(set(claimed)) == 12
        assert await jobs.count(db) == 8


async def test_a_nested_transaction_on_sqlite_is_an_error_not_a_hang():
    async with await Database.open("sqlite+aiosqlite:///:memory:") as db, db.transaction():
        with pytest.raises(RuntimeError, match="pass the open connection"):
            await jobs.count(db)  # same task: detected (pytest-timeout backs this up)


def test_the_store_never_imports_simulators_or_scenarios():
    code = (
        "import sys, caas_core.store.db, caas_core.store.jobs, caas_core.store.inbox, "
        "caas_core.store.outbox\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('simulators', 'scenarios')]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def _txids(conn) -> set[int]:
    return {await conn.scalar(text("SELECT txid_current()")) for _ in range(2)}


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
async def test_postgresql_reads_run_in_autocommit_and_writes_in_one_transaction(target):
    db = await target.open()
    async with db.transaction(readonly=True) as conn:
        assert len(await _txids(conn)) == 2  # no BEGIN: each statement is its own transaction
    async with db.transaction() as conn:  # the same pooled connection, its isolation reset
        assert len(await _txids(conn)) == 1


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
async def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(target):
    db, admin = await target.open(), await target.open()
    async with db.transaction() as conn:
        backend = await conn.scalar(text("SELECT pg_backend_pid()"))
        driver = (await conn.get_raw_connection()).driver_connection
    async with admin.transaction() as conn:
        assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    deadline = asyncio.get_running_loop().time() + 10
    while not driver.is_closed():  # the client reads the server's goodbye on its next loop turns
        assert asyncio.get_running_loop().time() < deadline, "the terminated connection was never seen closed"
        await asyncio.sleep(0.01)
    async with db.transaction() as conn:  # no failed transaction: a fresh connection was checked out
        assert await conn.scalar(text("SELECT pg_backend_pid()")) != backend
