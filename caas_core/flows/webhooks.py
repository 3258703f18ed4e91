"""Webhooks from the external systems: accepted durably once, processed as jobs.

The endpoint has already verified the signature. Here the body is parsed into its wire
model (``clients.wire``), the webhook-id recorded in the inbox and the job that processes
it enqueued in the same transaction, before the 2xx goes back: a duplicate is acknowledged
and ignored, and a crash after the acknowledgement loses nothing. A body the core cannot
act on (not what its contract describes, or of a kind it does not know) is acknowledged and
recorded with why, and no job is made for it: redelivering it would not help. Each job
parses the stored body again before it acts (``flows.ota``, ``flows.settlement``,
``flows.manufacturing``, ``flows.registration``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from ..clients.wire import factory, iot, payments, registries
from ..clients.wire.base import Unusable
from ..store import inbox, jobs
from .core import Core
from .manufacturing import FACTORY_EVENT
from .ota import OUTCOME
from .settlement import PAYMENT_EVENT

REGISTRY_EVENT = "registry.event"
#: The job that processes each source's webhooks.
PROCESSORS = {"iot": OUTCOME, "payments": PAYMENT_EVENT, "factory": FACTORY_EVENT, "registry-uk": REGISTRY_EVENT}
#: How each source's webhook bodies parse (``clients.wire``); ``Unusable`` when one cannot.
PARSERS: dict[str, Callable[[Any], Any]] = {"iot": iot.parse_callback, "payments": payments.parse_event,
                                            "factory": factory.parse_event, "registry-uk": registries.parse_event}


async def receive(core: Core, source: str, webhook_id: str, body: dict, correlation_id: str | None,
                  raw: bytes | None = None) -> bool:
    """True for a new webhook, False for a duplicate (both are acknowledged).

    Returns once the inbox row and its processing job are committed. ``raw`` is the body
    as it arrived (a JSON object: the endpoint parsed it), stored as is. Raises
    ``Overloaded`` (nothing recorded) while the job queue is past its bound."""
    if core.backlog is not None:
        core.backlog.check()
    payload = raw.decode() if raw is not None else orjson.dumps(body).decode()
    return await _group_commit(core).submit(source, webhook_id, payload, correlation_id,
                                            unusable=unusable(source, body))


def unusable(source: str, body: Any) -> str | None:
    """Why the core cannot act on this webhook body (recorded as its outcome), or None."""
    parse = PARSERS.get(source)
    if parse is None:
        return None
    try:
        parse(body)
    except Unusable as exc:
        return exc.outcome
    return None


class GroupCommit:
    """Concurrent webhooks share one transaction (group commit).

    A webhook's acknowledgement waits for its commit; one commit per webhook made the
    database's round trips and SQLite's one-writer lock the limit (about 450 webhooks/s
    on one process, see docs/benchmarks.md). Here the first webhook to arrive
    starts a flush; those arriving while its transaction is in flight queue up and go
    together in the next one, so a burst costs a few transactions and a lone webhook
    waits for nothing. Durability is unchanged: every caller's future resolves only
    after the transaction holding its inbox row and job has committed, and fails (so the
    sender gets a 5xx and retries) if it rolled back.
    """

    MAX_BATCH = 500

    def __init__(self, core: Core) -> None:
        self.core = core
        self.pending: list[tuple[inbox.Arrival, str | None, asyncio.Future]] = []
        self.flushing: asyncio.Task | None = None

    async def submit(self, source: str, webhook_id: str, payload: str, correlation_id: str | None, *,
                     unusable: str | None = None) -> bool:
        """``unusable``: why the body cannot be acted on; then it is recorded with that, and no job."""
        kind = PROCESSORS.get(source)
        arrival = inbox.Arrival(source, webhook_id, payload, unusable or (None if kind else "recorded"))
        done = asyncio.get_running_loop().create_future()
        self.pending.append((arrival, correlation_id, done))
        if self.flushing is None:
            self.flushing = asyncio.ensure_future(self._flush())
        return await done

    async def _flush(self) -> None:
        try:
            while self.pending:
                await self._gather()
                batch, self.pending = self.pending[:self.MAX_BATCH], self.pending[self.MAX_BATCH:]
                try:
                    new = await self._commit(batch)
                except BaseException as exc:  # every waiter hears of it: nothing was acknowledged
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if not isinstance(exc, Exception):  # cancelled at shutdown: fail the rest too
                        for _, _, done in self.pending:
                            done.cancel()
                        self.pending = []
                        raise
                    continue
                claimed: set[tuple[str, str]] = set()
                for arrival, _, done in batch:
                    key = (arrival.source, arrival.webhook_id)
                    first = key in new and key not in claimed  # a repeat in one batch is a duplicate
                    claimed.add(key)
                    if not done.done():
                        done.set_result(first)
                if new:
                    self.core.wake()
        finally:
            self.flushing = None

    async def _gather(self) -> None:
        """Let the event loop turn while each turn brings more webhooks: those whose requests
        were read in the same turns join this batch instead of waiting for the next commit.
        A commit costs about as much as eight webhooks' rows, so under load batches of 10
        cost 20 % more CPU per webhook than batches of 30; a lone webhook waits one turn."""
        while len(self.pending) < self.MAX_BATCH:
            waiting = len(self.pending)
            await asyncio.sleep(0)
            if len(self.pending) == waiting:
                return

    async def _commit(self, batch) -> set[tuple[str, str]]:
        now = self.core.clock.now()
        arrivals = [arrival for arrival, _, _ in batch]
        queued = 0
        if self.core.db.dialect == "sqlite":  # one hop to the driver's thread for the whole transaction
            def work(sqlite) -> set[tuple[str, str]]:
                nonlocal queued
                new = inbox.accept_many_sqlite(sqlite, arrivals, now)
                found = _jobs_for(batch, new)
                jobs.enqueue_many_sqlite(sqlite, found, run_at=now, now=now)
                queued = len(found)
                return new
            new = await self.core.db.run_sqlite_transaction(work)
        else:
            async with self.core.db.transaction() as conn:
                new = await inbox.accept_many(conn, arrivals, now)
                found = _jobs_for(batch, new)
                await jobs.enqueue_many(conn, found, run_at=now, now=now)
            queued = len(found)
        if self.core.backlog is not None:
            self.core.backlog.add(queued)
        return new


def _jobs_for(batch, new: set[tuple[str, str]]) -> list[jobs.NewJob]:
    """The processing job of each webhook of the batch recorded for the first time."""
    found, seen = [], set()
    for arrival, correlation_id, _ in batch:
        key = (arrival.source, arrival.webhook_id)
        kind = PROCESSORS.get(arrival.source)
        if kind is None or arrival.processed_outcome is not None or key not in new or key in seen:
            continue
        seen.add(key)
        payload = orjson.dumps({"source": arrival.source, "webhookId": arrival.webhook_id,
                                "body": orjson.Fragment(arrival.payload)}).decode()
        found.append(jobs.NewJob(kind, payload, inbox.job_key(arrival.source, arrival.webhook_id), correlation_id))
    return found


def _group_commit(core: Core) -> GroupCommit:
    if core.webhook_batches is None:  # one per core (per process)
        core.webhook_batches = GroupCommit(core)
    return core.webhook_batches
