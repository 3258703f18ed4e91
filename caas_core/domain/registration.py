"""Registering a sold vehicle with its country's authority: the data, the documents, the decisions.

Per country (specification, Country-Specific Implementations): Spain (DGT) and France
(ANTS) answer synchronously, Germany (KBA) is semi-automated (accepted, then decided by a
clerk: we poll), the UK (DVLA) is asynchronous (decided later by webhook; we also poll
once after the published date in case a callback never comes).

The registration's status is the authority's (``REGISTRATION_INITIATED``, ``UNDER_REVIEW``,
``APPROVED``, ``ADDITIONAL_INFO_REQUIRED``, ``REJECTED``, ``PLATE_ASSIGNED``) plus CaaS's own
fallbacks: ``INVALID_DATA`` (the authority refused the data: dealership staff correct and
resubmit), ``MANUAL_SUBMISSION`` (the API stayed unavailable after the retries: documents
prepared for submission by hand, staff alerted) and ``CANCELLED``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

#: The documents each authority requires (specification's table), as the contracts name them.
#: One row per country the core registers in (its registry client comes from the service
#: catalogue's row of that country). Every authority is polled after its published date; the
#: UK's also sends webhooks.
REQUIRED_DOCUMENTS = {
    "ES": ("PURCHASE_CONTRACT", "TECHNICAL_SPECS"),
    "FR": ("CERTIFICAT_CONFORMITE", "PROOF_OF_PURCHASE"),
    "DE": ("FAHRZEUGBRIEF", "INSURANCE_PROOF"),
    "GB": ("V5C_APPLICATION", "INSURANCE_CERTIFICATE"),
}
COUNTRIES = tuple(REQUIRED_DOCUMENTS)

#: Transient submission failures retried before falling back to manual submission.
SUBMISSION_RETRIES = 3
SUBMISSION_BACKOFF = (60.0, 300.0, 900.0)


class RegStatus(StrEnum):
    NOT_STARTED = "NOT_STARTED"
    REGISTRATION_INITIATED = "REGISTRATION_INITIATED"
    UNDER_REVIEW = "UNDER_REVIEW"
    APPROVED = "APPROVED"
    ADDITIONAL_INFO_REQUIRED = "ADDITIONAL_INFO_REQUIRED"
    REJECTED = "REJECTED"
    PLATE_ASSIGNED = "PLATE_ASSIGNED"
    INVALID_DATA = "INVALID_DATA"
    MANUAL_SUBMISSION = "MANUAL_SUBMISSION"
    CANCELLED = "CANCELLED"


#: Waiting on the authority: poll (or wait for the UK's webhook).
PENDING = frozenset({RegStatus.REGISTRATION_INITIATED, RegStatus.UNDER_REVIEW, RegStatus.APPROVED})
#: Waiting on dealership staff: they supply info, correct and resubmit, or cancel.
NEEDS_STAFF = frozenset({RegStatus.ADDITIONAL_INFO_REQUIRED, RegStatus.REJECTED, RegStatus.INVALID_DATA,
                         RegStatus.MANUAL_SUBMISSION})
#: Statuses the authority reports, in the order they can follow each other.
_ORDER = {RegStatus.REGISTRATION_INITIATED: 0, RegStatus.UNDER_REVIEW: 1, RegStatus.ADDITIONAL_INFO_REQUIRED: 2,
          RegStatus.APPROVED: 3, RegStatus.REJECTED: 4, RegStatus.PLATE_ASSIGNED: 4}


def is_newer(current: str, reported: str) -> bool:
    """An authority's report moves the registration only forward (a late APPROVED after
    PLATE_ASSIGNED changes nothing); ADDITIONAL_INFO_REQUIRED -> UNDER_REVIEW is the loop."""
    cur, new = RegStatus(current), RegStatus(reported)
    if cur not in _ORDER:  # our own statuses: only a fresh submission moves them
        return cur is RegStatus.NOT_STARTED
    if cur is RegStatus.ADDITIONAL_INFO_REQUIRED and new is RegStatus.UNDER_REVIEW:
        return True
    return _ORDER.get(new, -1) > _ORDER[cur]


@dataclass(frozen=True, slots=True)
class Spec:
    """A model's technical data sheet, as CaaS holds it for the registration documents."""
    make: str
    name: str
    engine: str           # PETROL | DIESEL | ELECTRIC | HYBRID (the registries' vocabulary)
    emissions: int        # g/km CO2 (WLTP); 0 only for ELECTRIC
    kw: int
    weight: int           # kg
    type_approval: str    # EU whole-vehicle type approval

    @property
    def hp(self) -> int:
        return round(self.kw * 1.36)  # metric horsepower


MAKE = "Caas Motors"
SPECS = {
    "AURORA-GT": Spec(MAKE, "Aurora GT", "PETROL", 198, 250, 1580, "e9*2018/858*00101*01"),
    "BOREALIS": Spec(MAKE, "Borealis", "HYBRID", 121, 165, 1840, "e9*2018/858*00102*01"),
    "CIRRUS": Spec(MAKE, "Cirrus", "PETROL", 128, 96, 1240, "e9*2018/858*00103*01"),
    "NIMBUS": Spec(MAKE, "Nimbus", "DIESEL", 131, 140, 1610, "e9*2018/858*00104*01"),
    "STRATOS": Spec(MAKE, "Stratos", "HYBRID", 32, 185, 1790, "e9*2018/858*00105*01"),
    "VELA-CROSS": Spec(MAKE, "Vela Cross", "HYBRID", 109, 150, 1660, "e9*2018/858*00106*01"),
    "ZEPHYR-EV": Spec(MAKE, "Zephyr EV", "ELECTRIC", 0, 150, 1720, "e9*2018/858*00107*01"),
    "ORION": Spec(MAKE, "Orion", "DIESEL", 139, 120, 1650, "e9*2018/858*00099*01"),
}

#: The factory's option codes (contracts/factory.yaml, OptionCode): a sale names only these.
OPTION_CODES = frozenset({
    "PAINT-POLAR-WHITE",
    "PAINT-MIDNIGHT-BLACK",
    "PAINT-VOLCANO-RED",
    "PAINT-GLACIER-BLUE",
    "PAINT-TITANIUM-GREY",
    "WHEELS-17",
    "WHEELS-18",
    "WHEELS-19",
    "WHEELS-20",
    "INTERIOR-CLOTH",
    "INTERIOR-LEATHER",
    "INTERIOR-VEGAN",
    "TOWBAR",
    "PANORAMIC-ROOF",
    "HEAT-PUMP",
    "SPORT-SEATS",
    "HEAD-UP-DISPLAY",
    "ROOF-RAILS",
    "SPARE-WHEEL",
})

_PAINT_NAMES = {"POLAR-WHITE": "White", "MIDNIGHT-BLACK": "Black", "VOLCANO-RED": "Red",
                "GLACIER-BLUE": "Blue", "TITANIUM-GREY": "Grey"}


def colour(options: list[str]) -> str:
    for option in options:
        if option.startswith("PAINT-"):
            return _PAINT_NAMES.get(option.removeprefix("PAINT-"), option.removeprefix("PAINT-").title())
    return "White"  # the standard paint when none is chosen


def documents(country: str, sale_id: str, extra: tuple[str, ...] = ()) -> list[dict]:
    """The documents CaaS prepares for the authority: references to files it keeps."""
    docs = []
    for kind in (*REQUIRED_DOCUMENTS[country], *extra):
        # the German insurance proof is the eVB number: 7 upper-case letters and digits
        reference = _evb(sale_id) if kind == "INSURANCE_PROOF" else f"caas:{sale_id}:{kind.lower()}"
        docs.append({"type": kind, "reference": reference})
    return docs


def _evb(sale_id: str) -> str:
    digits = "".join(c for c in sale_id.upper() if c.isalnum())[-6:].rjust(6, "0")
    return f"E{digits}"


def request(sale: dict, vin: str, now: float, extra_documents: tuple[str, ...] = ()) -> dict:
    """The registration request (the specification's Registration Data Requirements)."""
    customer, country = sale["customer"], sale["country"]
    spec = SPECS[sale["model"]]
    owner = {"type": customer.get("type", "INDIVIDUAL"), "name": _full_name(customer), "taxId": customer["taxId"],
             "address": {"street": customer["address"]["line1"], "city": customer["address"]["city"],
                         "postalCode": customer["address"]["postalCode"], "country": country}}
    if owner["type"] == "INDIVIDUAL":
        owner["dateOfBirth"] = customer["dateOfBirth"]
    if customer.get("driverLicense"):
        owner["driverLicense"] = customer["driverLicense"]
    day = datetime.fromtimestamp(now, UTC).date().isoformat()
    return {
        "reference": sale["id"],
        "vehicle": {"vin": vin, "make": spec.make, "model": spec.name, "year": int(day[:4]),
                    "engineType": spec.engine, "emissions": spec.emissions, "power": {"kw": spec.kw, "hp": spec.hp},
                    "weight": spec.weight, "color": colour(sale["options"]), "typeApprovalNumber": spec.type_approval},
        "owner": owner,
        "purchase": {"date": day, "price": {"amount": sale["price_minor"], "currency": sale["currency"]},
                     "dealership": sale["dealership_id"], "invoice": f"INV-{sale['id']}"},
        "insurance": {"provider": sale["insurance"]["provider"], "policyNumber": sale["insurance"]["policyNumber"],
                      "validFrom": min(sale["insurance"]["validFrom"], day)},
        "documents": documents(country, sale["id"], extra_documents),
    }


def _full_name(customer: dict) -> str:
    return customer.get("companyName") or f"{customer['firstName']} {customer['lastName']}"


def additional_info(sale_id: str, country: str, fields: list[str], supplied: dict) -> dict:
    """The answer to ADDITIONAL_INFO_REQUIRED: the documents asked for (CaaS prepares them)
    and the values staff supplied."""
    docs = [f.removeprefix("documents.") for f in fields if f.startswith("documents.")]
    body: dict = {}
    if docs:
        body["documents"] = documents(country, sale_id, tuple(docs))[len(REQUIRED_DOCUMENTS[country]):]
    values = {f: supplied[f] for f in fields if not f.startswith("documents.") and f in supplied}
    if values:
        body["values"] = values
    return body


def missing_values(fields: list[str], supplied: dict) -> list[str]:
    return [f for f in fields if not f.startswith("documents.") and f not in supplied]
