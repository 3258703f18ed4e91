"""The factory's notifications: manufacturing status (``orderStatus``) and home delivery
(``deliveryStatus``), processed as jobs from the webhook inbox.

Idempotent and monotonic: ``domain.sale.manufacturing_update`` decides by the factory's
per-order sequence, so a duplicate or a late, older notification is recorded in the
customer's file and changes nothing (the QC rework loop aside).
"""

from __future__ import annotations

from ..clients.wire.base import Unusable
from ..clients.wire.factory import (
    DeliveryStatusNotification,
    OrderStatusNotification,
    parse_event,
)
from ..domain.sale import (
    FOLLOWS_FACTORY,
    MANUFACTURING_NOTICES,
    SaleStatus,
    manufacturing_update,
)
from ..store import inbox, jobs
from ..store.schema import vehicles
from . import sale_records as rec
from .core import Core
from .runner import JobContext

FACTORY_EVENT = "factory.event"
S = SaleStatus


async def on_factory_event(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    now = core.clock.now()
    try:
        event = parse_event(job.payload["body"])
    except Unusable as exc:  # stored before the receiver parsed bodies: recorded, never retried
        event, outcome = None, exc.outcome
    async with core.db.transaction() as conn:
        if event is not None:
            sale = await rec.by_order(conn, event.orderId)
            if sale is None:
                outcome = "unknown order"
            elif isinstance(event, DeliveryStatusNotification):
                outcome = await _delivery(conn, sale, event, now)
            else:
                outcome = await _manufacturing(conn, sale, event, now)
        await inbox.mark_processed(conn, job.payload["source"], job.payload["webhookId"], outcome, now)
        await jobs.complete(conn, job.id)


async def _manufacturing(conn, sale, body: OrderStatusNotification, now: float) -> str:
    # domain.sale reads the parsed notification as a mapping
    decision = manufacturing_update(sale["status"], sale["last_sequence"], body.model_dump())
    entry = {"sequence": body.sequence, "notification": body.notification, "status": body.status,
             "description": body.description, "outcome": decision.reason}
    await rec.record(conn, sale["id"], "FACTORY_NOTIFICATION", entry, now)
    if not decision.apply:
        return decision.reason
    values = {"last_sequence": body.sequence, "estimated_date": body.estimatedDate or sale["estimated_date"]}
    if body.vin and not sale["vin"]:
        values["vin"] = body.vin
    if decision.status is not None:
        values["status"] = decision.status.value
    await rec.change(conn, sale["id"], now, **values)
    sale = {**sale, **values}
    template = MANUFACTURING_NOTICES.get(decision.status) if decision.status else None
    if template:
        data = {"status": body.status, "description": body.description}
        if decision.status is S.IN_TRANSIT:
            data["expectedArrival"] = body.estimatedDate
        if decision.status is S.AWAITING_FINAL_PAYMENT:
            data["finalPayment"] = {"value": sale["price_minor"] - sale["reservation_minor"],
                                    "currency": sale["currency"]}
        await rec.tell_customer(conn, sale, template, now, **data)
    elif body.notification == "ESTIMATE_UPDATED" and S(sale["status"]) in FOLLOWS_FACTORY:
        await rec.tell_customer(conn, sale, "DELIVERY_ESTIMATE_UPDATED", now, estimatedDate=body.estimatedDate,
                                reason=body.estimateRevision.reason if body.estimateRevision else None)
    return decision.reason if decision.status is None else f"{decision.reason}: {decision.status.value}"


async def _delivery(conn, sale, body: DeliveryStatusNotification, now: float) -> str:
    status = body.status
    await rec.record(conn, sale["id"], "DELIVERY_NOTIFICATION", {"deliveryId": body.deliveryId,
                                                                 "status": status, "sequence": body.sequence,
                                                                 "description": body.description}, now)
    if body.deliveryId != sale["delivery_id"] or sale["status"] != S.DELIVERY_SCHEDULED.value:
        return f"recorded (sale is {sale['status']})"
    if status == "DELIVERED":
        await delivered(conn, sale, now, in_person=False)
        return "delivered"
    if status == "RETURNED_TO_DEALERSHIP":
        await rec.change(conn, sale["id"], now, status=S.AWAITING_COLLECTION.value)
        await rec.tell_customer(conn, sale, "VEHICLE_RETURNED_PICKUP_REQUIRED", now,
                                dealershipId=sale["dealership_id"])
        return "returned to the dealership"
    if status == "OUT_FOR_DELIVERY":
        await rec.tell_customer(conn, sale, "OUT_FOR_DELIVERY", now, slot=body.slot.model_dump() if body.slot else None)
    return f"recorded {status}"


async def delivered(conn, sale, now: float, *, in_person: bool) -> None:
    """The keys are handed over: the vehicle is the customer's; tell them how to link the app."""
    await rec.change(conn, sale["id"], now, status=S.DELIVERED.value)
    await conn.execute(vehicles.delete().where(vehicles.c.vin == sale["vin"]))
    await conn.execute(vehicles.insert().values(vin=sale["vin"], customer_id=sale["customer_id"], model=sale["model"],
                                                country=sale["country"]))
    await rec.record(conn, sale["id"], "DELIVERED", {"inPerson": in_person}, now)
    await rec.tell_customer(conn, sale, "DELIVERED_MOBILE_APP_LINKING", now, vin=sale["vin"],
                            instructions="Open the CaaS app, choose 'Link my car' and scan the QR code on the "
                                         "driver's door pillar; the vehicle confirms on its screen.")
