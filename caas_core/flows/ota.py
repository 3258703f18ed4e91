"""OTA activation with the specification's retry policy, as durable jobs.

``ota.activate`` pushes the configuration (one attempt); the IoT API's signed
callback arrives as ``ota.outcome``; ``ota.timeout`` fires when no callback
came within the attempt timeout. Each decision (activated, retry later, give
up) comes from ``domain.ota_policy`` and is committed together with the jobs it
causes. Giving up: query the vehicle, open a support ticket with its
diagnostics, refund in full, tell the customer. The customer never pays for a
service that was not delivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from ..clients.http import Rejected, Unavailable
from ..domain.money import Money
from ..domain.notifications import NoticeKind
from ..domain.ota_policy import ActivationProgress, AttemptOutcome, Step
from ..domain.purchase import PurchaseEvent, PurchaseState, transition
from ..domain.support import Resolution, resolve_final_failure
from ..store import inbox, jobs, outbox
from ..store.schema import collection_cases, payments, purchases
from . import refunding
from .core import Core
from .kinds import DEACTIVATE
from .lifecycle import schedule_expiry
from .notices import notify
from .runner import JobContext

ACTIVATE, OUTCOME, TIMEOUT = "ota.activate", "ota.outcome", "ota.timeout"
GIVE_UP = "ota.give_up"
IN_PROGRESS = (PurchaseState.ACTIVATION_QUEUED, PurchaseState.ACTIVATING)
#: No longer being delivered: an activation arriving now is switched off again.
GAVE_UP = (PurchaseState.ACTIVATION_FAILED, PurchaseState.REFUNDED, PurchaseState.WITHDRAWN)
#: Finds and locks the purchase a decision is about, in the deciding transaction.
Locate = Callable[[Any], Awaitable[Any]]


def handlers(core: Core) -> dict:
    async def activate(job: jobs.Job, ctx: JobContext) -> None:
        await _activate(core, job)

    async def outcome(job: jobs.Job, ctx: JobContext) -> None:
        await _on_callback(core, job)

    async def timeout(job: jobs.Job, ctx: JobContext) -> None:
        await _on_timeout(core, job)

    return {ACTIVATE: activate, OUTCOME: outcome, TIMEOUT: timeout}


async def _done(conn, job: jobs.Job, now: float) -> None:
    """Complete the job; for a callback, also note in the inbox that it was handled."""
    await jobs.complete(conn, job.id)
    if "webhookId" in job.payload:
        await inbox.mark_processed(conn, job.payload["source"], job.payload["webhookId"], "processed", now)


# The activation path's statements, built once (a statement's construction costs more CPU
# than its run: see store/jobs.py).
_PURCHASE = select(purchases).where(purchases.c.id == bindparam("purchase_id"))
# FOR UPDATE locks the row on PostgreSQL; SQLite renders none, its write transactions being
# serialized whole (store/db.py).
_PURCHASE_LOCKED = _PURCHASE.with_for_update()
_BY_REQUEST_LOCKED = select(purchases).where(
    purchases.c.activation_request_id == bindparam("request_id")).with_for_update()
# the vehicle's latest purchase of a service being (or given up being) activated; an OR of
# equalities, not IN: an IN list is re-rendered at every execution
_LATEST_FOR_SERVICE_LOCKED = (
    select(purchases).where(purchases.c.vin == bindparam("vin"), purchases.c.service_id == bindparam("service_id"),
                            or_(*(purchases.c.status == s.value for s in (*IN_PROGRESS, *GAVE_UP))))
    .order_by(purchases.c.created_at.desc()).limit(1).with_for_update())
_UPDATE_PURCHASE = update(purchases).where(purchases.c.id == bindparam("b_purchase_id"))
_RELEASE_HELD = update(collection_cases).where(collection_cases.c.payment_id == bindparam("b_payment_id"),
                                               collection_cases.c.status == "on_hold")


async def _load(conn, purchase_id: str, *, lock: bool = False):
    stmt = _PURCHASE_LOCKED if lock else _PURCHASE
    return (await conn.execute(stmt, {"purchase_id": purchase_id})).mappings().first()


async def _update(conn, purchase_id: str, values: dict[str, Any]) -> None:
    await conn.execute(_UPDATE_PURCHASE, {**values, "b_purchase_id": purchase_id})


def _progress(row) -> ActivationProgress:
    return ActivationProgress(queued_at=row["created_at"], vehicle_attempts=row["attempts"],
                              unavailable_retries=row["unavailable_retries"], delay_notified=row["delay_notified"])


def attempt_label(progress: ActivationProgress) -> str:
    """Names one push, uniquely: every decision moves one of the two counters."""
    return f"{progress.vehicle_attempts}.{progress.unavailable_retries}"


async def _activate(core: Core, job: jobs.Job) -> None:
    purchase_id = job.payload["purchaseId"]
    async with core.db.transaction(readonly=True) as conn:
        row = await _load(conn, purchase_id)
    if row is None or row["status"] != PurchaseState.ACTIVATION_QUEUED.value:
        async with core.db.transaction() as conn:
            await _done(conn, job, core.clock.now())  # withdrawn, or already decided: nothing to push
        return
    offer = core.catalogue.get(row["service_id"])
    duration = offer.ota_duration(row["duration_type"], row["created_at"])
    attempt = job.payload["attempt"]
    try:
        accepted = await core.iot.activate(row["vin"], row["service_id"], list(offer.feature_flags),
                                           dict(offer.parameters), duration, key=f"{purchase_id}:ota:{attempt}",
                                           correlation_id=job.correlation_id or purchase_id,
                                           timeout=core.policy.attempt_timeout)
    except Unavailable as exc:
        outcome = AttemptOutcome.http(exc.status, exc.retry_after) if exc.status else AttemptOutcome.timeout()
        return await _decide(core, job, _purchase(purchase_id), outcome, str(exc))
    except Rejected as exc:
        return await _decide(core, job, _purchase(purchase_id), AttemptOutcome.http(exc.status), str(exc))
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await _load(conn, purchase_id, lock=True)
        if row["status"] != PurchaseState.ACTIVATION_QUEUED.value:
            # Withdrawn while the command was on its way: the vehicle will switch the feature on,
            # and the purchase is no longer being delivered, so switch it off again.
            await jobs.enqueue(conn, DEACTIVATE, {"purchaseId": purchase_id}, run_at=now, now=now,
                               dedupe_key=f"{DEACTIVATE}:{purchase_id}", correlation_id=job.correlation_id)
            await _done(conn, job, now)
            return
        state = transition(PurchaseState(row["status"]), PurchaseEvent.ACTIVATION_ATTEMPT_STARTED)
        await _update(conn, purchase_id, {"status": state.value, "activation_request_id": accepted["requestId"],
                                          "updated_at": now})
        await jobs.enqueue(conn, TIMEOUT, {**job.payload, "requestId": accepted["requestId"]},
                           run_at=now + core.policy.attempt_timeout, now=now,
                           dedupe_key=f"{TIMEOUT}:{accepted['requestId']}", correlation_id=job.correlation_id)
        await _done(conn, job, core.clock.now())


async def _on_callback(core: Core, job: jobs.Job) -> None:
    body = job.payload["body"]
    status = body.get("status")
    if status == "ACTIVATED":
        await _decide(core, job, _callback_purchase(body, any_attempt=True), AttemptOutcome.activated(), status)
    elif status == "FAILED":  # only the attempt in flight may fail the activation
        await _decide(core, job, _callback_purchase(body), AttemptOutcome.failed(body.get("errorCode")),
                      body.get("errorCode") or status, request_id=body["requestId"])
    else:  # DEACTIVATED/EXPIRED: nothing to decide
        async with core.db.transaction() as conn:
            await _done(conn, job, core.clock.now())


def _callback_purchase(body: dict, *, any_attempt: bool = False) -> Locate:
    """The purchase a callback is about, locked; None when it is not ours."""
    async def locate(conn):
        row = (await conn.execute(_BY_REQUEST_LOCKED, {"request_id": body.get("requestId")})).mappings().first()
        if row is None and any_attempt:
            # An earlier attempt (timed out on our side) got through after all: it delivers
            # this vehicle's service just as well, whatever attempt is in flight now.
            row = (await conn.execute(_LATEST_FOR_SERVICE_LOCKED, {"vin": body.get("vin"),
                                                                   "service_id": body.get("serviceId")})
                   ).mappings().first()
        return row
    return locate


def _purchase(purchase_id: str) -> Locate:
    async def locate(conn):
        return await _load(conn, purchase_id, lock=True)
    return locate


async def _on_timeout(core: Core, job: jobs.Job) -> None:
    await _decide(core, job, _purchase(job.payload["purchaseId"]), AttemptOutcome.no_callback(),
                  "no callback in time", request_id=job.payload["requestId"])


async def _decide(core: Core, job: jobs.Job, locate: Locate, outcome: AttemptOutcome, reason: str, *,
                  request_id: str | None = None) -> None:
    """Decide on an attempt's outcome in one transaction with the purchase ``locate`` finds
    and locks (a callback's lookup and its decision are one round of the database)."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await locate(conn)
        if row is None:  # a callback about a request that is not ours
            await _done(conn, job, now)
            return
        purchase_id = row["id"]
        state = PurchaseState(row["status"])
        # Only the attempt in flight may decide: a late callback of an earlier attempt, or a
        # timeout after the callback came, changes nothing.
        stale = request_id is not None and request_id != row["activation_request_id"]
        if state in GAVE_UP and outcome == AttemptOutcome.activated():
            # Activated after we gave up and refunded: the customer does not keep (nor pay for)
            # what was not delivered in time, so the vehicle is told to switch it off.
            await jobs.enqueue(conn, DEACTIVATE, {"purchaseId": purchase_id}, run_at=now, now=now,
                               dedupe_key=f"{DEACTIVATE}:{purchase_id}", correlation_id=job.correlation_id)
        if stale or state not in IN_PROGRESS:
            await _done(conn, job, core.clock.now())
            core.wake()
            return
        decision = core.policy.decide(_progress(row), outcome, now)
        progress = decision.progress
        values: dict[str, Any] = {"attempts": progress.vehicle_attempts, "updated_at": now,
                                  "unavailable_retries": progress.unavailable_retries,
                                  "delay_notified": progress.delay_notified}
        if decision.step is Step.ACTIVATED:
            values.update(status=transition(state, PurchaseEvent.ACTIVATED).value, delivered_at=now)
            await release_held_collection(conn, row["payment_id"], delivered=True)
            await notify(conn, row, NoticeKind.SERVICE_ACTIVATED, now)
            await schedule_expiry(conn, row, now)
            await jobs.cancel(conn, dedupe_key=f"{TIMEOUT}:{row['activation_request_id']}", now=now)
        elif decision.step is Step.RETRY:
            if state is PurchaseState.ACTIVATING:
                values["status"] = transition(state, PurchaseEvent.ACTIVATION_ATTEMPT_FAILED).value
            values["activation_request_id"] = None
            for notice in decision.notices:
                await notify(conn, row, notice, now)
            attempt = attempt_label(progress)
            await jobs.enqueue(conn, ACTIVATE, {"purchaseId": purchase_id, "attempt": attempt},
                               run_at=decision.retry_at, now=now, dedupe_key=f"{ACTIVATE}:{purchase_id}:{attempt}",
                               correlation_id=job.correlation_id)
            await jobs.cancel(conn, dedupe_key=f"{TIMEOUT}:{row['activation_request_id']}", now=now)
        else:
            # The attempt is over: its callback or timeout, arriving later, must not count again.
            values["activation_request_id"] = None
            await jobs.enqueue(conn, GIVE_UP, {"purchaseId": purchase_id, "reason": f"{decision.reason} ({reason})",
                                               "attempts": progress.vehicle_attempts},
                               run_at=now, now=now, dedupe_key=f"{GIVE_UP}:{purchase_id}",
                               correlation_id=job.correlation_id)
            await jobs.cancel(conn, dedupe_key=f"{TIMEOUT}:{row['activation_request_id']}", now=now)
        await _update(conn, purchase_id, values)
        await _done(conn, job, core.clock.now())
    core.wake()



async def give_up(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """After the last failure: vehicle status, ticket with diagnostics, full refund, email and push."""
    purchase_id = job.payload["purchaseId"]
    async with core.db.transaction(readonly=True) as conn:
        row = await _load(conn, purchase_id)
        payment = (await conn.execute(select(payments).where(payments.c.purchase_id == purchase_id))
                   ).mappings().first()
    if row["status"] not in (PurchaseState.ACTIVATION_QUEUED.value, PurchaseState.ACTIVATING.value):
        async with core.db.transaction() as conn:
            await _done(conn, job, core.clock.now())
        return
    status, status_error = None, None
    try:
        status = await core.iot.vehicle_status(row["vin"], correlation_id=job.correlation_id or purchase_id)
    except (Unavailable, Rejected) as exc:
        status_error = str(exc)
    now = core.clock.now()
    async with core.db.transaction() as conn:
        # Decide on the purchase as it is now: a withdrawal may have won the race meanwhile.
        row = await _load(conn, purchase_id, lock=True)
        if row["status"] not in (PurchaseState.ACTIVATION_QUEUED.value, PurchaseState.ACTIVATING.value):
            await _done(conn, job, now)
            return
        plan = resolve_final_failure(
            purchase_id=purchase_id, vin=row["vin"], offer=core.catalogue.get(row["service_id"]),
            progress=replace(_progress(row), last_error=job.payload["reason"]), failure_reason=job.payload["reason"],
            vehicle_status=status, vehicle_status_error=status_error,
            charged=Money(payment["amount_minor"] if payment else 0, row["currency"]),
            already_refunded=Money(row["refunded_minor"], row["currency"]), now=now)
        state = transition(PurchaseState(row["status"]), plan.purchase_event)
        values: dict[str, Any] = {"status": state.value, "updated_at": now}
        if plan.resolution is Resolution.DELIVERED:  # a lost callback: the vehicle has it after all
            values["delivered_at"] = now
            await schedule_expiry(conn, row, now)
        await release_held_collection(conn, row["payment_id"], delivered=plan.resolution is Resolution.DELIVERED)
        if plan.ticket is not None:
            await outbox.open_ticket(conn, row["customer_id"], row["vin"], plan.ticket.summary,
                                     {"vehicleStatus": status, "vehicleStatusError": status_error,
                                      "attempts": plan.ticket.attempts, "lastError": plan.ticket.last_error,
                                      "priority": plan.ticket.priority.value}, now, purchase_id=purchase_id)
        if plan.refund is not None and plan.refund.call_gateway and payment is not None:
            await refunding.enqueue(conn, purchase_id, payment["id"], plan.refund.amount.minor,
                                    plan.refund.amount.currency, "OTA_ACTIVATION_FAILURE", now,
                                    job.correlation_id)
            values["refunded_minor"] = row["refunded_minor"] + plan.refund.amount.minor
        for notice in plan.notices:
            await notify(conn, row, notice, now)
        await _update(conn, purchase_id, values)
        await _done(conn, job, now)


async def release_held_collection(conn, payment_id: str | None, *, delivered: bool) -> None:
    """A collection case waits ``on_hold`` while the service is being delivered (a settlement
    failed meanwhile): delivered, the customer owes it (open); given up, nothing is owed (closed)."""
    if payment_id is not None:
        await conn.execute(_RELEASE_HELD, {"b_payment_id": payment_id, "status": "open" if delivered else "closed"})
