"""A payment an operator took by hand (the specification's "defer payment, manual fallback").

The gateway down past ``payments.manual_after`` hands a purchase to manual payment
processing (``MANUAL_PAYMENT``, an operator ticket) and the queue stops charging it. The
operator takes the money by other means (the gateway's own console once it is back, a
bank transfer) and records it here: the payment is recorded and the activation queued
exactly as after a gateway charge (``purchases.record_charge``), and the ticket closed.

Recording the same reference again answers the purchase as it is (a retry after a lost
answer changes nothing); any other recording of a purchase no longer waiting for one is a
conflict, so a purchase is never paid twice.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from ..domain.errors import Conflict, NotFound, Refused
from ..domain.purchase import PurchaseState
from ..store import outbox
from ..store.schema import payments, support_tickets
from . import purchase_records as records
from . import purchases
from .core import Core

log = logging.getLogger("caas_core.payments")

#: The status of a payment taken by hand: the money is in.
TAKEN = "CAPTURED"
#: A manual payment ticket, once its payment is recorded.
TICKET_DONE = "closed"


async def record(core: Core, purchase_id: str, *, reference: str, amount_minor: int, currency: str,
                 operator: str, correlation_id: str) -> dict[str, Any]:
    """Record what the operator took for ``purchase_id`` and queue its activation; the purchase."""
    now = core.clock.now()
    async with core.db.transaction() as conn:
        row = await records.load(conn, purchase_id, lock=True)  # a withdrawal deciding meanwhile waits
        if row is None:
            raise NotFound("Unknown purchase", f"no purchase {purchase_id}")
        if not await _already_recorded(conn, row, reference):
            await _require_waiting(conn, row, reference)
            _require_price(row, amount_minor, currency)
            await purchases.record_charge(core, conn, row, reference, TAKEN, now, correlation_id)
            await _close_tickets(conn, purchase_id)
            log.info("operator %s recorded payment %s of %d %s for %s", operator, reference, amount_minor, currency,
                     purchase_id)
    core.wake()
    return await purchases.view(core, purchase_id)


async def _already_recorded(conn, row, reference: str) -> bool:
    """This very payment is the purchase's already (the request again)."""
    if row["payment_id"] is None:
        return False
    recorded = await conn.scalar(select(payments.c.gateway_payment_id).where(payments.c.id == row["payment_id"]))
    return recorded == reference


async def _require_waiting(conn, row, reference: str) -> None:
    if row["status"] != PurchaseState.MANUAL_PAYMENT.value:
        raise Conflict("No manual payment expected", f"purchase {row['id']} is {row['status']}; a payment is "
                       "recorded by hand only for a purchase in MANUAL_PAYMENT", kind="not-awaiting-manual-payment",
                       purchaseStatus=row["status"])
    used = (await conn.execute(select(payments.c.purchase_id, payments.c.sale_id)
                               .where(payments.c.gateway_payment_id == reference))).first()
    if used is not None:
        paid = f"purchase {used.purchase_id}" if used.purchase_id else f"sale {used.sale_id}"
        raise Conflict("Payment already recorded", f"payment {reference} is already recorded, for {paid}; one "
                       "payment pays one purchase", kind="payment-reference-used")


def _require_price(row, amount_minor: int, currency: str) -> None:
    if (amount_minor, currency) != (row["price_minor"], row["currency"]):
        raise Refused("Amount is not the price", f"{amount_minor} {currency} recorded for a purchase of "
                      f"{row['price_minor']} {row['currency']}; record exactly what the price is",
                      kind="amount-mismatch", price={"value": row["price_minor"], "currency": row["currency"]})


async def _close_tickets(conn, purchase_id: str) -> None:
    """The purchase's open manual payment ticket is done (only that kind says since when the
    payment was deferred)."""
    found = await conn.execute(select(support_tickets.c.id, support_tickets.c.diagnostics).where(
        support_tickets.c.purchase_id == purchase_id, support_tickets.c.status == "open"))
    for ticket_id, diagnostics in found.all():
        if "deferredSince" in diagnostics:
            await outbox.set_ticket_status(conn, ticket_id, TICKET_DONE)
