"""Retention: old processed inbox rows and old finished jobs go; everything still of use stays."""

import json

from sqlalchemy import delete, select, update

from caas_core.store import inbox, jobs, retention
from caas_core.store.schema import jobs as jobs_table
from caas_core.store.schema import webhook_inbox

T = 1_767_600_000.0
DAY = 86400.0
WEEK = 7 * DAY


async def _webhook(db, webhook_id: str, *, at: float, processed: bool = True, job: str | None = None):
    """A webhook received at ``at``, processed then (or not), with its processing job
    left in status ``job`` (or none, as for the sources nobody processes)."""
    async with db.transaction() as conn:
        assert await inbox.accept_many(conn, [inbox.Arrival("payments", webhook_id, json.dumps({"id": webhook_id}))], at)
        if job is not None:
            job_id = await jobs.enqueue(conn, "payments.event", {}, run_at=at, now=at,
                                        dedupe_key=inbox.job_key("payments", webhook_id))
            await conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(status=job))
        if processed:
            await inbox.mark_processed(conn, "payments", webhook_id, "processed", at)


async def _job(db, name: str, status: str, *, updated_at: float) -> str:
    async with db.transaction() as conn:
        job_id = await jobs.enqueue(conn, "ota.activate", {"name": name}, run_at=updated_at, now=updated_at,
                                    dedupe_key=f"test:{name}")
        await conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(status=status))
    return job_id


async def _inbox_ids(db) -> set[str]:
    async with db.transaction(readonly=True) as conn:
        return set((await conn.scalars(select(webhook_inbox.c.webhook_id))).all())


async def _job_names(db) -> set[str]:
    async with db.transaction(readonly=True) as conn:
        return {payload["name"] for payload in (await conn.scalars(select(jobs_table.c.payload))).all()
                if "name" in payload}


async def test_old_processed_inbox_rows_go_recent_and_unprocessed_ones_stay(db):
    await _webhook(db, "old-processed", at=T)
    await _webhook(db, "old-unprocessed", at=T, processed=False)
    await _webhook(db, "old-job-pending", at=T, processed=False, job="pending")
    await _webhook(db, "recent-processed", at=T + 2 * DAY)
    pruned = await retention.prune(db, now=T + WEEK + DAY, inbox_retention=WEEK, job_retention=WEEK)
    assert pruned == retention.Pruned(inbox=1, jobs=0)
    assert await _inbox_ids(db) == {"old-unprocessed", "old-job-pending", "recent-processed"}


async def test_an_inbox_row_outlives_its_processing_job(db):
    """Were the row deleted first, a redelivery would be accepted again, find the job's
    dedupe key taken and never be processed: the row goes only with, or after, its job."""
    await _webhook(db, "kept-job", at=T, job="done")
    # the job is kept longer than the row: the row waits for it
    assert await retention.prune(db, now=T + 2 * DAY, inbox_retention=DAY, job_retention=WEEK) \
        == retention.Pruned(inbox=0, jobs=0)
    assert await _inbox_ids(db) == {"kept-job"}
    # the job goes, and the row with it in the same pass
    assert await retention.prune(db, now=T + WEEK + DAY, inbox_retention=DAY, job_retention=WEEK) \
        == retention.Pruned(inbox=1, jobs=1)
    assert await _inbox_ids(db) == set()


async def test_old_done_and_cancelled_jobs_go_open_and_failed_ones_stay(db):
    for status in ("done", "cancelled", "pending", "running", "failed"):
        await _job(db, f"old-{status}", status, updated_at=T)
    await _job(db, "recent-done", "done", updated_at=T + 2 * DAY)
    await _job(db, "recent-cancelled", "cancelled", updated_at=T + 2 * DAY)
    pruned = await retention.prune(db, now=T + WEEK + DAY, inbox_retention=WEEK, job_retention=WEEK)
    assert pruned == retention.Pruned(inbox=0, jobs=2)
    assert await _job_names(db) == {"old-pending", "old-running", "old-failed", "recent-done", "recent-cancelled"}


async def test_the_horizon_is_exclusive(db):
    await _job(db, "at-horizon", "done", updated_at=T)
    await _webhook(db, "at-horizon", at=T)
    assert await retention.prune(db, now=T + WEEK, inbox_retention=WEEK, job_retention=WEEK) \
        == retention.Pruned(inbox=0, jobs=0)
    assert await retention.prune(db, now=T + WEEK + 0.001, inbox_retention=WEEK, job_retention=WEEK) \
        == retention.Pruned(inbox=1, jobs=1)


async def test_prunes_everything_due_in_small_batches(db):
    for n in range(7):
        await _job(db, f"done-{n}", "done", updated_at=T + n)
        await _webhook(db, f"w-{n}", at=T + n)
    await _job(db, "pending", "pending", updated_at=T)
    assert await retention.prune(db, now=T + WEEK + DAY, inbox_retention=WEEK, job_retention=WEEK, batch=3) \
        == retention.Pruned(inbox=7, jobs=7)
    assert await _job_names(db) == {"pending"} and await _inbox_ids(db) == set()
    assert await retention.prune(db, now=T + WEEK + DAY, inbox_retention=WEEK, job_retention=WEEK, batch=3) \
        == retention.Pruned(inbox=0, jobs=0)


async def test_a_webhook_redelivered_after_its_retention_is_accepted_and_processed_again(db):
    """Within the retention a redelivery is a duplicate; after it the webhook-id is new again
    (with a new processing job): hence the retention must exceed the senders' retry window."""
    await _webhook(db, "msg-1", at=T, job="done")
    new_job = [jobs.NewJob("payments.event", "{}", inbox.job_key("payments", "msg-1"))]
    arrival = [inbox.Arrival("payments", "msg-1", "{}")]
    await retention.prune(db, now=T + DAY, inbox_retention=WEEK, job_retention=WEEK)
    async with db.transaction() as conn:
        assert await inbox.accept_many(conn, arrival, T + DAY) == set()  # still a duplicate
    await retention.prune(db, now=T + WEEK + DAY, inbox_retention=WEEK, job_retention=WEEK)
    async with db.transaction() as conn:
        assert await inbox.accept_many(conn, arrival, T + WEEK + DAY) == {("payments", "msg-1")}
        await jobs.enqueue_many(conn, new_job, run_at=T + WEEK + DAY, now=T + WEEK + DAY)
    assert await jobs.count(db, kind="payments.event") == 1  # pending: it will be processed again


async def test_a_pruned_jobs_dedupe_key_names_a_new_job(db):
    first = await _job(db, "once", "done", updated_at=T)
    async with db.transaction() as conn:
        again = await jobs.enqueue(conn, "ota.activate", {}, run_at=T, now=T, dedupe_key="test:once")
    assert again == first  # the key still names the finished job
    await retention.prune(db, now=T + WEEK + DAY, inbox_retention=WEEK, job_retention=WEEK)
    async with db.transaction() as conn:
        fresh = await jobs.enqueue(conn, "ota.activate", {}, run_at=T, now=T, dedupe_key="test:once")
    assert fresh != first and await jobs.count(db, None) == 1


async def test_an_enqueue_that_meets_its_keys_job_being_pruned_inserts_a_new_one(db):
    """PostgreSQL: the insert conflicts with the finished job, the prune commits, and the
    read that follows finds no job with that key: the enqueue inserts again."""
    first = await _job(db, "raced", "done", updated_at=T)

    class PrunedInBetween:  # the caller's connection, with the prune landing after the insert
        def __init__(self, conn):
            self.conn, self.dialect, self.inserts = conn, conn.dialect, 0

        async def execute(self, stmt, params=None):
            result = await self.conn.execute(stmt, params)
            self.inserts += 1
            if self.inserts == 1:
                await self.conn.execute(delete(jobs_table).where(jobs_table.c.id == first))
            return result

        async def scalar(self, stmt):
            return await self.conn.scalar(stmt)

    async with db.transaction() as conn:
        raced = PrunedInBetween(conn)
        fresh = await jobs.enqueue(raced, "ota.activate", {}, run_at=T, now=T, dedupe_key="test:raced")
    assert fresh != first and raced.inserts == 2
    assert (await jobs.get(db, fresh))["dedupe_key"] == "test:raced"
