"""Webhooks from the external systems: accepted durably once, processed as jobs.

The endpoint has already verified the signature. Here the webhook-id is
recorded in the inbox and the job that processes it is enqueued in the same
transaction, before the 2xx goes back: a duplicate is acknowledged and
ignored, and a crash after the acknowledgement loses nothing.
"""

from __future__ import annotations

import asyncio

import orjson
from sqlalchemy import func, select, update

from ..domain.money import Money
from ..domain.purchase import PurchaseEvent, PurchaseState, can, transition
from ..domain.settlement import PaymentStatus, SettlementEvent, decide
from ..store import inbox, jobs
from ..store.schema import collection_cases, payments, purchases, refunds, sales
from . import refunding
from .core import Core
from .manufacturing import FACTORY_EVENT
from .ota import OUTCOME
from .runner import JobContext

PAYMENT_EVENT = "payments.event"
REGISTRY_EVENT = "registry.event"
#: The job that processes each source's webhooks.
PROCESSORS = {"iot": OUTCOME, "payments": PAYMENT_EVENT, "factory": FACTORY_EVENT, "registry-uk": REGISTRY_EVENT}


async def receive(core: Core, source: str, webhook_id: str, body: dict, correlation_id: str | None,
                  raw: bytes | None = None) -> bool:
    """True for a new webhook, False for a duplicate (both are acknowledged).

    Returns once the inbox row and its processing job are committed. ``raw`` is the body
    as it arrived (a JSON object: the endpoint parsed it), stored as is."""
    payload = raw.decode() if raw is not None else orjson.dumps(body).decode()
    return await _group_commit(core).submit(source, webhook_id, payload, correlation_id)


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

    async def submit(self, source: str, webhook_id: str, payload: str, correlation_id: str | None) -> bool:
        kind = PROCESSORS.get(source)
        arrival = inbox.Arrival(source, webhook_id, payload, None if kind else "recorded")
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
        if self.core.db.dialect == "sqlite":  # one hop to the driver's thread for the whole transaction
            def work(sqlite) -> set[tuple[str, str]]:
                new = inbox.accept_many_sqlite(sqlite, arrivals, now)
                jobs.enqueue_many_sqlite(sqlite, _jobs_for(batch, new), run_at=now, now=now)
                return new
            return await self.core.db.run_sqlite_transaction(work)
        async with self.core.db.transaction() as conn:
            new = await inbox.accept_many(conn, arrivals, now)
            await jobs.enqueue_many(conn, _jobs_for(batch, new), run_at=now, now=now)
        return new


def _jobs_for(batch, new: set[tuple[str, str]]) -> list[jobs.NewJob]:
    """The processing job of each webhook of the batch recorded for the first time."""
    found, seen = [], set()
    for arrival, correlation_id, _ in batch:
        key = (arrival.source, arrival.webhook_id)
        kind = PROCESSORS.get(arrival.source)
        if kind is None or key not in new or key in seen:
            continue
        seen.add(key)
        payload = orjson.dumps({"source": arrival.source, "webhookId": arrival.webhook_id,
                                "body": orjson.Fragment(arrival.payload)}).decode()
        found.append(jobs.NewJob(kind, payload, inbox.job_key(arrival.source, arrival.webhook_id), correlation_id))
    return found


def _group_commit(core: Core) -> GroupCommit:
    # One per core (per process): kept on the instance, as Core is the flows' shared state.
    found = core.__dict__.get("_webhook_group_commit")
    if found is None:
        found = core.__dict__["_webhook_group_commit"] = GroupCommit(core)
    return found


async def on_payment_event(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """Refund outcomes, settlement and chargebacks. A failed settlement or a chargeback opens a
    collection case and never touches what was delivered (no retroactive blocking)."""
    body, now = job.payload["body"], core.clock.now()
    async with core.db.transaction() as conn:
        payment = (await conn.execute(select(payments).where(
            payments.c.gateway_payment_id == body.get("paymentId")))).mappings().first()
        purchase = None
        if payment is not None and payment["purchase_id"]:
            purchase = (await conn.execute(select(purchases).where(
                purchases.c.id == payment["purchase_id"]))).mappings().first()
        event = body.get("event")
        if payment is None:
            outcome = "unknown payment"
        elif event == "refundStatus":
            if not await _refund_known(conn, body, purchase) and job.attempts < REFUND_PATIENCE:
                # The refund's own transaction (a withdrawal cut by a crash, say) has not
                # committed yet: wait for it rather than lose the outcome.
                await jobs.retry(conn, job.id, run_at=now + REFUND_RECHECK, error="refund not recorded yet")
                return
            # Only the transaction that changes the refund's status acts on it: a redelivered
            # outcome (another webhook-id) finds it changed already (on PostgreSQL the row lock
            # makes a concurrent one wait, then match nothing).
            changed = (await conn.execute(update(refunds).where(
                refunds.c.id == body.get("refundId"), refunds.c.status != body["status"]).values(
                status=body["status"]))).rowcount == 1
            outcome = f"refund {body['status']}" if changed else f"refund {body['status']} (already recorded)"
            if body["status"] == "SUCCEEDED" and purchase is not None \
                    and can(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED):
                state = transition(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED)
                await conn.execute(update(purchases).where(purchases.c.id == purchase["id"]).values(
                    status=state.value, updated_at=now))
            elif body["status"] == "FAILED" and payment["status"] == "FAILED":  # refused: nothing came in
                await _nothing_to_give_back(conn, payment["id"], purchase, now)
            elif body["status"] == "FAILED" and changed:  # the money came in: an operator refunds it by hand
                outcome = await refunding.failed_at_gateway(conn, payment, purchase, body, now)
        elif event in ("paymentSettlement", "paymentChargeback"):
            outcome = await _settle(core, conn, payment, purchase, body, now)
        else:
            outcome = f"ignored {event}"
        await inbox.mark_processed(conn, job.payload["source"], job.payload["webhookId"], outcome, now)
        await jobs.complete(conn, job.id)


#: How often, and how many times (a week), a refund outcome waits for its refund to be recorded.
REFUND_RECHECK, REFUND_PATIENCE = 300.0, 2016


async def _refund_known(conn, body: dict, purchase) -> bool:
    recorded = await conn.scalar(select(refunds.c.id).where(refunds.c.id == body.get("refundId")))
    if recorded is None:
        return False
    return body["status"] != "SUCCEEDED" or purchase is None \
        or can(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED)


async def _settle(core: Core, conn, payment, purchase, body: dict, now: float) -> str:
    """Fold a settlement or chargeback into the payment (``domain.settlement.decide``): by the
    gateway's sequence, so a duplicate or an overtaken event changes nothing."""
    try:
        event = SettlementEvent.from_webhook(body)
    except (KeyError, TypeError, ValueError) as exc:  # signed, but not what the contract describes
        return f"malformed {body.get('event')}: {type(exc).__name__}: {exc}"
    refunded = int(await conn.scalar(select(func.coalesce(func.sum(refunds.c.amount_minor), 0)).where(
        refunds.c.payment_id == payment["id"], refunds.c.status != "FAILED")))  # PostgreSQL sums are Decimal
    status = payment["status"] if payment["status"] in PaymentStatus.__members__ else PaymentStatus.PENDING
    decision = decide(event, status=PaymentStatus(status), last_sequence=payment["last_sequence"],
                      charged=Money(payment["amount_minor"], payment["currency"]),
                      refunded=Money(refunded, payment["currency"]),
                      delivery=await _delivery_of(conn, payment, purchase))
    if decision.ignored:
        return decision.note
    settled = decision.status is PaymentStatus.SETTLED
    await conn.execute(update(payments).where(payments.c.id == payment["id"]).values(
        status=decision.status.value, last_sequence=decision.last_sequence,
        settled_at=event.at if settled else payment["settled_at"],
        failure_reason=None if settled else event.reason))
    if decision.collection is not None:
        case = decision.collection
        await conn.execute(collection_cases.insert().values(
            id=core.new_id("col"), payment_id=payment["id"], customer_id=await _customer_of(conn, payment, purchase),
            amount_minor=case.amount.minor, currency=case.amount.currency, reason=f"{case.kind.value}: {case.reason}",
            status="on_hold" if case.on_hold else "open", created_at=now))
    if decision.close_collection:
        await conn.execute(update(collection_cases).where(
            collection_cases.c.payment_id == payment["id"], collection_cases.c.status.in_(("open", "on_hold")))
            .values(status="closed"))
    if decision.void_pending_refunds:  # no money arrived: there is nothing to give back
        await conn.execute(update(refunds).where(refunds.c.payment_id == payment["id"],
                                                 refunds.c.status == "PENDING").values(status="VOID"))
        await _nothing_to_give_back(conn, payment["id"], purchase, now)
    return decision.note


async def _nothing_to_give_back(conn, payment_id: str, purchase, now: float) -> None:
    """No money came in (the payment failed to settle): a purchase waiting for its refund
    (an activation given up) has none to wait for, and ends refunded, of nothing. Found by
    the crash test on PostgreSQL: such a purchase stayed ACTIVATION_FAILED for ever."""
    if purchase is None or not can(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED):
        return
    if await conn.scalar(select(refunds.c.id).where(refunds.c.payment_id == payment_id,
                                                    refunds.c.status == "PENDING").limit(1)):
        return
    state = transition(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED)
    await conn.execute(update(purchases).where(purchases.c.id == purchase["id"]).values(
        status=state.value, updated_at=now))


async def _delivery_of(conn, payment, purchase) -> PurchaseState:
    """What the customer owes for: the purchase's state, or for a sale's payments, owed
    unless the sale ended refunded (order rejected, sale cancelled)."""
    if purchase is not None:
        return PurchaseState(purchase["status"])
    if payment["sale_id"]:
        status = await conn.scalar(select(sales.c.status).where(sales.c.id == payment["sale_id"]))
        return PurchaseState.REFUNDED if status in ("ORDER_REJECTED", "CANCELLED") else PurchaseState.ACTIVE
    return PurchaseState.REFUNDED  # a payment of nothing we know: nothing owed


async def _customer_of(conn, payment, purchase) -> str:
    if purchase is not None:
        return purchase["customer_id"]
    return await conn.scalar(select(sales.c.customer_id).where(sales.c.id == payment["sale_id"]))
