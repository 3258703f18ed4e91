"""The national registration authorities (``contracts/registry-{es,fr,de,uk}.yaml``, one API
shape): a registration as they answer it, and the UK's ``registrationStatus`` webhook."""

from __future__ import annotations

from typing import Any, Literal

from .base import Wire, read

RegistrationStatus = Literal["REGISTRATION_INITIATED", "UNDER_REVIEW", "APPROVED", "ADDITIONAL_INFO_REQUIRED",
                             "REJECTED", "PLATE_ASSIGNED"]


class InfoRequest(Wire):
    field: str  # each authority has its own vocabulary (owner.driverLicense, documents.CERFA_13750 ...)
    description: str


class RequiredInfo(Wire):
    fields: list[InfoRequest]
    requestedAt: str


class Rejection(Wire):
    code: Literal["DOCUMENTS_INVALID", "OWNER_DEBTS", "VEHICLE_ALREADY_REGISTERED", "VEHICLE_REPORTED_STOLEN",
                  "TYPE_APPROVAL_MISMATCH", "INSURANCE_NOT_VALID", "OTHER"]
    reason: str


class RegistrationReport(Wire):
    """What an authority reports of a registration, in an answer or (UK) a webhook."""
    registrationId: str
    status: RegistrationStatus
    plateNumber: str | None = None
    requiredInfo: RequiredInfo | None = None
    rejection: Rejection | None = None

    @property
    def estimated_completion(self) -> str | None:
        """The day the current review is due, as published (None: not said)."""
        return None


class Registration(RegistrationReport):
    """``POST /registrations``, ``GET /registrations/{id}``, ``POST .../additional-info``."""
    authority: str
    estimatedCompletionDate: str | None = None

    @property
    def estimated_completion(self) -> str | None:
        return self.estimatedCompletionDate


class RegistrationStatusEvent(RegistrationReport):
    """The UK's ``registrationStatus`` webhook."""


def parse_event(body: Any) -> RegistrationStatusEvent:
    """A ``registrationStatus`` body; ``Unusable`` when it is not one."""
    return read(RegistrationStatusEvent, body, "registrationStatus")


__all__ = ["Registration", "RegistrationReport", "RegistrationStatusEvent", "parse_event"]
