"""OTA activation with the specification's retry policy, as durable jobs.

``ota.activate`` pushes the configuration (one attempt); the IoT API's signed
callback arrives as ``ota.outcome``; ``ota.timeout`` fires when no callback
came within the attempt timeout. Each decision (activated, retry later, give
up) comes from ``domain.ota_policy`` and is committed together with the jobs it
causes. Giving up: query the vehicle, open a support ticket with its
diagnostics, refund in full, tell the customer. The customer never pays for a
service that was not delivered.

The vehicle is the ground truth of what runs on it, and it applies the last command
it gets. ``activation_request_id`` names the last command pushed for the purchase (it
stays after the attempt is decided): its outcome is what the vehicle did, even when it
arrives after our timeout. A callback that contradicts what the core knows (an
``ACTIVATED`` of an earlier command, a later one having gone out since; a ``FAILED``
for a purchase held ``ACTIVE``) is not taken at its word: ``ota.reconcile`` queries the
vehicle's status and acts on what it reports (``domain.ota_policy.reconcile``). An
activation that reaches a purchase whose feature must be off is switched off again
(``lifecycle.request_deactivation``), and the callbacks of deactivations, found by
``deactivation_request_id``, go to ``lifecycle.on_deactivation_callback``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from ..clients.http import Malformed, Rejected, Unavailable
from ..clients.wire.base import Unusable
from ..clients.wire.iot import OtaStatusCallback, parse_callback
from ..domain.money import Money
from ..domain.notifications import NoticeKind
from ..domain.ota_policy import (
    DEACTIVATING,
    VEHICLE_ACTIVE,
    VEHICLE_NOT_RUNNING,
    ActivationProgress,
    AttemptOutcome,
    CallbackAction,
    DeactivationStatus,
    ReconcileAction,
    Step,
    reconcile,
    route_activation_callback,
)
from ..domain.purchase import PurchaseEvent, PurchaseState, transition
from ..domain.support import (
    Resolution,
    SwitchOff,
    check_vehicle,
    out_of_step_ticket,
    resolve_final_failure,
)
from ..store import inbox, jobs, outbox
from ..store.lists import one_of
from ..store.schema import collection_cases, payments, purchases
from . import purchase_records as records
from . import refunding, vehicles
from .core import Core
from .kinds import ACTIVATE
from .lifecycle import on_deactivation_callback, request_deactivation, schedule_expiry
from .notices import notify
from .runner import JobContext

OUTCOME, TIMEOUT = "ota.outcome", "ota.timeout"
GIVE_UP = "ota.give_up"
RECONCILE = "ota.reconcile"
IN_PROGRESS = (PurchaseState.ACTIVATION_QUEUED, PurchaseState.ACTIVATING)
#: No longer being delivered: an activation arriving now is switched off again.
GAVE_UP = (PurchaseState.ACTIVATION_FAILED, PurchaseState.REFUNDED, PurchaseState.WITHDRAWN)
#: A purchase an earlier command's callback may be about (the latest of its vehicle and service).
_KNOWN = (*IN_PROGRESS, *GAVE_UP, PurchaseState.ACTIVE, PurchaseState.EXPIRED, PurchaseState.CANCELLED)
#: Finds and locks the purchase a decision is about, in the deciding transaction.
Locate = Callable[[Any], Awaitable[Any]]
#: Marks a callback's job done (``(job, now, outcome="processed")``): at once, or with its batch.
Finish = Callable[..., Awaitable[None]]


# The job handlers (wired in ``caas_core.compose``).

async def activate_job(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    await _activate(core, job)


async def outcome_job(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    await _on_callback(core, job)


async def timeout_job(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    await _on_timeout(core, job)


async def reconcile_job(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    await _reconcile(core, job)


async def _done(conn, job: jobs.Job, now: float, outcome: str = "processed") -> None:
    """Complete the job; for a callback, also note in the inbox that it was handled (``outcome``)."""
    await jobs.complete(conn, job.id)
    if "webhookId" in job.payload:
        await inbox.mark_processed(conn, job.payload["source"], job.payload["webhookId"], outcome, now)


# The activation path's statements, built once (a statement's construction costs more CPU
# than its run: see store/jobs.py).
# FOR UPDATE locks the row on PostgreSQL; SQLite renders none, its write transactions being
# serialized whole (store/db.py).
_BY_REQUEST_LOCKED = select(purchases).where(
    purchases.c.activation_request_id == bindparam("request_id")).with_for_update()
_BY_DEACTIVATION_LOCKED = select(purchases).where(
    purchases.c.deactivation_request_id == bindparam("request_id")).with_for_update()
# the vehicle's latest purchase of a service that was (being) activated; an OR of
# equalities, not IN: an IN list is re-rendered at every execution
_LATEST_FOR_SERVICE_LOCKED = (
    select(purchases).where(purchases.c.vin == bindparam("vin"), purchases.c.service_id == bindparam("service_id"),
                            or_(*(purchases.c.status == s.value for s in _KNOWN)))
    .order_by(purchases.c.created_at.desc()).limit(1).with_for_update())
# what a batch of callbacks may be about (``_Known``)
_ACTIVATION_IDS = {dialect: select(purchases.c.activation_request_id).where(ids) for dialect, ids
                   in one_of(purchases.c.activation_request_id, "ids").items()}
_DEACTIVATION_IDS = {dialect: select(purchases.c.deactivation_request_id).where(ids) for dialect, ids
                     in one_of(purchases.c.deactivation_request_id, "ids").items()}
_PAIRS = {dialect: select(purchases.c.vin, purchases.c.service_id).where(vins).distinct() for dialect, vins
          in one_of(purchases.c.vin, "vins").items()}
_RELEASE_HELD = update(collection_cases).where(collection_cases.c.payment_id == bindparam("b_payment_id"),
                                               collection_cases.c.status == "on_hold")


_load = records.load


async def _update(conn, purchase_id: str, values: dict[str, Any]) -> None:
    await records.change(conn, purchase_id, **values)


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
    pushed_at = _pushed_at(job, row)
    duration = offer.ota_duration(row["duration_type"], pushed_at)
    attempt = job.payload["attempt"]
    try:
        accepted = await core.iot.activate(row["vin"], row["service_id"], list(offer.feature_flags),
                                           dict(offer.parameters), duration, key=f"{purchase_id}:ota:{attempt}",
                                           correlation_id=job.correlation_id or purchase_id,
                                           timeout=core.policy.attempt_timeout)
    except Malformed as exc:  # accepted, perhaps, but we cannot tell which request id to wait for
        return await _decide(core, job, _purchase(purchase_id), AttemptOutcome.malformed(), str(exc))
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
            await request_deactivation(conn, row, now, job.correlation_id)
            await _done(conn, job, now)
            return
        state = transition(PurchaseState(row["status"]), PurchaseEvent.ACTIVATION_ATTEMPT_STARTED)
        # the expiry the vehicle was just given: the one billed, once this command delivers it
        await _update(conn, purchase_id, {"status": state.value, "activation_request_id": accepted.requestId,
                                          "expiry": offer.expiry_for(row["duration_type"], pushed_at),
                                          "updated_at": now})
        await jobs.enqueue(conn, TIMEOUT, {**job.payload, "requestId": accepted.requestId},
                           run_at=now + core.policy.attempt_timeout, now=now,
                           dedupe_key=f"{TIMEOUT}:{accepted.requestId}", correlation_id=job.correlation_id)
        await _done(conn, job, core.clock.now())


def _pushed_at(job: jobs.Job, row) -> float:
    """When a push's TEMPORARY period starts (its ``expiryDate`` counts from it): the time its
    job was queued for, fixed in its payload, so that a push run again (after a crash or an
    error) sends the same body under the same key. Jobs queued before it was kept there count
    from the purchase, as they did."""
    return job.payload.get("at", row["created_at"])


async def _on_callback(core: Core, job: jobs.Job) -> None:
    """Route one ``otaStatus`` callback, in one transaction with the purchase it is about."""
    async with core.db.transaction() as conn:
        await _route_callback(core, conn, job, lambda job, now, outcome="processed": _done(conn, job, now, outcome))
    core.wake()


async def outcome_batch(core: Core, batch: list[jobs.Job], ctx: JobContext) -> None:
    """Route many callbacks in one transaction, in the order given: what running them one
    after the other would do, for one transaction, one read of what they may be about, and
    two statements marking them all done (see docs/benchmarks.md)."""
    finished: list[tuple[jobs.Job, float, str]] = []

    async def finish(job: jobs.Job, now: float, outcome: str = "processed") -> None:
        finished.append((job, now, outcome))

    parsed = [_parsed(job) for job in batch]
    async with core.db.transaction() as conn:
        known = await _Known.read(conn, [c for c in parsed if not isinstance(c, Unusable)])
        for job, callback in zip(batch, parsed, strict=True):
            await _route_callback(core, conn, job, finish, known, callback)
        await jobs.complete_many(conn, [job.id for job, _, _ in finished])
        await inbox.mark_processed_many(conn, [(job.payload["source"], job.payload["webhookId"], outcome, now)
                                               for job, now, outcome in finished if "webhookId" in job.payload])
    core.wake()


class _Known:
    """What a batch of callbacks may be about, read once for the batch: a request id, or a
    vehicle and service, that names no purchase skips its look-up. Routing a callback never
    sets a request id nor adds a purchase, and the batch's transaction holds the rows it
    reads on SQLite (the write lock); on PostgreSQL a row committed meanwhile by another
    process is seen as the callback would have, processed a moment earlier."""

    def __init__(self, activations: set[str], deactivations: set[str], pairs: set[tuple[str, str]]) -> None:
        self.activations, self.deactivations, self.pairs = activations, deactivations, pairs

    @classmethod
    async def read(cls, conn, callbacks: list[OtaStatusCallback]) -> _Known:
        # only what ``_route_callback`` may look up for each status
        of_activations = [c for c in callbacks if c.status in ("ACTIVATED", "FAILED")]
        ids = sorted({c.requestId for c in of_activations})
        off_ids = sorted({c.requestId for c in callbacks if c.status in ("DEACTIVATED", "FAILED")})
        vins = sorted({c.vin for c in of_activations})
        dialect = conn.dialect.name
        activations = set((await conn.scalars(_ACTIVATION_IDS[dialect], {"ids": ids})).all()) if ids else set()
        deactivations = set((await conn.scalars(_DEACTIVATION_IDS[dialect], {"ids": off_ids})).all()) \
            if off_ids else set()
        pairs = {tuple(row) for row in (await conn.execute(_PAIRS[dialect], {"vins": vins})).all()} if vins else set()
        return cls(activations, deactivations, pairs)


def _parsed(job: jobs.Job) -> OtaStatusCallback | Unusable:
    try:
        return parse_callback(job.payload["body"])
    except Unusable as exc:
        return exc


async def _route_callback(core: Core, conn, job: jobs.Job, finish: Finish, known: _Known | None = None,
                          callback: OtaStatusCallback | Unusable | None = None) -> None:
    """``known``, ``callback``: what the batch read and parsed already (None: one job alone)."""
    now = core.clock.now()
    callback = _parsed(job) if callback is None else callback
    if isinstance(callback, Unusable):  # stored before the receiver parsed bodies: recorded, never retried
        await finish(job, now, callback.outcome)
        return
    status, request_id = callback.status, callback.requestId
    row, latest = None, False
    if status in ("ACTIVATED", "FAILED") and (known is None or request_id in known.activations):
        row = (await conn.execute(_BY_REQUEST_LOCKED, {"request_id": request_id})).mappings().first()
        latest = row is not None
    if row is None and status in ("DEACTIVATED", "FAILED") and (known is None or request_id in known.deactivations):
        # the request id tells a deactivation's FAILED from an activation's
        off = (await conn.execute(_BY_DEACTIVATION_LOCKED, {"request_id": request_id})).mappings().first()
        if off is not None:
            await on_deactivation_callback(core, conn, off, callback, now, job.correlation_id)
            await finish(job, now)
            return
    if row is None and status in ("ACTIVATED", "FAILED") and (
            known is None or (callback.vin, callback.serviceId) in known.pairs):
        # An earlier command of a purchase (timed out on our side, or superseded by a later one)
        row = (await conn.execute(_LATEST_FOR_SERVICE_LOCKED, {"vin": callback.vin,
                                                               "service_id": callback.serviceId})
               ).mappings().first()
    if row is None:  # not ours, a stale deactivation, or EXPIRED (the expiry job switches it off too)
        await finish(job, now)
        return
    state = PurchaseState(row["status"])
    action = route_activation_callback(
        state, status == "ACTIVATED", latest=latest, in_flight=latest and state is PurchaseState.ACTIVATING,
        deactivation_pending=row["deactivation_status"] in DEACTIVATING)
    if action is CallbackAction.DECIDE:
        outcome = (AttemptOutcome.activated() if status == "ACTIVATED"
                   else AttemptOutcome.failed(callback.errorCode))
        await _decide_locked(core, conn, job, row, outcome, callback.errorCode or status, now)
    elif action is CallbackAction.RECONCILE:
        await jobs.enqueue(conn, RECONCILE, {"purchaseId": row["id"], "requestId": request_id, "status": status},
                           run_at=now, now=now, dedupe_key=f"{RECONCILE}:{row['id']}:{request_id}:{status}",
                           correlation_id=job.correlation_id)
    elif action is CallbackAction.DEACTIVATE:
        # Activated after the purchase ended (given up and refunded, withdrawn, expired,
        # cancelled): the customer does not keep (nor pay for) it, so it is switched off.
        await request_deactivation(conn, row, now, job.correlation_id)
    await finish(job, core.clock.now())


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
    and locks. ``request_id``: the attempt the outcome is about (a timeout); None for the
    push that just failed."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await locate(conn)
        if row is None:
            await _done(conn, job, now)
            return
        # Only the attempt in flight may decide: a timeout after the callback came changes nothing.
        if request_id is not None and (request_id != row["activation_request_id"]
                                       or row["status"] != PurchaseState.ACTIVATING.value):
            await _done(conn, job, now)
            return
        await _decide_locked(core, conn, job, row, outcome, reason, now)
        await _done(conn, job, core.clock.now())
    core.wake()


async def _decide_locked(core: Core, conn, job: jobs.Job, row, outcome: AttemptOutcome, reason: str,
                         now: float) -> None:
    """Fold the outcome into the activation (``row`` locked by the caller) and commit what it causes."""
    purchase_id = row["id"]
    state = PurchaseState(row["status"])
    if state not in IN_PROGRESS:
        return
    decision = core.policy.decide(_progress(row), outcome, now)
    progress = decision.progress
    values: dict[str, Any] = {"attempts": progress.vehicle_attempts, "updated_at": now,
                              "unavailable_retries": progress.unavailable_retries,
                              "delay_notified": progress.delay_notified}
    # The attempt is over: its timeout, arriving later, must not count again. Its request id
    # stays: it names the last command pushed, whose late outcome is what the vehicle did.
    await jobs.cancel(conn, dedupe_key=f"{TIMEOUT}:{row['activation_request_id']}", now=now)
    if decision.step is Step.ACTIVATED:
        await _deliver(core, conn, row, now, values)
    elif decision.step is Step.RETRY:
        if state is PurchaseState.ACTIVATING:
            values["status"] = transition(state, PurchaseEvent.ACTIVATION_ATTEMPT_FAILED).value
        for notice in decision.notices:
            await notify(conn, row, notice, now)
        attempt = attempt_label(progress)
        await jobs.enqueue(conn, ACTIVATE, {"purchaseId": purchase_id, "attempt": attempt, "at": decision.retry_at},
                           run_at=decision.retry_at, now=now, dedupe_key=f"{ACTIVATE}:{purchase_id}:{attempt}",
                           correlation_id=job.correlation_id)
    else:
        if state is PurchaseState.ACTIVATING:  # the attempt is over: its other outcome must not count again
            values["status"] = transition(state, PurchaseEvent.ACTIVATION_ATTEMPT_FAILED).value
        await jobs.enqueue(conn, GIVE_UP, {"purchaseId": purchase_id, "reason": f"{decision.reason} ({reason})",
                                           "attempts": progress.vehicle_attempts},
                           run_at=now, now=now, dedupe_key=f"{GIVE_UP}:{purchase_id}",
                           correlation_id=job.correlation_id)
    await _update(conn, purchase_id, values)


async def _deliver(core: Core, conn, row, now: float, values: dict[str, Any]) -> None:
    """The service is on the vehicle (as its callback or its status says): the purchase is
    ACTIVE (``values`` gets the state; the caller writes them), the held collection
    released, the customer told, expiry scheduled."""
    expiry = _expiry_at_delivery(core, row, now)
    values.update(status=transition(PurchaseState(row["status"]), PurchaseEvent.ACTIVATED).value, delivered_at=now,
                  vehicle_service_status=VEHICLE_ACTIVE, vehicle_checked_at=now, expiry=expiry)
    await release_held_collection(conn, row["payment_id"], delivered=True)
    await notify(conn, row, NoticeKind.SERVICE_ACTIVATED, now)
    await schedule_expiry(conn, row["id"], expiry, now)


def _expiry_at_delivery(core: Core, row, now: float) -> float | None:
    """A TEMPORARY service is sold for its period of use: it counts from the push that
    delivered it (the ``expiryDate`` the vehicle was given, recorded with the push), not
    from the purchase. Delivered with no push recorded (its answer was unreadable): from now."""
    if row["expiry"] is not None:
        return row["expiry"]
    return core.catalogue.expiry_for(row["service_id"], row["duration_type"], now)


async def _reconcile(core: Core, job: jobs.Job) -> None:
    """Callbacks conflicted: ask the vehicle what runs on it, and act on that."""
    purchase_id = job.payload["purchaseId"]
    async with core.db.transaction(readonly=True) as conn:
        row = await _load(conn, purchase_id)
    if row is None:
        async with core.db.transaction() as conn:
            await _done(conn, job, core.clock.now())
        return
    try:
        status = (await core.iot.vehicle_status(row["vin"], correlation_id=job.correlation_id or purchase_id)
                  ).model_dump()  # domain.support reads the parsed status as a mapping
    except (Unavailable, Rejected) as exc:
        async with core.db.transaction() as conn:
            if job.attempts + 1 < core.policy.attempts:  # ask again later, as an attempt would be retried
                await jobs.retry(conn, job.id, run_at=core.clock.now() + core.policy.delay_after(job.attempts + 1),
                                 error=str(exc))
            else:  # still unknown: the activation's own retry policy (or the audit) has the last word
                await _done(conn, job, core.clock.now())
        return
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await _load(conn, purchase_id, lock=True)
        check = check_vehicle(status, row["service_id"])
        if check is None:  # unreadable: nothing learnt
            await _done(conn, job, now)
            return
        action = reconcile(row["status"], check.on_vehicle)
        values: dict[str, Any] = {"vehicle_service_status": check.on_vehicle, "vehicle_checked_at": now}
        if action is ReconcileAction.DELIVER:
            # The vehicle runs it: delivered, whatever attempt is still awaited (its outcome,
            # arriving later, finds the purchase ACTIVE).
            values["updated_at"] = now
            await jobs.cancel(conn, dedupe_key=f"{TIMEOUT}:{row['activation_request_id']}", now=now)
            await _deliver(core, conn, row, now, values)
        elif action is ReconcileAction.ESCALATE and row["vehicle_service_status"] not in VEHICLE_NOT_RUNNING:
            ticket = out_of_step_ticket(
                purchase_id=purchase_id, vin=row["vin"], offer=core.catalogue.get(row["service_id"]),
                progress=_progress(row), reason=f"a {job.payload.get('status')} callback contradicted the delivery",
                vehicle_status=status, now=now)
            await outbox.open_ticket(conn, row["customer_id"], row["vin"], ticket.summary, ticket.diagnostics(), now,
                                     purchase_id=purchase_id)
        # WAIT: the retry policy already has the next attempt (or the give-up) queued
        await _update(conn, purchase_id, values)
        await _done(conn, job, now)
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
    status, status_error = await vehicles.status_or_error(core, row["vin"], job.correlation_id or purchase_id)
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
        check = check_vehicle(status, row["service_id"])
        if check is not None:
            values.update(vehicle_service_status=check.on_vehicle, vehicle_checked_at=now)
        if plan.resolution is Resolution.DELIVERED:  # a lost callback: the vehicle has it after all
            values.update(delivered_at=now, expiry=_expiry_at_delivery(core, row, now))
            await schedule_expiry(conn, row["id"], values["expiry"], now)
        elif plan.switch_off is SwitchOff.CONFIRMED:  # ERROR or not listed: nothing runs
            values.update(deactivation_status=DeactivationStatus.OFF.value, deactivated_at=now)
        elif plan.switch_off is SwitchOff.NOT_NEEDED:  # no command ever reached the vehicle
            values["deactivation_status"] = DeactivationStatus.NOT_NEEDED.value
        else:  # it may still apply an attempt (PENDING), or we cannot tell: switch it off
            await request_deactivation(conn, row, now, job.correlation_id)
        await release_held_collection(conn, row["payment_id"], delivered=plan.resolution is Resolution.DELIVERED)
        if plan.ticket is not None:
            await outbox.open_ticket(conn, row["customer_id"], row["vin"], plan.ticket.summary,
                                     plan.ticket.diagnostics(), now, purchase_id=purchase_id)
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
