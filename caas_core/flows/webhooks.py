"""Webhooks from the external systems: accepted durably once, processed as jobs.

The endpoint has already verified the signature. Here the webhook-id is
recorded in the inbox and the job that processes it is enqueued in the same
transaction, before the 2xx goes back: a duplicate is acknowledged and
ignored, and a crash after the acknowledgement loses nothing.
"""

from __future__ import annotations

from sqlalchemy import select, update

from ..domain.purchase import PurchaseEvent, PurchaseState, transition
from ..store import inbox, jobs
from ..store.schema import collection_cases, payments, purchases, refunds
from .core import Core
from .manufacturing import FACTORY_EVENT
from .ota import OUTCOME
from .runner import JobContext

PAYMENT_EVENT = "payments.event"
REGISTRY_EVENT = "registry.event"
#: The job that processes each source's webhooks.
PROCESSORS = {"iot": OUTCOME, "payments": PAYMENT_EVENT, "factory": FACTORY_EVENT, "registry-uk": REGISTRY_EVENT}


async def receive(core: Core, source: str, webhook_id: str, body: dict, correlation_id: str | None) -> bool:
    """True for a new webhook, False for a duplicate (both are acknowledged)."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        if not await inbox.accept(conn, source, webhook_id, body, now):
            return False
        kind = PROCESSORS.get(source)
        if kind is None:
            await inbox.mark_processed(conn, source, webhook_id, "recorded", now)
        else:
            await jobs.enqueue(conn, kind, {"source": source, "webhookId": webhook_id, "body": body}, run_at=now,
                               now=now, dedupe_key=f"webhook:{source}:{webhook_id}", correlation_id=correlation_id)
    core.wake()
    return True


async def on_payment_event(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """Refund outcomes and settlement: a failed settlement opens a collection case and never
    touches the delivered service (no retroactive blocking)."""
    body, now = job.payload["body"], core.clock.now()
    async with core.db.transaction() as conn:
        payment = (await conn.execute(select(payments).where(
            payments.c.gateway_payment_id == body.get("paymentId")))).mappings().first()
        purchase = None
        if payment is not None and payment["purchase_id"]:
            purchase = (await conn.execute(select(purchases).where(
                purchases.c.id == payment["purchase_id"]))).mappings().first()
        event = body.get("event")
        if payment is None:
            outcome = "unknown payment"
        elif event == "refundStatus":
            await conn.execute(update(refunds).where(refunds.c.id == body.get("refundId")).values(
                status=body["status"]))
            outcome = f"refund {body['status']}"
            if body["status"] == "SUCCEEDED" and purchase is not None:
                state = transition(PurchaseState(purchase["status"]), PurchaseEvent.REFUND_COMPLETED)
                await conn.execute(update(purchases).where(purchases.c.id == purchase["id"]).values(
                    status=state.value, updated_at=now))
        elif event == "paymentSettlement":
            settled = body["status"] == "SETTLED"
            await conn.execute(update(payments).where(payments.c.id == payment["id"]).values(
                status="SETTLED" if settled else "FAILED", settled_at=now if settled else None,
                failure_reason=None if settled else body.get("failureReason")))
            outcome = f"settlement {body['status']}"
            if not settled and purchase is not None and purchase["delivered_at"] is not None:
                owed = payment["amount_minor"] - purchase["refunded_minor"]
                if owed > 0:
                    await conn.execute(collection_cases.insert().values(
                        id=core.new_id("col"), payment_id=payment["id"], customer_id=purchase["customer_id"],
                        amount_minor=owed, currency=payment["currency"], reason=body.get("failureReason") or "FAILED",
                        status="open", created_at=now))
        else:
            outcome = f"ignored {event}"
        await inbox.mark_processed(conn, job.payload["source"], job.payload["webhookId"], outcome, now)
        await jobs.complete(conn, job.id)
