"""Home delivery by the transport company, once the vehicle is registered.

CaaS asks the factory's carrier for the first slot in the next two weeks (it books one
at least 48 h ahead). The outcome arrives as ``deliveryStatus`` notifications
(``flows.manufacturing``): delivered, or the customer was absent and the vehicle went
back to the dealership, where the customer collects it in person (``hand_over``).
"""

from __future__ import annotations

from sqlalchemy import select

from ..clients.http import Rejected, Unavailable
from ..clock import isoformat, parse_instant
from ..domain.errors import Conflict
from ..domain.sale import SaleStatus
from ..store import jobs
from ..store.schema import payments
from . import sale_records as rec
from .core import Core
from .manufacturing import delivered
from .runner import JobContext

WINDOW = 14 * 86400.0
RETRY = 3600.0
S = SaleStatus


async def schedule(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    async with core.db.transaction(readonly=True) as conn:
        sale = await rec.load(conn, job.payload["saleId"])
        final = await conn.scalar(select(payments.c.gateway_payment_id).where(
            payments.c.sale_id == sale["id"], payments.c.kind == "FINAL"))
    if sale["status"] != S.READY_FOR_DELIVERY.value:
        async with core.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        return
    now = core.clock.now()
    address = sale["plan"]["customer"]["address"]
    start = job.payload.get("from") or now
    request = {"address": {k: address[k] for k in ("line1", "line2", "city", "postalCode", "country") if k in address},
               "requestedWindow": {"start": isoformat(start), "end": isoformat(start + WINDOW)},
               "finalPaymentReference": final or sale["id"]}
    attempt = sale["delivery_attempts"] + 1
    try:
        answer = await core.factory.schedule_delivery(sale["order_id"], request, key=f"{sale['id']}:delivery:{attempt}",
                                                      correlation_id=job.correlation_id or sale["id"])
    except Unavailable as exc:
        async with core.db.transaction() as conn:
            await jobs.retry(conn, job.id, run_at=now + RETRY, error=str(exc))
        return
    except Rejected as exc:
        earliest = (exc.problem or {}).get("earliestSlotStart")
        async with core.db.transaction() as conn:
            await rec.record(conn, sale["id"], "DELIVERY_NOT_SCHEDULED", {"reason": str(exc)}, now)
            if earliest:  # no slot in the window: ask again from the carrier's first slot
                await jobs.enqueue(conn, job.kind, {**job.payload, "from": parse_instant(earliest)}, run_at=now, now=now)
                await jobs.complete(conn, job.id)
            else:
                await jobs.retry(conn, job.id, run_at=now + RETRY, error=str(exc))
        return
    async with core.db.transaction() as conn:
        await rec.change(conn, sale["id"], now, status=S.DELIVERY_SCHEDULED.value, delivery_id=answer.deliveryId,
                         delivery_attempts=attempt)
        slot = answer.slot.model_dump()
        await rec.record(conn, sale["id"], "DELIVERY_SCHEDULED", {"deliveryId": answer.deliveryId,
                                                                  "slot": slot, "carrier": answer.carrier},
                         now)
        await rec.tell_customer(conn, sale, "HOME_DELIVERY_SCHEDULED", now, slot=slot,
                                carrier=answer.carrier, trackingNumber=answer.trackingNumber)
        await jobs.complete(conn, job.id)


async def hand_over(core: Core, sale_id: str) -> None:
    """The customer collected the vehicle at the dealership after a missed home delivery."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        sale = await rec.load(conn, sale_id, lock=True)
        if sale["status"] != S.AWAITING_COLLECTION.value:
            raise Conflict("Sale not in that state", f"the sale is {sale['status']}; a vehicle is handed over at "
                          "the dealership only after a missed home delivery (AWAITING_COLLECTION)",
                          kind="sale-conflict", saleStatus=sale["status"])
        await delivered(conn, sale, now, in_person=True)
