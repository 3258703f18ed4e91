"""Spain: Dirección General de Tráfico (DGT), synchronous.

The submission's answer carries the decision (APPROVED with the plate, or
ADDITIONAL_INFO_REQUIRED, or REJECTED); the permiso de circulación is issued,
and the registration becomes PLATE_ASSIGNED, 2-5 business days later.
Owners: DNI or NIE (control letter) for individuals, CIF for companies.

LIMITATIONS (besides those of ``model``):
- Business days skip the national holidays only (Good Friday included,
  Maundy Thursday and regional holidays not).
- The registration tax (modelo 576) and the vehicle tax (IVTM) are documents
  at most: nothing is computed or checked.
- A driving licence number, when given, must be the holder's DNI/NIE (as
  Spanish licences are numbered); foreign licences are not modelled.
- Plates continue the national series from ``plate_start`` (default
  ``0000 NDB``, illustrative of the 2026 series); no special series
  (historic, trade, diplomatic).
"""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from ..kit.config import SimConfig
from . import taxids
from .api import create_registry_app
from .business_days import easter
from .plates import SpainPlates
from .vocabulary import Country, Method, window

NAME = "registry-es"
CONTRACT = "registry-es.yaml"

DOCUMENT_TYPES = ("PURCHASE_CONTRACT", "TECHNICAL_SPECS", "REGISTRATION_TAX_576", "PROOF_OF_ADDRESS",
                  "ID_DOCUMENT", "POWER_OF_ATTORNEY")


def national_holidays(year: int) -> frozenset[date]:
    fixed = [(1, 1), (1, 6), (5, 1), (8, 15), (10, 12), (11, 1), (12, 6), (12, 8), (12, 25)]
    return frozenset([date(year, m, d) for m, d in fixed] + [easter(year) - timedelta(days=2)])


def _licence_problem(value: str, request: dict) -> str | None:
    if request["owner"]["type"] == "INDIVIDUAL" and value != request["owner"]["taxId"]:
        return "a Spanish driving licence is numbered with the holder's DNI/NIE (the owner's taxId)"
    return None


def _check_owner(body: dict) -> list[tuple[str, str]]:
    licence = body["owner"].get("driverLicense")
    problem = _licence_problem(licence, body) if licence else None
    return [("owner.driverLicense", problem)] if problem else []


def _check_value(name: str, value, request: dict) -> str | None:
    return _licence_problem(value, request) if name == "owner.driverLicense" else None


COUNTRY = Country(
    code="ES", iso="ES", service=NAME, authority="Dirección General de Tráfico (DGT)", method=Method.SYNCHRONOUS,
    processing_days=(2, 5), timezone="Europe/Madrid", document_types=DOCUMENT_TYPES,
    required_documents=("PURCHASE_CONTRACT", "TECHNICAL_SPECS"), registration_document="PERMISO_CIRCULACION",
    check_tax_id=taxids.check_es, check_owner=_check_owner, check_value=_check_value, holidays=national_holidays,
    magic_tax_ids={"00000001R": "additional_info", "00000002W": "rejected", "00000003A": "unavailable",
                   "00000004G": "slow"},
    magic_rejection=("OWNER_DEBTS", "The owner has unpaid traffic fines recorded with the DGT"),
    maintenance=(window("SUNDAY", "01:00", "05:00"),),
    manual_submission={"channel": "In person at a Jefatura Provincial de Tráfico (cita previa) or through a "
                                  "gestor administrativo", "url": "https://sede.dgt.gob.es"},
    plates=lambda seed, options: SpainPlates(options.get("plate_start", "0000 NDB")),
)


def create_app(config: SimConfig) -> web.Application:
    return create_registry_app(config, COUNTRY, CONTRACT)
