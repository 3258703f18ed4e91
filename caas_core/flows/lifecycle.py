"""After delivery: temporary services expire, and customers may withdraw; and the
deactivation that switches a feature off again whenever a purchase ends.

Expiry is a durable job at the service's expiry time: the vehicle is told to
deactivate through the IoT API (the vehicle may have switched it off by itself
already: that is fine) and the customer is told. Withdrawal within 14 days
refunds in full and deactivates; after that, a one-time service stays and
nothing is refunded (domain.refunds decides).

**Deactivation** (``request_deactivation``, then the ``ota.deactivate`` jobs) is retried
like an activation, by the same policy (``domain.ota_policy.decide_deactivation``):
``POST /ota/deactivate`` answers 202 and the outcome comes as the ``otaStatus``
callback (``DEACTIVATED`` or ``FAILED``), found by ``purchases.deactivation_request_id``
(flows.ota routes the callbacks); no callback within the attempt timeout counts as a
failed attempt (``ota.deactivate_timeout``); 422 means the service is not active on the
vehicle: off already. Failed attempts wait 1, 5, 15 (30) minutes; an unavailable IoT API
is retried until the API-down deadline. ``deactivation_status`` is ``IN_FLIGHT`` while a
command awaits its outcome, ``PENDING`` while the next push is queued. The request id
stays once the attempt is decided: a ``DEACTIVATED`` of the last command arriving after
our timeout still confirms the feature off (the vehicle applies the last command it
gets). After the last failure (``ota.deactivate_give_up``) the vehicle is queried:
reporting the service off settles it, otherwise a support ticket carries its
diagnostics. ``deactivated_at`` records the feature confirmed off. Each deactivation is
a *round*: a late activation after a confirmed deactivation starts another one, with
fresh attempts and job keys.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select

from ..clients.http import Malformed, Rejected, Unavailable
from ..clients.wire.iot import OtaStatusCallback
from ..domain.errors import Conflict, NotFound, Refused
from ..domain.money import Money
from ..domain.notifications import NoticeKind
from ..domain.ota_policy import (
    DEACTIVATING,
    VEHICLE_ABSENT,
    ActivationProgress,
    AttemptOutcome,
    DeactivationStatus,
    DeactivationStep,
    switch_off_on_withdrawal,
)
from ..domain.purchase import (
    InvalidTransition,
    PurchaseEvent,
    PurchaseState,
    needs_deactivation_on_late_activation,
    transition,
)
from ..domain.refunds import WithdrawalOutcome, withdrawal
from ..domain.support import check_vehicle, resolve_final_deactivation_failure
from ..store import jobs, outbox
from ..store.schema import payments
from . import billing, refunding, vehicles
from . import purchase_records as records
from .core import Core
from .kinds import CHARGE, DEACTIVATE, DEACTIVATE_GIVE_UP, DEACTIVATE_TIMEOUT, EXPIRE
from .notices import notify
from .purchases import view
from .runner import JobContext


async def schedule_expiry(conn, purchase_id: str, expiry: float | None, now: float) -> None:
    """Called when a purchase becomes ACTIVE: a temporary service ends on its own at ``expiry``."""
    if expiry is not None:
        await jobs.enqueue(conn, EXPIRE, {"purchaseId": purchase_id}, run_at=expiry, now=now,
                           dedupe_key=f"{EXPIRE}:{purchase_id}")


async def expire(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await records.load(conn, job.payload["purchaseId"])
        if row is not None and row["status"] == PurchaseState.ACTIVE.value:
            await records.change(conn, row["id"], updated_at=now,
                                 status=transition(PurchaseState.ACTIVE, PurchaseEvent.EXPIRED).value)
            await notify(conn, row, NoticeKind.SERVICE_EXPIRED, now)
            await request_deactivation(conn, row, now, job.correlation_id)
        await jobs.complete(conn, job.id)
    core.wake()


# --- deactivation, retried -------------------------------------------------------------

_D = DeactivationStatus
_load = records.load


async def _set(conn, purchase_id: str, values: dict[str, Any]) -> None:
    await records.change(conn, purchase_id, **values)


def _progress(row) -> ActivationProgress:
    return ActivationProgress(queued_at=row["deactivation_queued_at"] if row["deactivation_queued_at"] is not None
                              else row["updated_at"], vehicle_attempts=row["deactivation_attempts"],
                              unavailable_retries=row["deactivation_unavailable_retries"], delay_notified=True)


def _label(row) -> str:
    """Names one push of a round (every decision moves one of the two counters)."""
    return f"{row['deactivation_attempts']}.{row['deactivation_unavailable_retries']}"


def _start_key(purchase_id: str, round_: int) -> str:
    # the first round keeps the key every flow used before rounds (flows.billing still does)
    return f"{DEACTIVATE}:{purchase_id}" if round_ <= 1 else f"{DEACTIVATE}:{purchase_id}:r{round_}"


async def request_deactivation(conn, row, now: float, correlation_id: str | None = None) -> None:
    """Switch the purchase's feature off on the vehicle, retried per the OTA policy: called in
    the transaction that decides it (withdrawal, expiry, give-up, a late activation). Nothing
    more when a deactivation is already under way: it ends with the feature off."""
    if row["deactivation_status"] in DEACTIVATING:
        return
    await _set(conn, row["id"], {"deactivation_status": _D.PENDING.value, "deactivated_at": None,
                                 "deactivation_queued_at": None})
    await jobs.enqueue(conn, DEACTIVATE, {"purchaseId": row["id"]}, run_at=now, now=now,
                       dedupe_key=_start_key(row["id"], row["deactivation_round"] + 1),
                       correlation_id=correlation_id)


async def deactivate(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """Without ``attempt`` in its payload: a round starts (unless one is under way), and its
    first push is queued with it. With it: one push of ``POST /ota/deactivate``, unless
    another decision overtook it (an older round, another attempt). A push repeated after
    a crash reuses its Idempotency-Key, so the IoT API replays the first answer."""
    purchase_id = job.payload["purchaseId"]
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await _load(conn, purchase_id, lock=True)
        if row is None or not needs_deactivation_on_late_activation(row["status"]):
            await jobs.complete(conn, job.id)  # unknown, or its feature may stay on: nothing to switch off
            return
        if "attempt" not in job.payload:
            under_way = row["deactivation_status"] in DEACTIVATING and row["deactivation_queued_at"] is not None
            if not under_way and await _held_by_another(core, conn, row):
                await _set(conn, purchase_id, {"deactivation_status": _D.KEPT.value, "deactivated_at": None})
            elif not under_way:
                round_ = row["deactivation_round"] + 1
                await _set(conn, purchase_id, {
                    "deactivation_status": _D.PENDING.value, "deactivation_round": round_,
                    "deactivation_queued_at": now, "deactivation_attempts": 0, "deactivation_unavailable_retries": 0,
                    "deactivation_request_id": None, "deactivated_at": None})
                await jobs.enqueue(conn, DEACTIVATE, {"purchaseId": purchase_id, "round": round_, "attempt": "0.0"},
                                   run_at=now, now=now, dedupe_key=f"{DEACTIVATE}:{purchase_id}:r{round_}:0.0",
                                   correlation_id=job.correlation_id)
            await jobs.complete(conn, job.id)
        elif not _current(row, job.payload["round"], job.payload["attempt"]):
            await jobs.complete(conn, job.id)
            return
    if "attempt" not in job.payload:
        core.wake()
        return
    round_, label = row["deactivation_round"], _label(row)
    outcome, accepted, reason = None, None, ""
    try:
        accepted = await core.iot.deactivate(row["vin"], row["service_id"],
                                             key=f"{purchase_id}:deactivate:{round_}:{label}",
                                             correlation_id=job.correlation_id or purchase_id)
    except Malformed as exc:  # an answer we cannot read: as if none came
        outcome, reason = AttemptOutcome.malformed(), str(exc)
    except Unavailable as exc:
        outcome = AttemptOutcome.http(exc.status, exc.retry_after) if exc.status else AttemptOutcome.timeout()
        reason = str(exc)
    except Rejected as exc:
        outcome, reason = AttemptOutcome.http(exc.status), str(exc)
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await _load(conn, purchase_id, lock=True)
        if not _current(row, round_, label):  # another decision overtook this push
            await jobs.complete(conn, job.id)
            return
        if outcome is not None:
            await _decide(core, conn, row, outcome, reason, now, job.correlation_id)
        else:
            request_id = accepted.requestId
            await _set(conn, purchase_id, {"deactivation_request_id": request_id,
                                           "deactivation_status": _D.IN_FLIGHT.value})
            await jobs.enqueue(conn, DEACTIVATE_TIMEOUT, {"purchaseId": purchase_id, "requestId": request_id},
                               run_at=now + core.policy.attempt_timeout, now=now,
                               dedupe_key=f"{DEACTIVATE_TIMEOUT}:{request_id}", correlation_id=job.correlation_id)
        await jobs.complete(conn, job.id)
    core.wake()


async def _held_by_another(core: Core, conn, row) -> bool:
    """Another purchase of the vehicle, not ended, switches on one of this one's feature flags:
    switching this one off would switch off a service the customer still has (the purchase
    itself refuses such a second sale; this guards the vehicle against one made anyway)."""
    for other in await records.live_of_vehicle(conn, row["vin"]):
        if other["id"] != row["id"] and core.catalogue.shared_features(row["service_id"], other["service_id"]):
            return True
    return False


def _current(row, round_: int, label: str) -> bool:
    """The round is under way at this push, and no command of it is in flight."""
    return (row is not None and row["deactivation_status"] == _D.PENDING.value
            and row["deactivation_round"] == round_ and _label(row) == label)


async def _decide(core: Core, conn, row, outcome: AttemptOutcome, reason: str, now: float,
                  correlation_id: str | None) -> None:
    """Fold one outcome into the round (the row locked by the caller) and commit what follows."""
    purchase_id, round_ = row["id"], row["deactivation_round"]
    decision = core.policy.decide_deactivation(_progress(row), outcome, now)
    p = decision.progress
    # the request id stays: a late DEACTIVATED of the last command still confirms it off
    values: dict[str, Any] = {"deactivation_attempts": p.vehicle_attempts,
                              "deactivation_unavailable_retries": p.unavailable_retries,
                              "deactivation_status": _D.PENDING.value}
    if row["deactivation_status"] == _D.IN_FLIGHT.value:
        await jobs.cancel(conn, dedupe_key=f"{DEACTIVATE_TIMEOUT}:{row['deactivation_request_id']}", now=now)
    if decision.step is DeactivationStep.OFF:
        values.update(deactivation_status=_D.OFF.value, deactivated_at=now, vehicle_service_status=VEHICLE_ABSENT,
                      vehicle_checked_at=now)
    elif decision.step is DeactivationStep.RETRY:
        label = f"{p.vehicle_attempts}.{p.unavailable_retries}"
        await jobs.enqueue(conn, DEACTIVATE, {"purchaseId": purchase_id, "round": round_, "attempt": label},
                           run_at=decision.retry_at, now=now,
                           dedupe_key=f"{DEACTIVATE}:{purchase_id}:r{round_}:{label}", correlation_id=correlation_id)
    else:
        await jobs.enqueue(conn, DEACTIVATE_GIVE_UP, {"purchaseId": purchase_id, "round": round_,
                                                      "reason": f"{decision.reason} ({reason})",
                                                      "lastError": p.last_error},
                           run_at=now, now=now, dedupe_key=f"{DEACTIVATE_GIVE_UP}:{purchase_id}:r{round_}",
                           correlation_id=correlation_id)
    await _set(conn, purchase_id, values)


async def on_deactivation_callback(core: Core, conn, row, callback: OtaStatusCallback, now: float,
                                   correlation_id: str | None) -> None:
    """The ``otaStatus`` callback of a purchase's last deactivation command (``row`` found and
    locked by its request id, in the caller's transaction). In flight: DEACTIVATED switches
    the round off, FAILED counts an attempt. Arriving after our timeout counted the attempt
    failed (a retry queued, or given up): DEACTIVATED still confirms the feature off, FAILED
    was counted already."""
    status, state = callback.status, row["deactivation_status"]
    if state != _D.IN_FLIGHT.value:
        if status == "DEACTIVATED" and state in (_D.PENDING.value, _D.FAILED.value):
            # the queued retry or the give-up finds the round settled and does nothing
            await _set(conn, row["id"], {"deactivation_status": _D.OFF.value, "deactivated_at": now,
                                         "vehicle_service_status": VEHICLE_ABSENT, "vehicle_checked_at": now})
        return
    if status == "DEACTIVATED":
        await _decide(core, conn, row, AttemptOutcome.deactivated(), status, now, correlation_id)
    elif status == "FAILED":
        await _decide(core, conn, row, AttemptOutcome.failed(callback.errorCode),
                      callback.errorCode or status, now, correlation_id)


async def deactivation_timeout(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """No callback within the attempt timeout: the attempt failed (TIMEOUT), unless decided meanwhile."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await _load(conn, job.payload["purchaseId"], lock=True)
        if (row is not None and row["deactivation_status"] == _D.IN_FLIGHT.value
                and row["deactivation_request_id"] == job.payload["requestId"]):
            await _decide(core, conn, row, AttemptOutcome.no_callback(), "no callback in time", now,
                          job.correlation_id)
        await jobs.complete(conn, job.id)
    core.wake()


async def deactivation_give_up(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """After a round's last failure: the vehicle's status settles it, or support gets a ticket."""
    purchase_id = job.payload["purchaseId"]
    async with core.db.transaction(readonly=True) as conn:
        row = await _load(conn, purchase_id)
    if not _giving_up(row, job.payload["round"]):
        async with core.db.transaction() as conn:
            await jobs.complete(conn, job.id)
        return
    status, status_error = await vehicles.status_or_error(core, row["vin"], job.correlation_id or purchase_id)
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await _load(conn, purchase_id, lock=True)
        if not _giving_up(row, job.payload["round"]):
            await jobs.complete(conn, job.id)
            return
        offer = core.catalogue.get(row["service_id"])
        plan = resolve_final_deactivation_failure(
            purchase_id=purchase_id, vin=row["vin"], offer=offer,
            progress=replace(_progress(row), last_error=job.payload.get("lastError")),
            failure_reason=job.payload["reason"], purchase_state=row["status"],
            vehicle_status=status, vehicle_status_error=status_error, now=now)
        values: dict[str, Any] = {}
        check = check_vehicle(status, row["service_id"])
        if check is not None:
            values.update(vehicle_service_status=check.on_vehicle, vehicle_checked_at=now)
        if plan.confirmed_off:
            values.update(deactivation_status=_D.OFF.value, deactivated_at=now)
        else:
            values["deactivation_status"] = _D.FAILED.value
            await outbox.open_ticket(conn, row["customer_id"], row["vin"], plan.ticket.summary,
                                     plan.ticket.diagnostics(), now, purchase_id=purchase_id)
        await _set(conn, purchase_id, values)
        await jobs.complete(conn, job.id)


def _giving_up(row, round_: int) -> bool:
    return row is not None and row["deactivation_status"] == _D.PENDING.value and row["deactivation_round"] == round_


def _require_withdrawable(purchase_id: str, state: PurchaseState, event: PurchaseEvent) -> None:
    """409 unless the purchase's state allows the withdrawal (or, past 14 days, the cancellation):
    one already withdrawn, cancelled, expired, refused or refunded is not refunded or told again."""
    try:
        transition(state, event)
    except InvalidTransition:
        raise Conflict("Purchase cannot be withdrawn", f"purchase {purchase_id} is {state.value}; only a purchase "
                       "being paid, delivered or active can be withdrawn", kind="not-withdrawable") from None


async def withdraw(core: Core, purchase_id: str, correlation_id: str) -> dict[str, Any]:
    """Decided and committed in one transaction (the refund follows as a job): a give-up or an
    expiry racing with it sees its result, and a crash loses nothing."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await records.load(conn, purchase_id, lock=True)
        if row is None:
            raise NotFound("Unknown purchase", f"no purchase {purchase_id}")
        payment = (await conn.execute(select(payments).where(payments.c.purchase_id == purchase_id)
                                      .order_by(payments.c.created_at))).mappings().first()
        state = PurchaseState(row["status"])
        _require_withdrawable(purchase_id, state, PurchaseEvent.WITHDRAWN)
        paid = Money(payment["amount_minor"] if payment else 0, row["currency"])
        decision = withdrawal(paid, row["created_at"], now, Money(row["refunded_minor"], row["currency"]),
                              duration_type=row["duration_type"])
        if decision.outcome is WithdrawalOutcome.REFUSED:
            raise Refused("Withdrawal period over", decision.message, kind="withdrawal-period-over")
        event = decision.purchase_event or PurchaseEvent.WITHDRAWN
        _require_withdrawable(purchase_id, state, event)  # a subscription past 14 days: cancelled if ACTIVE
        values: dict[str, Any] = {"status": transition(state, event).value, "updated_at": now}
        if row["duration_type"] == "SUBSCRIPTION":  # post-paid: bill the partial month unless waived
            await billing.close(conn, row, now, waive=decision.waive_unbilled or not decision.final_billing)
        if decision.refund_due and payment is not None:
            await refunding.enqueue(conn, purchase_id, payment["id"], decision.refund.minor, decision.refund.currency,
                                    decision.reason.value, now, correlation_id)
            values["refunded_minor"] = row["refunded_minor"] + decision.refund.minor
        await records.change(conn, purchase_id, **values)
        await notify(conn, row, NoticeKind.WITHDRAWAL_CONFIRMED if event is PurchaseEvent.WITHDRAWN
                     else NoticeKind.SUBSCRIPTION_CANCELLED, now)
        await jobs.cancel(conn, dedupe_key=f"{EXPIRE}:{purchase_id}", now=now)
        await jobs.cancel(conn, dedupe_key=f"{CHARGE}:{purchase_id}", now=now)  # a deferred payment: not taken
        if decision.deactivate and switch_off_on_withdrawal(state, attempts=row["attempts"],
                                                            unavailable_retries=row["unavailable_retries"]):
            await request_deactivation(conn, row, now, correlation_id)
    core.wake()
    return await view(core, purchase_id)
