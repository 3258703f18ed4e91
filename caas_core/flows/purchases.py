"""Buying an optional service: ownership, eligibility, payment, and the queued activation.

The core delivers at once and assumes the settlement risk (specification: asynchronous
settlement), and records what it decided before it calls the gateway: the purchase
(``REQUESTED``, the card to charge, the risk decision) and a charge job commit first; the
charge goes out under a key naming the purchase; then the payment and the activation job
commit. A crash between the charge and its record loses nothing: the charge job (or the
client's retry with the same Idempotency-Key, once the first request's lease has lapsed)
charges again under the same key, which the gateway replays, and completes the purchase
with the decision already taken. While the first request holds the purchase, a retry of
its key is 409.

The payment gateway down (specification: "Defer payment, manual fallback"): the purchase
is accepted in ``PAYMENT_DEFERRED`` and the customer told; the charge job tries again
(``settings.payments``) and past ``manual_after`` hands it to manual payment processing
(``MANUAL_PAYMENT``, an operator ticket). Nothing is activated before it is paid.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..clients.http import Malformed, Rejected, Unavailable
from ..clients.wire.payments import PaymentInitiated
from ..clock import isoformat
from ..domain.billing import PAYMENT_METHOD_UNVERIFIED, method_on_file_problem
from ..domain.catalogue import DurationNotOffered, DurationType, UnknownService
from ..domain.errors import Conflict, NotFound, Refused
from ..domain.maintenance import VSS_INVALID, VSS_NOT_FOUND, assess, needs_vss
from ..domain.notifications import NoticeKind
from ..domain.purchase import UNPAID, PurchaseEvent, PurchaseState, transition
from ..store import jobs, locks, outbox
from ..store.schema import payments, purchases, refunds
from . import billing, refunding, vehicles
from . import purchase_records as records
from .core import Core
from .kinds import ACTIVATE, CHARGE
from .notices import notify
from .runner import JobContext

# built once: a statement's construction costs more CPU than its run (see store/jobs.py)
_INSERT_PAYMENT = payments.insert()
_INSERT_PURCHASE = purchases.insert().returning(*purchases.c)
_S = PurchaseState


async def purchase(core: Core, *, customer_id: str, vin: str, service_id: str, duration_type: str,
                   method_type: str, token: str, correlation_id: str,
                   idempotency_key: str | None = None) -> dict[str, Any]:
    purchase_id = core.new_id("pur")
    if idempotency_key is not None:
        # The key names the purchase: a retry after a lost answer (or a crash) finds it,
        # and every upstream call keyed by the purchase id replays instead of repeating.
        digest = hashlib.blake2b(f"{customer_id}\n{idempotency_key}".encode(), digest_size=10).hexdigest()
        purchase_id = f"pur_{digest}"
        async with core.db.transaction(readonly=True) as conn:
            existing = await records.load(conn, purchase_id)
        if existing is not None:
            if _request_of(existing) != (vin, service_id, duration_type, method_type, token):
                raise Refused("Idempotency key reused", f"Idempotency-Key {idempotency_key!r} was first "
                              "used with another request (vehicle, service, duration or payment method)",
                              kind="idempotency-mismatch")
            return await _again(core, existing, idempotency_key, correlation_id)
    try:
        offer = core.catalogue.get(service_id)
        duration = DurationType(duration_type)
        price = offer.price_for(duration)
    except UnknownService:
        raise NotFound("Unknown service", f"no service {service_id!r} in the catalogue") from None
    except DurationNotOffered:
        raise Refused("Duration not offered", f"{service_id} is not sold as {duration_type}; "
                      f"offered: {', '.join(d.value for d in offer.durations)}", kind="duration-not-offered") from None
    await vehicles.require_holder(core, customer_id, vin, correlation_id)
    eligibility = await _eligibility(core, offer, vin, correlation_id)
    warnings = [w.code.value for w in eligibility.warnings]
    if not eligibility.allowed:
        raise Refused("Maintenance required", eligibility.message, kind="maintenance-required",
                      shortfalls=[{"block": s.block.display_name, "actualPercent": s.actual_pct,
                                   "requiredPercent": s.required_pct} for s in eligibility.shortfalls],
                      warnings=warnings)
    prepaid = duration is not DurationType.SUBSCRIPTION  # subscriptions are post-paid: billed at month end
    method_risk = None
    if not prepaid:
        async with core.db.transaction(readonly=True) as conn:  # the vehicle's services before the payment
            await _refuse_if_held(core, conn, offer, vin, purchase_id)
        method_risk = await _check_method_on_file(core, customer_id, method_type, token, correlation_id)
    now = core.clock.now()
    lease = core.settings.payments.charge_lease
    try:
        async with core.db.transaction() as conn:
            await _hold_vehicle(conn, vin)
            await _refuse_if_held(core, conn, offer, vin, purchase_id)
            row = (await conn.execute(_INSERT_PURCHASE, {
                "id": purchase_id, "customer_id": customer_id, "vin": vin, "service_id": service_id,
                "duration_type": duration.value, "expiry": None,  # a temporary period counts from delivery
                "price_minor": price.minor, "currency": price.currency,
                "status": (_S.REQUESTED if prepaid else _S.ACTIVATION_QUEUED).value, "attempts": 0,
                "created_at": now, "updated_at": now, "risk_flag": eligibility.risk_decision is not None,
                "warnings": warnings,
                "method_type": method_type, "method_token": token,
                "charge_lease_until": now + lease if prepaid else None})).mappings().one()
            if eligibility.risk_decision:
                await outbox.record_decision(conn, "maintenance", purchase_id, eligibility.risk_decision,
                                             {"vin": vin, "serviceId": service_id, "reason": eligibility.risk_reason,
                                              "warnings": warnings}, now)
            if method_risk:
                await outbox.record_decision(conn, "payment", purchase_id, method_risk,
                                             {"customerId": customer_id, "token": token,
                                              "reason": "payment gateway unavailable"}, now)
            if prepaid:  # the safety net: charges and completes it if this request dies before it does
                await jobs.enqueue(conn, CHARGE, {"purchaseId": purchase_id}, run_at=now + lease, now=now,
                                   dedupe_key=f"{CHARGE}:{purchase_id}", correlation_id=correlation_id)
            else:  # post-paid: the first month is charged when it ends
                await billing.schedule_month_end(conn, purchase_id, now, now)
                await _queue_activation(conn, purchase_id, now, correlation_id)
    except IntegrityError:  # the same Idempotency-Key, concurrently: the other request has it
        raise _in_flight(idempotency_key) from None
    if not prepaid:
        core.wake()
        return render(row, eligibility.risk_decision or None, {})
    await _pay(core, row, correlation_id)
    return await view(core, purchase_id)


def _request_of(row) -> tuple[str, ...]:
    """What a purchase request said, as its row keeps it: the same Idempotency-Key replays only
    the same request (the payment method included: another card is another request)."""
    return (row["vin"], row["service_id"], row["duration_type"], row["method_type"], row["method_token"])


async def _hold_vehicle(conn, vin: str) -> None:
    """The vehicle's purchases are checked and added to by one transaction at a time: on
    PostgreSQL two requests would otherwise both find the vehicle free before either recorded
    its purchase, and both be sold (SQLite serializes write transactions already)."""
    await locks.hold(conn, f"purchases-of-vehicle:{vin}")


async def _refuse_if_held(core: Core, conn, offer, vin: str, purchase_id: str) -> None:
    """409 when a purchase of the vehicle that has not ended holds (or is delivering) one of
    the service's feature flags: the vehicle runs one entry per service, so a second sale
    would overwrite, and its end switch off, what the customer already paid for
    (specification: CaaS cannot deactivate already-purchased services). Checked in the
    transaction that records the purchase, before anything is charged (under the vehicle's
    lock: ``_hold_vehicle``). The purchase itself (its Idempotency-Key's twin, recorded
    meanwhile) is the in-flight case, not this one."""
    for held in await records.live_of_vehicle(conn, vin):
        shared = () if held["id"] == purchase_id else core.catalogue.shared_features(offer.service_id,
                                                                                      held["service_id"])
        if shared:
            raise Conflict("Service already held", f"vehicle {vin} already has {held['service_id']} "
                           f"(purchase {held['id']}, {held['status']}), which includes {', '.join(shared)}: "
                           f"{offer.service_id} cannot be bought while it lasts", kind="service-already-held",
                           purchaseId=held["id"], serviceId=held["service_id"])


async def _check_method_on_file(core: Core, customer_id: str, method_type: str, token: str,
                                correlation_id: str) -> str | None:
    """A subscription is charged at month end to its method on file: one the gateway does not
    hold, of another type or customer, or expired, would never be charged, so it is refused
    now with nothing recorded (422, as a one-time purchase's charge would be). The gateway
    down: sold all the same and the risk decision returned, to be recorded (the specification:
    defer payment, manual fallback; nothing is charged before the month ends, whose charge is
    retried and then goes to collection). The gateway offers no check of a card its issuer
    would decline short of charging it (a real one is refused when stored): a test token such
    as ``pm_card_declined`` shows at month end."""
    try:
        found = await core.payments.method(token, correlation_id=correlation_id)
    except Unavailable:  # a Malformed answer included
        return PAYMENT_METHOD_UNVERIFIED
    except Rejected as exc:
        detail = f"no stored payment method {token}" if exc.status == 404 else (
            (exc.problem or {}).get("detail") or str(exc))
        raise Refused("Payment refused", f"{detail}: store a payment method or use another one",
                      kind="payment-refused") from None
    problem = method_on_file_problem(method_type=method_type, customer_id=customer_id, found_type=found.type,
                                     owner=found.customerId, expired=found.expired)
    if problem is not None:
        raise Refused("Payment refused" if problem.kind == "payment-refused" else "Payment declined",
                      f"the payment method {token} cannot be charged at month end: {problem.reason}",
                      kind=problem.kind)
    return None


async def _again(core: Core, row, idempotency_key: str, correlation_id: str) -> dict[str, Any]:
    """A purchase's Idempotency-Key again: 409 while its first request holds it, the charge
    taken over once that request's lease lapsed (its process died), else the replay."""
    if row["status"] == _S.REQUESTED.value:
        now = core.clock.now()
        taken = await _take_lease(core, row["id"], now)
        if not taken:
            raise _in_flight(idempotency_key)
        await _pay(core, row, correlation_id)
    return {**await view(core, row["id"]), "replayed": True}


async def _take_lease(core: Core, purchase_id: str, now: float) -> bool:
    async with core.db.transaction() as conn:
        return (await conn.execute(update(purchases).where(
            purchases.c.id == purchase_id, purchases.c.status == _S.REQUESTED.value,
            purchases.c.charge_lease_until <= now).values(charge_lease_until=now + core.settings.payments.charge_lease)
        )).rowcount == 1


def _in_flight(key: str | None) -> Conflict:
    return Conflict("Request in progress", f"a purchase with Idempotency-Key {key!r} is still being processed; "
                   "retry shortly for its outcome", kind="idempotency-in-flight", retry_after=1)


async def charge_job(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    """Take the payment of a purchase whose request died before it did, or that was deferred."""
    purchase_id, now = job.payload["purchaseId"], core.clock.now()
    async with core.db.transaction() as conn:
        row = await records.load(conn, purchase_id)
        if row is None or row["status"] not in (_S.REQUESTED.value, _S.PAYMENT_DEFERRED.value):
            await jobs.complete(conn, job.id)
            return
    if row["status"] == _S.REQUESTED.value and not await _take_lease(core, purchase_id, now):
        async with core.db.transaction() as conn:  # its request is still at it: look again when its lease ends
            await jobs.retry(conn, job.id, run_at=max(row["charge_lease_until"], now + 1.0), error="request charging")
        return
    await _pay(core, row, job.correlation_id or purchase_id, job=job)


async def _pay(core: Core, row, correlation_id: str, *, job: jobs.Job | None = None) -> None:
    """One charge of an unpaid purchase, under the key naming it, and its consequence. From a
    request (``job`` None) a refusal of a ``REQUESTED`` purchase is the request's 422 and leaves
    nothing behind; from the job it refuses the purchase and tells the customer."""
    purchase_id = row["id"]
    offer = core.catalogue.get(row["service_id"])
    try:
        answer = await core.payments.initiate("SERVICE", row["price_minor"], row["currency"], row["method_type"],
                                              row["method_token"], customer_id=row["customer_id"],
                                              order_id=purchase_id, description=offer.name[:140],
                                              key=f"{purchase_id}:pay", correlation_id=correlation_id,
                                              vin=row["vin"], service_id=row["service_id"])
        refusal = None if answer.status != "DECLINED" else Refused(
            "Payment declined", f"the card was declined ({answer.declineReason})", kind="payment-declined")
    except Unavailable as exc:
        answer, refusal, down = None, None, str(exc)
    except Rejected as exc:
        if exc.status == 409:  # the gateway still runs the same key (a request we lost): later
            answer, refusal, down = None, None, str(exc)
        else:
            answer, refusal = None, Refused("Payment refused", (exc.problem or {}).get("detail") or str(exc),
                                            kind="payment-refused")
    now = core.clock.now()
    async with core.db.transaction() as conn:
        # locked: a withdrawal deciding meanwhile waits, then sees this
        current = await records.load(conn, purchase_id, lock=True)
        state = PurchaseState(current["status"])
        if answer is not None and refusal is None:
            await _paid(core, conn, current, answer, now, correlation_id)
            await _charge_done(conn, job, purchase_id, now)
        elif refusal is not None:
            await _charge_done(conn, job, purchase_id, now)
            if job is None and state is _S.REQUESTED:  # the customer hears it now: as if never asked
                await conn.execute(purchases.delete().where(purchases.c.id == purchase_id))
            elif state in UNPAID:
                await _move(conn, current, PurchaseEvent.PAYMENT_DECLINED, now)
                await notify(conn, current, NoticeKind.PAYMENT_FAILED, now)
        elif state in UNPAID:
            await _deferred(core, conn, current, job, down, now)
    if refusal is not None and job is None and state is _S.REQUESTED:
        raise refusal
    core.wake()


async def _paid(core: Core, conn, row, answer: PaymentInitiated, now: float, correlation_id: str) -> None:
    payment_id = core.new_id("pay")
    await conn.execute(_INSERT_PAYMENT, {
        "id": payment_id, "purchase_id": row["id"], "gateway_payment_id": answer.paymentId, "kind": "SERVICE",
        "amount_minor": row["price_minor"], "currency": row["currency"], "status": answer.status,
        "created_at": now})
    state = PurchaseState(row["status"])
    values: dict[str, Any] = {"payment_id": payment_id, "charge_lease_until": None, "updated_at": now}
    if state in UNPAID:
        values["status"] = transition(transition(state, PurchaseEvent.PAYMENT_INITIATED),
                                      PurchaseEvent.ACTIVATION_REQUESTED).value
        await _queue_activation(conn, row["id"], now, correlation_id)
    else:  # withdrawn while its charge was on its way: give the money back
        await refunding.enqueue(conn, row["id"], payment_id, row["price_minor"], row["currency"], "WITHDRAWAL", now,
                                correlation_id)
        values["refunded_minor"] = row["refunded_minor"] + row["price_minor"]
    await records.change(conn, row["id"], **values)


async def record_charge(core: Core, conn, row, payment_id: str, status: str, now: float,
                        correlation_id: str) -> None:
    """A charge of an unpaid purchase taken outside ``_pay`` (an operator's, by hand:
    ``flows.manual_payments``), recorded and its activation queued as a gateway's is."""
    await _paid(core, conn, row, PaymentInitiated(paymentId=payment_id, status=status), now, correlation_id)


async def _deferred(core: Core, conn, row, job: jobs.Job | None, reason: str, now: float) -> None:
    policy = core.settings.payments
    since = row["deferred_since"] if row["deferred_since"] is not None else now
    if now - since >= policy.manual_after:
        await _move(conn, row, PurchaseEvent.MANUAL_PAYMENT_REQUIRED, now)
        await outbox.open_ticket(conn, row["customer_id"], row["vin"], f"Take the payment of {row['price_minor']} "
                                 f"{row['currency']} by hand: the payment gateway has been unavailable since "
                                 f"{isoformat(since)}", {"purchaseId": row["id"], "serviceId": row["service_id"],
                                                         "deferredSince": isoformat(since), "error": reason},
                                 now, purchase_id=row["id"])
        await notify(conn, row, NoticeKind.MANUAL_PAYMENT_REQUIRED, now)
        await _charge_done(conn, job, row["id"], now)
        return
    if row["status"] == _S.REQUESTED.value:
        await notify(conn, row, NoticeKind.PAYMENT_DEFERRED, now)
    await _move(conn, row, PurchaseEvent.PAYMENT_POSTPONED, now, deferred_since=since, charge_lease_until=None)
    delay = policy.retry_delay(job.attempts + 1 if job is not None else 0)
    if job is not None:
        await jobs.retry(conn, job.id, run_at=now + delay, error=f"payment gateway unavailable: {reason}")
    else:
        await jobs.postpone(conn, dedupe_key=f"{CHARGE}:{row['id']}", run_at=now + delay, now=now)


async def _charge_done(conn, job: jobs.Job | None, purchase_id: str, now: float) -> None:
    if job is not None:
        await jobs.complete(conn, job.id)
    else:
        await jobs.cancel(conn, dedupe_key=f"{CHARGE}:{purchase_id}", now=now)


async def _move(conn, row, event: PurchaseEvent, now: float, **values: Any) -> None:
    state = transition(PurchaseState(row["status"]), event)
    await records.change(conn, row["id"], status=state.value, updated_at=now, **values)


async def _queue_activation(conn, purchase_id: str, now: float, correlation_id: str) -> None:
    await jobs.enqueue(conn, ACTIVATE, {"purchaseId": purchase_id, "attempt": "0.0", "at": now}, run_at=now, now=now,
                       dedupe_key=f"{ACTIVATE}:{purchase_id}:0.0", correlation_id=correlation_id)


async def _eligibility(core: Core, offer, vin: str, correlation_id: str):
    if not needs_vss(offer):
        return assess(offer, None)
    try:
        status = await core.vss.maintenance_status(vin, correlation_id=correlation_id,
                                                   timeout=core.settings.vss_timeout)
    except Malformed as exc:  # an answer without the contract's shape: as unavailable, said apart
        return assess(offer, None, vss_error=f"{VSS_INVALID}: {exc}")
    except Unavailable as exc:  # VSS down or slow: sell anyway, and say so in the audit log
        return assess(offer, None, vss_error=str(exc))
    except Rejected as exc:
        if exc.status == 404:  # VSS does not know the vehicle: sold, its own risk decision recorded
            return assess(offer, None, vss_error=VSS_NOT_FOUND)
        raise
    return assess(offer, status.model_dump())  # domain.maintenance reads the parsed status as a mapping


async def view(core: Core, purchase_id: str) -> dict[str, Any]:
    async with core.db.transaction(readonly=True) as conn:
        row = await records.load(conn, purchase_id)
        if row is None:
            raise NotFound("Unknown purchase", f"no purchase {purchase_id}")
        decision = None
        if row["risk_flag"]:
            found = await outbox.decisions(conn, subject=purchase_id, kind="maintenance")
            decision = found[0].decision if found else None
        returned = await _refunds_of(conn, _refunded([row]))
    return render(row, decision, returned.get(purchase_id, {}))


def _refunded(rows) -> list[str]:
    """The purchases that may have refunds: a refund is only ever requested in the transaction
    that adds it to ``refunded_minor`` (which never decreases), so the others have none and
    need no query (a purchase's answer read two statements after its charge: see
    docs/benchmarks.md)."""
    return [row["id"] for row in rows if row["refunded_minor"]]


async def _refunds_of(conn, purchase_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per purchase: the amounts of its refunds by status at the gateway (PENDING, SUCCEEDED, FAILED...)."""
    found: dict[str, dict[str, int]] = {}
    if not purchase_ids:
        return found
    rows = await conn.execute(
        select(payments.c.purchase_id, refunds.c.status, func.sum(refunds.c.amount_minor))
        .join(refunds, refunds.c.payment_id == payments.c.id).where(payments.c.purchase_id.in_(purchase_ids))
        .group_by(payments.c.purchase_id, refunds.c.status))
    for purchase_id, status, amount in rows:
        found.setdefault(purchase_id, {})[status] = int(amount)  # PostgreSQL sums are Decimal
    return found


def render(row, risk_decision: str | None, returned: dict[str, int]) -> dict[str, Any]:
    """``returned``: the purchase's refunds by status. ``refunded`` counts the completed ones;
    ``refundPending`` what was decided and not settled either way yet (requested at the
    gateway, or still to be requested)."""
    settled = sum(returned.values()) - returned.get("PENDING", 0)
    pending = max(0, row["refunded_minor"] - settled)
    return {
        "purchaseId": row["id"], "customerId": row["customer_id"], "vin": row["vin"],
        "serviceId": row["service_id"], "durationType": row["duration_type"],
        # a TEMPORARY period counts from delivery: no expiry before (the one of a push is tentative)
        "expiresAt": isoformat(row["expiry"]) if row["expiry"] and row["delivered_at"] else None,
        "price": {"value": row["price_minor"], "currency": row["currency"]}, "status": row["status"],
        "attempts": row["attempts"], "paymentId": row["payment_id"], "riskDecision": risk_decision,
        "warnings": list(row["warnings"] or []), "refunded": {"value": returned.get("SUCCEEDED", 0), "currency": row["currency"]},
        "refundPending": {"value": pending, "currency": row["currency"]},
        "createdAt": isoformat(row["created_at"]),
        "deliveredAt": isoformat(row["delivered_at"]) if row["delivered_at"] else None,
    }


async def for_customer(core: Core, customer_id: str) -> list[dict[str, Any]]:
    async with core.db.transaction(readonly=True) as conn:
        rows = await records.of_customer(conn, customer_id)
        risky = {}  # the risk decision of purchases sold without a maintenance check
        for row in rows:
            if row["risk_flag"]:
                found = await outbox.decisions(conn, subject=row["id"], kind="maintenance")
                if found:
                    risky[row["id"]] = found[0].decision
        returned = await _refunds_of(conn, _refunded(rows))
    return [render(row, risky.get(row["id"]), returned.get(row["id"], {})) for row in rows]


async def owner_of(core: Core, purchase_id: str) -> str:
    async with core.db.transaction(readonly=True) as conn:
        owner = await conn.scalar(select(purchases.c.customer_id).where(purchases.c.id == purchase_id))
    if owner is None:
        raise NotFound("Unknown purchase", f"no purchase {purchase_id}")
    return owner
