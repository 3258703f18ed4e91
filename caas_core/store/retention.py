"""Retention: the bookkeeping tables stay bounded (the webhook inbox and finished jobs).

Every webhook leaves an inbox row and most leave a job; every job stays when it ends. Under
load both tables would grow without end. ``prune`` deletes what no longer serves, in short
batches, each its own transaction: on SQLite the write lock is held briefly and webhook
ingestion goes on between batches; an interrupted prune just runs again.

**Inbox rows** of webhooks processed and received more than the inbox retention ago. What
such a row still does is dedupe: a redelivery of its webhook-id is acknowledged and ignored.
After it is gone a redelivery of that id is accepted as new and processed again, so the
retention must exceed the senders' retry window (see ``CoreSettings.inbox_retention``).
Unprocessed rows always stay: the audit reports them. And a row stays while the job that
processes it (``inbox.job_key``) exists: were the row deleted first, a redelivery would be
accepted again, find that job's dedupe key taken, get no job, and stay unprocessed for
ever. So a row outlives its job whatever the two retentions are, and ``prune`` deletes
jobs first so that a row whose job goes in this pass goes in it too.

**Jobs** done or cancelled whose last update is older than the job retention. Pending and
running jobs are work to do; failed ones stay for the audit (abandoned work). Deleting a
job frees its dedupe key: a later ``enqueue`` with that key inserts a new job. That is
safe because no flow relies on a finished job's key alone (checked for every key in
``caas_core``): each enqueue commits with the state change that causes it (the purchase's,
sale's or registration's status and counters, the invoice row) and is reached only from
the state before it, so the key guards the race between two deciders, not for ever. The
webhook processing job is the exception, and its guard is the inbox row (above). At worst
a freed key lets a second deactivation of the same purchase through (a late activation
callback after a give-up), which the IoT API answers 422 and the job takes as done.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, exists, select, tuple_

from .db import Database
from .inbox import job_key_of
from .jobs import CANCELLED, DONE
from .schema import jobs, webhook_inbox

#: Rows deleted per transaction.
BATCH = 1000


@dataclass(frozen=True, slots=True)
class Pruned:
    inbox: int
    jobs: int


async def prune(db: Database, *, now: float, inbox_retention: float, job_retention: float,
                batch: int = BATCH) -> Pruned:
    """Delete finished jobs older than ``job_retention``, then processed inbox rows older
    than ``inbox_retention`` (seconds of the core's clock before ``now``); how many of each."""
    pruned_jobs = await prune_jobs(db, before=now - job_retention, batch=batch)
    return Pruned(inbox=await prune_inbox(db, before=now - inbox_retention, batch=batch), jobs=pruned_jobs)


async def prune_jobs(db: Database, *, before: float, batch: int = BATCH) -> int:
    """Delete jobs done or cancelled last updated before ``before``; how many."""
    old = jobs.alias("old")
    ids = select(old.c.id).where(old.c.status.in_((DONE, CANCELLED)), old.c.updated_at < float(before)).limit(batch)
    return await _in_batches(db, delete(jobs).where(jobs.c.id.in_(ids)), batch)


async def prune_inbox(db: Database, *, before: float, batch: int = BATCH) -> int:
    """Delete inbox rows received before ``before``, processed, and whose processing job is
    gone; how many."""
    old = webhook_inbox.alias("old")
    keys = (select(old.c.source, old.c.webhook_id)
            .where(old.c.processed_at.is_not(None), old.c.received_at < float(before),
                   ~exists().where(jobs.c.dedupe_key == job_key_of(old)))
            .limit(batch))
    stmt = delete(webhook_inbox).where(tuple_(webhook_inbox.c.source, webhook_inbox.c.webhook_id).in_(keys))
    return await _in_batches(db, stmt, batch)


async def _in_batches(db: Database, stmt, batch: int) -> int:
    """Run a ``DELETE`` of at most ``batch`` rows until it deletes fewer."""
    total = 0
    while True:
        async with db.transaction() as conn:
            deleted = (await conn.execute(stmt)).rowcount
        total += deleted
        if deleted < batch:
            return total
