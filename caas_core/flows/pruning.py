"""The recurring job that keeps the inbox and the job queue bounded (``store.retention``).

One job row for the whole deployment, its dedupe key its kind: every core process enqueues
it at startup (and ``/__admin/reset`` again), and only the first insert counts, however many
processes start (``serve core --workers N``). Each run prunes, then puts the same row back
to pending at the next interval boundary of the core's clock (``prune_interval`` counted
from the epoch), as the billing charge is due at the first instant of a month. So the row
never ends (it is never done, so never pruned); a core that was down for days prunes once,
not once per missed interval; and it touches no simulator. Nothing waits on it: it is due
at the next boundary, not now, so a settle loop or the audit sees it scheduled, not in
flight; and it is housekeeping for the job runner (``JobRunner.housekeeping``): it runs
when the clock passes its time anyway, taking no step of a world in virtual time.
"""

from __future__ import annotations

import logging
import math

from ..store import jobs, retention
from .core import Core
from .runner import JobContext

PRUNE = "retention.prune"

log = logging.getLogger("caas_core.retention")


def next_run(now: float, interval: float) -> float:
    """The first boundary of ``interval`` (from the epoch) after ``now``."""
    return (math.floor(now / interval) + 1) * interval


async def schedule(core: Core) -> str:
    """Enqueue the prune job unless it exists (idempotent); its id."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        return await jobs.enqueue(conn, PRUNE, {}, run_at=next_run(now, core.settings.prune_interval), now=now,
                                  dedupe_key=PRUNE)


async def prune(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """The job: prune, then come back at the next boundary."""
    settings, now = core.settings, core.clock.now()
    pruned = await retention.prune(core.db, now=now, inbox_retention=settings.inbox_retention,
                                   job_retention=settings.job_retention)
    log.info("pruned %d inbox rows and %d finished jobs", pruned.inbox, pruned.jobs)
    now = core.clock.now()
    async with core.db.transaction() as conn:
        await jobs.reschedule(conn, job.id, run_at=next_run(now, settings.prune_interval), now=now)
