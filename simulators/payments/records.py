"""What the gateway remembers of a payment, and how it reads over HTTP.

A payment is kept as bytes (``Payment.pack``: its plain values, marshalled), which the
garbage collector never walks: a gateway keeping 100,000 payments as objects had every
full collection walk them all (84-120 ms a pass here, the p99 of a request). Bytes rather
than a tuple of plain values: the collector stops tracking such a tuple only once a pass
has looked at it, so under load every pass still walked those made since the last one.
The model unpacks a payment to read or change it, and packs it back when it is done.
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from ..kit.clock import isoformat
from .cards import StoredMethod
from .money import money

#: Statuses of an accepted payment whose funds have not settled yet.
AWAITING_SETTLEMENT = ("CAPTURED", "AUTHORIZED", "PROCESSING")


class Event(NamedTuple):
    """One entry of a payment's history; kept in ``Payment.events`` as a plain tuple (the
    garbage collector stops tracking those: see kit/untracked.py)."""
    sequence: int
    type: str
    at: float
    amount: int | None = None
    reason: str | None = None
    reference: str | None = None


@dataclass(slots=True)
class Settlement:
    status: str  # SETTLED | FAILED
    amount: int
    date: float
    failure_reason: str | None
    bank_transaction_id: str | None
    fees: int
    net: int


@dataclass(slots=True)
class Chargeback:
    id: str
    amount: int
    reason: str
    fee: int
    at: float


@dataclass(slots=True)
class Refund:
    id: str
    payment_id: str
    amount: int
    currency: str
    reason: str
    description: str | None
    created: float
    correlation_id: str | None
    status: str = "PENDING"  # PENDING | SUCCEEDED | FAILED
    failure_reason: str | None = None
    completed: float | None = None
    waiting: bool = False  # due, but held until the payment settles

    def view(self) -> dict:
        return {"refundId": self.id, "paymentId": self.payment_id, "status": self.status,
                "amount": money(self.amount, self.currency), "reason": self.reason, "description": self.description,
                "failureReason": self.failure_reason, "createdAt": isoformat(self.created),
                "completedAt": isoformat(self.completed) if self.completed is not None else None}


@dataclass(slots=True)
class Payment:
    id: str
    type: str
    amount: int
    currency: str
    method: StoredMethod
    customer_id: str
    order_id: str
    description: str | None
    created: float
    correlation_id: str | None
    status: str = "INITIATED"
    captured: int = 0
    refunded: int = 0
    decline_reason: str | None = None
    failure_reason: str | None = None
    expected_settlement: float | None = None
    settlement: Settlement | None = None
    chargeback: Chargeback | None = None
    refunds: tuple[Refund, ...] = ()  # a tuple: most payments have none, and () is shared
    events: tuple[tuple, ...] = ()  # Event as plain tuples
    vin: str | None = None         # what the merchant said the payment is for (metadata), if it did
    service_id: str | None = None

    def pack(self) -> bytes:
        """The payment as marshalled plain values: its method, settlement and chargeback as
        tuples of their fields, its refunds by id (the model keeps them)."""
        s, cb = self.settlement, self.chargeback
        return marshal.dumps((self.id, self.type, self.amount, self.currency, _fields(self.method), self.customer_id,
                self.order_id, self.description, self.created, self.correlation_id, self.status, self.captured,
                self.refunded, self.decline_reason, self.failure_reason, self.expected_settlement,
                None if s is None else _fields(s), None if cb is None else _fields(cb),
                tuple(r.id for r in self.refunds), self.events, self.vin, self.service_id))

    @classmethod
    def unpack(cls, packed: bytes, refunds: Mapping[str, Refund]) -> Payment:
        (id_, type_, amount, currency, method, customer_id, order_id, description, created, correlation_id, status,
         captured, refunded, decline_reason, failure_reason, expected_settlement, settlement, chargeback,
         refund_ids, events, vin, service_id) = marshal.loads(packed)
        return cls(id_, type_, amount, currency, _method(method), customer_id, order_id, description, created,
                   correlation_id, status, captured, refunded, decline_reason, failure_reason, expected_settlement,
                   None if settlement is None else Settlement(*settlement),
                   None if chargeback is None else Chargeback(*chargeback),
                   tuple(refunds[r] for r in refund_ids), events, vin, service_id)

    @property
    def refund_pending(self) -> int:
        return sum(r.amount for r in self.refunds if r.status == "PENDING")

    @property
    def refundable(self) -> int:
        if self.status not in (*AWAITING_SETTLEMENT, "SETTLED"):
            return 0
        return self.captured - self.refunded - self.refund_pending

    def entities(self) -> dict[str, str]:
        found = {"paymentId": self.id, "customerId": self.customer_id, "orderId": self.order_id,
                 "paymentType": self.type, "token": self.method.token, "currency": self.currency}
        if self.vin:
            found["vin"] = self.vin
        if self.service_id:
            found["serviceId"] = self.service_id
        return found

    def view(self) -> dict:
        m, c = money, self.currency
        s = self.settlement
        cb = self.chargeback
        return {
            "paymentId": self.id, "paymentType": self.type, "status": self.status,
            "amount": m(self.amount, c), "amountCaptured": m(self.captured, c),
            "amountRefunded": m(self.refunded, c), "amountRefundPending": m(self.refund_pending, c),
            "amountRefundable": m(self.refundable, c),
            "paymentMethod": {"type": self.method.type, "token": self.method.token},
            "metadata": {"customerId": self.customer_id, "orderId": self.order_id, "description": self.description,
                         **({"vin": self.vin} if self.vin else {}),
                         **({"serviceId": self.service_id} if self.service_id else {})},
            "declineReason": self.decline_reason, "failureReason": self.failure_reason,
            "createdAt": isoformat(self.created),
            "expectedSettlementDate": isoformat(self.expected_settlement) if self.expected_settlement else None,
            "settlement": None if s is None else {
                "status": s.status, "settlementAmount": m(s.amount, c), "settlementDate": isoformat(s.date),
                "failureReason": s.failure_reason, "bankTransactionId": s.bank_transaction_id,
                "fees": m(s.fees, c), "netAmount": m(s.net, c)},
            "chargeback": None if cb is None else {
                "chargebackId": cb.id, "amount": m(cb.amount, c), "reason": cb.reason, "fee": m(cb.fee, c),
                "chargebackDate": isoformat(cb.at)},
            "refunds": [r.view() for r in self.refunds],
            "events": [{"sequence": e.sequence, "type": e.type, "at": isoformat(e.at),
                        "amount": m(e.amount, c) if e.amount is not None else None,
                        "reason": e.reason, "reference": e.reference} for e in map(Event._make, self.events)],
        }


def _fields(record) -> tuple:
    return tuple(getattr(record, name) for name in record.__slots__)


@lru_cache(maxsize=4096)
def _method(fields: tuple) -> StoredMethod:
    """One (immutable) method object per distinct method, not one per payment read."""
    return StoredMethod(*fields)


#: Positions in a packed payment's values of what is read without building the payment:
#: the merchant's order reference (its search), the status and the refunds' ids (whether
#: it may be forgotten).
ORDER_ID, STATUS, REFUND_IDS = 6, 10, 18


def values(packed: bytes) -> tuple:
    return marshal.loads(packed)


def finished(fields: tuple, refunds: Mapping[str, Refund]) -> bool:
    """Whether a payment (its ``values``) may be forgotten: not awaiting settlement, no
    refund pending."""
    return fields[STATUS] not in AWAITING_SETTLEMENT and all(refunds[r].status != "PENDING"
                                                              for r in fields[REFUND_IDS])


def of_order(packed: bytes, order_id: str) -> bool:
    # marshal keeps a string's characters as they are: most payments are passed over on a
    # search for the bytes alone, without being unmarshalled
    return order_id.encode() in packed and marshal.loads(packed)[ORDER_ID] == order_id
