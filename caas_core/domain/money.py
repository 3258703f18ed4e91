"""Money: an integer number of minor units (cents, pence) and an ISO 4217 currency.

Never a float: constructing ``Money`` from a float (or a bool) raises ``TypeError``;
arithmetic and comparisons between different currencies raise ``CurrencyMismatch``.
The JSON form is the payment contract's ``{"value": 4999, "currency": "EUR"}``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

Currency = Literal["EUR", "USD", "GBP"]
CURRENCIES: tuple[str, ...] = get_args(Currency)
#: Every accepted currency has two decimal places.
MINOR_DIGITS = 2

_DECIMAL = re.compile(r"^(-)?(\d+)(?:\.(\d{1,2}))?$")


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined or compared."""


@dataclass(frozen=True, slots=True)
class Money:
    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        if type(self.minor) is not int:  # bool and float are refused
            raise TypeError(f"Money.minor must be an int of minor units, not {type(self.minor).__name__}")
        if self.currency not in CURRENCIES:
            raise ValueError(f"unsupported currency {self.currency!r} (accepted: {', '.join(CURRENCIES)})")

    # construction -------------------------------------------------------------------------
    @classmethod
    def zero(cls, currency: Currency) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, amount: str, currency: Currency) -> Money:
        """``Money.parse("49.99", "EUR")``: a decimal *string* (at most two decimals)."""
        if not isinstance(amount, str):
            raise TypeError("Money.parse takes a decimal string, never a float")
        m = _DECIMAL.match(amount.strip())
        if m is None:
            raise ValueError(f"not a decimal amount with at most {MINOR_DIGITS} decimals: {amount!r}")
        sign, units, cents = m.groups()
        minor = int(units) * 100 + int((cents or "0").ljust(MINOR_DIGITS, "0"))
        return cls(-minor if sign else minor, currency)

    @classmethod
    def from_json(cls, data: Any) -> Money:
        """From the contracts' ``{"value": int, "currency": str}``."""
        if not isinstance(data, dict) or set(data) != {"value", "currency"}:
            raise ValueError(f"expected {{'value': int, 'currency': str}}, got {data!r}")
        return cls(data["value"], data["currency"])

    def to_json(self) -> dict[str, Any]:
        return {"value": self.minor, "currency": self.currency}

    @staticmethod
    def total(amounts: Iterable[Money], currency: Currency) -> Money:
        """The sum of ``amounts`` (zero in ``currency`` when empty); all must be in ``currency``."""
        result = Money.zero(currency)
        for amount in amounts:
            result = result + amount
        return result

    # arithmetic ---------------------------------------------------------------------------
    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __mul__(self, factor: object) -> Money:
        if type(factor) is not int:
            return NotImplemented
        return Money(self.minor * factor, self.currency)

    __rmul__ = __mul__

    # comparisons (equality is the dataclass's: different currencies are simply unequal) ---
    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    @property
    def is_zero(self) -> bool:
        return self.minor == 0

    @property
    def is_positive(self) -> bool:
        return self.minor > 0

    @property
    def is_negative(self) -> bool:
        return self.minor < 0

    def clamp_zero(self) -> Money:
        """``self`` or zero, whichever is greater (e.g. what is left to refund)."""
        return self if self.minor > 0 else Money.zero(self.currency)

    def __str__(self) -> str:
        sign = "-" if self.minor < 0 else ""
        units, cents = divmod(abs(self.minor), 100)
        return f"{sign}{units:,}.{cents:02d} {self.currency}"
