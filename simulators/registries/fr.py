"""France: Agence Nationale des Titres Sécurisés (ANTS), SIV, synchronous.

As a professional habilitated in the SIV does it, the submission's answer
carries the decision and, when approved, the SIV number; the certificat
d'immatriculation is issued, and the registration becomes PLATE_ASSIGNED,
3-7 business days later. Owners: numéro fiscal (SPI, 13 digits with its
3-digit key) for individuals, SIREN or SIRET (Luhn) for companies.

LIMITATIONS (besides those of ``model``):
- Business days skip the national holidays (Easter Monday, Ascension and Whit
  Monday included; Alsace-Moselle's extra days not).
- The regional tax (taxe régionale, Y.1 of the certificate) and the malus are
  not computed.
- No provisional WW registration and no CPI (certificat provisoire): the
  definitive number is given at approval.
- Plates continue the national series from ``plate_start`` (default
  ``HA-001-AA``, illustrative of the 2026 series).
"""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from ..kit.config import SimConfig
from . import taxids
from .api import create_registry_app
from .business_days import easter
from .plates import FrancePlates
from .vocabulary import Country, Method, window

NAME = "registry-fr"
CONTRACT = "registry-fr.yaml"

DOCUMENT_TYPES = ("CERTIFICAT_CONFORMITE", "PROOF_OF_PURCHASE", "CERFA_13750", "MANDAT_IMMATRICULATION",
                  "PROOF_OF_ADDRESS", "ID_DOCUMENT")


def national_holidays(year: int) -> frozenset[date]:
    fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)]
    sunday = easter(year)
    movable = [sunday + timedelta(days=d) for d in (1, 39, 50)]  # Easter Monday, Ascension, Whit Monday
    return frozenset([date(year, m, d) for m, d in fixed] + movable)


COUNTRY = Country(
    code="FR", iso="FR", service=NAME, authority="Agence Nationale des Titres Sécurisés (ANTS)",
    method=Method.SYNCHRONOUS, processing_days=(3, 7), timezone="Europe/Paris", document_types=DOCUMENT_TYPES,
    required_documents=("CERTIFICAT_CONFORMITE", "PROOF_OF_PURCHASE"),
    registration_document="CERTIFICAT_IMMATRICULATION",
    check_tax_id=taxids.check_fr, check_owner=lambda body: [], check_value=lambda name, value, request: None,
    holidays=national_holidays,
    magic_tax_ids={"0000000001001": "additional_info", "0000000002002": "rejected", "0000000003003": "unavailable",
                   "0000000004004": "slow"},
    magic_rejection=("TYPE_APPROVAL_MISMATCH",
                     "The certificate of conformity does not match the vehicle's EU type approval"),
    maintenance=(window("SUNDAY", "00:00", "06:00"),),
    manual_submission={"channel": "Through another professional habilitated in the SIV, or the ANTS online "
                                  "procedure", "url": "https://immatriculation.ants.gouv.fr"},
    plates=lambda seed, options: FrancePlates(options.get("plate_start", "HA-001-AA")),
)


def create_app(config: SimConfig) -> web.Application:
    return create_registry_app(config, COUNTRY, CONTRACT)
