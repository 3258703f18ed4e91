"""Runs durable jobs as the core's clock passes their run-at time.

In real and scaled time a loop wakes when the next job is due (or every poll
interval, for jobs another core process enqueued). In virtual time nothing runs
until the clock is moved: ``advance_to`` moves it job by job, running what is
due at each step, as the simulators' clocks move event by event.

A handler does its work and records its effects and ``jobs.complete`` in one
transaction; if it crashes half-way the job's lease expires and it runs again,
so handlers must be idempotent (they use Idempotency-Keys upstream and check
state before acting). An unexpected error is retried a few times, then the job
is failed and journaled in the audit log for an operator.

A reset of the world (``/__admin/reset``) first ``pause``s the runner: nothing new is claimed
nor read from the queue until ``resume``, the pass under way ends after the jobs it claimed
(``quiet`` says when), and ``cut_short`` cancels those jobs when they take too long.

Kinds with a batch handler (``batches``: database work only, no call to a peer, such as a
webhook's processing) run many claimed jobs in one transaction, in claim order: a job
and its transaction cost several times the handler's own statements (see
docs/benchmarks.md). Should the batch fail, its jobs run again one by one, each with
the error handling above.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from caas_sim.logs import CORRELATION

from ..clock import CoreClock
from ..store import jobs
from ..store.db import Database

log = logging.getLogger("caas_core.jobs")

#: Clock seconds before an unexpectedly failing job runs again, and how often.
ERROR_RETRY_DELAY = 60.0
ERROR_RETRIES = 5
#: Real seconds between two looks at the queue in real/scaled time.
POLL_INTERVAL = 1.0


@dataclass
class JobContext:
    db: Database
    clock: CoreClock


Handler = Callable[[jobs.Job, JobContext], Awaitable[None]]
#: Runs many jobs of one kind in one transaction, in the order given (all or nothing).
BatchHandler = Callable[[list[jobs.Job], JobContext], Awaitable[None]]


class JobRunner:
    def __init__(self, db: Database, clock: CoreClock, handlers: dict[str, Handler], *, worker: str,
                 batch: int = 20, lanes: int = 16, housekeeping: frozenset[str] = frozenset(),
                 batches: dict[str, BatchHandler] | None = None, batch_claim: int = 100):
        """``housekeeping``: job kinds that never set the pace of the clock. They run when the
        clock passes their time for another reason (or at the next poll in real time), so a
        world advanced in virtual time takes no step of its own for them (a daily prune was
        a step per virtual midnight, and a month-long journey paid for each).
        ``batches``: the kinds that may run many jobs in one transaction; while the queue
        brings those, a claim takes up to ``batch_claim`` jobs instead of ``batch``."""
        self.db, self.clock, self.handlers = db, clock, handlers
        self.worker, self.batch, self.lanes = worker, batch, lanes
        self.batches = batches or {}
        self.batch_claim = max(batch, batch_claim)
        self._claim = batch  # this pass's claim size: grows while claims are full and batchable
        self.housekeeping = housekeeping
        self.busy = 0  # passes over the queue under way in this process
        self.ran = 0  # jobs run since start
        self.serving = False  # ``serve`` runs the queue (else whoever moves a virtual clock does)
        self._context = JobContext(db, clock)
        self._lock = asyncio.Lock()  # one pass over the queue at a time in this process
        self._wake = asyncio.Event()
        self._due: tuple[int, jobs.DueTimes] | None = None  # (db.writes, due times) when read
        self._resumed = asyncio.Event()  # clear while paused
        self._resumed.set()
        self._active = 0  # passes and reads of the queue under way
        self._quiet = asyncio.Event()  # set while none is
        self._quiet.set()
        self._passer: asyncio.Task | None = None  # the task running the pass under way
        #: Tasks waiting for ``resume`` to claim or read the queue (they hold nothing meanwhile).
        self.waiting: set[asyncio.Task] = set()
        self._cut = False  # cut_short cancelled it

    def kick(self) -> None:
        """Something was enqueued for now: run it without waiting for the next poll."""
        self._wake.set()

    @property
    def passing(self) -> bool:
        """A pass over the queue is under way (claiming, or running what it claimed)."""
        return self._lock.locked()

    def pause(self) -> None:
        """Start nothing (no claim, no read of the queue) until ``resume``; a pass under way
        claims no more and ends once what it claimed has run."""
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()
        self.kick()

    @property
    def at_rest(self) -> bool:
        """Nothing the runner started is under way (after ``pause``, it stays so)."""
        return self._quiet.is_set()

    async def quiet(self) -> None:
        """Until the runner is ``at_rest``."""
        await self._quiet.wait()

    def cut_short(self) -> None:
        """Cancel the jobs of the pass under way (paused: nothing is claimed after them).
        They stay claimed until their lease lapses: for a reset, whose tables go with them."""
        if self._passer is not None and not self._cut:
            self._cut = True
            self._passer.cancel()

    async def _resumption(self) -> None:
        task = asyncio.current_task()
        self.waiting.add(task)
        try:
            while not self._resumed.is_set():
                await self._resumed.wait()
        finally:
            self.waiting.discard(task)

    def _enter(self) -> None:
        self._active += 1
        self._quiet.clear()

    def _leave(self) -> None:
        self._active -= 1
        if not self._active:
            self._quiet.set()

    async def run_due(self, stop: asyncio.Event | None = None) -> int:
        """Run every job due now, or until ``stop`` is set (the jobs claimed by then finish);
        returns how many ran. Paused, it waits for ``resume``; paused while it runs, it ends
        after what it claimed (or when ``cut_short``)."""
        ran = 0
        if not self._resumed.is_set():  # paused: the world is being reset
            await self._resumption()
        async with self._lock:
            self.busy += 1  # the whole pass: its claims are work too
            self._enter()
            self._passer = asyncio.current_task()
            try:
                while (stop is None or not stop.is_set()) and self._resumed.is_set():
                    claimed = await jobs.claim_due(self.db, now=self.clock.now(), worker=self.worker,
                                                   limit=self._claim)
                    if not claimed:
                        self._claim = self.batch
                        return ran
                    full = len(claimed) == self._claim
                    batchable = sum(job.kind in self.batches for job in claimed)
                    self._claim = self.batch_claim if full and batchable * 2 > len(claimed) else self.batch
                    if self.lanes > 1 and self.clock.mode != "virtual":
                        await self._run_in_lanes(claimed)
                    else:  # virtual time: one at a time, so that a seeded run always unfolds the same way
                        for run in _runs(claimed, self.batches):
                            await self._run_many(run)
                    ran += len(claimed)
                    self.ran += len(claimed)
                    if self.clock.mode != "virtual":
                        # SQLite on the loop's thread never suspends: let requests in between claims
                        await asyncio.sleep(0)
                return ran
            except asyncio.CancelledError:
                if not self._cut or self._passer.uncancel():  # cancelled from elsewhere as well: as before
                    raise
                return ran  # cut short: what it claimed is abandoned
            finally:
                self._passer, self._cut = None, False
                self.busy -= 1
                self._leave()

    async def _run_in_lanes(self, claimed: list[jobs.Job]) -> None:
        """Real and scaled time: the claimed jobs run side by side, one lane per correlation
        id (a purchase's jobs share one), in claim order within a lane.

        One at a time, a job waiting on a peer (an OTA push, a payment) or on the database
        held up every other: the queue drained at one job per round trip, whatever the CPU
        left (see docs/benchmarks.md). A purchase's own jobs still run one after
        the other, as before; jobs of different purchases never shared state that the
        handlers do not already guard, since several core processes run them side by side
        too (``serve core --workers``)."""
        by_lane: dict[str | None, list[jobs.Job]] = {}
        for job in claimed:
            by_lane.setdefault(job.correlation_id, []).append(job)
        # The lanes made only of jobs of one batchable kind go together, one batch per kind
        # (in claim order: each lane's order is kept), beside the other lanes.
        batched: dict[str, list[jobs.Job]] = {}
        for key, queue in list(by_lane.items()):
            kind = queue[0].kind
            if kind in self.batches and all(job.kind == kind for job in queue):
                batched.setdefault(kind, []).extend(queue)
                del by_lane[key]
        runs = [sorted(run, key=lambda j: (j.run_at, j.id)) for run in batched.values()] + list(by_lane.values())
        if len(runs) == 1:
            await self._run_many(runs[0])
            return
        lanes = asyncio.Semaphore(self.lanes)

        async def lane(queue: list[jobs.Job]) -> None:
            async with lanes:
                await self._run_many(queue)

        await asyncio.gather(*(lane(queue) for queue in runs))

    async def _run_many(self, queue: list[jobs.Job]) -> None:
        """The jobs of ``queue`` in order: in one batch when they are all of one batchable kind."""
        batch = self.batches.get(queue[0].kind)
        if batch is not None and len(queue) > 1 and all(job.kind == queue[0].kind for job in queue):
            try:
                await batch(queue, self._context)
                return
            except Exception:  # rolled back as a whole: each job again on its own, with its own error handling
                log.warning("a batch of %d %s jobs failed; running them one by one", len(queue), queue[0].kind,
                            exc_info=True)
        for job in queue:
            await self._run(job)

    async def _run(self, job: jobs.Job) -> None:
        token = CORRELATION.set(job.correlation_id)  # on every line the job logs
        try:
            await self._run_job(job)
        finally:
            CORRELATION.reset(token)

    async def _run_job(self, job: jobs.Job) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            await handler(job, self._context)
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            async with self.db.transaction() as conn:
                if job.attempts + 1 >= ERROR_RETRIES:
                    await jobs.fail(conn, job.id, f"{type(exc).__name__}: {exc}")
                else:
                    await jobs.retry(conn, job.id, run_at=self.clock.now() + ERROR_RETRY_DELAY,
                                     error=f"{type(exc).__name__}: {exc}")

    async def next_due(self) -> float | None:
        """When the next job that sets the pace of the clock (housekeeping aside) falls due."""
        return (await self._due_times()).paced

    async def has_due(self) -> bool:
        """Whether a job of any kind is claimable now."""
        first = (await self._due_times()).first
        return first is not None and first <= self.clock.now()

    async def _due_times(self) -> jobs.DueTimes:
        # On a private database the answer holds until the next write: a world in virtual
        # time asks several times per event.
        if not self._resumed.is_set():  # paused: the tables may be going
            await self._resumption()
        self._enter()
        try:
            if not self.db.private:
                return await jobs.due_times(self.db, excluding=self.housekeeping)
            writes = self.db.writes
            if self._due is None or self._due[0] != writes:
                self._due = (writes, await jobs.due_times(self.db, excluding=self.housekeeping))
            return self._due[1]
        finally:
            self._leave()

    async def advance_to(self, target: float) -> int:
        """Virtual/scaled time: move to ``target`` job by job; returns the jobs run."""
        ran = await self.run_due()
        while True:
            due = await self.next_due()
            if due is None or due > target:
                break
            if due > self.clock.now():
                self.clock.move_to(due)
            ran += await self.run_due()
        if target > self.clock.now():
            self.clock.move_to(target)
        return ran + await self.run_due()

    async def serve(self, stop: asyncio.Event) -> None:
        """Run jobs as they fall due until ``stop`` is set. In virtual time only what is due
        now runs here (enqueued for now, or reached by ``advance_to``): the clock waits."""
        self.serving = True
        try:
            while not stop.is_set():
                self._wake.clear()
                await self.run_due(stop)  # a backlog must not hold a shutdown: it waits in the queue
                wait = POLL_INTERVAL
                if self.clock.mode != "virtual":  # (a virtual clock's due times wait for advance_to)
                    due = await self.next_due()
                    if due is not None:
                        wait = min(wait, max(0.0, (due - self.clock.now()) / self.clock.scale))
                stopping = asyncio.ensure_future(stop.wait())
                waking = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({stopping, waking}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                waking.cancel()
        finally:
            self.serving = False


def _runs(claimed: list[jobs.Job], batches: dict[str, BatchHandler]) -> list[list[jobs.Job]]:
    """``claimed`` cut, in order, into runs of consecutive jobs of one batchable kind and
    single jobs of the others."""
    runs: list[list[jobs.Job]] = []
    for job in claimed:
        if runs and job.kind in batches and runs[-1][0].kind == job.kind:
            runs[-1].append(job)
        else:
            runs.append([job])
    return runs
