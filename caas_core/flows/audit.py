"""The invariant audit: what must hold of the core's records once the system has settled.

One function per invariant, each a few SQL aggregates over the store (read-only, cheap:
no row-by-row Python walk of the tables), each returning the violations with the ids of
the entities concerned. ``run`` takes one consistent read-only snapshot and runs them all.

Some invariants only hold once nothing is in flight (a purchase being activated has been
charged and not yet delivered): those look at settled entities only, and the report says
how much is still in flight, so a caller knows whether to settle first and ask again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.notifications import NoticeKind
from ..domain.purchase import PurchaseState
from ..store.schema import (
    collection_cases,
    jobs,
    notifications,
    payments,
    purchases,
    refunds,
    sales,
    webhook_inbox,
)

_S = PurchaseState
#: The service reached the vehicle and the customer keeps it (or consumed it).
DELIVERED = (_S.ACTIVE.value, _S.EXPIRED.value, _S.CANCELLED.value)
#: Never delivered, or given back: nothing may stay charged.
UNDELIVERED_FINAL = (_S.REFUNDED.value, _S.WITHDRAWN.value, _S.REFUSED.value)
#: Delivery still in progress: money may legitimately be ahead of delivery.
IN_FLIGHT = (_S.REQUESTED.value, _S.PAYMENT_INITIATED.value, _S.ACTIVATION_QUEUED.value, _S.ACTIVATING.value,
             _S.ACTIVATION_FAILED.value)
#: Money that did not come in: a failed settlement brings nothing to refund or to count.
NO_MONEY = "FAILED"
OPEN_JOBS = ("pending", "running")


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    entities: dict[str, str]
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "entities": self.entities, "detail": self.detail}


Check = Callable[[AsyncConnection], Awaitable[list[Violation]]]


def _live_refunds():
    """Per payment: what was refunded or is being refunded (failed refunds gave nothing back)."""
    return (select(refunds.c.payment_id, func.sum(refunds.c.amount_minor).label("refunded"))
            .where(refunds.c.status != "FAILED").group_by(refunds.c.payment_id).subquery())


def _webhook_job_key():
    return literal("webhook:") + webhook_inbox.c.source + literal(":") + webhook_inbox.c.webhook_id


async def webhooks_processed_once(conn: AsyncConnection) -> list[Violation]:
    """Every accepted webhook is processed, or has its processing job still queued: none lost.
    (Twice is excluded by construction: the inbox's primary key and the job's dedupe key;
    this checks that the construction holds, i.e. no webhook job was abandoned.)"""
    job = jobs.alias("job")
    rows = await conn.execute(
        select(webhook_inbox.c.source, webhook_inbox.c.webhook_id, job.c.id, job.c.status)
        .select_from(webhook_inbox.outerjoin(job, job.c.dedupe_key == _webhook_job_key()))
        .where(webhook_inbox.c.processed_at.is_(None),
               or_(job.c.id.is_(None), job.c.status.not_in(OPEN_JOBS))))
    return [Violation("webhooks_processed_once", {"source": source, "webhookId": webhook_id}
                      | ({"jobId": job_id} if job_id else {}),
                      "accepted but never processed" if job_id is None
                      else f"accepted, and its processing job ended {status} without processing it")
            for source, webhook_id, job_id, status in rows]


async def no_abandoned_jobs(conn: AsyncConnection) -> list[Violation]:
    """A job that failed for good is work the core dropped (an activation, a refund...)."""
    rows = await conn.execute(select(jobs.c.id, jobs.c.kind, jobs.c.payload, jobs.c.last_error)
                              .where(jobs.c.status == "failed"))
    return [Violation("no_abandoned_jobs", {"jobId": job_id, **_purchase_of(payload)},
                      f"{kind} failed for good: {error}") for job_id, kind, payload, error in rows]


def _purchase_of(payload: Any) -> dict[str, str]:
    return {"purchaseId": payload["purchaseId"]} if isinstance(payload, dict) and "purchaseId" in payload else {}


async def delivery_recorded_consistently(conn: AsyncConnection) -> list[Violation]:
    """Delivered states carry a delivery time, and a delivery time never sits on a purchase
    that was given up or refunded as undelivered."""
    rows = await conn.execute(select(purchases.c.id, purchases.c.status, purchases.c.delivered_at).where(or_(
        and_(purchases.c.status.in_(DELIVERED), purchases.c.delivered_at.is_(None)),
        and_(purchases.c.status.in_((_S.REFUNDED.value, _S.ACTIVATION_FAILED.value, _S.REFUSED.value)),
             purchases.c.delivered_at.is_not(None)))))
    return [Violation("delivery_recorded_consistently", {"purchaseId": pid},
                      f"status {status} with deliveredAt {'missing' if delivered is None else 'set'}")
            for pid, status, delivered in rows]


async def one_activation_per_delivered_purchase(conn: AsyncConnection) -> list[Violation]:
    """A delivered purchase was activated once: the customer is told once per channel, and a
    purchase never delivered was never announced as activated."""
    told_about = notifications.c.payload["purchaseId"].as_string()
    told = (select(told_about.label("purchase_id"), notifications.c.channel, func.count().label("n"))
            .where(notifications.c.template == NoticeKind.SERVICE_ACTIVATED.value)
            .group_by(told_about, notifications.c.channel).subquery())
    twice = await conn.execute(select(told.c.purchase_id, told.c.channel, told.c.n).where(told.c.n > 1))
    found = [Violation("one_activation_per_delivered_purchase", {"purchaseId": pid},
                       f"activation announced {n} times on {channel}") for pid, channel, n in twice]
    announced = select(told.c.purchase_id).distinct().subquery()
    missing = await conn.execute(
        select(purchases.c.id, purchases.c.status)
        .select_from(purchases.outerjoin(announced, announced.c.purchase_id == purchases.c.id))
        .where(purchases.c.delivered_at.is_not(None), announced.c.purchase_id.is_(None)))
    found += [Violation("one_activation_per_delivered_purchase", {"purchaseId": pid},
                        f"delivered ({status}) but the activation was never announced") for pid, status in missing]
    unearned = await conn.execute(
        select(purchases.c.id, purchases.c.status)
        .select_from(purchases.join(announced, announced.c.purchase_id == purchases.c.id))
        .where(purchases.c.delivered_at.is_(None)))
    found += [Violation("one_activation_per_delivered_purchase", {"purchaseId": pid},
                        f"announced as activated but never delivered ({status})") for pid, status in unearned]
    return found


async def no_charge_without_delivery(conn: AsyncConnection) -> list[Violation]:
    """A purchase that ended undelivered (refunded, withdrawn, refused) keeps no money."""
    live = _live_refunds()
    kept = payments.c.amount_minor - func.coalesce(live.c.refunded, 0)
    rows = await conn.execute(
        select(purchases.c.id, purchases.c.status, payments.c.id, kept)
        .select_from(purchases.join(payments, payments.c.purchase_id == purchases.c.id)
                     .outerjoin(live, live.c.payment_id == payments.c.id))
        .where(purchases.c.status.in_(UNDELIVERED_FINAL), payments.c.status != NO_MONEY, kept > 0))
    return [Violation("no_charge_without_delivery", {"purchaseId": pid, "paymentId": pay},
                      f"{status} yet {amount} minor units are still charged") for pid, status, pay, amount in rows]


async def refunds_within_payment(conn: AsyncConnection) -> list[Violation]:
    """Never more refunded than was charged."""
    live = _live_refunds()
    rows = await conn.execute(select(payments.c.id, payments.c.purchase_id, payments.c.amount_minor, live.c.refunded)
                              .select_from(payments.join(live, live.c.payment_id == payments.c.id))
                              .where(live.c.refunded > payments.c.amount_minor))
    return [Violation("refunds_within_payment", {"paymentId": pay, "purchaseId": pid or ""},
                      f"refunded {refunded} of {amount}") for pay, pid, amount, refunded in rows]


async def failed_settlement_has_collection_case(conn: AsyncConnection) -> list[Violation]:
    """A delivered service whose payment failed to settle is owed: exactly one collection case."""
    live = _live_refunds()
    cases = (select(collection_cases.c.payment_id, func.count().label("n"))
             .group_by(collection_cases.c.payment_id).subquery())
    owed = payments.c.amount_minor - func.coalesce(live.c.refunded, 0)
    rows = await conn.execute(
        select(payments.c.id, purchases.c.id, owed, func.coalesce(cases.c.n, 0))
        .select_from(payments.join(purchases, purchases.c.id == payments.c.purchase_id)
                     .outerjoin(live, live.c.payment_id == payments.c.id)
                     .outerjoin(cases, cases.c.payment_id == payments.c.id))
        .where(payments.c.status == NO_MONEY, purchases.c.status.in_(DELIVERED), owed > 0,
               func.coalesce(cases.c.n, 0) != 1))
    return [Violation("failed_settlement_has_collection_case", {"paymentId": pay, "purchaseId": pid},
                      f"settlement failed with {amount} owed and {n} collection cases") for pay, pid, amount, n in rows]


async def money_adds_up_per_customer(conn: AsyncConnection) -> list[Violation]:
    """Per customer, over purchases no longer in flight: charged minus refunded equals the
    value of what was delivered (failed settlements count as not charged: collection's job)."""
    live = _live_refunds()
    charged = payments.c.amount_minor
    refunded = func.coalesce(live.c.refunded, 0)
    delivered_value = func.sum(case((purchases.c.status.in_(DELIVERED), purchases.c.price_minor), else_=0))
    rows = await conn.execute(
        select(purchases.c.customer_id, purchases.c.currency, func.sum(charged), func.sum(refunded), delivered_value)
        .select_from(purchases.join(payments, payments.c.purchase_id == purchases.c.id)
                     .outerjoin(live, live.c.payment_id == payments.c.id))
        .where(purchases.c.status.not_in(IN_FLIGHT), payments.c.status != NO_MONEY)
        .group_by(purchases.c.customer_id, purchases.c.currency)
        .having(func.sum(charged) - func.sum(refunded) != delivered_value))
    return [Violation("money_adds_up_per_customer", {"customerId": cid},
                      f"{currency}: charged {c} - refunded {r} = {c - r}, delivered {d}")
            for cid, currency, c, r, d in rows]


async def one_factory_order_per_sale(conn: AsyncConnection) -> list[Violation]:
    """A paid reservation leads to one factory order: no order id is shared by two sales
    (a retried or replayed order placement must find the first order, not make another)."""
    shared = await conn.execute(select(sales.c.order_id, func.count()).where(sales.c.order_id.is_not(None))
                                .group_by(sales.c.order_id).having(func.count() > 1))
    return [Violation("one_factory_order_per_sale", {"orderId": order_id}, f"{n} sales share this factory order")
            for order_id, n in shared]


#: name -> check, in report order.
INVARIANTS: dict[str, Check] = {
    "webhooks_processed_once": webhooks_processed_once,
    "no_abandoned_jobs": no_abandoned_jobs,
    "delivery_recorded_consistently": delivery_recorded_consistently,
    "one_activation_per_delivered_purchase": one_activation_per_delivered_purchase,
    "no_charge_without_delivery": no_charge_without_delivery,
    "refunds_within_payment": refunds_within_payment,
    "failed_settlement_has_collection_case": failed_settlement_has_collection_case,
    "money_adds_up_per_customer": money_adds_up_per_customer,
    "one_factory_order_per_sale": one_factory_order_per_sale,
}


async def in_flight(conn: AsyncConnection, now: float) -> dict[str, int]:
    """What has not settled yet: a non-zero count means some invariants may still change.
    Jobs due later (a temporary service's expiry next month) are scheduled, not in flight."""
    return {
        "jobs": await conn.scalar(select(func.count()).select_from(jobs).where(
            or_(jobs.c.status == "running", and_(jobs.c.status == "pending", jobs.c.run_at <= now)))),
        "webhooks": await conn.scalar(select(func.count()).select_from(webhook_inbox)
                                      .where(webhook_inbox.c.processed_at.is_(None))),
        "purchases": await conn.scalar(select(func.count()).select_from(purchases)
                                       .where(purchases.c.status.in_(IN_FLIGHT))),
    }


async def run(db, now: float) -> dict[str, Any]:
    """Every invariant over one read-only snapshot at ``now`` (the core's clock): the report
    the audit route serves."""
    async with db.transaction(readonly=True) as conn:
        violations = [v for check in INVARIANTS.values() for v in await check(conn)]
        pending = await in_flight(conn, now)
        totals = {"purchases": await conn.scalar(select(func.count()).select_from(purchases)),
                  "payments": await conn.scalar(select(func.count()).select_from(payments)),
                  "webhooks": await conn.scalar(select(func.count()).select_from(webhook_inbox)),
                  "scheduledJobs": await conn.scalar(select(func.count()).select_from(jobs).where(
                      jobs.c.status == "pending", jobs.c.run_at > now))}
    return {"ok": not violations, "invariants": list(INVARIANTS), "checked": totals, "inFlight": pending,
            "settled": not any(pending.values()), "violations": [v.to_json() for v in violations]}
