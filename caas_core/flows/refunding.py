"""Refunds of service payments as durable jobs, decided before the gateway is called.

A withdrawal or a given-up activation decides the refund, moves the purchase and
enqueues this job in one transaction (the purchase's ``refunded`` says what is being
given back from then on); the job asks the gateway, under an Idempotency-Key naming
the decision, and records the refund. So a crash loses no refund and a race between
two decisions cannot refund twice: the second one sees the first's state.

The gateway reports each refund's outcome later (``refundStatus``, ``flows.settlement``). A
refund FAILED of a payment whose money did come in (a closed card, say) leaves the
customer owed: ``failed_at_gateway`` opens an operator ticket to refund by hand and tells
the customer, once per refund. A refund FAILED because the payment never settled
(``PAYMENT_FAILED``) gives nothing back and needs nothing more.
"""

from __future__ import annotations

from sqlalchemy import select

from ..clients.http import Rejected, Unavailable
from ..clients.wire.payments import RefundNotification
from ..domain.notifications import CHANNELS, NoticeKind
from ..store import jobs, outbox
from ..store.schema import payments, refunds
from . import purchase_records as records
from . import sale_records as rec
from .core import Core
from .runner import JobContext

REFUND = "payments.refund"
GATEWAY_DOWN_RETRY = 300.0


async def enqueue(conn, purchase_id: str, payment_id: str, amount: int, currency: str, reason: str, now: float,
                  correlation_id: str | None) -> None:
    key = f"{purchase_id}:{reason.lower()}"
    await jobs.enqueue(conn, REFUND, {"purchaseId": purchase_id, "paymentId": payment_id, "amount": amount,
                                      "currency": currency, "reason": reason, "key": key},
                       run_at=now, now=now, dedupe_key=f"{REFUND}:{key}", correlation_id=correlation_id)


async def run(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    p = job.payload
    async with core.db.transaction(readonly=True) as conn:
        payment = (await conn.execute(select(payments).where(payments.c.id == p["paymentId"]))).mappings().one()
    if payment["status"] == "FAILED":  # it never settled: no money came in, none to give back
        async with core.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        return
    try:
        answer = await core.payments.refund(payment["gateway_payment_id"], p["amount"], p["currency"], p["reason"],
                                            key=p["key"], correlation_id=job.correlation_id or p["purchaseId"])
    except Unavailable as exc:
        async with core.db.transaction() as conn:
            await jobs.retry(conn, job.id, run_at=core.clock.now() + GATEWAY_DOWN_RETRY, error=str(exc))
        return
    except Rejected as exc:  # the gateway will not: an operator refunds by hand
        async with core.db.transaction() as conn:
            row = await records.load(conn, p["purchaseId"])
            await outbox.open_ticket(conn, row["customer_id"], row["vin"], f"Refund {p['amount']} {p['currency']} "
                                     f"by hand ({p['reason']})", {"paymentId": payment["gateway_payment_id"],
                                                                  "error": str(exc)}, core.clock.now(),
                                     purchase_id=p["purchaseId"])
            await jobs.complete(conn, job.id)
        return
    async with core.db.transaction() as conn:
        known = await conn.scalar(select(refunds.c.id).where(refunds.c.id == answer.refundId))
        if known is None:  # a replayed answer after a crash is the same refund
            await conn.execute(refunds.insert().values(
                id=answer.refundId, payment_id=payment["id"], amount_minor=p["amount"], currency=p["currency"],
                status=answer.status, reason=p["reason"], created_at=core.clock.now()))
        await jobs.complete(conn, job.id)


#: Payments a failed refund has nothing to give back of: no money came in, or the
#: chargeback already returned it to the customer.
NOTHING_TO_GIVE_BACK = frozenset({"FAILED", "CHARGED_BACK"})


async def failed_at_gateway(conn, payment, purchase, event: RefundNotification, now: float) -> str:
    """The gateway reports a refund FAILED: the customer is still owed the money (unless it
    never came in), so an operator refunds by hand. Call it in the transaction that marked
    the refund FAILED, and only when this transaction is the one that did (a redelivered
    outcome changes nothing: one ticket and one notice per refund). Returns the outcome."""
    reason = event.failureReason or "UNKNOWN"
    if reason == "PAYMENT_FAILED" or payment["status"] in NOTHING_TO_GIVE_BACK:
        return f"refund FAILED ({reason}): nothing to give back"
    refund = (await conn.execute(select(refunds).where(refunds.c.id == event.refundId))).mappings().one()
    amount = {"value": refund["amount_minor"], "currency": refund["currency"]}
    diagnostics = {"error": f"the payment gateway could not pay the refund back ({reason})",
                   "paymentId": payment["gateway_payment_id"], "refundId": refund["id"], "amount": amount,
                   "failureReason": reason}
    subject = (f"Refund {amount['value']} {amount['currency']} by hand: refund {refund['id']} of payment "
               f"{payment['gateway_payment_id']} failed at the gateway ({reason})")
    told = {"refundId": refund["id"], "amount": amount, "failureReason": reason}
    if purchase is not None:
        diagnostics.update(purchaseId=purchase["id"], serviceId=purchase["service_id"])
        await outbox.open_ticket(conn, purchase["customer_id"], purchase["vin"], subject, diagnostics, now,
                                 purchase_id=purchase["id"])
        await outbox.notify_on(conn, purchase["customer_id"],
                               [channel.value.lower() for channel in CHANNELS[NoticeKind.REFUND_FAILED]],
                               NoticeKind.REFUND_FAILED.value,
                               {"purchaseId": purchase["id"], "serviceId": purchase["service_id"],
                                "vin": purchase["vin"], **told}, now)
    elif payment["sale_id"]:
        sale = await rec.load(conn, payment["sale_id"])
        diagnostics["saleId"] = sale["id"]
        await outbox.open_ticket(conn, sale["customer_id"], sale["vin"], subject, diagnostics, now)
        await rec.record(conn, sale["id"], "REFUND_FAILED", {"paymentId": payment["gateway_payment_id"], **told}, now)
        await rec.tell_customer(conn, sale, NoticeKind.REFUND_FAILED.value, now, **told)
    else:  # a payment of nothing the core knows: no one to tell
        return f"refund FAILED ({reason}) of a payment of nothing known"
    return f"refund FAILED ({reason}): ticket opened to refund by hand"
