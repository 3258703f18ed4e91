import pathlib

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_core.domain.catalogue import DAY, DurationType
from caas_core.domain.money import CurrencyMismatch, Money
from caas_core.domain.purchase import PurchaseEvent as E
from caas_core.domain.purchase import PurchaseState as S
from caas_core.domain.purchase import transition
from caas_core.domain.refunds import (
    WITHDRAWAL_WINDOW,
    RefundReason,
    WithdrawalOutcome,
    reversal_refund,
    undelivered_refund,
    withdrawal,
    within_withdrawal_window,
)

CONTRACTS = pathlib.Path(__file__).resolve().parents[3] / "contracts"
T0 = 1_767_600_000.0
PRICE = Money(9_900, "EUR")
ZERO = Money.zero("EUR")


def test_refund_reasons_are_the_payment_contracts():
    doc = yaml.safe_load((CONTRACTS / "payments.yaml").read_text())
    assert doc["components"]["schemas"]["RefundReason"]["enum"] == [r.value for r in RefundReason]


def test_withdrawal_within_14_days_refunds_in_full_and_deactivates():
    d = withdrawal(PRICE, T0, T0 + 3 * DAY, ZERO)
    assert d.outcome is WithdrawalOutcome.FULL_REFUND and d.within_window
    assert d.refund == PRICE and d.refund_due and d.reason is RefundReason.WITHDRAWAL
    assert d.deactivate and d.deactivate_at == T0 + 3 * DAY
    assert d.purchase_event is E.WITHDRAWN and transition(S.ACTIVE, d.purchase_event) is S.WITHDRAWN
    assert d.window_ends_at == T0 + 14 * DAY


def test_withdrawal_refunds_only_what_is_left():
    assert withdrawal(PRICE, T0, T0, Money(2_500, "EUR")).refund == Money(7_400, "EUR")
    assert withdrawal(PRICE, T0, T0, PRICE).refund == ZERO
    assert withdrawal(PRICE, T0, T0, Money(20_000, "EUR")).refund == ZERO


def test_one_time_service_after_14_days_is_refused():
    for d_type in (None, DurationType.PERMANENT, DurationType.TEMPORARY):
        d = withdrawal(PRICE, T0, T0 + 15 * DAY, ZERO, duration_type=d_type)
        assert d.outcome is WithdrawalOutcome.REFUSED and not d.within_window
        assert d.refund == ZERO and not d.deactivate and d.purchase_event is None


def test_subscription_after_14_days_is_cancelled_with_a_final_bill_and_no_refund():
    d = withdrawal(Money(4_900, "EUR"), T0, T0 + 40 * DAY, ZERO, duration_type="SUBSCRIPTION")
    assert d.outcome is WithdrawalOutcome.CANCELLED_NO_REFUND
    assert d.refund == ZERO and d.deactivate and d.final_billing and not d.waive_unbilled
    assert transition(S.ACTIVE, d.purchase_event) is S.CANCELLED


def test_subscription_within_14_days_waives_unbilled_usage():
    d = withdrawal(ZERO, T0, T0 + DAY, ZERO, duration_type=DurationType.SUBSCRIPTION)
    assert d.outcome is WithdrawalOutcome.FULL_REFUND and d.waive_unbilled and not d.final_billing
    assert d.refund == ZERO and not d.refund_due and "nothing was charged" in d.message


def test_withdrawal_guards():
    with pytest.raises(CurrencyMismatch):
        withdrawal(PRICE, T0, T0, Money(0, "USD"))
    with pytest.raises(ValueError):
        withdrawal(PRICE, T0, T0 - 1, ZERO)


@settings(max_examples=200, deadline=None)
@given(purchased_at=st.floats(0, 4e9), price=st.integers(1, 10**9), refunded=st.integers(0, 10**9))
def test_withdrawal_boundary(purchased_at, price, refunded):
    p, r = Money(price, "EUR"), Money(refunded, "EUR")
    inside = withdrawal(p, purchased_at, purchased_at + WITHDRAWAL_WINDOW - 1, r)
    outside = withdrawal(p, purchased_at, purchased_at + WITHDRAWAL_WINDOW + 1, r)
    assert inside.within_window and inside.refund == (p - r).clamp_zero() and inside.deactivate
    assert not outside.within_window and outside.refund.is_zero
    assert within_withdrawal_window(purchased_at, purchased_at + WITHDRAWAL_WINDOW)  # day 14 inclusive


def test_undelivered_refund_is_full():
    d = undelivered_refund(PRICE, ZERO)
    assert d.amount == PRICE and d.call_gateway and d.reason is RefundReason.OTA_ACTIVATION_FAILURE
    assert d.close_collection
    assert undelivered_refund(PRICE, Money(900, "EUR")).amount == Money(9_000, "EUR")


def test_undelivered_refund_of_unsettled_or_post_paid_payment_calls_nothing():
    d = undelivered_refund(PRICE, ZERO, settlement_failed=True)
    assert d.amount == ZERO and not d.call_gateway and d.close_collection
    d = undelivered_refund(ZERO, ZERO)  # subscription: nothing billed yet
    assert not d.call_gateway


def test_reservation_reversal_needs_review():
    d = reversal_refund(Money(50_000, "EUR"))
    assert d.requires_review and not d.call_gateway and d.reason is RefundReason.FINAL_PAYMENT_FAILURE


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**9), st.booleans())
def test_refunds_never_exceed_what_is_left(charged, refunded, failed):
    d = undelivered_refund(Money(charged, "GBP"), Money(refunded, "GBP"), settlement_failed=failed)
    assert 0 <= d.amount.minor <= max(0, charged - refunded)
    assert d.call_gateway == d.amount.is_positive
