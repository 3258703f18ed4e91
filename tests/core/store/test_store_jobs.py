import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from caas_core.store import jobs
from caas_core.store.db import Database, create_engine
from caas_core.store.schema import JOB_STATUSES
from caas_core.store.schema import jobs as jobs_table

T = 1_767_600_000.0


async def _enqueue(db, kind="ota.activate", *, run_at=T, now=T, **kw):
    async with db.transaction() as conn:
        return await jobs.enqueue(conn, kind, {"n": kw.pop("n", 0)}, run_at=run_at, now=now, **kw)


async def test_claims_due_jobs_in_run_at_order_and_leaves_future_ones(db):
    late = await _enqueue(db, run_at=T + 30, n=3)
    early = await _enqueue(db, run_at=T + 10, n=1)
    future = await _enqueue(db, run_at=T + 3600, n=9)
    middle = await _enqueue(db, run_at=T + 20, n=2, correlation_id="corr-1")

    claimed = await jobs.claim_due(db, now=T + 60, worker="w1")
    assert [j.id for j in claimed] == [early, middle, late]
    assert [j.payload for j in claimed] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert claimed[1] == jobs.Job(middle, "ota.activate", {"n": 2}, T + 20, 0, "corr-1")
    assert await jobs.claim_due(db, now=T + 60, worker="w2") == []  # leased, not due yet

    row = await jobs.get(db, early)
    assert (row["status"], row["locked_by"], row["locked_until"]) == ("running", "w1", T + 360)
    assert (await jobs.get(db, future))["status"] == "pending"
    assert await jobs.count(db, "running") == 3 and await jobs.count(db) == 1
    assert await jobs.count(db, None) == 4


async def test_equal_run_at_breaks_ties_by_id_and_limit_takes_the_oldest(db):
    ids = [await _enqueue(db, run_at=T) for _ in range(5)]
    first = await jobs.claim_due(db, now=T, worker="w", limit=2)
    assert [j.id for j in first] == sorted(ids)[:2]
    assert await jobs.claim_due(db, now=T, worker="w", limit=0) == []


async def test_a_job_not_yet_due_is_not_claimed(db):
    job_id = await _enqueue(db, run_at=T + 100)
    assert await jobs.claim_due(db, now=T + 99.999, worker="w") == []
    assert [j.id for j in await jobs.claim_due(db, now=T + 100, worker="w")] == [job_id]


async def test_dedupe_key_makes_enqueue_idempotent_even_after_the_job_is_done(db):
    first = await _enqueue(db, dedupe_key="expire:p-1", run_at=T + 5)
    again = await _enqueue(db, dedupe_key="expire:p-1", run_at=T + 999)
    assert again == first and await jobs.count(db, None) == 1
    assert (await jobs.get(db, first))["run_at"] == T + 5  # the second call changed nothing
    [job] = await jobs.claim_due(db, now=T + 5, worker="w")
    async with db.transaction() as conn:
        assert await jobs.complete(conn, job.id)
    assert await _enqueue(db, dedupe_key="expire:p-1") == first
    assert await jobs.count(db, None) == 1
    # jobs without a key never collide (several NULLs are allowed in the unique column)
    await _enqueue(db), await _enqueue(db)
    assert await jobs.count(db, None) == 3


async def test_dedupe_inside_one_transaction_and_the_transaction_stays_usable(db):
    async with db.transaction() as conn:
        a = await jobs.enqueue(conn, "k", {}, run_at=T, now=T, dedupe_key="d")
        b = await jobs.enqueue(conn, "k", {}, run_at=T, now=T, dedupe_key="d")
        c = await jobs.enqueue(conn, "k", {}, run_at=T, now=T, dedupe_key="e")
    assert a == b != c and await jobs.count(db) == 2


async def test_concurrent_enqueues_with_one_dedupe_key_insert_one_job(target):
    dbs = [await target.open() for _ in range(4)]
    ids = await asyncio.gather(*(_enqueue(d, dedupe_key="once") for d in dbs))
    assert len(set(ids)) == 1 and await jobs.count(dbs[0], None) == 1


async def test_an_enqueue_rolled_back_with_its_state_change_leaves_no_job(db):
    """The outbox property: the job commits with the transaction that caused it, or not."""

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        async with db.transaction() as conn:
            await jobs.enqueue(conn, "settle", {"p": 1}, run_at=T, now=T, dedupe_key="settle:1")
            raise Crash
    assert await jobs.count(db, None) == 0 and await jobs.next_due(db) is None
    # and the key was not burnt by the rolled-back attempt
    assert await _enqueue(db, "settle", dedupe_key="settle:1")
    assert await jobs.count(db) == 1


async def test_concurrent_claimers_never_get_the_same_job(target):
    """50 jobs, 4 claimers, each its own engine (as 4 core processes would have)."""
    first = await target.open()
    async with first.transaction() as conn:
        for i in range(50):
            await jobs.enqueue(conn, "ota.activate", {"i": i}, run_at=T + i % 7, now=T)
    claimers = [first] + [await target.open() for _ in range(3)]

    async def drain(db, worker):
        got = []
        while batch := await jobs.claim_due(db, now=T + 10, worker=worker, limit=3):
            got += batch
            await asyncio.sleep(0)  # let the others in between batches
        return got

    results = await asyncio.gather(*(drain(d, f"w{i}") for i, d in enumerate(claimers)))
    claimed = [j.id for batch in results for j in batch]
    assert len(claimed) == 50 and len(set(claimed)) == 50
    assert await jobs.count(first, "running") == 50
    # each job is leased to the worker that got it
    async with first.transaction(readonly=True) as conn:
        owners = dict((await conn.execute(select(jobs_table.c.id, jobs_table.c.locked_by))).all())
    for i, batch in enumerate(results):
        assert all(owners[j.id] == f"w{i}" for j in batch)


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)  # SQLite has no row locks
async def test_postgres_skips_rows_another_transaction_has_locked(target):
    db = await target.open()
    ids = [await _enqueue(db, run_at=T + i) for i in range(3)]
    other = await target.open()
    async with other.transaction() as conn:
        # another core process is in the middle of claiming the oldest job
        await conn.execute(select(jobs_table.c.id).where(jobs_table.c.id == ids[0]).with_for_update())
        claimed = await asyncio.wait_for(jobs.claim_due(db, now=T + 10, worker="w"), 5)
    assert [j.id for j in claimed] == ids[1:]  # did not wait, did not take the locked row


async def test_an_expired_lease_makes_a_running_job_claimable_again(db):
    job_id = await _enqueue(db)
    [job] = await jobs.claim_due(db, now=T, worker="crashed", lease=60)
    assert await jobs.next_due(db) == T + 60  # the lease expiry is when it is due again
    assert await jobs.claim_due(db, now=T + 59, worker="w2") == []
    [again] = await jobs.claim_due(db, now=T + 60, worker="w2", lease=60)
    assert again.id == job_id == job.id
    assert (await jobs.get(db, job_id))["locked_by"] == "w2"
    # the crashed worker comes back late: fenced out, so its effects roll back
    async with db.transaction() as conn:
        assert not await jobs.complete(conn, job_id, worker="crashed")
        assert not await jobs.retry(conn, job_id, run_at=T, error="x", worker="crashed")
        assert await jobs.complete(conn, job_id, worker="w2", now=T + 61)
    row = await jobs.get(db, job_id)
    assert (row["status"], row["locked_by"], row["updated_at"]) == ("done", None, T + 61)


async def test_retry_fail_complete(db):
    a, b, c = [await _enqueue(db, n=i) for i in range(3)]
    claimed = {j.id for j in await jobs.claim_due(db, now=T, worker="w")}
    assert claimed == {a, b, c}
    async with db.transaction() as conn:
        assert await jobs.complete(conn, a)
        assert not await jobs.complete(conn, a)  # only once
        assert await jobs.retry(conn, b, run_at=T + 300, error="vehicle offline", now=T)
        assert await jobs.fail(conn, c, "rejected for good")
    assert (await jobs.get(db, a))["status"] == "done"
    rb, rc = await jobs.get(db, b), await jobs.get(db, c)
    assert (rb["status"], rb["attempts"], rb["run_at"], rb["last_error"]) == (
        "pending", 1, T + 300, "vehicle offline")
    assert rb["locked_by"] is None and rb["locked_until"] is None
    assert (rc["status"], rc["attempts"], rc["last_error"]) == ("failed", 1, "rejected for good")
    assert await jobs.next_due(db) == T + 300
    [again] = await jobs.claim_due(db, now=T + 300, worker="w")
    assert (again.id, again.attempts) == (b, 1)
    # a pending job can be failed directly, a done one cannot
    d = await _enqueue(db, run_at=T + 1000)
    async with db.transaction() as conn:
        assert await jobs.fail(conn, d, "not needed")
        assert not await jobs.fail(conn, a, "too late")
    assert {s: await jobs.count(db, s) for s in JOB_STATUSES} == {
        "pending": 0, "running": 1, "done": 1, "failed": 2, "cancelled": 0}


async def test_the_database_refuses_a_status_outside_the_known_ones(db):
    job = await _enqueue(db)
    for status in JOB_STATUSES:  # each known one is accepted
        async with db.transaction() as conn:
            await conn.execute(update(jobs_table).where(jobs_table.c.id == job).values(status=status))
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(update(jobs_table).where(jobs_table.c.id == job).values(status="Pending"))


async def test_cancel_by_kind_or_dedupe_key_touches_only_pending_jobs(db):
    x1 = await _enqueue(db, "expire", dedupe_key="expire:p-1", run_at=T + 10)
    await _enqueue(db, "expire", dedupe_key="expire:p-2", run_at=T + 20)
    await _enqueue(db, "remind", run_at=T + 5)
    running = await _enqueue(db, "remind", run_at=T)
    [claimed] = await jobs.claim_due(db, now=T, worker="w")
    assert claimed.id == running
    async with db.transaction() as conn:
        assert await jobs.cancel(conn, dedupe_key="expire:p-1", now=T) == 1
        assert await jobs.cancel(conn, kind="remind") == 1  # the running one is left alone
        assert await jobs.cancel(conn, kind="expire", dedupe_key="expire:p-1") == 0
        with pytest.raises(ValueError):
            await jobs.cancel(conn)
    assert (await jobs.get(db, x1))["status"] == "cancelled"
    assert await jobs.count(db, "cancelled") == 2 and await jobs.count(db, "running") == 1
    assert await jobs.next_due(db) == T + 20 and await jobs.count(db, kind="expire") == 1
    # a key names one job forever: enqueueing it again does not resurrect it
    assert await _enqueue(db, "expire", dedupe_key="expire:p-1") == x1
    assert await jobs.claim_due(db, now=T + 15, worker="w") == []


async def test_next_due_and_count_on_an_empty_queue_and_on_a_held_connection(db):
    assert await jobs.next_due(db) is None and await jobs.count(db) == 0
    async with db.transaction() as conn:
        await jobs.enqueue(conn, "k", {}, run_at=T + 7, now=T)
        await jobs.enqueue(conn, "k", {}, run_at=T + 3, now=T)
        # visible inside the transaction that enqueued them
        assert await jobs.next_due(conn) == T + 3 and await jobs.count(conn) == 2


def test_job_ids_carry_the_kinds_initials():
    assert jobs.new_job_id("ota.activate").startswith("oa_")
    assert jobs.new_job_id("settle_payment-sweep").startswith("sps_")
    assert jobs.new_job_id("...").startswith("job_")
    assert jobs.new_job_id("k") != jobs.new_job_id("k")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    run_ats=st.lists(st.integers(0, 100), max_size=12),
    now=st.integers(0, 100),
    limit=st.integers(1, 15),
)
async def test_claim_takes_exactly_the_oldest_due_jobs(run_ats, now, limit):
    db = Database(create_engine("sqlite+aiosqlite:///:memory:"))
    try:
        async with db.transaction() as conn:
            await conn.run_sync(jobs_table.create)  # only the table this property needs
            ids = [await jobs.enqueue(conn, "k", {}, run_at=T + r, now=T) for r in run_ats]
        claimed = await jobs.claim_due(db, now=T + now, worker="w", limit=limit)
        expected = sorted((T + r, i) for r, i in zip(run_ats, ids, strict=True) if r <= now)[:limit]
        assert [(j.run_at, j.id) for j in claimed] == expected
    finally:
        await db.close()


def test_job_ids_are_time_ordered(monkeypatch):
    # new rows at the right edge of the primary-key index (see new_job_id)
    ticks = iter([1_700_000_000_000_000_000 + n * 1_000_000 for n in range(50)])
    monkeypatch.setattr(jobs.time, "time_ns", lambda: next(ticks))
    made = [jobs.new_job_id("ota.outcome") for _ in range(50)]
    monkeypatch.setattr(jobs.time, "time_ns", lambda: 1_700_000_000_000_000_000)  # within one millisecond too
    made += [jobs.new_job_id("ota.outcome") for _ in range(50)]
    assert made == sorted(made) and len(set(made)) == 100
    assert all(len(i) == len("oo_") + 32 for i in made)
