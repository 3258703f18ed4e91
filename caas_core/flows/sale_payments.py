"""A sale's reservation signal and final payment, recorded before the charge.

Both are synchronous (specification: the reservation confirms the production slot, the final
payment blocks registration), so neither is deferred when the gateway is down: the answer is
503 with nothing charged, and the sale waits in its state.

Before the gateway is called the sale records its payment intent (the kind, a lease) under
lock, with a recovery job for when the lease lapses: a concurrent payment of the same sale
is 409 while it runs. After the charge the payment, the sale's next state and the end of the
intent commit together. A process that died in between leaves the intent behind; the
recovery job (or the customer's next attempt, once the lease lapsed) asks the gateway for
the sale's payments of that kind (``GET /payments?orderId=``) and records what was charged,
so nobody pays a reservation or a vehicle the core does not know they paid.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..clients.http import Rejected, Unavailable
from ..clients.wire.payments import Payment, PaymentInitiated
from ..domain.errors import Conflict, PeerUnavailable, Refused
from ..domain.money import Money
from ..domain.refunds import reversal_refund
from ..domain.sale import SaleConflict, SaleStatus, require
from ..store import jobs, outbox
from ..store.schema import payments
from . import sale_records as rec
from .core import Core
from .runner import JobContext
from .sales import PLACE_ORDER, place_order, view

RECOVER = "sale.payment_recover"
#: A charge as the gateway answered it, or as its payments of the order show it (a lost answer).
Charge = PaymentInitiated | Payment
#: Clock seconds before the recovery asks a gateway that was unavailable again.
RECOVER_RETRY = 300.0
S = SaleStatus
_WAITS_FOR = {"RESERVATION": S.AWAITING_RESERVATION, "FINAL": S.AWAITING_FINAL_PAYMENT}
_DOING = {"RESERVATION": "pay the reservation of", "FINAL": "take the final payment of"}


async def pay_reservation(core: Core, sale_id: str, method: dict, correlation_id: str) -> dict[str, Any]:
    sale = await _begin(core, sale_id, "RESERVATION", correlation_id)
    if sale is None:  # a charge of an earlier attempt was found and recorded: the sale went on
        return await view(core, sale_id)
    answer = await _charge(core, sale, "RESERVATION", sale["reservation_minor"], method, correlation_id)
    now = core.clock.now()
    async with core.db.transaction() as conn:
        await _reservation_paid(core, conn, await rec.load(conn, sale_id, lock=True), answer, now, correlation_id)
    await place_order(core, sale_id, correlation_id)
    return await view(core, sale_id)


async def pay_final(core: Core, sale_id: str, method: dict, correlation_id: str) -> dict[str, Any]:
    """Synchronous and blocking. Declined: the vehicle returns to stock, the reservation is lost."""
    sale = await _begin(core, sale_id, "FINAL", correlation_id)
    if sale is None:
        found = await view(core, sale_id)
        if found["status"] == S.RETURNED_TO_STOCK.value:
            raise Refused("Final payment declined", "an earlier attempt at this payment was declined; the "
                          "vehicle returned to stock and the reservation is lost", kind="final-payment-declined",
                          saleStatus=S.RETURNED_TO_STOCK.value)
        return found
    amount = sale["price_minor"] - sale["reservation_minor"]
    try:
        answer = await _charge(core, sale, "FINAL", amount, method, correlation_id)
    except Refused as problem:  # declined (down or busy gateways raise others: nothing happened, try again)
        async with core.db.transaction() as conn:
            await _final_declined(conn, await rec.load(conn, sale_id, lock=True), problem.detail, core.clock.now())
        raise Refused("Final payment declined", f"{problem.detail}; the vehicle returns to stock and the "
                      "reservation is lost", kind="final-payment-declined", saleStatus=S.RETURNED_TO_STOCK.value) \
            from None
    now = core.clock.now()
    async with core.db.transaction() as conn:
        await _final_paid(core, conn, await rec.load(conn, sale_id, lock=True), answer, now, correlation_id)
    core.wake()
    return await view(core, sale_id)


async def _begin(core: Core, sale_id: str, kind: str, correlation_id: str):
    """Record the intent to charge ``kind``; the sale to charge, or None when an earlier
    attempt's charge was found at the gateway and recorded instead."""
    while True:
        now = core.clock.now()
        async with core.db.transaction() as conn:
            sale = await rec.load(conn, sale_id, lock=True)
            _require(sale, kind)
            intent = sale["payment_intent"]
            if intent is None:
                lease = now + core.settings.payments.charge_lease
                await rec.change(conn, sale_id, now, payment_intent={"kind": kind, "leaseUntil": lease})
                await jobs.enqueue(conn, RECOVER, {"saleId": sale_id, "kind": kind}, run_at=lease, now=now,
                                   correlation_id=correlation_id)
                return sale
            if intent["leaseUntil"] > now:
                raise Conflict("Request in progress", f"a {intent['kind'].lower()} payment of sale {sale_id} is "
                              "still being processed; retry shortly for its outcome", kind="idempotency-in-flight",
                              retry_after=1)
        try:  # the request that recorded it died: find out what it did first
            if await _resolve(core, sale_id, intent, correlation_id):
                return None
        except Unavailable as exc:
            raise PeerUnavailable("Payment gateway unavailable", f"nothing was charged ({exc}); try again later",
                          kind="payments-unavailable", retry_after=60) from None


async def _resolve(core: Core, sale_id: str, intent: dict, correlation_id: str) -> bool:
    """End a lapsed intent by what the gateway holds: True if its outcome was found (a charge,
    and the sale moved on with it; or a declined final payment, and the vehicle went back to
    stock), False if nothing was charged."""
    found = await core.payments.of_order(sale_id, intent["kind"], correlation_id=correlation_id)
    now = core.clock.now()
    async with core.db.transaction() as conn:
        sale = await rec.load(conn, sale_id, lock=True)
        if sale["payment_intent"] != intent:  # someone resolved it meanwhile
            return sale["status"] != _WAITS_FOR[intent["kind"]].value
        known = set((await conn.scalars(select(payments.c.gateway_payment_id)
                                        .where(payments.c.sale_id == sale_id))).all())
        charged = [p for p in found if p.status not in ("DECLINED", "FAILED") and p.paymentId not in known]
        declined = [p for p in found if p.status == "DECLINED"]
        if not charged and declined and intent["kind"] == "FINAL":
            # A declined final payment whose outcome was lost: the decline stands (the customer
            # loses the reservation), as it would have had the answer been recorded.
            await _final_declined(conn, sale, f"the payment was declined ({declined[-1].declineReason})", now)
            return True
        if not charged:
            await rec.change(conn, sale_id, now, payment_intent=None)
            return False
        answer = charged[0]
        await rec.record(conn, sale_id, "LOST_CHARGE_RECOVERED", {"kind": intent["kind"], "paymentId": answer.paymentId,
                                                                  "status": answer.status}, now)
        if intent["kind"] == "RESERVATION":
            await _reservation_paid(core, conn, sale, answer, now, correlation_id)
        else:
            await _final_paid(core, conn, sale, answer, now, correlation_id)
    if intent["kind"] == "RESERVATION":
        await place_order(core, sale_id, correlation_id)
    core.wake()
    return True


async def recover_job(core: Core, job: jobs.Job, ctx: JobContext) -> None:
    sale_id, kind = job.payload["saleId"], job.payload["kind"]
    async with core.db.transaction(readonly=True) as conn:
        intent = (await rec.load(conn, sale_id))["payment_intent"]
    if intent is not None and intent["kind"] == kind:
        if intent["leaseUntil"] > core.clock.now():  # a later attempt holds it: look when its lease ends
            async with core.db.transaction() as conn:
                await jobs.retry(conn, job.id, run_at=intent["leaseUntil"], error="payment in progress")
            return
        try:
            await _resolve(core, sale_id, intent, job.correlation_id or sale_id)
        except Unavailable as exc:
            async with core.db.transaction() as conn:
                await jobs.retry(conn, job.id, run_at=core.clock.now() + RECOVER_RETRY, error=str(exc))
            return
    async with core.db.transaction() as conn:
        await jobs.complete(conn, job.id)


async def _reservation_paid(core: Core, conn, sale, answer: Charge, now: float, correlation_id: str) -> None:
    _require(sale, "RESERVATION")  # a concurrent payment won
    await _insert_payment(core, conn, sale, "RESERVATION", sale["reservation_minor"], answer, now)
    await rec.change(conn, sale["id"], now, status=S.ORDER_QUEUED.value, payment_intent=None)
    await rec.record(conn, sale["id"], "RESERVATION_PAID", {"paymentId": answer.paymentId}, now)
    # The safety net: if the order call fails or we crash, this job places the order.
    await jobs.enqueue(conn, PLACE_ORDER, {"saleId": sale["id"]}, run_at=now + core.settings.factory.backoff_base,
                       now=now, dedupe_key=f"{PLACE_ORDER}:{sale['id']}", correlation_id=correlation_id)


async def _final_paid(core: Core, conn, sale, answer: Charge, now: float, correlation_id: str) -> None:
    from .registration import SUBMIT  # the next step of the journey

    _require(sale, "FINAL")
    await _insert_payment(core, conn, sale, "FINAL", sale["price_minor"] - sale["reservation_minor"], answer, now)
    await rec.change(conn, sale["id"], now, status=S.REGISTRATION.value, payment_intent=None)
    await rec.record(conn, sale["id"], "FINAL_PAYMENT_RECEIVED", {"paymentId": answer.paymentId}, now)
    await rec.tell_customer(conn, sale, "FINAL_PAYMENT_RECEIVED_REGISTRATION_STARTED", now)
    await jobs.enqueue(conn, SUBMIT, {"saleId": sale["id"]}, run_at=now, now=now,
                       dedupe_key=f"{SUBMIT}:{sale['id']}:0", correlation_id=correlation_id)


async def _final_declined(conn, sale, reason: str, now: float) -> None:
    _require(sale, "FINAL")
    await rec.change(conn, sale["id"], now, status=S.RETURNED_TO_STOCK.value, payment_intent=None)
    await rec.record(conn, sale["id"], "FINAL_PAYMENT_FAILED", {"reason": reason}, now)
    await rec.tell_customer(conn, sale, "FINAL_PAYMENT_FAILED_RESERVATION_LOST", now, reason=reason)
    await rec.alert_dealership(conn, sale["dealership_id"], "VEHICLE_UNASSIGNED_IN_STOCK", now,
                               sale_id=sale["id"], vin=sale["vin"], model=sale["model"])
    await _reservation_to_review(conn, sale, reason, now)


async def _reservation_to_review(conn, sale, reason: str, now: float) -> None:
    """The reservation signal of a sale lost to a failed final payment is kept by rule, and
    refunded only if an administrator decides so (the specification's refund flow: "Payment
    reversal: admin review required, manual processing"): nothing is refunded here, and the
    operators' ticket carries what a refund by hand needs."""
    paid = (await conn.execute(select(payments).where(payments.c.sale_id == sale["id"],
                                                      payments.c.kind == "RESERVATION"))).mappings().first()
    if paid is None:
        return
    decision = reversal_refund(Money(paid["amount_minor"], paid["currency"]))
    ticket = await outbox.open_ticket(
        conn, sale["customer_id"], sale["vin"],
        f"Review the reservation signal of sale {sale['id']} ({decision.amount}): the final payment failed",
        {"saleId": sale["id"], "paymentId": paid["gateway_payment_id"], "amount": decision.amount.to_json(),
         "reason": reason, "decision": decision.message}, now)
    await rec.record(conn, sale["id"], "RESERVATION_REVERSAL_REVIEW", {"ticketId": ticket}, now)


def _require(sale, kind: str) -> None:
    try:
        require(sale["status"], _DOING[kind], _WAITS_FOR[kind])
    except SaleConflict as exc:
        raise Conflict("Sale not in that state", str(exc), kind="sale-conflict", saleStatus=exc.status) from None


async def _charge(core: Core, sale, kind: str, amount: int, method: dict, correlation_id: str) -> PaymentInitiated:
    """The charge; a refusal, or the gateway answering that it is down, ends the intent (nothing
    was charged). No answer at all leaves it to the recovery: the charge may have gone through."""
    try:
        answer = await core.payments.initiate(
            kind, amount, sale["currency"], method["type"], method["token"], customer_id=sale["customer_id"],
            order_id=sale["id"], description=f"{kind.title()} payment, {sale['model']}",
            key=f"{sale['id']}:{kind.lower()}:{method['token']}", correlation_id=correlation_id, vin=sale["vin"])
    except Unavailable as exc:
        if exc.status is None or exc.status < 400:  # no (readable) answer: it may have charged; the recovery finds out
            raise PeerUnavailable("Payment gateway unavailable", f"the gateway did not answer ({exc}); whether it "
                          "charged is checked with it before any new attempt", kind="payments-unavailable",
                          retry_after=int(core.settings.payments.charge_lease)) from None
        await _end_intent(core, sale["id"])  # the gateway answered that it could not: nothing was charged
        raise PeerUnavailable("Payment gateway unavailable", f"nothing was charged ({exc}); try again later",
                      kind="payments-unavailable", retry_after=int(exc.retry_after or 60)) from None
    except Rejected as exc:
        if exc.status == 409:  # the gateway still runs this payment (a request we lost): the intent stays
            raise Conflict("Request in progress", f"a {kind.lower()} payment of sale {sale['id']} is still "
                          "being processed; retry shortly for its outcome", kind="idempotency-in-flight",
                          retry_after=1) from None
        await _end_intent(core, sale["id"])
        raise Refused("Payment refused", (exc.problem or {}).get("detail") or str(exc),
                      kind="payment-refused") from None
    if answer.status == "DECLINED":
        if kind != "FINAL":  # a declined final payment ends the sale's wait itself (RETURNED_TO_STOCK)
            await _end_intent(core, sale["id"])
        raise Refused("Payment declined", f"the payment was declined ({answer.declineReason})",
                      kind="payment-declined")
    return answer


async def _end_intent(core: Core, sale_id: str) -> None:
    async with core.db.transaction() as conn:
        await rec.change(conn, sale_id, core.clock.now(), payment_intent=None)


async def _insert_payment(core: Core, conn, sale, kind: str, amount: int, answer: Charge, now: float) -> None:
    await conn.execute(payments.insert().values(
        id=core.new_id("pay"), sale_id=sale["id"], gateway_payment_id=answer.paymentId, kind=kind,
        amount_minor=amount, currency=sale["currency"], status=answer.status, created_at=now))
