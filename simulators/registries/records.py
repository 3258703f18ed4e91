"""What a registry remembers of a registration, and the plan of its review."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(slots=True)
class Registration:
    id: str
    request: dict           # the submission, updated by additional info
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
    def vin(self) -> str:
        return self.request["vehicle"]["vin"]

    @property
    def tax_id(self) -> str:
        return self.request["owner"]["taxId"]

    def entities(self) -> dict[str, str]:
        out = {"registrationId": self.id, "vin": self.vin, "taxId": self.tax_id,
               "dealership": self.request["purchase"]["dealership"]}
        if self.request.get("reference"):
            out["reference"] = self.request["reference"]
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    """When a review (or, synchronously, the certificate) completes."""
    business_days: int  # as published
    estimated: date     # the day it is due, as published
    due: float          # when it really happens (injected delays included)


def copy_request(body: dict) -> dict:
    """A private copy the model may update (additional info) without touching the caller's."""
    return {k: (copy_request(v) if isinstance(v, dict) else [dict(d) for d in v] if isinstance(v, list) else v)
            for k, v in body.items()}


def apply_values(request: dict, values: dict) -> dict:
    """Supplied values (``owner.driverLicense``...) written into the submission."""
    for name, value in values.items():
        section, key = name.split(".")
        request[section][key] = value
    return request
