"""Batch transactions on the event loop's thread: checkpoints and another process's lock kept off it."""

import asyncio
import os
import sqlite3

import pytest

from caas_core.store import sqlite_batches
from caas_core.store.sqlite_batches import BatchConnection


@pytest.fixture
def path(tmp_path):
    path = str(tmp_path / "batches.db")
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    return path


def _insert(first: int, count: int = 50):
    def work(sqlite: sqlite3.Connection) -> int:
        sqlite.executemany("INSERT INTO rows VALUES (?, ?)", [(n, "x" * 200) for n in range(first, first + count)])
        return first + count
    return work


async def test_batches_log_in_place_and_a_thread_checkpoints_them_into_the_database(path, monkeypatch):
    monkeypatch.setattr(sqlite_batches, "CHECKPOINT_EVERY", 4)
    batches = BatchConnection(path, busy_timeout_ms=1000)
    try:
        assert batches._sqlite.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        empty = os.path.getsize(path)
        for n in range(3):
            assert await batches.run(_insert(n * 50)) == n * 50 + 50
        assert os.path.getsize(path) == empty  # in the log only: no checkpoint inside a commit
        await batches.run(_insert(150))
        assert batches.checkpoints.running is not None  # the fourth commit handed one to a thread
        await batches.checkpoints.running
        assert os.path.getsize(path) > empty + 150 * 200
    finally:
        await batches.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM rows").fetchone() == (200,)


async def test_a_batch_that_fails_leaves_nothing_and_the_next_one_commits(path):
    batches = BatchConnection(path, busy_timeout_ms=1000)
    try:
        def failing(sqlite):
            _insert(0)(sqlite)
            raise RuntimeError("half-way")

        with pytest.raises(RuntimeError, match="half-way"):
            await batches.run(failing)
        assert await batches.run(_insert(0, 1)) == 1
    finally:
        await batches.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM rows").fetchone() == (1,)


async def test_another_process_holding_the_write_lock_is_waited_for_off_the_loop(path):
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # as another process would
    batches = BatchConnection(path, busy_timeout_ms=10_000)
    try:
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.ensure_future(batches.run(_insert(0)))
        for _ in range(20):  # the loop keeps turning while the batch waits for the lock
            await asyncio.sleep(0)
        assert not waiting.done()
        other.execute("COMMIT")
        assert await waiting == 50
    finally:
        other.close()
        await batches.close()
