"""Refund decisions (specification: "Refund Processing").

Three scenarios: the right of withdrawal (desistimiento), an OTA activation that failed
(the service was never delivered), and the reversal of a reservation signal after a
failed final payment (admin review). Amounts are what is left to refund: what was
charged minus what was already refunded, never negative; the gateway never refunds more
than it captured.

Withdrawal (``withdrawal``), judged from the specification's refund flow ("Within 14
days? yes: full refund; no: no refund, service consumed"):

- **Within 14 days** of the purchase (``now <= purchased_at + 14 days``, the 14th day
  inclusive): full refund of what is left, the service is deactivated now. For a
  subscription (post-paid) the customer also owes nothing for the usage not yet billed
  (``waive_unbilled``).
- **After 14 days**, no refund:

  - ``PERMANENT`` and ``TEMPORARY``: the withdrawal is refused; the service was paid and
    stays active (a temporary one until its expiry). Deactivating it without a refund
    would only take from the customer what they paid for.
  - ``SUBSCRIPTION``: there is nothing to refund (post-paid: each month is billed after it
    was consumed), so the request is an ordinary cancellation: deactivated now and the
    partial month consumed is billed at once (``final_billing``; the specification's
    "Customer cancels -> Charge for partial month -> Subscription ended").

The purchase's state must still allow ``WITHDRAWN`` (an expired temporary service was
consumed in full and cannot be withdrawn): see ``purchase.can``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .catalogue import DAY, DurationType
from .money import Money
from .purchase import PurchaseEvent

WITHDRAWAL_WINDOW: float = 14 * DAY


class RefundReason(StrEnum):
    """The payment contract's ``RefundReason``."""
    WITHDRAWAL = "WITHDRAWAL"
    OTA_ACTIVATION_FAILURE = "OTA_ACTIVATION_FAILURE"
    FINAL_PAYMENT_FAILURE = "FINAL_PAYMENT_FAILURE"
    ORDER_REJECTED = "ORDER_REJECTED"
    REGISTRATION_FAILED = "REGISTRATION_FAILED"
    CUSTOMER_REQUEST = "CUSTOMER_REQUEST"
    OTHER = "OTHER"


class WithdrawalOutcome(StrEnum):
    FULL_REFUND = "FULL_REFUND"                    # within the window: refund, deactivate now
    CANCELLED_NO_REFUND = "CANCELLED_NO_REFUND"    # subscription after the window
    REFUSED = "REFUSED"                            # one-time service after the window


@dataclass(frozen=True, slots=True)
class WithdrawalDecision:
    outcome: WithdrawalOutcome
    within_window: bool
    window_ends_at: float
    refund: Money                 # zero when there is nothing to refund
    deactivate: bool
    deactivate_at: float | None   # now, when deactivating
    final_billing: bool           # bill the consumed part of the current month now (subscriptions)
    waive_unbilled: bool          # do not bill the usage since the last invoice (subscriptions)
    purchase_event: PurchaseEvent | None
    message: str
    reason: RefundReason = RefundReason.WITHDRAWAL

    @property
    def refund_due(self) -> bool:
        return self.refund.is_positive


@dataclass(frozen=True, slots=True)
class RefundDecision:
    amount: Money                 # what to ask the gateway for (zero: nothing to call)
    reason: RefundReason
    call_gateway: bool
    close_collection: bool = False    # a collection case on this payment is void
    requires_review: bool = False     # manual processing (admin review), no automatic refund
    message: str = ""


def withdrawal_window_ends(purchased_at: float, window: float = WITHDRAWAL_WINDOW) -> float:
    return purchased_at + window


def within_withdrawal_window(purchased_at: float, now: float, window: float = WITHDRAWAL_WINDOW) -> bool:
    if now < purchased_at:
        raise ValueError(f"now ({now}) is before the purchase ({purchased_at})")
    return now <= purchased_at + window  # not now - purchased_at: float rounding could exclude the last instant


def withdrawal(
    purchase_price: Money,
    purchased_at: float,
    now: float,
    already_refunded: Money,
    *,
    duration_type: DurationType | str | None = None,
    window: float = WITHDRAWAL_WINDOW,
) -> WithdrawalDecision:
    """The decision on a withdrawal request at ``now``.

    ``purchase_price`` is what the customer paid for this purchase (for a subscription:
    the total billed so far, possibly zero); ``duration_type`` None means a one-time
    purchase (TEMPORARY or PERMANENT behave alike).
    """
    left = (purchase_price - already_refunded).clamp_zero()  # raises on mixed currencies
    ends = withdrawal_window_ends(purchased_at, window)
    d = DurationType(duration_type) if duration_type is not None else None
    if within_withdrawal_window(purchased_at, now, window):
        return WithdrawalDecision(
            WithdrawalOutcome.FULL_REFUND, True, ends, left, deactivate=True, deactivate_at=now,
            final_billing=False, waive_unbilled=d is DurationType.SUBSCRIPTION,
            purchase_event=PurchaseEvent.WITHDRAWN,
            message=(f"Withdrawal accepted: the service is deactivated and {left} will be refunded."
                     if left.is_positive else "Withdrawal accepted: the service is deactivated; nothing was charged."),
        )
    zero = Money.zero(purchase_price.currency)
    if d is DurationType.SUBSCRIPTION:
        return WithdrawalDecision(
            WithdrawalOutcome.CANCELLED_NO_REFUND, False, ends, zero, deactivate=True, deactivate_at=now,
            final_billing=True, waive_unbilled=False, purchase_event=PurchaseEvent.SUBSCRIPTION_CANCELLED,
            message=("The 14-day withdrawal period is over: the subscription is cancelled now and the "
                     "current month is billed up to today. No refund."),
        )
    return WithdrawalDecision(
        WithdrawalOutcome.REFUSED, False, ends, zero, deactivate=False, deactivate_at=None,
        final_billing=False, waive_unbilled=False, purchase_event=None,
        message="The 14-day withdrawal period is over: no refund; the service stays active.",
    )


def undelivered_refund(charged: Money, already_refunded: Money, *, settlement_failed: bool = False) -> RefundDecision:
    """Full refund of a service that was never delivered (OTA failed after all retries).

    The customer never pays for an undelivered service: everything charged and not yet
    refunded goes back. When the settlement failed, no money arrived: there is nothing
    to refund (the gateway would fail it with ``PAYMENT_FAILED``) and any collection
    case on the payment is void. A post-paid subscription was charged nothing: zero.
    """
    left = (charged - already_refunded).clamp_zero()
    if settlement_failed:
        return RefundDecision(Money.zero(charged.currency), RefundReason.OTA_ACTIVATION_FAILURE,
                              call_gateway=False, close_collection=True,
                              message="The payment never settled: nothing to refund, the debt is cancelled.")
    return RefundDecision(left, RefundReason.OTA_ACTIVATION_FAILURE, call_gateway=left.is_positive,
                          close_collection=True,
                          message=(f"The service could not be activated: {left} will be refunded in full."
                                   if left.is_positive else "The service could not be activated; nothing was charged."))


def reversal_refund(amount: Money) -> RefundDecision:
    """Reservation signal after a failed final payment: an edge case for admin review."""
    return RefundDecision(amount, RefundReason.FINAL_PAYMENT_FAILURE, call_gateway=False, requires_review=True,
                          message="Refund of the reservation signal awaits administrative review.")
