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

from sqlalchemy import BigInteger, and_, case, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.catalogue import DurationType
from ..domain.notifications import NoticeKind
from ..domain.ota_policy import VEHICLE_NOT_RUNNING, DeactivationStatus
from ..domain.purchase import PurchaseState
from ..domain.sale import MANUFACTURING, SaleStatus
from ..store import inbox
from ..store.schema import (
    collection_cases,
    invoices,
    jobs,
    notifications,
    payments,
    purchases,
    refunds,
    sale_events,
    sales,
    webhook_inbox,
)
from .kinds import DEACTIVATE, DEACTIVATE_GIVE_UP, DEACTIVATE_TIMEOUT

_S = PurchaseState
#: The service reached the vehicle and the customer keeps it (or consumed it).
DELIVERED = (_S.ACTIVE.value, _S.EXPIRED.value, _S.CANCELLED.value)
#: Never delivered, or given back: nothing may stay charged.
UNDELIVERED_FINAL = (_S.REFUNDED.value, _S.WITHDRAWN.value, _S.REFUSED.value)
#: Delivery still in progress: money may legitimately be ahead of delivery.
IN_FLIGHT = (_S.REQUESTED.value, _S.PAYMENT_DEFERRED.value, _S.PAYMENT_INITIATED.value, _S.ACTIVATION_QUEUED.value,
             _S.ACTIVATING.value, _S.ACTIVATION_FAILED.value)
#: The feature must be off on the vehicle (domain.purchase.needs_deactivation_on_late_activation).
MUST_BE_OFF = (_S.ACTIVATION_FAILED.value, _S.REFUNDED.value, _S.WITHDRAWN.value, _S.EXPIRED.value,
               _S.CANCELLED.value)
#: A deactivation settled: confirmed off, nothing ever reached the vehicle, or left on for
#: another purchase of the vehicle that holds the feature.
SWITCHED_OFF = (DeactivationStatus.OFF.value, DeactivationStatus.NOT_NEEDED.value, DeactivationStatus.KEPT.value)
#: Jobs of a deactivation under way (flows.lifecycle).
DEACTIVATION_JOBS = (DEACTIVATE, DEACTIVATE_TIMEOUT, DEACTIVATE_GIVE_UP)
#: Money that did not come in: a failed settlement brings nothing to refund or to count.
NO_MONEY = "FAILED"
OPEN_JOBS = ("pending", "running")

_V = SaleStatus
#: A sale's value to the customer by status: the whole price once the final payment is in...
SALE_KEEPS_ALL = (_V.REGISTRATION.value, _V.READY_FOR_DELIVERY.value, _V.DELIVERY_SCHEDULED.value,
                  _V.AWAITING_COLLECTION.value, _V.DELIVERED.value)
#: ...the reservation while the vehicle is being built, and for good when the final payment
#: failed (the customer loses it)...
SALE_KEEPS_RESERVATION = (_V.ORDER_QUEUED.value, *(s.value for s in MANUFACTURING), _V.AWAITING_FINAL_PAYMENT.value,
                          _V.RETURNED_TO_STOCK.value)
#: ...and nothing before the reservation or once the order was rejected or the sale cancelled
#: (everything refunded).
SALE_KEEPS_NOTHING = (_V.AWAITING_RESERVATION.value, _V.ORDER_REJECTED.value, _V.CANCELLED.value)
#: Sales that must have a factory order: every status from ORDER_PLACED on, cancellations aside.
SALE_ORDERED = (*(s.value for s in MANUFACTURING), _V.AWAITING_FINAL_PAYMENT.value, _V.RETURNED_TO_STOCK.value,
                *SALE_KEEPS_ALL)
#: The order of a sale's statuses; a final status (rejected, back to stock, cancelled) ends it.
SALE_RANK = {status: rank for rank, status in enumerate(
    (_V.AWAITING_RESERVATION.value, _V.ORDER_QUEUED.value, *(s.value for s in MANUFACTURING),
     _V.AWAITING_FINAL_PAYMENT.value, *SALE_KEEPS_ALL))} | {
    # a sale may end early from any status (its flow decides from where): only nothing may follow
    status: 100 for status in (_V.ORDER_REJECTED.value, _V.RETURNED_TO_STOCK.value, _V.CANCELLED.value)}
SALE_ENDS = (_V.ORDER_REJECTED.value, _V.RETURNED_TO_STOCK.value, _V.CANCELLED.value, _V.DELIVERED.value)
#: The only step back the flow allows: a failed quality control sends the car back to production.
SALE_REWORK = (_V.QUALITY_CONTROL.value, _V.PRODUCTION_IN_PROGRESS.value)
#: A factory notification the sale did not apply (its sequence was not newer).
NOT_APPLIED = ("duplicate", "stale")
PLACE_ORDER_JOB = "factory.place_order:"  # flows.sales.PLACE_ORDER's dedupe key prefix


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


async def webhooks_processed_once(conn: AsyncConnection) -> list[Violation]:
    """Every accepted webhook is processed, or has its processing job still queued: none lost.
    (Twice is excluded by construction: the inbox's primary key and the job's dedupe key;
    this checks that the construction holds, i.e. no webhook job was abandoned.)"""
    job = jobs.alias("job")
    rows = await conn.execute(
        select(webhook_inbox.c.source, webhook_inbox.c.webhook_id, job.c.id, job.c.status)
        .select_from(webhook_inbox.outerjoin(job, job.c.dedupe_key == inbox.job_key_of()))
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


async def vehicle_in_step(conn: AsyncConnection) -> list[Violation]:
    """The vehicle runs what the customer has. A purchase whose feature must be off (given
    up, refunded, withdrawn, expired, cancelled) and may have reached the vehicle (delivered,
    an attempt made, or a deactivation asked for) has its deactivation confirmed, found
    unneeded, or still under way (one of its deactivation jobs open): else the deactivation
    is outstanding (given up after every retry, or never asked for). And a purchase ACTIVE
    was not last reported ERROR or absent by the vehicle, nor one of two ACTIVE purchases of the
    same service on one vehicle (the vehicle runs one entry per service)."""
    job = jobs.alias("job")
    under_way = (select(job.c.payload["purchaseId"].as_string().label("purchase_id"))
                 .where(job.c.kind.in_(DEACTIVATION_JOBS), job.c.status.in_(OPEN_JOBS)).distinct().subquery())
    off = purchases.c.deactivation_status
    rows = await conn.execute(
        select(purchases.c.id, purchases.c.status, off)
        .select_from(purchases.outerjoin(under_way, under_way.c.purchase_id == purchases.c.id))
        .where(purchases.c.status.in_(MUST_BE_OFF), purchases.c.deactivated_at.is_(None),
               or_(off.is_(None), off.not_in(SWITCHED_OFF)),
               or_(purchases.c.delivered_at.is_not(None), purchases.c.attempts > 0, off.is_not(None)),
               under_way.c.purchase_id.is_(None)))
    why = {None: "never asked for", DeactivationStatus.FAILED.value: "every attempt failed"}
    found = [Violation("vehicle_in_step", {"purchaseId": pid},
                       f"{status}: deactivation outstanding ({why.get(done, f'{done} with no job left')})")
             for pid, status, done in rows]
    wrong = await conn.execute(
        select(purchases.c.id, purchases.c.vehicle_service_status)
        .where(purchases.c.status == _S.ACTIVE.value, purchases.c.vehicle_service_status.in_(VEHICLE_NOT_RUNNING)))
    found += [Violation("vehicle_in_step", {"purchaseId": pid}, f"ACTIVE but the vehicle last reported it {seen}")
              for pid, seen in wrong]
    # the vehicle runs one entry per service: of two ACTIVE purchases of it, one is not what it runs
    active = purchases.c.status == _S.ACTIVE.value
    doubled = (select(purchases.c.vin, purchases.c.service_id).where(active)
               .group_by(purchases.c.vin, purchases.c.service_id).having(func.count() > 1).subquery())
    rows = await conn.execute(
        select(purchases.c.id, purchases.c.service_id).select_from(purchases.join(doubled, and_(
            doubled.c.vin == purchases.c.vin, doubled.c.service_id == purchases.c.service_id))).where(active))
    found += [Violation("vehicle_in_step", {"purchaseId": pid},
                        f"ACTIVE with another ACTIVE purchase of {service} on its vehicle, which runs one")
              for pid, service in rows]
    return found


def _value_included():
    """Whether a payment's amount is part of what its purchase or sale delivered: a delivered
    service, a subscription's invoice, a sale's payments from the final payment on, and its
    reservation while the car is built or once lost. (A rejected or cancelled sale delivered
    nothing: a failed payment of it is owed by no one.) Needs payments joined to purchases
    and sales."""
    return or_(purchases.c.status.in_(DELIVERED), sales.c.status.in_(SALE_KEEPS_ALL),
               and_(sales.c.status.in_(SALE_KEEPS_RESERVATION), payments.c.kind == "RESERVATION"))


def _settlement_cases():
    """Collection cases per payment (or unpaid invoice) opened for a failed settlement or an
    exhausted subscription charge: chargebacks are counted apart (a payment may have both)."""
    return (select(collection_cases.c.payment_id, func.count().label("n"))
            .where(collection_cases.c.reason.not_like("CHARGEBACK%"))
            .group_by(collection_cases.c.payment_id).subquery())


async def failed_settlement_has_collection_case(conn: AsyncConnection) -> list[Violation]:
    """Money owed is pursued exactly once: a failed settlement of a delivered service or of a
    sale payment whose value the customer kept (the reservation of a car being built or lost,
    the final payment), not refunded since, and a subscription invoice unpaid after every
    retry, each have one collection case."""
    live = _live_refunds()
    cases = _settlement_cases()
    owed = payments.c.amount_minor - func.coalesce(live.c.refunded, 0)
    n = func.coalesce(cases.c.n, 0)
    rows = await conn.execute(
        select(payments.c.id, payments.c.purchase_id, payments.c.sale_id, owed, n)
        .select_from(payments.outerjoin(purchases, purchases.c.id == payments.c.purchase_id)
                     .outerjoin(sales, sales.c.id == payments.c.sale_id)
                     .outerjoin(live, live.c.payment_id == payments.c.id)
                     .outerjoin(cases, cases.c.payment_id == payments.c.id))
        .where(payments.c.status == NO_MONEY, owed > 0, n != 1, _value_included()))
    found = [Violation("failed_settlement_has_collection_case",
                       {"paymentId": pay, **({"purchaseId": pid} if pid else {}), **({"saleId": sid} if sid else {})},
                       f"settlement failed with {amount} owed and {cases_n} collection cases")
             for pay, pid, sid, amount, cases_n in rows]
    unpaid = await conn.execute(
        select(invoices.c.id, invoices.c.purchase_id, invoices.c.amount_minor, n)
        .select_from(invoices.outerjoin(cases, cases.c.payment_id == invoices.c.id))
        .where(invoices.c.status == "UNPAID", n != 1))
    found += [Violation("failed_settlement_has_collection_case", {"invoiceId": inv, "purchaseId": pid},
                        f"invoice of {amount} unpaid after every retry with {cases_n} collection cases")
              for inv, pid, amount, cases_n in unpaid]
    return found


async def money_adds_up_per_customer(conn: AsyncConnection) -> list[Violation]:
    """Per customer and currency: charged minus refunded equals the value delivered, over
    service purchases no longer in flight, subscription invoices and vehicle sales.

    Value delivered: a one-off service's price once delivered; a subscription's paid
    invoices; a sale's whole price from the final payment on, its reservation while the car
    is built and for good when the final payment failed (the customer loses it), nothing
    when the order was rejected or the sale cancelled (refunded). A payment whose
    settlement failed brought no money: it counts as neither charged nor delivered (the
    collection case pursues it, if anything was delivered for it)."""
    live = _live_refunds()
    zero = literal(0, BigInteger)
    failed = payments.c.status == NO_MONEY
    settled_purchase = purchases.c.status.not_in(IN_FLIGHT)
    charged = (  # every payment that brought money, less what went back
        select(func.coalesce(purchases.c.customer_id, sales.c.customer_id).label("customer"),
               payments.c.currency.label("currency"),
               case((failed, zero), else_=payments.c.amount_minor).label("charged"),
               case((failed, zero), else_=func.coalesce(live.c.refunded, 0)).label("refunded"),
               case((and_(failed, _value_included()), -payments.c.amount_minor), else_=zero).label("value"))
        .select_from(payments.outerjoin(purchases, purchases.c.id == payments.c.purchase_id)
                     .outerjoin(sales, sales.c.id == payments.c.sale_id)
                     .outerjoin(live, live.c.payment_id == payments.c.id))
        .where(or_(payments.c.sale_id.is_not(None), and_(purchases.c.id.is_not(None), settled_purchase))))
    one_off = (
        select(purchases.c.customer_id, purchases.c.currency, zero, zero,
               case((purchases.c.status.in_(DELIVERED), purchases.c.price_minor), else_=zero))
        .where(settled_purchase, purchases.c.duration_type != DurationType.SUBSCRIPTION.value))
    billed = (
        select(purchases.c.customer_id, invoices.c.currency, zero, zero, invoices.c.amount_minor)
        .select_from(invoices.join(purchases, purchases.c.id == invoices.c.purchase_id))
        .where(settled_purchase, invoices.c.status == "PAID"))
    sold = (
        select(sales.c.customer_id, sales.c.currency, zero, zero,
               case((sales.c.status.in_(SALE_KEEPS_ALL), sales.c.price_minor),
                    (sales.c.status.in_(SALE_KEEPS_RESERVATION), sales.c.reservation_minor), else_=zero)))
    ledger = union_all(charged, one_off, billed, sold).subquery()
    c, r, d = func.sum(ledger.c.charged), func.sum(ledger.c.refunded), func.sum(ledger.c.value)
    rows = await conn.execute(select(ledger.c.customer, ledger.c.currency, c, r, d)
                              .group_by(ledger.c.customer, ledger.c.currency).having(c - r != d))
    return [Violation("money_adds_up_per_customer", {"customerId": cid},
                      f"{currency}: charged {c} - refunded {r} = {c - r}, delivered {d}")
            for cid, currency, c, r, d in rows]


def _detail(key: str, as_int: bool = False):
    field = sale_events.c.detail[key]
    return field.as_integer() if as_int else field.as_string()


async def one_factory_order_per_sale(conn: AsyncConnection) -> list[Violation]:
    """A paid reservation leads to exactly one factory order. No order id is shared by two
    sales, and a sale never recorded two orders (a retried placement, ORDER_QUEUED and
    retried under backoff or after a crash, must find the first order, not make another).
    A sale still queued keeps its placement job open (else the order is lost); a sale past
    the order has one, and a sale with an order had its reservation paid."""
    found = []
    shared = await conn.execute(select(sales.c.order_id, func.count()).where(sales.c.order_id.is_not(None))
                                .group_by(sales.c.order_id).having(func.count() > 1))
    found += [Violation("one_factory_order_per_sale", {"orderId": order_id}, f"{n} sales share this factory order")
              for order_id, n in shared]
    placed = (select(sale_events.c.sale_id, func.count(func.distinct(_detail("orderId"))).label("orders"))
              .where(sale_events.c.kind == "ORDER_PLACED").group_by(sale_events.c.sale_id).subquery())
    twice = await conn.execute(select(placed.c.sale_id, placed.c.orders).where(placed.c.orders > 1))
    found += [Violation("one_factory_order_per_sale", {"saleId": sid}, f"{n} factory orders placed for one sale")
              for sid, n in twice]
    job = jobs.alias("job")
    lost = await conn.execute(
        select(sales.c.id, job.c.status)
        .select_from(sales.outerjoin(job, job.c.dedupe_key == literal(PLACE_ORDER_JOB) + sales.c.id))
        .where(sales.c.status == _V.ORDER_QUEUED.value, or_(job.c.id.is_(None), job.c.status.not_in(OPEN_JOBS))))
    found += [Violation("one_factory_order_per_sale", {"saleId": sid},
                        "reservation paid, order queued, and no placement job left "
                        f"({'none' if status is None else status})") for sid, status in lost]
    reservation = (select(payments.c.sale_id).where(payments.c.kind == "RESERVATION").distinct().subquery())
    mismatched = await conn.execute(
        select(sales.c.id, sales.c.status, sales.c.order_id, reservation.c.sale_id)
        .select_from(sales.outerjoin(reservation, reservation.c.sale_id == sales.c.id))
        .where(or_(and_(sales.c.status.in_(SALE_ORDERED), sales.c.order_id.is_(None)),
                   and_(sales.c.order_id.is_not(None), reservation.c.sale_id.is_(None)),
                   and_(sales.c.status == _V.AWAITING_RESERVATION.value, reservation.c.sale_id.is_not(None)))))
    found += [Violation("one_factory_order_per_sale", {"saleId": sid},
                        f"{status} with {'order ' + order if order else 'no factory order'} and "
                        f"{'a' if paid else 'no'} reservation payment") for sid, status, order, paid in mismatched]
    return found


def _rank(column):
    return case(*((column == status, rank) for status, rank in SALE_RANK.items()), else_=-1)


async def order_statuses_never_regress(conn: AsyncConnection) -> list[Violation]:
    """A sale only moves forward: every status change recorded in its file ranks at or
    after the one before (the quality-control rework loop aside), nothing follows a final
    status, the sale's status is the last one recorded, and the factory's notifications
    were applied in strictly increasing sequence (a duplicate or older one changes nothing)."""
    found = []
    status = _detail("status")
    order = (sale_events.c.id,)
    changes = (select(sale_events.c.id, sale_events.c.sale_id, status.label("status"),
                      func.lag(status).over(partition_by=sale_events.c.sale_id, order_by=order).label("before"))
               .where(sale_events.c.kind == "STATUS_CHANGED").subquery())
    back = await conn.execute(
        select(changes.c.sale_id, changes.c.before, changes.c.status, changes.c.id)
        .where(changes.c.before.is_not(None),
               or_(changes.c.before.in_(SALE_ENDS),
                   and_(_rank(changes.c.status) < _rank(changes.c.before),
                        or_(changes.c.before != SALE_REWORK[0], changes.c.status != SALE_REWORK[1]))))
        .order_by(changes.c.id))
    found += [Violation("order_statuses_never_regress", {"saleId": sid}, f"went from {before} to {after}")
              for sid, before, after, _ in back]
    last_id = (select(sale_events.c.sale_id, func.max(sale_events.c.id).label("id"))
               .where(sale_events.c.kind == "STATUS_CHANGED").group_by(sale_events.c.sale_id).subquery())
    last = await conn.execute(
        select(sales.c.id, sales.c.status, status)
        .select_from(sales.join(last_id, last_id.c.sale_id == sales.c.id)
                     .join(sale_events, sale_events.c.id == last_id.c.id))
        .where(sales.c.status != status))
    found += [Violation("order_statuses_never_regress", {"saleId": sid},
                        f"status {current} but the file's last status is {recorded}") for sid, current, recorded in last]
    sequence = _detail("sequence", as_int=True)
    outcome = _detail("outcome")
    applied = case((outcome.not_in(NOT_APPLIED), sequence))
    notices = (select(sale_events.c.id, sale_events.c.sale_id, sequence.label("sequence"),
                      outcome.label("outcome"),
                      func.max(applied).over(partition_by=sale_events.c.sale_id, order_by=order, rows=(None, -1))
                      .label("newest"))
               .where(sale_events.c.kind == "FACTORY_NOTIFICATION").subquery())
    disorder = await conn.execute(
        select(notices.c.sale_id, notices.c.sequence, notices.c.outcome, notices.c.newest)
        .where(notices.c.newest.is_not(None), or_(
            and_(notices.c.outcome.not_in(NOT_APPLIED), notices.c.sequence <= notices.c.newest),
            and_(notices.c.outcome.in_(NOT_APPLIED), notices.c.sequence > notices.c.newest)))
        .order_by(notices.c.id))
    found += [Violation("order_statuses_never_regress", {"saleId": sid},
                        f"factory notification {seq} {outcome} after notification {newest} was applied")
              for sid, seq, outcome, newest in disorder]
    return found


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
    "order_statuses_never_regress": order_statuses_never_regress,
    "vehicle_in_step": vehicle_in_step,
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
