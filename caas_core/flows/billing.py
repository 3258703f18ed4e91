"""Subscription billing, post-paid (mes vencido): ``domain.billing`` decides, this runs it.

Each subscription has one durable charge job per month, due at the first instant of the
next month (UTC). It invoices what was consumed (from activation, or the month's start,
to the month's end or the cancellation) and charges the payment method on file. A
declined charge is retried with exponential backoff (1, 2, 4 days by default); when the
retries are exhausted the subscription is cancelled, the feature deactivated and a
collection case opened for the invoice, and for the part of the current month used until
the cancellation (invoiced at once, not charged: the method on file has just failed). A gateway that is down is not the customer's
failure: the charge waits an hour and tries again without counting it.

A customer who cancels is charged the partial month at once (``close``).
"""

from __future__ import annotations

from sqlalchemy import select, update

from ..clients.http import Rejected, Unavailable
from ..clients.wire.payments import PaymentInitiated
from ..clock import isoformat
from ..domain.billing import (
    BillingRetryPolicy,
    invoice_period,
    month_start,
    next_month_start,
    period_charge,
)
from ..domain.money import Money
from ..domain.notifications import NoticeKind
from ..domain.purchase import PurchaseEvent, PurchaseState, transition
from ..store import jobs, outbox
from ..store.schema import collection_cases, invoices, payments
from . import purchase_records as records
from .core import Core
from .kinds import DEACTIVATE
from .notices import notify
from .runner import JobContext

CHARGE = "billing.charge"
GATEWAY_DOWN_RETRY = 3600.0
#: States of a subscription whose consumption may still be billed.
BILLABLE = frozenset({PurchaseState.ACTIVATION_QUEUED, PurchaseState.ACTIVATING, PurchaseState.ACTIVE,
                      PurchaseState.CANCELLED, PurchaseState.WITHDRAWN})
#: States in which the subscription runs on into the next month.
ONGOING = frozenset({PurchaseState.ACTIVATION_QUEUED, PurchaseState.ACTIVATING, PurchaseState.ACTIVE})


def _key(purchase_id: str, period_start: float) -> str:
    return f"{CHARGE}:{purchase_id}:{int(period_start)}"


async def schedule_month_end(conn, purchase_id: str, after: float, now: float) -> None:
    """The charge for the month holding ``after``, due when that month ends."""
    period = month_start(after)
    await jobs.enqueue(conn, CHARGE, {"purchaseId": purchase_id, "periodStart": period},
                       run_at=next_month_start(after), now=now, dedupe_key=_key(purchase_id, period))


async def close(conn, purchase, now: float, *, waive: bool) -> None:
    """The subscription ends now: no more month-end charges; the partial month is billed
    at once unless waived (withdrawal within 14 days)."""
    period = await _end(conn, purchase["id"], now)
    if not waive:
        await jobs.enqueue(conn, CHARGE, {"purchaseId": purchase["id"], "periodStart": period}, run_at=now, now=now,
                           dedupe_key=f"{_key(purchase['id'], period)}:final")


async def _end(conn, purchase_id: str, now: float) -> float:
    """No month-end charge from now on: the end recorded, this month's charge called off;
    returns this month's start (the partial month left to bill)."""
    period = month_start(now)
    await jobs.cancel(conn, dedupe_key=_key(purchase_id, period), now=now)
    await records.change(conn, purchase_id, cancelled_at=now)
    return period


async def charge(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    purchase_id, period = job.payload["purchaseId"], job.payload["periodStart"]
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await records.load(conn, purchase_id)
        invoice, created = await _invoice(core, conn, row, period, now)
        if created and row["cancelled_at"] is None and PurchaseState(row["status"]) in ONGOING:
            await schedule_month_end(conn, purchase_id, next_month_start(period), now)
        if invoice["status"] != "OPEN":
            await jobs.complete(conn, job.id)
            return
    try:
        answer = await core.payments.initiate(
            "SUBSCRIPTION", invoice["amount_minor"], invoice["currency"], row["method_type"], row["method_token"],
            customer_id=row["customer_id"], order_id=invoice["id"], description=f"{row['service_id']}, "
            f"{isoformat(period)[:7]}", key=f"{invoice['id']}:{invoice['failures']}",
            correlation_id=job.correlation_id or purchase_id, vin=row["vin"], service_id=row["service_id"])
        declined = answer.status == "DECLINED"
        reason = answer.declineReason
    except Unavailable as exc:
        async with core.db.transaction() as conn:
            await jobs.retry(conn, job.id, run_at=now + GATEWAY_DOWN_RETRY, error=str(exc))
        return
    except Rejected as exc:
        answer, declined, reason = None, True, str(exc)
    async with core.db.transaction() as conn:
        if not declined:
            await _paid(core, conn, row, invoice, answer, now)
        else:
            await _declined(core, conn, row, invoice, reason, now)
        await jobs.complete(conn, job.id)
    core.wake()


async def _invoice(core: Core, conn, row, month: float, now: float):
    """The invoice of the month starting at ``month``, created on the first charge attempt;
    and whether it was just created."""
    # Its period starts within the month (at the subscription's start for the first one).
    found = (await conn.execute(select(invoices).where(
        invoices.c.purchase_id == row["id"], invoices.c.period_start >= month,
        invoices.c.period_start < next_month_start(month)))).mappings().first()
    if found is not None:
        return found, False
    monthly = Money(row["price_minor"], row["currency"])
    amount = Money.zero(row["currency"])
    if row["delivered_at"] is not None and PurchaseState(row["status"]) in BILLABLE:
        amount = period_charge(monthly, month, row["delivered_at"], row["cancelled_at"])
    # Billed from the activation, as the amount is; a subscription never activated, from its purchase.
    started = row["delivered_at"] if row["delivered_at"] is not None else row["created_at"]
    period_start, period_end = invoice_period(month, started, row["cancelled_at"])
    invoice_id = core.new_id("inv")
    await conn.execute(invoices.insert().values(
        id=invoice_id, purchase_id=row["id"], period_start=period_start, period_end=period_end,
        amount_minor=amount.minor, currency=amount.currency, status="OPEN" if amount.minor > 0 else "NOTHING_DUE",
        failures=0, created_at=now, updated_at=now))
    return (await conn.execute(select(invoices).where(invoices.c.id == invoice_id))).mappings().first(), True


async def _paid(core: Core, conn, row, invoice, answer: PaymentInitiated, now: float) -> None:
    payment_id = core.new_id("pay")
    await conn.execute(payments.insert().values(
        id=payment_id, purchase_id=row["id"], gateway_payment_id=answer.paymentId, kind="SUBSCRIPTION",
        amount_minor=invoice["amount_minor"], currency=invoice["currency"], status=answer.status, created_at=now))
    await conn.execute(update(invoices).where(invoices.c.id == invoice["id"]).values(
        status="PAID", payment_id=payment_id, updated_at=now))
    await _tell(conn, row, "SUBSCRIPTION_INVOICE_PAID", invoice, now)


async def _declined(core: Core, conn, row, invoice, reason: str | None, now: float) -> None:
    failures = invoice["failures"] + 1
    policy = BillingRetryPolicy(retries=core.settings.billing.retries, backoff=core.settings.billing.backoff)
    decision = policy.after_failure(failures, now)
    await conn.execute(update(invoices).where(invoices.c.id == invoice["id"]).values(
        failures=failures, status="OPEN" if decision.retry_at else "UNPAID", updated_at=now))
    if decision.retry_at is not None:
        month = month_start(invoice["period_start"])  # jobs name the month, the invoice its period
        await jobs.enqueue(conn, CHARGE, {"purchaseId": row["id"], "periodStart": month},
                           run_at=decision.retry_at, now=now, dedupe_key=f"{_key(row['id'], month)}:retry{failures}")
        await _tell(conn, row, "SUBSCRIPTION_PAYMENT_FAILED_WILL_RETRY", invoice, now,
                    reason=reason, retryAt=isoformat(decision.retry_at))
        return
    await _open_case(core, conn, row, invoice, f"subscription unpaid after {failures} attempts ({reason})", now)
    if row["cancelled_at"] is None:
        state = PurchaseState(row["status"])
        status = transition(state, PurchaseEvent.SUBSCRIPTION_CANCELLED) if state is PurchaseState.ACTIVE \
            else PurchaseState.CANCELLED
        await records.change(conn, row["id"], status=status.value, updated_at=now)
        await _end(conn, row["id"], now)
        await _collect_partial_month(core, conn, row["id"], now)
        await jobs.enqueue(conn, DEACTIVATE, {"purchaseId": row["id"]}, run_at=now, now=now,
                           dedupe_key=f"{DEACTIVATE}:{row['id']}")
        await notify(conn, row, NoticeKind.SUBSCRIPTION_CANCELLED, now)


async def _collect_partial_month(core: Core, conn, purchase_id: str, now: float) -> None:
    """Cancelled for non-payment: the part of this month used until now is invoiced, as a
    customer's cancellation is (the specification's outstanding balance), but not charged:
    the method on file has just failed every retry, so it goes to collection at once."""
    row = await records.load(conn, purchase_id)
    invoice, created = await _invoice(core, conn, row, month_start(now), now)
    if not created or invoice["status"] != "OPEN":  # nothing used this month, or billed already
        return
    await conn.execute(update(invoices).where(invoices.c.id == invoice["id"]).values(status="UNPAID", updated_at=now))
    await _open_case(core, conn, row, invoice, "subscription cancelled for non-payment: the part of the month "
                     f"used until {isoformat(now)}", now)


async def _open_case(core: Core, conn, row, invoice, reason: str, now: float) -> None:
    """A collection case for an invoice the customer did not pay."""
    await conn.execute(collection_cases.insert().values(
        id=core.new_id("col"), payment_id=invoice["id"], customer_id=row["customer_id"],
        amount_minor=invoice["amount_minor"], currency=invoice["currency"], reason=reason, status="open",
        created_at=now))


async def _tell(conn, row, template: str, invoice, now: float, **extra) -> None:
    await outbox.notify(conn, row["customer_id"], "email", template,
                        {"purchaseId": row["id"], "serviceId": row["service_id"], "vin": row["vin"],
                         "invoiceId": invoice["id"], "periodStart": isoformat(invoice["period_start"]),
                         "amount": {"value": invoice["amount_minor"], "currency": invoice["currency"]}, **extra},
                        now)


async def invoices_for(core: Core, purchase_id: str) -> list[dict]:
    async with core.db.transaction(readonly=True) as conn:
        rows = (await conn.execute(select(invoices).where(invoices.c.purchase_id == purchase_id)
                                   .order_by(invoices.c.period_start))).mappings().all()
    return [{"invoiceId": r["id"], "periodStart": isoformat(r["period_start"]), "periodEnd": isoformat(r["period_end"]),
             "amount": {"value": r["amount_minor"], "currency": r["currency"]}, "status": r["status"],
             "failedAttempts": r["failures"]} for r in rows]
