"""What every registry shares: the registration's statuses and moves, the magic values, and
``Country``, everything one national registry does differently (the model does the rest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time
from enum import StrEnum
from typing import Any

from .plates import PlateIssuer

#: The status callbacks' delivery faults (simulators/kit/delivery_faults.py), for asynchronous registries.
CALLBACK_FAULTS = {"lost": "callback_lost", "duplicated": "callback_duplicated", "delayed": "callback_delayed",
                   "reordered": "webhook_reordered"}

class Method(StrEnum):
    SYNCHRONOUS = "SYNCHRONOUS"
    SEMI_AUTOMATED = "SEMI_AUTOMATED"
    ASYNCHRONOUS = "ASYNCHRONOUS"


INITIATED, UNDER_REVIEW, APPROVED = "REGISTRATION_INITIATED", "UNDER_REVIEW", "APPROVED"
INFO_REQUIRED, REJECTED, PLATE_ASSIGNED = "ADDITIONAL_INFO_REQUIRED", "REJECTED", "PLATE_ASSIGNED"
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({INITIATED}),
    INITIATED: frozenset({UNDER_REVIEW}),
    UNDER_REVIEW: frozenset({APPROVED, INFO_REQUIRED, REJECTED}),
    INFO_REQUIRED: frozenset({UNDER_REVIEW}),
    APPROVED: frozenset({PLATE_ASSIGNED}),
    REJECTED: frozenset(),
    PLATE_ASSIGNED: frozenset(),
}
STATUSES = tuple(s for s in TRANSITIONS if s is not None)

REJECTION_CODES = ("DOCUMENTS_INVALID", "OWNER_DEBTS", "VEHICLE_ALREADY_REGISTERED", "VEHICLE_REPORTED_STOLEN",
                   "TYPE_APPROVAL_MISMATCH", "INSURANCE_NOT_VALID", "OTHER")
#: Data fields an authority may ask for besides documents (``documents.<TYPE>``).
VALUE_FIELDS = ("owner.driverLicense", "owner.dateOfBirth", "vehicle.typeApprovalNumber")
_DESCRIPTIONS = {
    "owner.driverLicense": "The owner's driving licence number",
    "owner.dateOfBirth": "The owner's date of birth",
    "vehicle.typeApprovalNumber": "The EU whole-vehicle type-approval number of the certificate of conformity",
}
#: What the magic "additional info" tax id is asked for, once.
MAGIC_INFO_FIELDS = ("documents.PROOF_OF_ADDRESS", "vehicle.typeApprovalNumber")
MAGIC_BEHAVIOURS = ("additional_info", "rejected", "unavailable", "slow")
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
STATUS_EVENT = "registrationStatus"  # the webhook of asynchronous registries
_METRIC_HP_PER_KW = 1.35962


def describe(name: str) -> str:
    """How an authority words its request for a field (``documents.<TYPE>`` or a value field)."""
    if name.startswith("documents."):
        return f"A {name.split('.', 1)[1].replace('_', ' ').lower()} document"
    return _DESCRIPTIONS.get(name, name)


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly maintenance window in local time (``until`` 00:00 means midnight)."""
    weekday: int
    start: time
    until: time

    def to_dict(self) -> dict:
        return {"weekday": WEEKDAYS[self.weekday], "from": self.start.strftime("%H:%M"),
                "until": self.until.strftime("%H:%M")}


def window(weekday: str, start: str, until: str) -> Window:
    try:
        day = WEEKDAYS.index(weekday.upper())
        begin, end = time.fromisoformat(start), time.fromisoformat(until)
    except (ValueError, AttributeError):
        raise ValueError(f"maintenance window {weekday} {start}-{until}: use a weekday name and HH:MM times") from None
    if end != time(0) and end <= begin:
        raise ValueError(f"maintenance window {weekday} {start}-{until} ends before it starts")
    return Window(day, begin, end)


@dataclass(frozen=True)
class Country:
    """Everything a registry does differently; the model does the rest."""
    code: str                         # ES, FR, DE, UK (ids, service names)
    iso: str                          # ISO 3166-1 alpha-2: ES, FR, DE, GB (addresses, views)
    service: str                      # registry-es ...
    authority: str
    method: Method
    processing_days: tuple[int, int]  # business days, inclusive range
    timezone: str
    document_types: tuple[str, ...]   # accepted document types (PROOF_OF_ADDRESS among them)
    required_documents: tuple[str, ...]
    registration_document: str        # what PLATE_ASSIGNED issues
    check_tax_id: Callable[[str, str], str | None]            # (owner type, tax id) -> error
    check_owner: Callable[[dict], list[tuple[str, str]]]      # country rules on the request -> (field, error)
    check_value: Callable[[str, Any, dict], str | None]       # a supplied info value -> error
    holidays: Callable[[int], frozenset[date]]
    magic_tax_ids: dict[str, str]     # tax id -> one of MAGIC_BEHAVIOURS
    magic_rejection: tuple[str, str]  # (code, reason) of the magic rejection
    maintenance: tuple[Window, ...]
    manual_submission: dict[str, str]
    plates: Callable[[int, dict], PlateIssuer]                # (seed, options) -> issuer
    document_number: Callable[[int], str] = lambda n: f"{n % 10**12:012d}"
