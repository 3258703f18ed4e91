"""Subscription billing, post-paid at month end (mes vencido).

- A subscription starts at once on purchase; nothing is charged then.
- Billing periods are calendar months in UTC. At the end of each month (the first instant
  of the next one) the month's consumption is invoiced: the monthly price for a whole
  month, prorated by time for a partial one (activation or cancellation mid-month),
  rounded half up to the minor unit.
- An invoice's period is the part of the month it bills: it starts at the subscription's
  start (first invoice) or the month's start, and ends at the month's end or the
  cancellation (final invoice).
- A failed charge is retried up to ``retries`` times (default 3) with exponential backoff
  (default 1, 2 and 4 days); when every retry failed, the subscription is cancelled and the
  outstanding balance goes to collection.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import NamedTuple

from .catalogue import DAY
from .money import Money

#: The risk decision of a subscription sold while the gateway could not say whether its
#: payment method on file can be charged (the specification: defer payment, manual fallback).
PAYMENT_METHOD_UNVERIFIED = "PAYMENT_METHOD_UNVERIFIED_ALLOWED"


class MethodProblem(NamedTuple):
    kind: str     # the problem type: payment-refused (the gateway would refuse it), payment-declined
    reason: str


def method_on_file_problem(*, method_type: str, customer_id: str, found_type: str, owner: str | None,
                           expired: bool) -> MethodProblem | None:
    """Why a payment method the gateway holds cannot carry a post-paid subscription (None: it
    can): the month-end charge would be refused or declined whatever happens meanwhile."""
    if found_type != method_type:
        return MethodProblem("payment-refused", f"it is a {found_type} method, not {method_type}")
    if owner is not None and owner != customer_id:
        return MethodProblem("payment-refused", "it was stored for another customer")
    if expired:
        return MethodProblem("payment-declined", "the card has expired (EXPIRED_CARD)")
    return None


def month_start(t: float) -> float:
    d = datetime.fromtimestamp(t, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


def next_month_start(t: float) -> float:
    d = datetime.fromtimestamp(t, UTC)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime(y, m, 1, tzinfo=UTC).timestamp()


def billing_period(t: float) -> tuple[float, float]:
    """The calendar month (UTC) holding ``t``: [start, end)."""
    return month_start(t), next_month_start(t)


def prorate(monthly: Money, used: float, period: float) -> Money:
    """``monthly * used / period``, rounded half up to the minor unit."""
    if period <= 0 or used < 0 or used > period:
        raise ValueError(f"used {used} s must be within a positive period of {period} s")
    q = Fraction(monthly.minor) * Fraction(used) / Fraction(period)
    return Money(int(q + Fraction(1, 2)) if q >= 0 else -int(-q + Fraction(1, 2)), monthly.currency)


def invoice_period(period_start: float, active_from: float,
                   active_until: float | None = None) -> tuple[float, float]:
    """The span the invoice of the month starting at ``period_start`` covers: the month cut
    to the subscription's life, [``active_from``, ``active_until``). A subscription not yet
    started by the month's end (a late activation: nothing due) gets the whole month: a
    period always starts within its month, which is how a month's invoice is found."""
    start, end = _month(period_start)
    if active_until is not None:
        end = max(start, min(end, active_until))
    if active_from < end:
        start = max(start, active_from)
    return start, end


def _month(period_start: float) -> tuple[float, float]:
    start, end = billing_period(period_start)
    if start != period_start:
        raise ValueError("period_start must be the first instant of a month (UTC)")
    return start, end


def period_charge(monthly: Money, period_start: float, active_from: float,
                  active_until: float | None = None) -> Money:
    """What the month starting at ``period_start`` costs for a subscription active from
    ``active_from`` until ``active_until`` (None: still active at the month's end)."""
    start, end = _month(period_start)
    used_from = max(start, active_from)
    used_until = min(end, active_until) if active_until is not None else end
    if used_until <= used_from:
        return Money.zero(monthly.currency)
    if used_from == start and used_until == end:
        return monthly
    return prorate(monthly, used_until - used_from, end - start)


def final_charge(monthly: Money, active_from: float, cancelled_at: float) -> Money:
    """The partial month billed when a subscription is cancelled at ``cancelled_at``."""
    return period_charge(monthly, month_start(cancelled_at), active_from, cancelled_at)


@dataclass(frozen=True, slots=True)
class BillingDecision:
    retry_at: float | None
    cancel_subscription: bool
    open_collection: bool


@dataclass(frozen=True)
class BillingRetryPolicy:
    retries: int = 3
    backoff: tuple[float, ...] = (1 * DAY, 2 * DAY, 4 * DAY)

    def __post_init__(self) -> None:
        if type(self.retries) is not int or self.retries < 0:
            raise ValueError("retries must be a non-negative integer")
        if self.retries and (not self.backoff or any(d <= 0 for d in self.backoff)):
            raise ValueError("backoff needs positive delays")
        object.__setattr__(self, "backoff", tuple(float(d) for d in self.backoff))

    def after_failure(self, failures: int, failed_at: float) -> BillingDecision:
        """After the ``failures``-th failed charge of one invoice (1 = the month-end charge)."""
        if type(failures) is not int or failures < 1:
            raise ValueError("failures starts at 1")
        if failures > self.retries:
            return BillingDecision(None, cancel_subscription=True, open_collection=True)
        delay = self.backoff[min(failures, len(self.backoff)) - 1]
        return BillingDecision(failed_at + delay, cancel_subscription=False, open_collection=False)
