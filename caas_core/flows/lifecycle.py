"""After delivery: temporary services expire, and customers may withdraw.

Expiry is a durable job at the service's expiry time: the vehicle is told to
deactivate through the IoT API (the vehicle may have switched it off by itself
already: that is fine) and the customer is told. Withdrawal within 14 days
refunds in full and deactivates; after that, a one-time service stays and
nothing is refunded (domain.refunds decides).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from ..api.problems import Problem
from ..clients.http import Rejected, Unavailable
from ..domain.money import Money
from ..domain.notifications import NoticeKind
from ..domain.purchase import (
    InvalidTransition,
    PurchaseEvent,
    PurchaseState,
    transition,
)
from ..domain.refunds import WithdrawalOutcome, withdrawal
from ..store import jobs
from ..store.schema import payments, purchases
from . import billing, refunding
from .core import Core
from .kinds import DEACTIVATE, EXPIRE
from .notices import notify
from .purchases import view
from .runner import JobContext


async def schedule_expiry(conn, row, now: float) -> None:
    """Called when a purchase becomes ACTIVE: a temporary service ends on its own."""
    if row["expiry"] is not None:
        await jobs.enqueue(conn, EXPIRE, {"purchaseId": row["id"]}, run_at=row["expiry"], now=now,
                           dedupe_key=f"{EXPIRE}:{row['id']}")


async def expire(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = (await conn.execute(select(purchases).where(purchases.c.id == job.payload["purchaseId"]))
               ).mappings().first()
        if row is not None and row["status"] == PurchaseState.ACTIVE.value:
            await conn.execute(update(purchases).where(purchases.c.id == row["id"]).values(
                status=transition(PurchaseState.ACTIVE, PurchaseEvent.EXPIRED).value, updated_at=now))
            await notify(conn, row, NoticeKind.SERVICE_EXPIRED, now)
            await jobs.enqueue(conn, DEACTIVATE, {"purchaseId": row["id"]}, run_at=now, now=now,
                               dedupe_key=f"{DEACTIVATE}:{row['id']}")
        await jobs.complete(conn, job.id)
    core.wake()


async def deactivate(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    async with core.db.transaction(readonly=True) as conn:
        row = (await conn.execute(select(purchases).where(purchases.c.id == job.payload["purchaseId"]))
               ).mappings().first()
    try:
        await core.iot.deactivate(row["vin"], row["service_id"], key=f"{row['id']}:deactivate",
                                  correlation_id=job.correlation_id or row["id"])
    except Rejected as exc:
        if exc.status != 422:  # 422: not active any more (the vehicle expired it itself): done
            raise
    except Unavailable:
        async with core.db.transaction() as conn:  # the IoT API is down: try again later
            await jobs.retry(conn, job.id, run_at=core.clock.now() + 300, error="IoT API unavailable")
        return
    async with core.db.transaction() as conn:
        await jobs.complete(conn, job.id)


async def withdraw(core: Core, purchase_id: str, correlation_id: str) -> dict[str, Any]:
    """Decided and committed in one transaction (the refund follows as a job): a give-up or an
    expiry racing with it sees its result, and a crash loses nothing."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        stmt = select(purchases).where(purchases.c.id == purchase_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise Problem(404, "Unknown purchase", f"no purchase {purchase_id}")
        payment = (await conn.execute(select(payments).where(payments.c.purchase_id == purchase_id)
                                      .order_by(payments.c.created_at))).mappings().first()
        state = PurchaseState(row["status"])
        try:
            transition(state, PurchaseEvent.WITHDRAWN)
        except InvalidTransition:
            raise Problem(409, "Not withdrawable", f"a purchase in state {state.value} cannot be withdrawn",
                          kind="not-withdrawable") from None
        paid = Money(payment["amount_minor"] if payment else 0, row["currency"])
        decision = withdrawal(paid, row["created_at"], now, Money(row["refunded_minor"], row["currency"]),
                              duration_type=row["duration_type"])
        if decision.outcome is WithdrawalOutcome.REFUSED:
            raise Problem(422, "Withdrawal period over", decision.message, kind="withdrawal-period-over")
        event = decision.purchase_event or PurchaseEvent.WITHDRAWN
        values: dict[str, Any] = {"status": transition(state, event).value, "updated_at": now}
        if row["duration_type"] == "SUBSCRIPTION":  # post-paid: bill the partial month unless waived
            await billing.close(conn, row, now, waive=decision.waive_unbilled or not decision.final_billing)
        if decision.refund_due and payment is not None:
            await refunding.enqueue(conn, purchase_id, payment["id"], decision.refund.minor, decision.refund.currency,
                                    decision.reason.value, now, correlation_id)
            values["refunded_minor"] = row["refunded_minor"] + decision.refund.minor
        await conn.execute(update(purchases).where(purchases.c.id == purchase_id).values(**values))
        await notify(conn, row, NoticeKind.WITHDRAWAL_CONFIRMED if event is PurchaseEvent.WITHDRAWN
                     else NoticeKind.SUBSCRIPTION_CANCELLED, now)
        await jobs.cancel(conn, dedupe_key=f"{EXPIRE}:{purchase_id}", now=now)
        if decision.deactivate and state in (PurchaseState.ACTIVE, PurchaseState.ACTIVATING):
            await jobs.enqueue(conn, DEACTIVATE, {"purchaseId": purchase_id}, run_at=now, now=now,
                               dedupe_key=f"{DEACTIVATE}:{purchase_id}", correlation_id=correlation_id)
    core.wake()
    return await view(core, purchase_id)
