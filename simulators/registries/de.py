"""Germany: Kraftfahrt-Bundesamt (KBA) and the local Zulassungsbehörde, semi-automated.

The submission (i-Kfz style) is accepted at once (202); a clerk of the
registration office processes it by hand and decides after 1-3 business days.
Nothing is called back: the caller polls ``GET /registrations/{id}``.
Owners: Steuer-IdNr (MOD 11,10 and the digit-repetition rule) for
individuals, USt-IdNr for companies. The insurance proof is the eVB number.

LIMITATIONS (besides those of ``model``):
- Business days skip the nationwide holidays only (no Land holidays such as
  Epiphany or Corpus Christi).
- The district (Unterscheidungszeichen) comes from a table of large cities,
  else from the postcode's Leitzone (first digit) to the largest city of the
  zone; no Wunschkennzeichen, no seasonal or historic plates.
- Electric vehicles get the E suffix (EmoG) unless ``e_plates: false``; plug-in
  hybrids never do (the engine types do not tell them apart).
- The vehicle tax SEPA mandate is a document the clerk may ask for, never
  required by default; the Kfz-Steuer is not computed.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from aiohttp import web

from ..kit.config import SimConfig
from . import taxids
from .api import create_registry_app
from .business_days import easter
from .plates import GermanPlates
from .vocabulary import Country, Method, window

NAME = "registry-de"
CONTRACT = "registry-de.yaml"

DOCUMENT_TYPES = ("FAHRZEUGBRIEF", "INSURANCE_PROOF", "SEPA_MANDATE", "CERTIFICATE_OF_CONFORMITY",
                  "PROOF_OF_ADDRESS", "ID_DOCUMENT")
#: An eVB (elektronische Versicherungsbestätigung) number: 7 letters and digits.
EVB = re.compile(r"[A-Z0-9]{7}")


def national_holidays(year: int) -> frozenset[date]:
    fixed = [(1, 1), (5, 1), (10, 3), (12, 25), (12, 26)]
    sunday = easter(year)
    movable = [sunday + timedelta(days=d) for d in (-2, 1, 39, 50)]  # Good Friday ... Whit Monday
    return frozenset([date(year, m, d) for m, d in fixed] + movable)


def _check_owner(body: dict) -> list[tuple[str, str]]:
    for document in body.get("documents", []):
        if document["type"] == "INSURANCE_PROOF" and not EVB.fullmatch(document["reference"]):
            return [("documents", (f"INSURANCE_PROOF {document['reference']!r} is not an eVB number "
                                  "(7 upper-case letters and digits)"))]
    return []


COUNTRY = Country(
    code="DE", iso="DE", service=NAME, authority="Kraftfahrt-Bundesamt (KBA)", method=Method.SEMI_AUTOMATED,
    processing_days=(1, 3), timezone="Europe/Berlin", document_types=DOCUMENT_TYPES,
    required_documents=("FAHRZEUGBRIEF", "INSURANCE_PROOF"), registration_document="ZULASSUNGSBESCHEINIGUNG_TEIL_I",
    check_tax_id=taxids.check_de, check_owner=_check_owner, check_value=lambda name, value, request: None,
    holidays=national_holidays,
    magic_tax_ids={"12345678911": "additional_info", "12345678920": "rejected", "12345678938": "unavailable",
                   "12345678946": "slow"},
    magic_rejection=("OWNER_DEBTS", "Kfz-Steuerrückstände: the owner is in arrears with vehicle tax"),
    maintenance=(window("SATURDAY", "22:00", "00:00"), window("SUNDAY", "00:00", "06:00")),
    manual_submission={"channel": "In person at the local Zulassungsbehörde (Straßenverkehrsamt)",
                       "url": "https://www.kba.de"},
    plates=lambda seed, options: GermanPlates(seed, bool(options.get("e_plates", True))),
)


def create_app(config: SimConfig) -> web.Application:
    return create_registry_app(config, COUNTRY, CONTRACT)
