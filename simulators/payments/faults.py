"""The gateway's vocabulary (types, reasons, webhook names) and its domain faults.

The tuples are the enums of contracts/payments.yaml (a test keeps them equal);
the fault parameter models are what ``/__admin/faults`` validates a rule's
``params`` against.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..kit.faults import NoParams

PAYMENT_TYPES = ("RESERVATION", "FINAL", "SERVICE", "SUBSCRIPTION")
#: Confirmed (captured) in the answer to the initiation: they block the purchase flow.
SYNCHRONOUS = ("RESERVATION", "FINAL")
DECLINE_REASONS = ("GENERIC_DECLINE", "INSUFFICIENT_FUNDS", "EXPIRED_CARD", "LOST_CARD", "STOLEN_CARD",
                   "DO_NOT_HONOR", "FRAUD_SUSPECTED", "PROCESSING_ERROR", "INVALID_ACCOUNT")
SETTLEMENT_FAILURES = ("INSUFFICIENT_FUNDS", "ACCOUNT_CLOSED", "AUTHORIZATION_EXPIRED", "BANK_REJECTED")
BANK_REVERSAL = "BANK_REVERSAL"
CHARGEBACK_REASONS = ("FRAUDULENT", "PRODUCT_NOT_RECEIVED", "SERVICE_NOT_AS_DESCRIBED", "DUPLICATE",
                      "SUBSCRIPTION_CANCELED", "GENERAL")
REFUND_REASONS = ("WITHDRAWAL", "OTA_ACTIVATION_FAILURE", "FINAL_PAYMENT_FAILURE", "ORDER_REJECTED",
                  "REGISTRATION_FAILED", "CUSTOMER_REQUEST", "OTHER")
REFUND_FAILURES = ("CARD_CLOSED", "ACCOUNT_CLOSED", "DECLINED_BY_BANK", "PAYMENT_FAILED")

WEBHOOK_SETTLEMENT = "paymentSettlement"
WEBHOOK_REFUND = "refundStatus"
WEBHOOK_CHARGEBACK = "paymentChargeback"


class DeclineParams(NoParams):
    reason: Literal[DECLINE_REASONS] = "GENERIC_DECLINE"  # type: ignore[valid-type]


class SettlementFailedParams(NoParams):
    reason: Literal[SETTLEMENT_FAILURES] = "INSUFFICIENT_FUNDS"  # type: ignore[valid-type]


class SettlementDelayedParams(NoParams):
    seconds: float | None = Field(default=None, ge=0)
    days: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_of(self) -> SettlementDelayedParams:
        if self.seconds is not None and self.days is not None:
            raise ValueError("give seconds or days, not both")
        if self.seconds is None and self.days is None:
            self.days = 1.0
        return self

    @staticmethod
    def total(params: dict) -> float:
        return params["seconds"] if "seconds" in params else params["days"] * 86400.0


class ChargebackParams(NoParams):
    reason: Literal[CHARGEBACK_REASONS] = "FRAUDULENT"  # type: ignore[valid-type]
    #: After settlement; the chargeback_delay option when absent.
    seconds: float | None = Field(default=None, ge=0)


class RefundFailedParams(NoParams):
    reason: Literal[REFUND_FAILURES[:3]] = "DECLINED_BY_BANK"  # type: ignore[valid-type]


class UnavailableParams(NoParams):
    retry_after: int = Field(default=30, ge=0)


#: Registered through the kit (simulators/kit/delivery_faults.py); reordering is per payment.
WEBHOOK_FAULTS = {"lost": "webhook_lost", "duplicated": "webhook_duplicated", "delayed": "webhook_delayed",
                  "reordered": "webhook_reordered"}
DOMAIN_FAULTS = {
    "authorization_declined": ("The issuer declines the authorization with reason (payment answered DECLINED)",
                               DeclineParams),
    "settlement_failed": ("Settlement fails with reason (paymentSettlement FAILED); matched when it settles",
                          SettlementFailedParams),
    "settlement_delayed": ("Settlement happens `seconds` or `days` later than expected; matched at initiation",
                           SettlementDelayedParams),
    "settlement_reversed": ("The bank reverses a settled payment reversal_delay later (FAILED, BANK_REVERSAL)",
                            NoParams),
    "chargeback": ("The customer disputes a settled payment: chargeback `seconds` (or chargeback_delay) later",
                   ChargebackParams),
    "refund_failed": ("A refund fails with reason (refundStatus FAILED)", RefundFailedParams),
    "gateway_unavailable": ("The gateway answers 503 with Retry-After; matches method, path, operation, entities",
                            UnavailableParams),
}
