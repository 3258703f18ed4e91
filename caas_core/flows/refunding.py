"""Refunds of service payments as durable jobs, decided before the gateway is called.

A withdrawal or a given-up activation decides the refund, moves the purchase and
enqueues this job in one transaction (the purchase's ``refunded`` says what is being
given back from then on); the job asks the gateway, under an Idempotency-Key naming
the decision, and records the refund. So a crash loses no refund and a race between
two decisions cannot refund twice: the second one sees the first's state.
"""

from __future__ import annotations

from sqlalchemy import select

from ..clients.http import Rejected, Unavailable
from ..store import jobs, outbox
from ..store.schema import payments, purchases, refunds
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
            row = (await conn.execute(select(purchases).where(purchases.c.id == p["purchaseId"]))).mappings().one()
            await outbox.open_ticket(conn, row["customer_id"], row["vin"], f"Refund {p['amount']} {p['currency']} "
                                     f"by hand ({p['reason']})", {"paymentId": payment["gateway_payment_id"],
                                                                  "error": str(exc)}, core.clock.now(),
                                     purchase_id=p["purchaseId"])
            await jobs.complete(conn, job.id)
        return
    async with core.db.transaction() as conn:
        known = await conn.scalar(select(refunds.c.id).where(refunds.c.id == answer["refundId"]))
        if known is None:  # a replayed answer after a crash is the same refund
            await conn.execute(refunds.insert().values(
                id=answer["refundId"], payment_id=payment["id"], amount_minor=p["amount"], currency=p["currency"],
                status=answer["status"], reason=p["reason"], created_at=core.clock.now()))
        await jobs.complete(conn, job.id)
