"""Backpressure on webhook ingestion: refuse new webhooks while the job queue is too deep.

Ingestion is cheaper than processing, so a sender that outpaces the core would grow the
queue without bound (443,672 jobs queued after ten minutes of load, see docs/benchmarks.md).
Past ``CoreSettings.webhook_backlog`` jobs due and not yet run, a webhook is answered 503
with Retry-After and nothing recorded: Standard Webhooks senders retry it later, by which
time the queue has drained. What was acknowledged before stays acknowledged and is
processed once, as ever.

The depth is an estimate kept without a query per request: a sample of the queue
(``jobs.count_due``, which stops counting at the bound), plus the processing jobs this
process committed since. A sample is taken in the background every ``SAMPLE_EVERY``
seconds, or every ``SAMPLE_EVERY_NEAR`` while the estimate is past half the bound (that
is how a full queue is seen draining, here or by other processes on the same database).
Between two samples the estimate only grows, so it errs on the side of refusing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..clock import CoreClock
from ..domain.errors import Overloaded
from ..store import jobs
from ..store.db import Database

log = logging.getLogger("caas_core.backlog")

#: Real seconds between two samples of the queue's depth, and while it is past half the bound.
SAMPLE_EVERY = 1.0
SAMPLE_EVERY_NEAR = 0.05


class Backlog:
    def __init__(self, db: Database, clock: CoreClock, bound: int, retry_after: int) -> None:
        """``bound``: jobs due and not yet run past which webhooks are refused (0: never)."""
        self.db, self.clock, self.bound, self.retry_after = db, clock, bound, retry_after
        self.depth = 0  # the last sample plus the jobs added since
        self.added = 0  # jobs this process added, ever
        self._sampled_at = float("-inf")  # time.monotonic() of the last sample
        self._sampling: asyncio.Future | None = None

    def check(self) -> None:
        """Raise ``Overloaded`` while the queue is past the bound (no I/O: a sample, when one
        is due, runs in the background)."""
        if not self.bound:
            return
        full = self.depth >= self.bound
        # Near the bound it is sampled often: the estimate only grows between samples, and at
        # thousands of webhooks a second it would reach the bound while the queue itself is short.
        near = self.depth * 2 >= self.bound
        if self._sampling is None and time.monotonic() - self._sampled_at >= (
                SAMPLE_EVERY_NEAR if near else SAMPLE_EVERY):
            self._sampling = asyncio.ensure_future(self.sample())
            self._sampling.add_done_callback(self._sampled)
        if full:
            raise Overloaded("Webhook backlog full",
                             f"more than {self.bound} jobs wait to be processed; nothing was recorded, "
                             f"send it again later", kind="webhook-backlog", retry_after=self.retry_after)

    def add(self, count: int) -> None:
        """``count`` processing jobs were committed by this process."""
        self.added += count
        self.depth += count

    async def sample(self) -> int:
        """Read the queue's depth now (counting at most to the bound); returns the estimate."""
        added = self.added
        counted = await jobs.count_due(self.db, now=self.clock.now(), cap=max(self.bound, 1))
        # Jobs added while counting may or may not be in the count: counted again, to err on the safe side.
        self.depth = counted + (self.added - added)
        self._sampled_at = time.monotonic()
        return self.depth

    def _sampled(self, done: asyncio.Future) -> None:
        self._sampling = None
        if not done.cancelled() and done.exception() is not None:  # the next check samples again
            self._sampled_at = time.monotonic()
            log.warning("could not sample the job queue: %s", done.exception())
