"""SQLite on the event loop's thread (``sqlite_inline``): the store works the same, starts
no thread, and counts its writes so that a runner may cache what it read."""

import threading

import pytest
from sqlalchemy import event, insert
from sqlalchemy.exc import IntegrityError

from caas_core.clock import CoreClock
from caas_core.flows.runner import JobRunner
from caas_core.store import inbox, jobs
from caas_core.store.db import Database
from caas_core.store.schema import purchases

T = 1_767_600_000.0


@pytest.fixture
async def inline_db(tmp_path):
    async with await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", sqlite_inline=True) as db:
        yield db


def _count_statements(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: seen.append(statement))
    return seen


async def test_the_store_runs_on_the_loops_thread_with_the_same_transactions(tmp_path):
    threads = threading.active_count()
    async with await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", sqlite_inline=True) as db:
        assert db.private
        async with db.transaction() as conn:
            await jobs.enqueue(conn, "k", {"n": 1}, run_at=T, now=T)
            async with conn.begin_nested() as savepoint:
                await jobs.enqueue(conn, "k", {"n": 2}, run_at=T, now=T)
                await savepoint.rollback()
        with pytest.raises(ZeroDivisionError):
            async with db.transaction() as conn:
                await jobs.enqueue(conn, "k", {"n": 3}, run_at=T, now=T)
                raise ZeroDivisionError
        fresh = await db.run_sqlite_transaction(
            lambda sqlite: inbox.accept_many_sqlite(sqlite, [inbox.Arrival("payments", "msg-1", "{}")], T))
        assert fresh == {("payments", "msg-1")}
        [job] = await jobs.claim_due(db, now=T, worker="w1")
        assert job.payload == {"n": 1} and await jobs.count(db) == 0
        assert threading.active_count() == threads  # aiosqlite would have started one per connection


async def test_errors_are_sqlalchemys_and_roll_the_transaction_back(inline_db):
    row = {"id": "pur_1", "customer_id": "c-1", "vin": "V", "service_id": "s", "duration_type": "PERMANENT",
           "status": "REQUESTED", "price_minor": 100, "currency": "EUR", "created_at": T, "updated_at": T}
    async with inline_db.transaction() as conn:
        await conn.execute(insert(purchases).values(**row))
    with pytest.raises(IntegrityError):
        async with inline_db.transaction() as conn:
            await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
            await conn.execute(insert(purchases).values(**row))
    assert await jobs.count(inline_db) == 0


async def test_writes_count_write_transactions_and_not_reads(inline_db):
    before = inline_db.writes
    async with inline_db.transaction(readonly=True) as conn:
        await jobs.next_due(conn)
    assert inline_db.writes == before
    async with inline_db.transaction() as conn:
        await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
    with pytest.raises(ZeroDivisionError):
        async with inline_db.transaction():
            raise ZeroDivisionError
    await inline_db.run_sqlite_transaction(lambda sqlite: None)
    assert inline_db.writes == before + 3


async def test_a_runner_on_a_private_database_reads_due_times_again_only_after_a_write(inline_db):
    clock = CoreClock("virtual", start=T)
    runner = JobRunner(inline_db, clock, {}, worker="w1", housekeeping=frozenset({"prune"}))
    async with inline_db.transaction() as conn:
        await jobs.enqueue(conn, "prune", {}, run_at=T, now=T)
        await jobs.enqueue(conn, "work", {}, run_at=T + 60, now=T)
    statements = _count_statements(inline_db)
    assert await runner.next_due() == T + 60  # housekeeping sets no pace...
    assert await runner.has_due()  # ...but is claimable now
    assert await runner.next_due() == T + 60
    assert len([s for s in statements if "FROM jobs" in s]) == 1  # asked once, the answer kept
    async with inline_db.transaction() as conn:
        await jobs.enqueue(conn, "work", {}, run_at=T + 30, now=T)
    assert await runner.next_due() == T + 30  # the write made it read again
