"""Stored payment methods and the gateway's test cards.

A stored method is a token (``pm_...``) for a card or a bank account; the card
number and CVC are never kept (only brand, last four digits and expiry), as a
PCI-scoped vault would do. Test cards work like public gateways' test modes:
a well-known token (``pm_card_visa``...) or card number (``4242...``) forces
an outcome without any admin call. This module only says which behaviour a
method has; the model applies it.

LIMITATIONS (where this knowingly differs from a real vault):
- Brands are told from the first digits only (Visa 4, Mastercard 51-55 and
  2221-2720, American Express 34/37); other networks are refused.
- A card is valid through the last day of its expiry month in UTC, not in the
  issuer's time zone. There is no account updater: an expired card stays expired.
- A bank account is checked by IBAN checksum only (no bank directory, no mandate).
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, datetime

CARD, BANK_TRANSFER = "CARD", "BANK_TRANSFER"

# Behaviours (what a test card or test account forces).
SUCCESS = "success"
DECLINED = "declined"                      # authorization: GENERIC_DECLINE
INSUFFICIENT_FUNDS = "insufficient_funds"  # authorization: INSUFFICIENT_FUNDS (stores fine)
EXPIRED = "expired"                        # authorization: EXPIRED_CARD
LOST = "lost"                              # authorization: LOST_CARD
STOLEN = "stolen"                          # authorization: STOLEN_CARD
CHARGE_FAILS = "charge_fails"              # stores fine, every charge: DO_NOT_HONOR
SETTLEMENT_FAILS = "settlement_fails"      # authorised; settlement FAILED INSUFFICIENT_FUNDS
CHARGEBACK = "chargeback"                  # settles, then a chargeback
REVERSAL = "reversal"                      # settles, then FAILED BANK_REVERSAL
REFUND_FAILS = "refund_fails"              # every refund FAILED CARD_CLOSED
ACCOUNT_CLOSED = "account_closed"          # bank: settlement FAILED ACCOUNT_CLOSED

#: Behaviours that fail the zero-amount verification done when a card is stored.
VERIFICATION_DECLINES = {DECLINED: "GENERIC_DECLINE", EXPIRED: "EXPIRED_CARD", LOST: "LOST_CARD",
                         STOLEN: "STOLEN_CARD"}
#: Behaviours that decline every authorization, with the reason.
AUTHORIZATION_DECLINES = {**VERIFICATION_DECLINES, INSUFFICIENT_FUNDS: "INSUFFICIENT_FUNDS",
                          CHARGE_FAILS: "DO_NOT_HONOR"}

#: Card number -> behaviour. Any other valid number of a supported brand succeeds.
TEST_CARD_NUMBERS: dict[str, str] = {
    "4242424242424242": SUCCESS,
    "5555555555554444": SUCCESS,
    "378282246310005": SUCCESS,
    "4000000000000002": DECLINED,
    "4000000000009995": INSUFFICIENT_FUNDS,
    "4000000000000069": EXPIRED,
    "4000000000009987": LOST,
    "4000000000009979": STOLEN,
    "4000000000000341": CHARGE_FAILS,
    "4000000000007700": SETTLEMENT_FAILS,
    "4000000000000259": CHARGEBACK,
    "4000000000007809": REVERSAL,
    "4000000000005126": REFUND_FAILS,
}

#: IBAN -> behaviour. Any other valid IBAN succeeds.
TEST_IBANS: dict[str, str] = {
    "DE89370400440532013000": SUCCESS,
    "DE41370400440000000001": SETTLEMENT_FAILS,
    "DE14370400440000000002": ACCOUNT_CLOSED,
}


@dataclass(frozen=True, slots=True)
class StoredMethod:
    token: str
    type: str  # CARD | BANK_TRANSFER
    behaviour: str
    created: float
    customer_id: str | None = None
    brand: str | None = None
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None
    country: str | None = None
    holder_name: str | None = None

    @property
    def expires_at(self) -> float | None:
        """The first instant the card is no longer valid (start of the month after its expiry)."""
        if self.exp_year is None or self.exp_month is None:
            return None
        return card_expiry(self.exp_month, self.exp_year)

    def expired(self, now: float) -> bool:
        expiry = self.expires_at
        return expiry is not None and now >= expiry

    def view(self, now: float) -> dict:
        card = bank = None
        if self.type == CARD:
            card = {"brand": self.brand, "last4": self.last4, "expMonth": self.exp_month, "expYear": self.exp_year}
        else:
            bank = {"country": self.country, "last4": self.last4, "holderName": self.holder_name}
        return {"token": self.token, "type": self.type, "customerId": self.customer_id, "card": card,
                "bankAccount": bank, "expired": self.expired(now)}


# ----------------------------------------------------------------- validation

def luhn_valid(number: str) -> bool:
    if not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand(number: str) -> str | None:
    """VISA | MASTERCARD | AMEX, or None for a network this gateway does not accept."""
    if number.startswith("4") and len(number) in (13, 16, 19):
        return "VISA"
    if len(number) == 16 and (51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720):
        return "MASTERCARD"
    if len(number) == 15 and number[:2] in ("34", "37"):
        return "AMEX"
    return None


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check (the shape is the contract's business)."""
    if len(iban) < 15 or not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


@functools.lru_cache(maxsize=1024)  # asked on every charge; cards expire in few distinct months
def card_expiry(month: int, year: int) -> float:
    """Start of the month after (month, year), UTC: when a card expiring then stops working."""
    last_day = calendar.monthrange(year, month)[1]
    end = datetime(year, month, last_day, tzinfo=UTC).timestamp()
    return end + 86400.0


# ----------------------------------------------------------------- test tokens

def _card(token: str, number: str, month: int, year: int) -> StoredMethod:
    return StoredMethod(token, CARD, TEST_CARD_NUMBERS[number], 0.0, brand=card_brand(number), last4=number[-4:],
                        exp_month=month, exp_year=year)


def _bank(token: str, iban: str) -> StoredMethod:
    return StoredMethod(token, BANK_TRANSFER, TEST_IBANS[iban], 0.0, last4=iban[-4:], country=iban[:2],
                        holder_name="Test Account Holder")


#: The test tokens, usable by any customer without storing anything first.
TEST_TOKENS: dict[str, StoredMethod] = {m.token: m for m in (
    _card("pm_card_visa", "4242424242424242", 12, 2034),
    _card("pm_card_mastercard", "5555555555554444", 12, 2034),
    _card("pm_card_amex", "378282246310005", 12, 2034),
    _card("pm_card_declined", "4000000000000002", 12, 2034),
    _card("pm_card_insufficient_funds", "4000000000009995", 12, 2034),
    # Expired by its date (12/2023), whatever the clock: the general expiry rule declines it.
    StoredMethod("pm_card_expired", CARD, SUCCESS, 0.0, brand="VISA", last4="0069", exp_month=12, exp_year=2023),
    _card("pm_card_lost", "4000000000009987", 12, 2034),
    _card("pm_card_stolen", "4000000000009979", 12, 2034),
    _card("pm_card_charge_fails", "4000000000000341", 12, 2034),
    _card("pm_card_settlement_fails", "4000000000007700", 12, 2034),
    _card("pm_card_chargeback", "4000000000000259", 12, 2034),
    _card("pm_card_settled_then_reversed", "4000000000007809", 12, 2034),
    _card("pm_card_refund_fails", "4000000000005126", 12, 2034),
    _bank("pm_bank_sepa", "DE89370400440532013000"),
    _bank("pm_bank_insufficient_funds", "DE41370400440000000001"),
    _bank("pm_bank_account_closed", "DE14370400440000000002"),
)}
