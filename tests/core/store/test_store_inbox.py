"""The webhook inbox on the paths ingestion uses (``flows.webhooks.GroupCommit``):
``accept_many`` in a transaction (SQLite and PostgreSQL) and ``accept_many_sqlite`` in
``Database.run_sqlite_transaction``. A webhook is new once per (source, webhook-id):
within one batch, across batches, and across concurrent batches of several processes."""

import asyncio
import random

import orjson
import pytest

from caas_core.store import inbox, jobs
from caas_core.store.db import Database

T = 1_767_600_000.0
KIND = "payments.event"


def arrival(webhook_id, source="payments", body=None, outcome=None):
    return inbox.Arrival(source, webhook_id, orjson.dumps(body if body is not None else {"id": webhook_id}).decode(),
                         outcome)


def jobs_for(arrivals, new):
    """One processing job per webhook recorded for the first time, as ``flows.webhooks`` enqueues them."""
    keys = sorted({(a.source, a.webhook_id) for a in arrivals} & new)
    return [jobs.NewJob(KIND, "{}", inbox.job_key(source, webhook_id)) for source, webhook_id in keys]


async def rows(db):
    async with db.transaction(readonly=True) as conn:
        found = (await conn.exec_driver_sql("SELECT source, webhook_id FROM webhook_inbox")).all()
    return sorted(tuple(row) for row in found)


async def job_keys(db):
    async with db.transaction(readonly=True) as conn:
        return sorted(row[0] for row in (await conn.exec_driver_sql("SELECT dedupe_key FROM jobs")).all())


# --- the two ways in: accept_many (both databases) and accept_many_sqlite -------------

async def _accept_many(db, arrivals, now=T):
    async with db.transaction() as conn:
        return await inbox.accept_many(conn, arrivals, now)


async def _accept_many_sqlite(db, arrivals, now=T):
    return await db.run_sqlite_transaction(lambda sqlite: inbox.accept_many_sqlite(sqlite, arrivals, now))


#: Each test below runs: accept_many on SQLite and on PostgreSQL, accept_many_sqlite on a
#: SQLite file (its batch connection on the loop's thread).
WAYS = pytest.mark.parametrize(("target", "way"), [("sqlite", "accept_many"), ("postgresql", "accept_many"),
                                                   ("sqlite", "accept_many_sqlite")], indirect=["target"])


@pytest.fixture
def accepting(target, way):
    """(database, accept) for the way under test."""
    return target._opened[0], {"accept_many": _accept_many, "accept_many_sqlite": _accept_many_sqlite}[way]


@WAYS
async def test_a_batch_records_each_webhook_once_and_keeps_the_first_delivery(accepting):
    db, accept = accepting
    batch = [arrival("msg_1", body={"n": 1}), arrival("msg_2"), arrival("msg_1", body={"n": 2}),
             arrival("msg_1", source="iot", body={"n": 3})]  # ids are per source
    assert await accept(db, batch) == {("payments", "msg_1"), ("payments", "msg_2"), ("iot", "msg_1")}
    assert await rows(db) == [("iot", "msg_1"), ("payments", "msg_1"), ("payments", "msg_2")]
    async with db.transaction(readonly=True) as conn:
        first = await inbox.get(conn, "payments", "msg_1")
        other = await inbox.get(conn, "iot", "msg_1")
    assert first["payload"] == {"n": 1} and other["payload"] == {"n": 3}  # the first delivery's body
    assert (first["received_at"], first["processed_at"], first["outcome"]) == (T, None, None)


@WAYS
async def test_a_later_batch_reports_only_what_is_new_and_changes_nothing_recorded(accepting):
    db, accept = accepting
    assert await accept(db, [arrival("msg_1", body={"n": 1}), arrival("msg_2")]) == \
        {("payments", "msg_1"), ("payments", "msg_2")}
    again = [arrival("msg_2"), arrival("msg_3"), arrival("msg_1", body={"n": 9}), arrival("msg_3"),
             arrival("msg_2", source="factory")]
    assert await accept(db, again, T + 60) == {("payments", "msg_3"), ("factory", "msg_2")}
    assert await accept(db, again, T + 120) == set()  # every one a redelivery now
    assert await accept(db, []) == set()
    async with db.transaction(readonly=True) as conn:
        kept = await inbox.get(conn, "payments", "msg_1")
    assert (kept["payload"], kept["received_at"]) == ({"n": 1}, T)
    assert len(await rows(db)) == 4


@WAYS
async def test_a_source_nobody_processes_is_recorded_as_handled(accepting):
    db, accept = accepting
    await accept(db, [arrival("msg_1", source="registry-es", outcome="recorded"), arrival("msg_2")])
    async with db.transaction(readonly=True) as conn:
        handled, waiting = await inbox.get(conn, "registry-es", "msg_1"), await inbox.get(conn, "payments", "msg_2")
    assert (handled["processed_at"], handled["outcome"]) == (T, "recorded")
    assert (waiting["processed_at"], waiting["outcome"]) == (None, None)


@WAYS
async def test_a_rolled_back_batch_is_not_a_duplicate(accepting):
    """A crash before the commit: nothing was acknowledged, the sender retries, the retry is new."""
    db, accept = accepting
    if accept is _accept_many:
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                assert await inbox.accept_many(conn, [arrival("msg_1")], T) == {("payments", "msg_1")}
                raise RuntimeError("crash while enqueuing the jobs")
    else:
        def crashing(sqlite):
            assert inbox.accept_many_sqlite(sqlite, [arrival("msg_1")], T) == {("payments", "msg_1")}
            raise RuntimeError("crash while enqueuing the jobs")

        with pytest.raises(RuntimeError):
            await db.run_sqlite_transaction(crashing)
    assert await rows(db) == []
    assert await accept(db, [arrival("msg_1")], T + 5) == {("payments", "msg_1")}


@WAYS
async def test_any_batches_report_exactly_the_webhooks_never_seen_before(accepting):
    await _against_a_model(*accepting)


async def test_inline_sqlite_batches_report_exactly_the_webhooks_never_seen_before(tmp_path):
    """``accept_many_sqlite`` on an inline SQLite connection (``sqlite_inline``: no thread)."""
    async with await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", sqlite_inline=True) as db:
        await _against_a_model(db, _accept_many_sqlite)


async def _against_a_model(db, accept):
    """Against a model (a set), over random batches with repeats inside and across them."""
    rng, seen = random.Random(22), set()
    for n in range(40):
        batch = [arrival(f"msg_{rng.randrange(30)}", source=rng.choice(["payments", "iot", "factory"]))
                 for _ in range(rng.randrange(0, 12))]
        expected = {(a.source, a.webhook_id) for a in batch} - seen
        assert await accept(db, batch, T + n) == expected, n
        seen |= expected
    assert await rows(db) == sorted(seen)


# --- mark_processed and get -------------------------------------------------------------

async def test_mark_processed(db):
    await _accept_many(db, [arrival("w-9", source="factory", body={"status": "built"})])
    async with db.transaction() as conn:
        assert await inbox.mark_processed(conn, "factory", "w-9", "vehicle registered", T + 2)
        assert not await inbox.mark_processed(conn, "factory", "never-seen", "x", T)
        row = await inbox.get(conn, "factory", "w-9")
        assert await inbox.get(conn, "factory", "never-seen") is None
    assert (row["processed_at"], row["outcome"]) == (T + 2, "vehicle registered")


# --- concurrent batches: several core processes on one database -----------------------

async def _deliver(db, batch, hold):
    """A group commit as ``flows.webhooks`` does it (inbox rows, then the jobs of the new
    ones), holding the transaction open so that the other processes' batches overlap it."""
    async with db.transaction() as conn:
        new = await inbox.accept_many(conn, batch, T)
        await jobs.enqueue_many(conn, jobs_for(batch, new), run_at=T, now=T)
        await asyncio.sleep(hold)
    return new


async def test_concurrent_batches_record_each_webhook_once_with_one_job(target):
    handles = [target._opened[0], *[await target.open() for _ in range(3)]]
    # overlapping windows of ids, each batch repeating some of its own
    batches = [[arrival(f"msg_{i}") for i in range(k * 5, k * 5 + 10)] + [arrival(f"msg_{k * 5}")]
               for k in range(4)]
    claims = await asyncio.gather(*(_deliver(db, batch, 0.05) for db, batch in zip(handles, batches, strict=True)))
    every = {(a.source, a.webhook_id) for batch in batches for a in batch}
    assert await rows(handles[0]) == sorted(every)  # one row each
    assert await job_keys(handles[0]) == sorted(inbox.job_key(*key) for key in every)  # one job each
    assert set().union(*claims) == every  # each claimed new by some batch
    if target.kind == "sqlite":  # BEGIN IMMEDIATE serializes the batches: each claimed by exactly one
        assert sum(len(c) for c in claims) == len(every)
    # (On PostgreSQL two batches reading before either commits may both call an id new:
    # ``accept_many`` says so; the row and its job still exist once, as checked above.)


async def test_concurrent_sqlite_batches_of_several_processes_claim_each_webhook_once(tmp_path):
    """accept_many_sqlite on batch connections (the core's SQLite path) racing each other and
    a transaction of another process holding the write lock."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
    handles = [await Database.open(url) for _ in range(3)]
    try:
        def work(batch):
            def run(sqlite):
                new = inbox.accept_many_sqlite(sqlite, batch, T)
                jobs.enqueue_many_sqlite(sqlite, jobs_for(batch, new), run_at=T, now=T)
                return new
            return run

        batches = [[arrival(f"msg_{i}") for i in range(k * 4, k * 4 + 8)] * 2 for k in range(6)]
        holder = asyncio.ensure_future(_deliver(handles[0], batches[0], 0.05))
        await asyncio.sleep(0.01)  # the other process holds the write lock while the batches arrive
        racing = [handles[1 + k % 2].run_sqlite_transaction(work(batch)) for k, batch in enumerate(batches[1:])]
        claims = [await holder, *await asyncio.gather(*racing)]
        every = {(a.source, a.webhook_id) for batch in batches for a in batch}
        assert sum(len(c) for c in claims) == len(every) and set().union(*claims) == every
        assert await rows(handles[0]) == sorted(every)
        assert await job_keys(handles[0]) == sorted(inbox.job_key(*key) for key in every)
    finally:
        for db in handles:
            await db.close()


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
async def test_batches_of_the_same_webhooks_in_opposite_orders_do_not_deadlock(target):
    """Rows go in key order: two PostgreSQL transactions inserting the same ids, whatever the
    order they arrived in, lock them in the same order (else: deadlock detected, a 5xx)."""
    handles = [target._opened[0], await target.open()]
    for round_ in range(5):
        ids = [f"msg_{round_}_{i:03d}" for i in range(300)]
        batches = [[arrival(i) for i in ids], [arrival(i) for i in reversed(ids)]]
        claims = await asyncio.gather(*(_deliver(db, batch, 0) for db, batch in zip(handles, batches, strict=True)))
        assert set().union(*claims) == {("payments", i) for i in ids}
