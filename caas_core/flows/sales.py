"""Selling a vehicle: the sale, the reservation signal, the factory order, the final payment.

The reservation payment is confirmed synchronously and places the factory order at
once (30 s timeout). The order job is enqueued in the same transaction as the payment,
so that a factory that is down, slow or a crash in between leaves a queued order that
is retried with exponential backoff, always under the same Idempotency-Key (one factory
order per paid reservation). The factory unreachable longer than the configured limit
suspends new sales and tells the dealerships; its first success lifts the suspension. The
outage is what the queued orders see: it lasts while an order that failed still waits, and
ends with the last one (cancelled or rejected as well as placed), so a failure days later
starts another instead of suspending sales at once.

A suspension must not outlive the outage: while it lasts, a durable probe job (``PROBE``)
checks on the factory every ``probe_interval``. With orders queued, their placements are
the check (brought forward to now: the order system is what failed, and placing one
lifts the suspension); with none queued, the factory's catalogue answering is enough. The
probe exists only while sales are suspended, so a world in virtual time takes no step for
it otherwise.

The payments themselves (reservation signal, final payment) are ``sale_payments``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from ..clients.http import Rejected, Unavailable
from ..clock import isoformat
from ..domain.errors import Conflict, PeerUnavailable
from ..domain.sale import SaleConflict, SaleStatus, require
from ..store import jobs, locks, outbox
from ..store.schema import invoices, payments, refunds, sale_events, sales
from . import purchase_records as records
from . import sale_records as rec
from .core import Core
from .runner import JobContext

PLACE_ORDER = "factory.place_order"
PROBE = "factory.probe"
SUSPENSION, OUTAGE = "sales_suspended", "factory_outage"
S = SaleStatus


async def register(core: Core, dealership_id: str, plan: dict, correlation_id: str) -> dict[str, Any]:
    now = core.clock.now()
    async with core.db.transaction() as conn:
        suspended = await rec.get_state(conn, SUSPENSION)
        if suspended:
            raise PeerUnavailable("Sales suspended", "the factory has been unreachable since "
                          f"{isoformat(suspended['outageSince'])}; new sales are suspended until it is back",
                          kind="sales-suspended", retry_after=3600)
        sale_id = core.new_id("sale")
        customer = plan["customer"]
        await conn.execute(sales.insert().values(
            id=sale_id, dealership_id=dealership_id, customer_id=customer["customerId"], plan=plan,
            country=customer["address"]["country"], model=plan["model"], price_minor=plan["price"]["value"],
            currency=plan["price"]["currency"], reservation_minor=plan["reservation"]["value"],
            status=S.AWAITING_RESERVATION.value, created_at=now, updated_at=now))
        await rec.record(conn, sale_id, "SALE_REGISTERED", {"dealershipId": dealership_id, "model": plan["model"],
                                                            "options": plan["options"]}, now)
        sale = await rec.load(conn, sale_id)
        await rec.tell_customer(conn, sale, "RESERVATION_REQUESTED", now,
                                amount={"value": plan["reservation"]["value"], "currency": plan["price"]["currency"]})
    return await view(core, sale_id)


async def place_order_job(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    outcome = await place_order(core, job.payload["saleId"], job.correlation_id or job.payload["saleId"])
    async with core.db.transaction() as conn:
        if outcome == "unavailable":
            # the job's first run came backoff_base after the failed call at the reservation: its
            # failures double that wait (1, 2, 4, 8 min... capped), not repeat it first
            delay = min(core.settings.factory.backoff_base * 2 ** (job.attempts + 1), core.settings.factory.backoff_cap)
            await jobs.retry(conn, job.id, run_at=core.clock.now() + delay, error="factory unavailable")
        else:
            await jobs.complete(conn, job.id)


async def place_order(core: Core, sale_id: str, correlation_id: str) -> str:
    """One attempt at the factory order; returns placed, rejected, unavailable or skipped."""
    async with core.db.transaction() as conn:
        sale = await rec.load(conn, sale_id, lock=True)
        if sale["status"] != S.ORDER_QUEUED.value:
            return "skipped"
        await rec.change(conn, sale_id, core.clock.now(), order_attempts=sale["order_attempts"] + 1)
    plan = sale["plan"]
    customer = plan["customer"]
    order = {"reference": sale_id, "model": sale["model"], "options": plan["options"],
             "customer": {"customerId": sale["customer_id"], "firstName": customer["firstName"],
                          "lastName": customer["lastName"], **({"email": customer["email"]} if customer.get("email")
                                                               else {})},
             "dealership": {"id": sale["dealership_id"], "city": plan["dealership"]["city"],
                            "country": sale["country"]}}
    try:
        answer = await core.factory.place_order(order, key=f"{sale_id}:order", correlation_id=correlation_id)
    except Unavailable as exc:
        await _factory_unavailable(core, sale, str(exc))
        return "unavailable"
    except Rejected as exc:
        if exc.status == 409:  # the same key still in flight at the factory: try again later
            await _factory_unavailable(core, sale, str(exc))
            return "unavailable"
        await _order_rejected(core, sale, exc, correlation_id)
        return "rejected"
    now = core.clock.now()
    async with core.db.transaction() as conn:
        await rec.change(conn, sale_id, now, status=S.ORDER_PLACED.value, order_id=answer.orderId,
                         estimated_date=answer.estimatedDate)
        await rec.record(conn, sale_id, "ORDER_PLACED", {"orderId": answer.orderId,
                                                         "estimatedDate": answer.estimatedDate}, now)
        await rec.tell_customer(conn, sale, "ORDER_CONFIRMED", now, orderId=answer.orderId,
                                estimatedDate=answer.estimatedDate)
        await _factory_back(conn, now)
    return "placed"


#: Held by every transaction that reads the factory's outage or suspension to change it:
#: orders failing at once each read "no outage yet", and only one may start it.
FACTORY_STATE_LOCK = "factory-order-system"


async def _factory_unavailable(core: Core, sale, reason: str) -> None:
    now = core.clock.now()
    async with core.db.transaction() as conn:
        await locks.hold(conn, FACTORY_STATE_LOCK)
        outage = await rec.get_state(conn, OUTAGE)
        if outage is None or not await _orders_still_waiting(conn):  # read before this failure is recorded
            outage = {"since": now}
            await rec.set_state(conn, OUTAGE, outage, now)
        await rec.record(conn, sale["id"], "ORDER_DEFERRED", {"reason": reason, "attempt": sale["order_attempts"] + 1},
                         now)
        if sale["order_attempts"] == 0:
            await rec.tell_customer(conn, sale, "ORDER_QUEUED", now)
        if now - outage["since"] >= core.settings.factory.suspend_sales_after \
                and await rec.get_state(conn, SUSPENSION) is None:
            await rec.set_state(conn, SUSPENSION, {"outageSince": outage["since"], "at": now}, now)
            await _schedule_probe(core, conn, now)
            for dealership in await _dealerships(conn):
                await rec.alert_dealership(conn, dealership, "SALES_SUSPENDED", now,
                                           outageSince=isoformat(outage["since"]))


# an order that failed and waits still (statement built once)
_FAILED_AND_QUEUED = (select(sales.c.id).join(sale_events, sale_events.c.sale_id == sales.c.id)
                      .where(sales.c.status == S.ORDER_QUEUED.value, sale_events.c.kind == "ORDER_DEFERRED").limit(1))


async def _orders_still_waiting(conn) -> bool:
    """Whether an order that failed before still waits on the factory: the outage it saw goes
    on. With none (each was placed, cancelled or rejected since, or its sale moved on), nothing
    watched the factory meanwhile and the outage recorded is over: the specification suspends
    sales when the factory is unreachable for more than 4 hours, not when two failures
    days apart bracket a time nobody needed it. A sale leaves ``ORDER_QUEUED`` for good, so
    one still there has waited since its first failure."""
    return await conn.scalar(_FAILED_AND_QUEUED) is not None


async def _factory_back(conn, now: float) -> None:
    await locks.hold(conn, FACTORY_STATE_LOCK)
    await rec.set_state(conn, OUTAGE, None, now)
    if await rec.get_state(conn, SUSPENSION) is not None:
        await rec.set_state(conn, SUSPENSION, None, now)
        for dealership in await _dealerships(conn):
            await rec.alert_dealership(conn, dealership, "SALES_RESUMED", now)


async def _schedule_probe(core: Core, conn, now: float) -> None:
    """The probe of the suspension in force, once (its key names the suspension)."""
    suspension = await rec.get_state(conn, SUSPENSION)
    await jobs.enqueue(conn, PROBE, {}, run_at=now + core.settings.factory.probe_interval, now=now,
                       dedupe_key=f"{PROBE}:{suspension['at']!r}")


async def watch_suspension(core: Core) -> None:
    """At start-up: a suspension recorded before the probe existed gets one (idempotent)."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        if await rec.get_state(conn, SUSPENSION) is not None:
            await _schedule_probe(core, conn, now)


async def probe_job(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """Sales are suspended: is the factory back? Lift the suspension if so, else look again later."""
    async with core.db.transaction(readonly=True) as conn:
        suspended = await rec.get_state(conn, SUSPENSION) is not None
        queued = list((await conn.scalars(select(sales.c.id).where(sales.c.status == S.ORDER_QUEUED.value)
                                          .order_by(sales.c.id))).all())
    if not suspended:  # an order placed meanwhile lifted it
        async with core.db.transaction() as conn:
            await jobs.complete(conn, job.id)
    elif queued:  # the queued orders answer for the order system: they try now
        await _probe_again(core, job, bring_forward=queued)
        core.wake()
    elif await _factory_answers(core, job):  # and no order waits on it: sales reopen
        async with core.db.transaction() as conn:
            await _factory_back(conn, core.clock.now())
            await jobs.complete(conn, job.id)
    else:
        await _probe_again(core, job)


async def _factory_answers(core: Core, job: jobs.Job) -> bool:
    try:
        await core.factory.probe(correlation_id=job.correlation_id or PROBE)
    except Unavailable:
        return False
    except Rejected:  # it answered, if only to refuse the call: it is up
        pass
    return True


async def _probe_again(core: Core, job: jobs.Job, *, bring_forward: Sequence[str] = ()) -> None:
    """The probe comes back in an interval; the placements of ``bring_forward``'s sales run now."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        for sale_id in bring_forward:
            await jobs.postpone(conn, dedupe_key=f"{PLACE_ORDER}:{sale_id}", run_at=now, now=now)
        await jobs.reschedule(conn, job.id, run_at=now + core.settings.factory.probe_interval, now=now)


async def _dealerships(conn) -> list[str]:
    return list((await conn.scalars(select(sales.c.dealership_id).distinct().order_by(sales.c.dealership_id))).all())


async def _order_rejected(core: Core, sale, exc: Rejected, correlation_id: str) -> None:
    reason = (exc.problem or {}).get("reason") or (exc.problem or {}).get("detail") or str(exc)
    refunded = await refund_sale(core, sale["id"], "ORDER_REJECTED", correlation_id)
    now = core.clock.now()
    async with core.db.transaction() as conn:
        await rec.change(conn, sale["id"], now, status=S.ORDER_REJECTED.value)
        await rec.record(conn, sale["id"], "ORDER_REJECTED", {"reason": reason}, now)
        await rec.tell_customer(conn, sale, "ORDER_REJECTED_RESERVATION_REFUNDED", now, reason=reason,
                                refunded={"value": refunded, "currency": sale["currency"]})
        await _factory_back(conn, now)  # a rejection is an answer: the order system is up


async def refund_sale(core: Core, sale_id: str, reason: str, correlation_id: str) -> int:
    """Refund what is left of every payment of the sale; returns the amount refunded now."""
    async with core.db.transaction(readonly=True) as conn:
        paid = (await conn.execute(select(payments).where(payments.c.sale_id == sale_id)
                                   .order_by(payments.c.created_at))).mappings().all()
        done = {r["payment_id"]: r["amount_minor"] for r in (await conn.execute(
            select(refunds).where(refunds.c.payment_id.in_([p["id"] for p in paid])))).mappings().all()}
    total = 0
    for payment in paid:
        due = payment["amount_minor"] - done.get(payment["id"], 0)
        if due <= 0:
            continue
        try:
            answer = await core.payments.refund(payment["gateway_payment_id"], due, payment["currency"], reason,
                                                key=f"{payment['id']}:refund", correlation_id=correlation_id)
        except (Unavailable, Rejected) as exc:  # the gateway cannot now: an operator refunds by hand
            async with core.db.transaction() as conn:
                sale = await rec.load(conn, sale_id)
                await outbox.open_ticket(conn, sale["customer_id"], sale["vin"], f"Refund {due} "
                                         f"{payment['currency']} by hand ({reason})",
                                         {"saleId": sale_id, "paymentId": payment["gateway_payment_id"],
                                          "error": str(exc)}, core.clock.now())
                await rec.record(conn, sale_id, "REFUND_DEFERRED", {"paymentId": payment["gateway_payment_id"],
                                                                    "amount": due, "error": str(exc)},
                                 core.clock.now())
            continue
        now = core.clock.now()
        async with core.db.transaction() as conn:
            await conn.execute(refunds.insert().values(
                id=answer.refundId, payment_id=payment["id"], amount_minor=due, currency=payment["currency"],
                status=answer.status, reason=reason, created_at=now))
            await rec.record(conn, sale_id, "REFUND_REQUESTED", {"paymentId": payment["gateway_payment_id"],
                                                                 "amount": due, "refundId": answer.refundId}, now)
        total += due
    return total


async def cancel(core: Core, sale_id: str, reason: str, correlation_id: str) -> dict[str, Any]:
    """The dealership cannot resolve the issue: cancel the sale and refund what was paid."""
    from .registration import NEEDS_STAFF

    async with core.db.transaction(readonly=True) as conn:
        sale = await rec.load(conn, sale_id)
    _require(sale, "cancel", S.ORDER_QUEUED, S.REGISTRATION)
    if sale["status"] == S.REGISTRATION.value and sale["registration_status"] not in NEEDS_STAFF:
        raise Conflict("Registration in progress", f"the registration is {sale['registration_status']}; a sale "
                      "is cancelled only when the registration cannot be resolved", kind="sale-conflict")
    refunded = await refund_sale(core, sale_id, "REGISTRATION_FAILED" if sale["status"] == S.REGISTRATION.value
                                 else "CUSTOMER_REQUEST", correlation_id)
    now = core.clock.now()
    async with core.db.transaction() as conn:
        await rec.change(conn, sale_id, now, status=S.CANCELLED.value, registration_status="CANCELLED"
                         if sale["status"] == S.REGISTRATION.value else sale["registration_status"])
        await jobs.cancel(conn, dedupe_key=f"{PLACE_ORDER}:{sale_id}", now=now)
        await rec.record(conn, sale_id, "SALE_CANCELLED", {"reason": reason, "refunded": refunded}, now)
        await rec.tell_customer(conn, sale, "SALE_CANCELLED_REFUNDED", now, reason=reason,
                                refunded={"value": refunded, "currency": sale["currency"]})
    return await view(core, sale_id)


def _require(sale, operation: str, *allowed: SaleStatus) -> None:
    try:
        require(sale["status"], operation, *allowed)
    except SaleConflict as exc:
        raise Conflict("Sale not in that state", str(exc), kind="sale-conflict", saleStatus=exc.status) from None


# --- reading ------------------------------------------------------------------------

async def view(core: Core, sale_id: str) -> dict[str, Any]:
    return render(await read(core, sale_id))


def render(sale) -> dict[str, Any]:
    plan = sale["plan"]
    detail = sale["registration_detail"] or {}
    return {
        "saleId": sale["id"], "dealershipId": sale["dealership_id"], "customerId": sale["customer_id"],
        "country": sale["country"], "model": sale["model"], "options": plan["options"],
        "price": {"value": sale["price_minor"], "currency": sale["currency"]},
        "reservation": {"value": sale["reservation_minor"], "currency": sale["currency"]},
        "status": sale["status"], "orderId": sale["order_id"], "orderAttempts": sale["order_attempts"],
        "estimatedDate": sale["estimated_date"], "vin": sale["vin"],
        "registration": {"status": sale["registration_status"], "registrationId": sale["registration_id"],
                         "plateNumber": sale["plate_number"], "attempts": sale["registration_attempts"],
                         **{k: detail[k] for k in ("requiredFields", "missingValues", "errors", "rejection",
                                                   "manualSubmission") if detail.get(k) is not None}},
        "deliveryId": sale["delivery_id"], "deliveryAttempts": sale["delivery_attempts"],
        "createdAt": isoformat(sale["created_at"]), "updatedAt": isoformat(sale["updated_at"]),
    }


async def read(core: Core, sale_id: str):
    """The sale's row as it is now (404 when unknown)."""
    async with core.db.transaction(readonly=True) as conn:
        return await rec.load(conn, sale_id)


async def file(core: Core, sale_id: str) -> dict[str, Any]:
    """The customer's file (expediente): the vehicle's whole history in one document."""
    async with core.db.transaction(readonly=True) as conn:
        sale = await rec.load(conn, sale_id)
        events = (await conn.execute(select(sale_events).where(sale_events.c.sale_id == sale_id)
                                     .order_by(sale_events.c.id))).mappings().all()
        paid = (await conn.execute(select(payments).where(payments.c.sale_id == sale_id)
                                   .order_by(payments.c.created_at))).mappings().all()
        back = (await conn.execute(select(refunds).where(refunds.c.payment_id.in_([p["id"] for p in paid]))
                                   .order_by(refunds.c.created_at))).mappings().all()
        services = []
        if sale["vin"]:
            services = await records.of_vehicle(conn, sale["vin"])
        bills = (await conn.execute(select(invoices).where(invoices.c.purchase_id.in_([s["id"] for s in services]))
                                    .order_by(invoices.c.period_start))).mappings().all()
        notices = [n for n in await outbox.notifications_for(conn, sale["customer_id"])
                   if n.payload.get("saleId") == sale_id or (sale["vin"] and n.payload.get("vin") == sale["vin"])]
    return {
        "sale": render(sale),
        "history": [{"at": isoformat(e["at"]), "event": e["kind"], "detail": e["detail"]} for e in events],
        "payments": [{"paymentId": p["gateway_payment_id"], "kind": p["kind"],
                      "amount": {"value": p["amount_minor"], "currency": p["currency"]}, "status": p["status"],
                      "createdAt": isoformat(p["created_at"])} for p in paid],
        "refunds": [{"refundId": r["id"], "amount": {"value": r["amount_minor"], "currency": r["currency"]},
                     "status": r["status"], "reason": r["reason"], "createdAt": isoformat(r["created_at"])}
                    for r in back],
        "services": [{"purchaseId": s["id"], "serviceId": s["service_id"], "durationType": s["duration_type"],
                      "status": s["status"], "createdAt": isoformat(s["created_at"])} for s in services],
        "invoices": [{"invoiceId": i["id"], "purchaseId": i["purchase_id"], "periodStart": isoformat(i["period_start"]),
                      "amount": {"value": i["amount_minor"], "currency": i["currency"]}, "status": i["status"]}
                     for i in bills],
        "notifications": [{"template": n.template, "channel": n.channel, "createdAt": isoformat(n.created_at)}
                          for n in notices],
    }
