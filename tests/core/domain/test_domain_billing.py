from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_core.domain.billing import (
    BillingRetryPolicy,
    billing_period,
    final_charge,
    invoice_period,
    month_start,
    next_month_start,
    period_charge,
    prorate,
)
from caas_core.domain.catalogue import DAY
from caas_core.domain.money import Money


def ts(*a):
    return datetime(*a, tzinfo=UTC).timestamp()


MONTHLY = Money(4_900, "EUR")


def test_calendar_months():
    assert billing_period(ts(2026, 1, 5, 8)) == (ts(2026, 1, 1), ts(2026, 2, 1))
    assert next_month_start(ts(2026, 12, 31, 23, 59)) == ts(2027, 1, 1)
    assert month_start(ts(2026, 2, 1)) == ts(2026, 2, 1)


def test_whole_and_partial_months():
    jan = ts(2026, 1, 1)
    assert period_charge(MONTHLY, jan, ts(2025, 11, 3)) == MONTHLY
    # active from the middle of January (day 16 of 31): 16/31 of the price
    assert period_charge(MONTHLY, jan, ts(2026, 1, 16)) == Money(round(4_900 * 16 / 31), "EUR")
    assert period_charge(MONTHLY, jan, ts(2026, 2, 3)) == Money(0, "EUR")
    assert final_charge(MONTHLY, ts(2025, 6, 1), ts(2026, 1, 11)) == Money(round(4_900 * 10 / 31), "EUR")
    with pytest.raises(ValueError):
        period_charge(MONTHLY, ts(2026, 1, 2), 0)


def test_an_invoice_period_is_the_month_cut_to_the_subscriptions_life():
    jan, feb = ts(2026, 1, 1), ts(2026, 2, 1)
    started = ts(2026, 1, 5, 8)
    assert invoice_period(jan, started) == (started, feb)  # the first invoice: from the start
    assert invoice_period(feb, started) == (feb, ts(2026, 3, 1))  # then whole months
    cancelled = ts(2026, 2, 14, 8)
    assert invoice_period(feb, started, cancelled) == (feb, cancelled)  # the final one: to the cancellation
    assert invoice_period(jan, started, ts(2026, 1, 20)) == (started, ts(2026, 1, 20))
    # activated only after the month's end (nothing due): the whole month, found by its start
    assert invoice_period(jan, ts(2026, 2, 1, 0, 5)) == (jan, feb)
    with pytest.raises(ValueError):
        invoice_period(started, started)


@settings(max_examples=150, deadline=None)
@given(start=st.floats(ts(2025, 12, 1), ts(2026, 3, 1)), length=st.floats(1, 90 * DAY), price=st.integers(1, 10**6))
def test_the_amount_is_the_price_of_the_period(start, length, price):
    monthly = Money(price, "EUR")
    month = month_start(start)
    s, e = invoice_period(month, start, start + length)
    assert month <= s <= e <= next_month_start(month)
    whole = next_month_start(month) - month
    assert period_charge(monthly, month, start, start + length) == prorate(monthly, e - s, whole)


def test_prorate_rounds_half_up():
    assert prorate(Money(1, "EUR"), 1, 2) == Money(1, "EUR")
    assert prorate(Money(3, "EUR"), 1, 2) == Money(2, "EUR")
    with pytest.raises(ValueError):
        prorate(MONTHLY, 2, 1)


def test_charge_retries_then_cancellation_and_collection():
    p = BillingRetryPolicy()
    assert p.after_failure(1, 0).retry_at == DAY
    assert p.after_failure(2, 0).retry_at == 2 * DAY
    assert p.after_failure(3, 0).retry_at == 4 * DAY
    last = p.after_failure(4, 0)
    assert last.retry_at is None and last.cancel_subscription and last.open_collection


@settings(max_examples=150, deadline=None)
@given(start=st.floats(ts(2025, 1, 1), ts(2027, 1, 1)), split=st.floats(0, 1), price=st.integers(1, 10**6))
def test_a_month_split_in_two_costs_the_month_give_or_take_a_cent(start, split, price):
    monthly = Money(price, "EUR")
    s, e = billing_period(start)
    cut = s + (e - s) * split
    before = period_charge(monthly, s, s - 1, cut)
    after = period_charge(monthly, s, cut)
    assert abs((before + after).minor - price) <= 1
    assert 0 <= before.minor <= price and 0 <= after.minor <= price
