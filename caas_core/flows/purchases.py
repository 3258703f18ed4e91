"""Buying an optional service: eligibility, payment, and the queued activation.

The core delivers at once and assumes the settlement risk (specification:
asynchronous settlement): the payment is initiated, the purchase, its payment,
its risk decision and the activation job commit in one transaction, and the
answer goes back before the vehicle is touched.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select

from ..api.problems import Problem
from ..clients.http import Rejected, Unavailable
from ..clock import isoformat
from ..domain.catalogue import DurationNotOffered, DurationType, UnknownService
from ..domain.maintenance import assess, needs_vss
from ..domain.purchase import PurchaseState
from ..store import jobs, outbox
from ..store.schema import payments, purchases
from . import billing
from .core import Core

ACTIVATE = "ota.activate"
# built once: a statement's construction costs more CPU than its run (see store/jobs.py)
_INSERT_PAYMENT = payments.insert()
_INSERT_PURCHASE = purchases.insert().returning(*purchases.c)


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
            existing = (await conn.execute(select(purchases).where(purchases.c.id == purchase_id))
                        ).mappings().first()
        if existing is not None:
            if (existing["vin"], existing["service_id"], existing["duration_type"]) != (vin, service_id,
                                                                                        duration_type):
                raise Problem(422, "Idempotency key reused", f"Idempotency-Key {idempotency_key!r} was first "
                              "used for another purchase", kind="idempotency-mismatch")
            return {**await view(core, purchase_id), "replayed": True}
    try:
        offer = core.catalogue.get(service_id)
        duration = DurationType(duration_type)
        price = offer.price_for(duration)
    except UnknownService:
        raise Problem(404, "Unknown service", f"no service {service_id!r} in the catalogue") from None
    except DurationNotOffered:
        raise Problem(422, "Duration not offered", f"{service_id} is not sold as {duration_type}; "
                      f"offered: {', '.join(d.value for d in offer.durations)}", kind="duration-not-offered") from None
    eligibility = await _eligibility(core, offer, vin, correlation_id)
    warnings = [w.code.value for w in eligibility.warnings]
    if not eligibility.allowed:
        raise Problem(422, "Maintenance required", eligibility.message, kind="maintenance-required",
                      shortfalls=[{"block": s.block.display_name, "actualPercent": s.actual_pct,
                                   "requiredPercent": s.required_pct} for s in eligibility.shortfalls],
                      warnings=warnings)
    now = core.clock.now()
    gateway_payment = None
    if duration is not DurationType.SUBSCRIPTION:  # subscriptions are post-paid: billed at month end
        gateway_payment = await _charge(core, purchase_id, customer_id, offer.name, price, method_type, token,
                                        correlation_id)
    async with core.db.transaction() as conn:
        payment_id = None
        if gateway_payment is not None:
            payment_id = core.new_id("pay")
            await conn.execute(_INSERT_PAYMENT, {
                "id": payment_id, "purchase_id": purchase_id, "gateway_payment_id": gateway_payment["paymentId"],
                "kind": "SERVICE", "amount_minor": price.minor, "currency": price.currency,
                "status": gateway_payment["status"], "created_at": now})
        row = (await conn.execute(_INSERT_PURCHASE, dict(
            id=purchase_id, customer_id=customer_id, vin=vin, service_id=service_id, duration_type=duration.value,
            expiry=offer.expiry_for(duration, now), price_minor=price.minor, currency=price.currency,
            status=PurchaseState.ACTIVATION_QUEUED.value, payment_id=payment_id, attempts=0, created_at=now,
            updated_at=now, risk_flag=eligibility.risk_decision is not None,
            **({"method_type": method_type, "method_token": token} if gateway_payment is None else {})))
               ).mappings().one()
        if gateway_payment is None:  # post-paid: the first month is charged when it ends
            await billing.schedule_month_end(conn, purchase_id, now, now)
        if eligibility.risk_decision:
            await outbox.record_decision(conn, "maintenance", purchase_id, eligibility.risk_decision,
                                         {"vin": vin, "serviceId": service_id, "reason": eligibility.risk_reason,
                                          "warnings": warnings}, now)
        await jobs.enqueue(conn, ACTIVATE, {"purchaseId": purchase_id, "attempt": "0.0"}, run_at=now, now=now,
                           dedupe_key=f"{ACTIVATE}:{purchase_id}:0.0", correlation_id=correlation_id)
    core.wake()
    return render(row, eligibility.risk_decision or None, warnings)


async def _eligibility(core: Core, offer, vin: str, correlation_id: str):
    if not needs_vss(offer):
        return assess(offer, None)
    try:
        status = await core.vss.maintenance_status(vin, correlation_id=correlation_id,
                                                   timeout=core.settings.vss_timeout)
    except Unavailable as exc:  # VSS down or slow: sell anyway, and say so in the audit log
        return assess(offer, None, vss_error=str(exc))
    except Rejected as exc:
        if exc.status == 404:
            return assess(offer, None, vss_error="VEHICLE_UNKNOWN")
        raise
    return assess(offer, status)


async def _charge(core: Core, purchase_id: str, customer_id: str, description: str, price, method_type: str,
                  token: str, correlation_id: str) -> dict:
    try:
        answer = await core.payments.initiate("SERVICE", price.minor, price.currency, method_type, token,
                                              customer_id=customer_id, order_id=purchase_id,
                                              description=description[:140], key=f"{purchase_id}:pay",
                                              correlation_id=correlation_id)
    except Unavailable as exc:
        raise Problem(503, "Payment gateway unavailable", f"the purchase cannot be paid now ({exc}); nothing "
                      "was charged", kind="payments-unavailable",
                      headers={"Retry-After": str(int(exc.retry_after or 60))}) from None
    except Rejected as exc:
        detail = (exc.problem or {}).get("detail") or str(exc)
        raise Problem(422, "Payment refused", detail, kind="payment-refused") from None
    if answer["status"] == "DECLINED":
        raise Problem(422, "Payment declined", f"the card was declined ({answer.get('declineReason')})",
                      kind="payment-declined")
    return answer


async def view(core: Core, purchase_id: str, *, warnings: list[str] | None = None) -> dict[str, Any]:
    async with core.db.transaction(readonly=True) as conn:
        row = (await conn.execute(select(purchases).where(purchases.c.id == purchase_id))).mappings().first()
        decision = None
        if row is not None and row["risk_flag"]:
            found = await outbox.decisions(conn, subject=purchase_id)
            decision = found[0].decision if found else None
            if warnings is None and found:
                warnings = list(found[0].detail.get("warnings", []))
    if row is None:
        raise Problem(404, "Unknown purchase", f"no purchase {purchase_id}")
    return render(row, decision, warnings or [])


def render(row, risk_decision: str | None, warnings: list[str]) -> dict[str, Any]:
    return {
        "purchaseId": row["id"], "customerId": row["customer_id"], "vin": row["vin"],
        "serviceId": row["service_id"], "durationType": row["duration_type"],
        "expiresAt": isoformat(row["expiry"]) if row["expiry"] else None,
        "price": {"value": row["price_minor"], "currency": row["currency"]}, "status": row["status"],
        "attempts": row["attempts"], "paymentId": row["payment_id"], "riskDecision": risk_decision,
        "warnings": warnings, "refunded": {"value": row["refunded_minor"], "currency": row["currency"]},
        "createdAt": isoformat(row["created_at"]),
        "deliveredAt": isoformat(row["delivered_at"]) if row["delivered_at"] else None,
    }


async def for_customer(core: Core, customer_id: str) -> list[dict[str, Any]]:
    async with core.db.transaction(readonly=True) as conn:
        rows = (await conn.execute(select(purchases).where(purchases.c.customer_id == customer_id)
                                   .order_by(purchases.c.created_at, purchases.c.id))).mappings().all()
        risky = {}  # the risk decision and warnings of purchases sold without a maintenance check
        for row in rows:
            if row["risk_flag"]:
                found = await outbox.decisions(conn, subject=row["id"])
                if found:
                    risky[row["id"]] = (found[0].decision, list(found[0].detail.get("warnings", [])))
    return [render(row, *risky.get(row["id"], (None, []))) for row in rows]


async def owner_of(core: Core, purchase_id: str) -> str:
    async with core.db.transaction(readonly=True) as conn:
        owner = await conn.scalar(select(purchases.c.customer_id).where(purchases.c.id == purchase_id))
    if owner is None:
        raise Problem(404, "Unknown purchase", f"no purchase {purchase_id}")
    return owner
