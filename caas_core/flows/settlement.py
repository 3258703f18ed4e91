"""The payment gateway's webhooks, processed: refund outcomes, settlement and chargebacks.

``flows.webhooks`` accepts each webhook durably and enqueues ``PAYMENT_EVENT``; here its
stored body is parsed (``clients.wire.payments``) and folded into the payment it is about.
A failed settlement or a chargeback opens a collection case and never touches what was
delivered (no retroactive blocking): ``domain.settlement`` decides, by the gateway's
per-payment ``sequence``, so a duplicate or an overtaken event changes nothing. A refund's
outcome completes the purchase waiting for it (``REFUNDED``), or, when the gateway could not
pay it back, goes to an operator (``refunding.failed_at_gateway``).
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from ..clients.wire.base import Unusable
from ..clients.wire.payments import (
    ChargebackNotification,
    RefundNotification,
    SettlementNotification,
    parse_event,
)
from ..clients.wire.payments import Money as WireMoney
from ..domain.money import Money
from ..domain.purchase import PurchaseEvent, PurchaseState, can, transition
from ..domain.settlement import PaymentStatus, SettlementEvent, SettlementKind, decide
from ..store import inbox, jobs
from ..store.schema import collection_cases, payments, refunds, sales
from . import purchase_records as records
from . import refunding
from .core import Core
from .runner import JobContext

PAYMENT_EVENT = "payments.event"
#: How often, and how many times (a week), a refund outcome waits for its refund to be recorded.
REFUND_RECHECK, REFUND_PATIENCE = 300.0, 2016


async def on_payment_event(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """Refund outcomes, settlement and chargebacks. A failed settlement or a chargeback opens a
    collection case and never touches what was delivered (no retroactive blocking)."""
    now = core.clock.now()
    try:
        event = parse_event(job.payload["body"])
    except Unusable as exc:  # stored before the receiver parsed bodies: recorded, never retried
        async with core.db.transaction() as conn:
            await inbox.mark_processed(conn, job.payload["source"], job.payload["webhookId"], exc.outcome, now)
            await jobs.complete(conn, job.id)
        return
    async with core.db.transaction() as conn:
        payment = (await conn.execute(select(payments).where(
            payments.c.gateway_payment_id == event.paymentId))).mappings().first()
        purchase = None
        if payment is not None and payment["purchase_id"]:
            purchase = await records.load(conn, payment["purchase_id"])
        if payment is None:
            outcome = "unknown payment"
        elif isinstance(event, RefundNotification):
            if not await _refund_known(conn, event, purchase) and job.attempts < REFUND_PATIENCE:
                # The refund's own transaction (a withdrawal cut by a crash, say) has not
                # committed yet: wait for it rather than lose the outcome.
                await jobs.retry(conn, job.id, run_at=now + REFUND_RECHECK, error="refund not recorded yet")
                return
            outcome = await _refund_outcome(conn, payment, purchase, event, now)
        else:
            outcome = await _settle(core, conn, payment, purchase, event, now)
        await inbox.mark_processed(conn, job.payload["source"], job.payload["webhookId"], outcome, now)
        await jobs.complete(conn, job.id)


async def _refund_outcome(conn, payment, purchase, event: RefundNotification, now: float) -> str:
    # Only the transaction that changes the refund's status acts on it: a redelivered
    # outcome (another webhook-id) finds it changed already (on PostgreSQL the row lock
    # makes a concurrent one wait, then match nothing).
    changed = (await conn.execute(update(refunds).where(
        refunds.c.id == event.refundId, refunds.c.status != event.status).values(
        status=event.status))).rowcount == 1
    outcome = f"refund {event.status}" if changed else f"refund {event.status} (already recorded)"
    if event.status == "SUCCEEDED" and purchase is not None \
            and can(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED):
        state = transition(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED)
        await records.change(conn, purchase["id"], status=state.value, updated_at=now)
    elif event.status == "FAILED" and payment["status"] == "FAILED":  # refused: nothing came in
        await _nothing_to_give_back(conn, payment["id"], purchase, now)
    elif event.status == "FAILED" and changed:  # the money came in: an operator refunds it by hand
        outcome = await refunding.failed_at_gateway(conn, payment, purchase, event, now)
    return outcome


async def _refund_known(conn, event: RefundNotification, purchase) -> bool:
    recorded = await conn.scalar(select(refunds.c.id).where(refunds.c.id == event.refundId))
    if recorded is None:
        return False
    return event.status != "SUCCEEDED" or purchase is None \
        or can(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED)


def settlement_event(event: SettlementNotification | ChargebackNotification) -> SettlementEvent:
    """A settlement or chargeback webhook as ``domain.settlement`` reads it."""
    if isinstance(event, SettlementNotification):
        return SettlementEvent(SettlementKind(event.status), event.paymentId, event.sequence,
                               event.settlementDate.timestamp(), _money(event.settlementAmount),
                               event.failureReason, _money(event.metadata.fees))
    return SettlementEvent(SettlementKind.CHARGEBACK, event.paymentId, event.sequence,
                           event.chargebackDate.timestamp(), _money(event.amount), event.reason, _money(event.fee))


def _money(amount: WireMoney) -> Money:
    return Money(amount.value, amount.currency)


async def _settle(core: Core, conn, payment, purchase, webhook: SettlementNotification | ChargebackNotification,
                  now: float) -> str:
    """Fold a settlement or chargeback into the payment (``domain.settlement.decide``): by the
    gateway's sequence, so a duplicate or an overtaken event changes nothing."""
    event = settlement_event(webhook)
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
    await records.change(conn, purchase["id"], status=state.value, updated_at=now)


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
