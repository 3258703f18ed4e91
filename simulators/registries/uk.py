"""United Kingdom: Driver and Vehicle Licensing Agency (DVLA), asynchronous.

The application (V5C) is accepted at once (202); every later status change
(under review, additional information required, rejected, approved, plate
assigned) is sent as the signed ``registrationStatus`` webhook, 5-10 business
days after submission. Owners: National Insurance number (format and prefix
rules: it has no check digit) for individuals, VAT registration number
(mod 97) for companies; a driving licence number must encode the owner's date
of birth. Marks are ``AB12 CDE`` with the age identifier of the registration
date.

LIMITATIONS (besides those of ``model``):
- Business days skip the bank holidays of England and Wales (Scotland's and
  Northern Ireland's extra days are ignored; one-off holidays and moved May
  bank holidays too).
- Northern Ireland (BT), Channel Islands (GY, JE) and Isle of Man (IM)
  addresses are refused: their marks are not issued in the GB format.
- The memory tag's region comes from the postcode area (an approximation of
  DVLA's tables); the office letter is the area's, picked from the seed.
- VAT numbers: the 9-digit standard form only (no branch traders, no GD/HA).
- No Vehicle Excise Duty, first registration fee or MOT.
"""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from ..kit.config import SimConfig
from . import taxids
from .api import create_registry_app
from .business_days import easter
from .plates import UkPlates
from .vocabulary import Country, Method, window

NAME = "registry-uk"
CONTRACT = "registry-uk.yaml"

DOCUMENT_TYPES = ("V5C_APPLICATION", "INSURANCE_CERTIFICATE", "CERTIFICATE_OF_CONFORMITY", "PROOF_OF_ADDRESS",
                  "ID_DOCUMENT")


def bank_holidays(year: int) -> frozenset[date]:
    """England and Wales: a holiday on a weekend moves to the next free weekday."""
    may = [date(year, 5, d) for d in range(1, 32)]
    august = [date(year, 8, d) for d in range(1, 32)]
    days = {easter(year) - timedelta(days=2), easter(year) + timedelta(days=1),
            next(d for d in may if d.weekday() == 0),            # early May
            [d for d in may if d.weekday() == 0][-1],            # spring
            [d for d in august if d.weekday() == 0][-1]}         # summer
    for fixed in (date(year, 1, 1), date(year, 12, 25), date(year, 12, 26)):
        while fixed.weekday() >= 5 or fixed in days:
            fixed += timedelta(days=1)
        days.add(fixed)
    return frozenset(days)


def _licence_problem(value: str, request: dict) -> str | None:
    born = request["owner"].get("dateOfBirth")
    return taxids.check_uk_driving_licence(value, date.fromisoformat(born) if born else None)


def _check_owner(body: dict) -> list[tuple[str, str]]:
    licence = body["owner"].get("driverLicense")
    problem = _licence_problem(licence, body) if licence else None
    return [("owner.driverLicense", problem)] if problem else []


def _check_value(name: str, value, request: dict) -> str | None:
    return _licence_problem(value, request) if name == "owner.driverLicense" else None


COUNTRY = Country(
    code="UK", iso="GB", service=NAME, authority="Driver and Vehicle Licensing Agency (DVLA)",
    method=Method.ASYNCHRONOUS, processing_days=(5, 10), timezone="Europe/London", document_types=DOCUMENT_TYPES,
    required_documents=("V5C_APPLICATION", "INSURANCE_CERTIFICATE"), registration_document="V5C",
    check_tax_id=taxids.check_uk, check_owner=_check_owner, check_value=_check_value, holidays=bank_holidays,
    magic_tax_ids={"AA000001A": "additional_info", "AA000002A": "rejected", "AA000003A": "unavailable",
                   "AA000004A": "slow"},
    magic_rejection=("DOCUMENTS_INVALID", "The keeper details of the V5C application do not match DVLA records"),
    maintenance=(window("SUNDAY", "02:00", "06:00"),),
    manual_submission={"channel": "Postal application to DVLA, Swansea (form V55/4 or V55/5)",
                       "url": "https://www.gov.uk/contact-the-dvla"},
    plates=lambda seed, options: UkPlates(seed),
    document_number=lambda n: f"{n % 10**11:011d}",  # a V5C document reference number has 11 digits
)


def create_app(config: SimConfig) -> web.Application:
    return create_registry_app(config, COUNTRY, CONTRACT)
