"""What a registry remembers of a registration, and the plan of its review."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import orjson

from ..kit.packed import packed


@dataclass(slots=True)
class Registration:
    id: str
    # The submission, updated by additional info, as JSON: a tree of dicts per registration
    # was half a dozen containers the garbage collector walked for as long as it was kept.
    submission: bytes
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

    @property
    def request(self) -> dict:
        """The submission, a fresh copy: a change is kept by writing it back (``keep``)."""
        return orjson.loads(self.submission)

    def keep(self, request: dict) -> None:
        self.submission = packed(request)

    @property
    def vin(self) -> str:
        return self.request["vehicle"]["vin"]

    @property
    def tax_id(self) -> str:
        return self.request["owner"]["taxId"]

    def entities(self) -> dict[str, str]:
        request = self.request
        out = {"registrationId": self.id, "vin": request["vehicle"]["vin"], "taxId": request["owner"]["taxId"],
               "dealership": request["purchase"]["dealership"]}
        if request.get("reference"):
            out["reference"] = request["reference"]
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    """When a review (or, synchronously, the certificate) completes."""
    business_days: int  # as published
    estimated: date     # the day it is due, as published
    due: float          # when it really happens (injected delays included)


def copy_request(body: dict) -> dict:
    """A private copy the model may update (additional info) without touching the caller's
    (a validated JSON body: a round trip through orjson is the fastest deep copy)."""
    return orjson.loads(orjson.dumps(body))


def apply_values(request: dict, values: dict) -> dict:
    """Supplied values (``owner.driverLicense``...) written into the submission."""
    for name, value in values.items():
        section, key = name.split(".")
        request[section][key] = value
    return request
