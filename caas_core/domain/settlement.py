"""Settlement of service payments (specification: "Asynchronous Settlement and Risk Assumption").

CaaS delivers a service as soon as the payment is initiated and assumes the risk. The
gateway's webhooks (``contracts/payments.yaml``) tell later what happened:

- ``paymentSettlement`` ``SETTLED``: the payment is complete.
- ``paymentSettlement`` ``FAILED`` (insufficient funds, account closed, ..., or
  ``BANK_REVERSAL`` of a payment that had settled): if the customer owes the service
  (delivered, or delivery in progress: the case waits ``on_hold`` until it is delivered),
  a **collection case** is opened for what is owed (charged minus refunded). The service
  stays active: no retroactive blocking, and the base platform is never disabled. If the
  service was never delivered (given up, refunded, withdrawn), nothing is owed: no case,
  and pending refunds are void (no money arrived to give back).
- ``paymentChargeback``: the customer disputed a settled payment and got the money back.
  Delivered: a collection (dispute) case for the disputed amount; the gateway's fee is a
  loss. Not delivered: the chargeback returned what we owed the customer; pending refunds
  are void, and whatever the customer got back twice (refund plus chargeback) is collected.

Webhooks are delivered at least once and may be reordered: each carries the payment's
event ``sequence``; an event whose sequence is not above the last one applied is ignored
(a duplicate, or an older event overtaken by a newer one).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .money import Money
from .purchase import Liability, PurchaseEvent, PurchaseState, liability


class PaymentStatus(StrEnum):
    PENDING = "PENDING"              # authorised / processing, not settled yet
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    CHARGED_BACK = "CHARGED_BACK"


class SettlementKind(StrEnum):
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    CHARGEBACK = "CHARGEBACK"


class CollectionKind(StrEnum):
    SETTLEMENT_FAILED = "SETTLEMENT_FAILED"
    BANK_REVERSAL = "BANK_REVERSAL"
    CHARGEBACK = "CHARGEBACK"
    DUPLICATE_REFUND = "DUPLICATE_REFUND"


def parse_instant(value: str) -> float:
    """An ISO-8601 instant of the contracts as epoch seconds."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"instant without a time zone: {value!r}")
    return dt.timestamp()


@dataclass(frozen=True, slots=True)
class SettlementEvent:
    kind: SettlementKind
    payment_id: str
    sequence: int
    at: float
    amount: Money                    # settled amount (0 when failed) or disputed amount
    reason: str | None = None        # failureReason or chargeback reason
    fee: Money | None = None         # processing or chargeback fee

    @classmethod
    def from_webhook(cls, body: Mapping[str, Any]) -> SettlementEvent:
        """From a ``paymentSettlement`` or ``paymentChargeback`` webhook body."""
        event = body.get("event")
        if event == "paymentSettlement":
            status = body["status"]
            if status not in ("SETTLED", "FAILED"):
                raise ValueError(f"unknown settlement status {status!r}")
            return cls(SettlementKind(status), body["paymentId"], int(body["sequence"]),
                       parse_instant(body["settlementDate"]), Money.from_json(body["settlementAmount"]),
                       body.get("failureReason"), Money.from_json(body["metadata"]["fees"]))
        if event == "paymentChargeback":
            return cls(SettlementKind.CHARGEBACK, body["paymentId"], int(body["sequence"]),
                       parse_instant(body["chargebackDate"]), Money.from_json(body["amount"]),
                       body.get("reason"), Money.from_json(body["fee"]))
        raise ValueError(f"not a settlement webhook: event {event!r}")


@dataclass(frozen=True, slots=True)
class CollectionCase:
    payment_id: str
    kind: CollectionKind
    amount: Money
    reason: str
    opened_at: float
    on_hold: bool = False            # delivery still in progress: pursue only once delivered


@dataclass(frozen=True, slots=True)
class SettlementDecision:
    ignored: bool
    status: PaymentStatus
    last_sequence: int
    payment_complete: bool = False
    collection: CollectionCase | None = None
    close_collection: bool = False       # an open collection case on this payment is settled
    void_pending_refunds: bool = False
    loss: Money | None = None            # fees CaaS absorbs (chargeback fee)
    amount_mismatch: bool = False        # settled amount differs from the charge
    purchase_event: PurchaseEvent | None = None
    note: str = ""
    #: Always True: a settlement outcome never deactivates a delivered service.
    keep_service_active: bool = True


def decide(
    event: SettlementEvent,
    *,
    status: PaymentStatus,
    last_sequence: int,
    charged: Money,
    refunded: Money,
    delivery: PurchaseState,
) -> SettlementDecision:
    """Fold one settlement webhook into the payment of a purchase in state ``delivery``."""
    if event.sequence <= last_sequence:
        return SettlementDecision(True, status, last_sequence,
                                  note=f"event {event.sequence} not after {last_sequence}: duplicate or stale")
    seq = event.sequence
    owed = (charged - refunded).clamp_zero()
    liable = liability(delivery)
    hold = liable is Liability.PENDING

    if event.kind is SettlementKind.SETTLED:
        mismatch = event.amount != charged
        return SettlementDecision(
            False, PaymentStatus.SETTLED, seq, payment_complete=True,
            close_collection=status in (PaymentStatus.FAILED, PaymentStatus.CHARGED_BACK),
            amount_mismatch=mismatch, purchase_event=PurchaseEvent.SETTLED,
            note=f"settled {event.amount}" + (f", charged {charged}" if mismatch else ""),
        )

    if event.kind is SettlementKind.FAILED:
        reason = event.reason or "UNKNOWN"
        kind = CollectionKind.BANK_REVERSAL if reason == "BANK_REVERSAL" else CollectionKind.SETTLEMENT_FAILED
        if liable is Liability.NOT_LIABLE or owed.is_zero:
            return SettlementDecision(
                False, PaymentStatus.FAILED, seq, void_pending_refunds=True,
                purchase_event=PurchaseEvent.SETTLEMENT_FAILED,
                note=f"settlement failed ({reason}); nothing owed for an undelivered or refunded service",
            )
        case = CollectionCase(event.payment_id, kind, owed, reason, event.at, on_hold=hold)
        return SettlementDecision(
            False, PaymentStatus.FAILED, seq, collection=case, purchase_event=PurchaseEvent.SETTLEMENT_FAILED,
            note=f"settlement failed ({reason}); collection of {owed}; the service stays active",
        )

    # chargeback
    reason = event.reason or "GENERAL"
    disputed = event.amount
    if liable is Liability.NOT_LIABLE:
        twice = (refunded + disputed - charged).clamp_zero()
        case = (CollectionCase(event.payment_id, CollectionKind.DUPLICATE_REFUND, twice, reason, event.at)
                if twice.is_positive else None)
        return SettlementDecision(
            False, PaymentStatus.CHARGED_BACK, seq, collection=case, void_pending_refunds=True, loss=event.fee,
            purchase_event=PurchaseEvent.CHARGEBACK,
            note=f"chargeback ({reason}) of an undelivered service"
                 + (f"; {twice} was returned twice" if case else ""),
        )
    case = (CollectionCase(event.payment_id, CollectionKind.CHARGEBACK, disputed, reason, event.at, on_hold=hold)
            if disputed.is_positive else None)
    return SettlementDecision(
        False, PaymentStatus.CHARGED_BACK, seq, collection=case, loss=event.fee,
        purchase_event=PurchaseEvent.CHARGEBACK,
        note=f"chargeback ({reason}) of {disputed}; dispute and collection; the service stays active",
    )
