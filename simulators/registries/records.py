"""What a registry remembers of a registration, and the plan of its review.

A registration is kept as bytes (``Registration.pack``: its plain values, marshalled),
which the garbage collector never walks: kept as objects (a registration, its history,
its required information), every full collection walked all of them, 21 ms a pass at
14,000 registrations, the p99 of a request. The model unpacks a registration to read or
change it, and packs it back when it is done (payments/records.py does the same).
"""

from __future__ import annotations

import sys
from dataclasses import InitVar, dataclass, field
from datetime import date
from typing import NamedTuple

import orjson

from ..kit.packed import packed
from ..kit.untracked import flag_of, flagged, flagged_values
from .vocabulary import PLATE_ASSIGNED, REJECTED

#: Statuses with no step ahead: a timer a registration left behind no longer changes it.
FINISHED = frozenset({PLATE_ASSIGNED, REJECTED})


@dataclass(slots=True)
class Registration:
    id: str
    body: InitVar[dict]  # the submission, kept by ``keep``
    correlation_id: str | None
    created: float
    updated: float = 0.0
    status: str | None = None
    history: list[dict] = field(default_factory=list)
    round: int = 0          # review rounds started; stale timers compare it
    info_rounds: int = 0    # additional-info requests answered
    processing_days: int | None = None
    estimated: date | None = None
    required_info: dict | None = None
    rejection: dict | None = None
    plate: str | None = None
    registration_date: date | None = None
    document: dict | None = None
    # The submission, updated by additional info, as JSON: a tree of dicts per registration
    # was half a dozen containers the garbage collector walked for as long as it was kept.
    submission: bytes = field(init=False)
    # The few strings of it every request reads (entities, views): decoding the whole
    # submission for each of them cost more than the rest of a request's model.
    vin: str = field(init=False)
    tax_id: str = field(init=False)
    owner_type: str = field(init=False)
    owner_name: str = field(init=False)
    dealership: str = field(init=False)
    reference: str | None = field(init=False)

    def __post_init__(self, body: dict) -> None:
        self.keep(body)

    @property
    def request(self) -> dict:
        """The submission, a fresh copy: a change is kept by writing it back (``keep``)."""
        return orjson.loads(self.submission)

    def keep(self, request: dict) -> None:
        self.submission = packed(request)
        owner = request["owner"]
        self.vin, self.tax_id, self.owner_name = request["vehicle"]["vin"], owner["taxId"], owner["name"]
        # Shared by many registrations (two owner types, a few dealerships): one copy each.
        self.owner_type, self.dealership = sys.intern(owner["type"]), sys.intern(request["purchase"]["dealership"])
        self.reference = request.get("reference")

    def pack(self) -> bytes:
        """The registration as marshalled plain values, its dates as ordinals, after a byte
        that says whether it is finished."""
        return flagged(self.status in FINISHED, (
            self.id, self.correlation_id, self.created, self.updated, self.status, self.history, self.round,
            self.info_rounds, self.processing_days, _ordinal(self.estimated), self.required_info, self.rejection,
            self.plate, _ordinal(self.registration_date), self.document, self.submission, self.vin, self.tax_id,
            self.owner_type, self.owner_name, self.dealership, self.reference))

    @classmethod
    def unpack(cls, packed: bytes) -> Registration:
        reg = cls.__new__(cls)  # not __init__: the strings it reads from the submission are among the values
        (reg.id, reg.correlation_id, reg.created, reg.updated, reg.status, reg.history, reg.round, reg.info_rounds,
         reg.processing_days, estimated, reg.required_info, reg.rejection, reg.plate, registration_date,
         reg.document, reg.submission, reg.vin, reg.tax_id, reg.owner_type, reg.owner_name, reg.dealership,
         reg.reference) = values(packed)
        reg.estimated, reg.registration_date = _date(estimated), _date(registration_date)
        return reg

    def entities(self) -> dict[str, str]:
        out = {"registrationId": self.id, "vin": self.vin, "taxId": self.tax_id, "dealership": self.dealership}
        if self.reference:
            out["reference"] = self.reference
        return out


#: Positions in a packed registration's values of what is read without building it: its
#: status (whether its VIN may be submitted again, whether it may be forgotten) and its VIN.
STATUS, VIN = 4, 16


finished, values = flag_of, flagged_values  # of a packed registration, without building it


def _ordinal(day: date | None) -> int | None:
    return None if day is None else day.toordinal()


def _date(ordinal: int | None) -> date | None:
    return None if ordinal is None else date.fromordinal(ordinal)


class Plan(NamedTuple):  # a tuple: a frozen dataclass costs more to build than the rest of a plan
    """When a review (or, synchronously, the certificate) completes."""
    business_days: int  # as published
    estimated: date     # the day it is due, as published
    due: float          # when it really happens (injected delays included)


def apply_values(request: dict, values: dict) -> dict:
    """Supplied values (``owner.driverLicense``...) written into the submission."""
    for name, value in values.items():
        section, key = name.split(".")
        request[section][key] = value
    return request
