"""Write transactions of a SQLite file on the event loop's thread (``sqlite_writes``): in
place while the write lock is free, on aiosqlite's threads (the loop turning meanwhile)
when another process holds it; checkpoints on a worker thread."""

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import event, text

from caas_core.store import jobs, sqlite_batches
from caas_core.store.db import Database

T = 1_767_600_000.0


@pytest.fixture
async def file_db(tmp_path):
    async with await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as db:
        yield db


async def test_writes_run_in_place_without_waiting_and_without_checkpointing(file_db):
    threads: list[int] = []
    async with file_db.transaction() as conn:
        event.listen(conn.sync_connection, "before_cursor_execute", lambda *a: threads.append(threading.get_ident()))
        await jobs.enqueue(conn, "k", {"n": 1}, run_at=T, now=T)
        pragmas = [(await conn.execute(text(f"PRAGMA {p}"))).scalar() for p in ("busy_timeout", "wal_autocheckpoint")]
    assert pragmas == [0, 0]  # never waits on the loop; checkpoints are a thread's (sqlite_batches.Checkpoints)
    assert threads and set(threads) == {threading.get_ident()}
    assert file_db._writer.inline == 1 and file_db._writer.contended == 0
    assert await jobs.count(file_db) == 1


async def test_an_error_rolls_back_and_the_next_transaction_commits(file_db):
    with pytest.raises(ZeroDivisionError):
        async with file_db.transaction() as conn:
            await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
            raise ZeroDivisionError
    async with file_db.transaction() as conn:
        await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
    assert await jobs.count(file_db) == 1


async def test_another_process_holding_the_write_lock_is_waited_for_off_the_loop(file_db, tmp_path):
    other = sqlite3.connect(tmp_path / "core.db", isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")

        async def write():
            async with file_db.transaction() as conn:
                await jobs.enqueue(conn, "k", {}, run_at=T, now=T)

        waiting = asyncio.ensure_future(write())
        for _ in range(20):  # the loop keeps turning while the transaction waits for the lock
            await asyncio.sleep(0)
        assert not waiting.done()
        other.execute("COMMIT")
        await waiting
    finally:
        other.close()
    assert file_db._writer.contended == 1 and await jobs.count(file_db) == 1
    async with file_db.transaction() as conn:  # the lock free again: in place
        await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
    assert file_db._writer.inline == 1


async def test_write_transactions_and_webhook_batches_share_the_checkpoints(file_db, monkeypatch):
    monkeypatch.setattr(sqlite_batches, "CHECKPOINT_EVERY", 2)
    async with file_db.transaction() as conn:
        await jobs.enqueue(conn, "k", {}, run_at=T, now=T)
    assert file_db._checkpoints.running is None
    await file_db.run_sqlite_transaction(lambda sqlite: None)
    assert file_db._checkpoints.running is not None  # the second commit of the file handed one to a thread
    await file_db._checkpoints.running
