import asyncio

import pytest

from caas_core.store import inbox, jobs

T = 1_767_600_000.0


async def test_accepts_once_and_reports_duplicates(db):
    async with db.transaction() as conn:
        assert await inbox.accept(conn, "payments", "msg_1", {"type": "payment.settled"}, T)
        # a duplicate in the same transaction fails no statement: the transaction goes on
        assert not await inbox.accept(conn, "payments", "msg_1", {"type": "other"}, T + 1)
        await jobs.enqueue(conn, "settle", {"msg": "msg_1"}, run_at=T, now=T)
    async with db.transaction() as conn:
        assert not await inbox.accept(conn, "payments", "msg_1", {}, T + 5)
        assert await inbox.accept(conn, "iot", "msg_1", {}, T + 5)  # ids are per source
        row = await inbox.get(conn, "payments", "msg_1")
    assert row["payload"] == {"type": "payment.settled"} and row["received_at"] == T
    assert row["processed_at"] is None and row["outcome"] is None
    assert await jobs.count(db) == 1


async def test_mark_processed(db):
    async with db.transaction() as conn:
        await inbox.accept(conn, "factory", "w-9", {"status": "built"}, T)
        assert await inbox.mark_processed(conn, "factory", "w-9", "vehicle registered", T + 2)
        assert not await inbox.mark_processed(conn, "factory", "never-seen", "x", T)
        row = await inbox.get(conn, "factory", "w-9")
        assert await inbox.get(conn, "factory", "never-seen") is None
    assert (row["processed_at"], row["outcome"]) == (T + 2, "vehicle registered")


async def test_a_rolled_back_accept_is_not_a_duplicate(db):
    """A crash before the commit: the sender retries and the retry is processed."""
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            assert await inbox.accept(conn, "payments", "msg_2", {}, T)
            raise RuntimeError("crash while recording effects")
    async with db.transaction() as conn:
        assert await inbox.accept(conn, "payments", "msg_2", {}, T + 5)


async def test_two_concurrent_deliveries_of_one_webhook_accept_exactly_once(target):
    dbs = [await target.open() for _ in range(2)]

    async def deliver(db):
        async with db.transaction() as conn:
            accepted = await inbox.accept(conn, "iot", "dup-1", {"vin": "X"}, T)
            await asyncio.sleep(0.05)  # hold the transaction open while the other arrives
            return accepted

    assert sorted(await asyncio.gather(*(deliver(d) for d in dbs))) == [False, True]


async def test_a_concurrent_duplicate_wins_when_the_first_rolls_back(target):
    first, second = await target.open(), await target.open()
    started = asyncio.Event()

    async def doomed():
        with pytest.raises(RuntimeError):
            async with first.transaction() as conn:
                assert await inbox.accept(conn, "iot", "dup-2", {}, T)
                started.set()
                await asyncio.sleep(0.05)
                raise RuntimeError("handler crashed")

    async def retry():
        await started.wait()
        async with second.transaction() as conn:
            return await inbox.accept(conn, "iot", "dup-2", {}, T + 1)

    _, accepted = await asyncio.gather(doomed(), retry())
    assert accepted
