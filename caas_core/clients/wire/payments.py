"""The payment gateway (``contracts/payments.yaml``): what a charge and a refund answer, the
payments of an order, and the ``paymentSettlement``, ``refundStatus`` and
``paymentChargeback`` webhooks. Amounts are integer minor units, as on the wire."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Instant, Unusable, Wire, read_tagged

Currency = Literal["EUR", "USD", "GBP"]
PaymentStatus = Literal["INITIATED", "AUTHORIZED", "PROCESSING", "CAPTURED", "DECLINED", "SETTLED", "FAILED",
                        "REFUNDED", "CHARGED_BACK"]
DeclineReason = Literal["GENERIC_DECLINE", "INSUFFICIENT_FUNDS", "EXPIRED_CARD", "LOST_CARD", "STOLEN_CARD",
                        "DO_NOT_HONOR", "FRAUD_SUSPECTED", "PROCESSING_ERROR", "INVALID_ACCOUNT"]
RefundStatus = Literal["PENDING", "SUCCEEDED", "FAILED"]
RefundFailureReason = Literal["CARD_CLOSED", "ACCOUNT_CLOSED", "DECLINED_BY_BANK", "PAYMENT_FAILED"]
SettlementFailureReason = Literal["INSUFFICIENT_FUNDS", "ACCOUNT_CLOSED", "AUTHORIZATION_EXPIRED", "BANK_REJECTED",
                                  "BANK_REVERSAL"]
ChargebackReason = Literal["FRAUDULENT", "PRODUCT_NOT_RECEIVED", "SERVICE_NOT_AS_DESCRIBED", "DUPLICATE",
                           "SUBSCRIPTION_CANCELED", "GENERAL"]


class Money(Wire):
    value: int = Field(ge=0)  # minor units
    currency: Currency


class PaymentInitiated(Wire):
    """``POST /payments/initiate``, 201: the issuer's answer."""
    paymentId: str
    status: Literal["INITIATED", "AUTHORIZED", "PROCESSING", "CAPTURED", "DECLINED"]
    declineReason: DeclineReason | None = None


class Payment(Wire):
    """``GET /payments/{paymentId}``, and each payment of ``GET /payments``."""
    paymentId: str
    status: PaymentStatus
    declineReason: DeclineReason | None = None


class PaymentMethod(Wire):
    """``GET /payment-methods/{token}``: a stored method (or a test token); ``expired`` is
    computed against the gateway's clock."""
    token: str
    type: Literal["CARD", "BANK_TRANSFER"]
    customerId: str | None
    expired: bool


class PaymentList(Wire):
    """``GET /payments?orderId=&paymentType=``: the gateway's payments of one of our orders."""
    payments: list[Payment]


class Refund(Wire):
    """``POST /payments/{paymentId}/refund``, 202."""
    refundId: str
    status: RefundStatus


class SettlementMetadata(Wire):
    fees: Money


class SettlementNotification(Wire):
    """The ``paymentSettlement`` webhook: the funds arrived, failed to, or were reversed."""
    event: Literal["paymentSettlement"]
    sequence: int = Field(ge=1)
    paymentId: str
    status: Literal["SETTLED", "FAILED"]
    settlementAmount: Money
    settlementDate: Instant
    failureReason: SettlementFailureReason | None = None
    metadata: SettlementMetadata


class RefundNotification(Wire):
    """The ``refundStatus`` webhook: a refund's outcome."""
    event: Literal["refundStatus"]
    refundId: str
    paymentId: str
    status: Literal["SUCCEEDED", "FAILED"]
    failureReason: RefundFailureReason | None = None


class ChargebackNotification(Wire):
    """The ``paymentChargeback`` webhook: the customer disputed a payment."""
    event: Literal["paymentChargeback"]
    sequence: int = Field(ge=1)
    paymentId: str
    amount: Money
    reason: ChargebackReason | None = None
    fee: Money
    chargebackDate: Instant


PaymentEvent = SettlementNotification | RefundNotification | ChargebackNotification
EVENTS: dict[str, type[Wire]] = {"paymentSettlement": SettlementNotification, "refundStatus": RefundNotification,
                                 "paymentChargeback": ChargebackNotification}


def parse_event(body: Any) -> PaymentEvent:
    """A payment webhook body, told apart by its ``event``; ``Unusable`` when it is none the
    core knows or not what its contract describes."""
    return read_tagged(body, "event", EVENTS)  # type: ignore[return-value]


__all__ = ["ChargebackNotification", "Money", "Payment", "PaymentEvent", "PaymentInitiated", "PaymentList", "Refund",
           "RefundNotification", "SettlementNotification", "Unusable", "parse_event"]
