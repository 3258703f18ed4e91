import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_core.domain.money import CURRENCIES, CurrencyMismatch, Money

currencies = st.sampled_from(CURRENCIES)
minors = st.integers(min_value=-10**12, max_value=10**12)
monies = st.builds(Money, minors, currencies)


def test_construction_refuses_floats_bools_and_unknown_currencies():
    with pytest.raises(TypeError):
        Money(19.99, "EUR")
    with pytest.raises(TypeError):
        Money(10.0, "EUR")
    with pytest.raises(TypeError):
        Money(True, "EUR")
    with pytest.raises(ValueError):
        Money(100, "JPY")
    assert Money(4999, "EUR").minor == 4999


def test_arithmetic_and_comparisons():
    a, b = Money(4999, "EUR"), Money(1, "EUR")
    assert a + b == Money(5000, "EUR")
    assert a - b == Money(4998, "EUR")
    assert -a == Money(-4999, "EUR")
    assert 3 * b == b * 3 == Money(3, "EUR")
    assert b < a and a > b and a >= Money(4999, "EUR") and b <= Money(1, "EUR")
    assert (b - a).clamp_zero() == Money.zero("EUR")
    assert Money.total([a, b, b], "EUR") == Money(5001, "EUR")
    assert Money.total([], "GBP") == Money(0, "GBP")


def test_mixed_currencies_and_non_money_are_refused():
    with pytest.raises(CurrencyMismatch):
        Money(1, "EUR") + Money(1, "USD")
    with pytest.raises(CurrencyMismatch):
        _ = Money(1, "EUR") < Money(2, "GBP")
    with pytest.raises(TypeError):
        Money(1, "EUR") + 1
    with pytest.raises(TypeError):
        sum([Money(1, "EUR")])  # 0 + Money
    with pytest.raises(TypeError):
        Money(1, "EUR") * 1.5
    assert Money(1, "EUR") != Money(1, "USD")


def test_parse_json_and_str():
    assert Money.parse("49.99", "EUR") == Money(4999, "EUR")
    assert Money.parse("49.9", "EUR") == Money(4990, "EUR")
    assert Money.parse("1299", "GBP") == Money(129900, "GBP")
    assert Money.parse("-0.05", "USD") == Money(-5, "USD")
    for bad in ("49.999", "4,99", "", "abc"):
        with pytest.raises(ValueError):
            Money.parse(bad, "EUR")
    with pytest.raises(TypeError):
        Money.parse(49.99, "EUR")
    m = Money(129900, "EUR")
    assert m.to_json() == {"value": 129900, "currency": "EUR"}
    assert Money.from_json(m.to_json()) == m
    with pytest.raises(ValueError):
        Money.from_json({"value": 1, "currency": "EUR", "extra": 1})
    with pytest.raises(TypeError):
        Money.from_json({"value": 19.99, "currency": "EUR"})
    assert str(m) == "1,299.00 EUR"
    assert str(Money(-5, "USD")) == "-0.05 USD"


@settings(max_examples=200, deadline=None)
@given(monies, monies)
def test_money_never_mixes_currencies(a, b):
    if a.currency == b.currency:
        assert (a + b).currency == a.currency
        assert (a + b) - b == a
        assert (a < b) == (a.minor < b.minor)
    else:
        for op in (lambda: a + b, lambda: a - b, lambda: a < b, lambda: a >= b):
            with pytest.raises(CurrencyMismatch):
                op()


@settings(max_examples=100, deadline=None)
@given(st.lists(minors, max_size=20), currencies)
def test_total_is_the_sum_of_minor_units(values, currency):
    assert Money.total([Money(v, currency) for v in values], currency).minor == sum(values)


@settings(max_examples=100, deadline=None)
@given(monies)
def test_json_and_parse_round_trip(m):
    assert Money.from_json(m.to_json()) == m
    sign = "-" if m.minor < 0 else ""
    units, cents = divmod(abs(m.minor), 100)
    assert Money.parse(f"{sign}{units}.{cents:02d}", m.currency) == m
