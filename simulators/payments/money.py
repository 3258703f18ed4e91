"""Money as integer minor units and an ISO 4217 currency; never floats."""

from __future__ import annotations

#: Minor-unit exponent of every currency the gateway accepts.
EXPONENTS = {"EUR": 2, "USD": 2, "GBP": 2}


def money(value: int, currency: str) -> dict:
    return {"value": value, "currency": currency}


def fmt(value: int, currency: str) -> str:
    """``1999, "EUR"`` -> ``"19.99 EUR"`` for error details people read."""
    exp = EXPONENTS[currency]
    sign = "-" if value < 0 else ""
    units, cents = divmod(int(abs(value)), 10**exp)  # 37325.0 is a JSON integer too: no 500 on it
    return f"{sign}{units}.{cents:0{exp}d} {currency}" if exp else f"{sign}{units} {currency}"


def fee(amount: int, basis_points: int, fixed: int) -> int:
    """A processing fee of ``basis_points``/10000 of ``amount`` (half up) plus ``fixed``, never above ``amount``."""
    proportional = (amount * basis_points + 5000) // 10000
    return min(amount, proportional + fixed)
