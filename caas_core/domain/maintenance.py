"""Maintenance gating of a purchase: may this vehicle buy this service now?

``assess(offer, vss_status, vss_error=...)`` applies the specification's rules to the
JSON of the VSS ``GET /vehicles/{vin}/maintenance-status`` (``contracts/vss.yaml``):

- A service with no requirement is always allowed (VSS need not be queried: ``needs_vss``).
- Each required block must be **at least** its threshold (``compliancePercent >= min_pct``);
  otherwise the purchase is refused and the message tells the customer which blocks to
  service, their compliance and the threshold. CaaS cannot force maintenance: it only
  refuses new maintenance-dependent services (no retroactive blocking lives here).
- VSS unavailable (5xx, 429, timeout, connection error, unreadable answer): the purchase is
  allowed without the check and the risk decision is recorded (``VSS_UNAVAILABLE_ALLOWED``),
  per the specification's failure analysis ("Allow service purchase, skip maintenance
  check, log risk decision"; VSS availability target 95%).
- VSS answers 404 (vehicle unknown to VSS): judged the same way as unavailability (VSS
  cannot answer for this vehicle; it is a data gap, not evidence of poor maintenance), with
  its own risk decision ``VSS_VEHICLE_UNKNOWN_ALLOWED`` so that it can be audited apart.
- Warnings (shown whether the purchase is allowed or refused): the warranty has expired;
  the warranty is at risk (``maintenanceRisk``: a service is overdue). When VSS could not
  answer, a warning says that maintenance could not be verified.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .blocks import Block
from .catalogue import ServiceOffer

#: ``vss_error`` values the core's VSS client may pass (any other string means unavailable).
VSS_UNAVAILABLE = "unavailable"      # 5xx, 429, connection refused or reset
VSS_TIMEOUT = "timeout"
VSS_NOT_FOUND = "not_found"          # 404: the vehicle is not registered in VSS
VSS_INVALID = "invalid_response"     # an answer that does not have the contract's shape

RISK_VSS_UNAVAILABLE = "VSS_UNAVAILABLE_ALLOWED"
RISK_VSS_VEHICLE_UNKNOWN = "VSS_VEHICLE_UNKNOWN_ALLOWED"


class Verdict(StrEnum):
    ALLOWED = "ALLOWED"                  # requirements met (or none)
    ALLOWED_UNVERIFIED = "ALLOWED_UNVERIFIED"  # VSS could not answer: allowed, risk recorded
    REFUSED = "REFUSED"                  # a required block is below its threshold


class WarningCode(StrEnum):
    WARRANTY_EXPIRED = "WARRANTY_EXPIRED"
    MAINTENANCE_RISK = "MAINTENANCE_RISK"
    MAINTENANCE_UNVERIFIED = "MAINTENANCE_UNVERIFIED"


@dataclass(frozen=True, slots=True)
class Shortfall:
    block: Block
    actual_pct: int
    required_pct: int

    def describe(self) -> str:
        return f"{self.block.display_name} (compliance {self.actual_pct}%, {self.required_pct}% required)"


@dataclass(frozen=True, slots=True)
class PurchaseWarning:
    code: WarningCode
    message: str


@dataclass(frozen=True, slots=True)
class Eligibility:
    verdict: Verdict
    shortfalls: tuple[Shortfall, ...] = ()
    message: str = ""
    warnings: tuple[PurchaseWarning, ...] = ()
    risk_decision: str | None = None
    risk_reason: str | None = None
    #: Compliance of every block VSS reported (empty when VSS was not consulted or failed).
    compliance: Mapping[Block, int] | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.REFUSED

    @property
    def refused(self) -> bool:
        return self.verdict is Verdict.REFUSED

    @property
    def warning_codes(self) -> tuple[WarningCode, ...]:
        return tuple(w.code for w in self.warnings)


class InvalidVssStatus(ValueError):
    """The VSS answer lacks what the contract promises (blocks, percentages, warranty)."""


def needs_vss(offer: ServiceOffer) -> bool:
    """Whether the purchase of ``offer`` must query VSS (it is maintenance-dependent)."""
    return offer.maintenance_dependent


def parse_compliance(vss_status: Mapping[str, Any]) -> dict[Block, int]:
    """Compliance percent per block from a ``MaintenanceStatus`` body."""
    blocks = vss_status.get("blocks") if isinstance(vss_status, Mapping) else None
    if not isinstance(blocks, list):
        raise InvalidVssStatus("maintenance status has no 'blocks' list")
    out: dict[Block, int] = {}
    for entry in blocks:
        if not isinstance(entry, Mapping):
            raise InvalidVssStatus(f"block entry is not an object: {entry!r}")
        ref = entry.get("code", entry.get("name"))
        try:
            block = Block.parse(ref)
        except ValueError as e:
            raise InvalidVssStatus(str(e)) from None
        pct = entry.get("compliancePercent")
        if type(pct) is not int or not 0 <= pct <= 100:
            raise InvalidVssStatus(f"{block.display_name}: compliancePercent {pct!r} is not an integer 0-100")
        out[block] = pct
    return out


def warranty_warnings(vss_status: Mapping[str, Any]) -> tuple[PurchaseWarning, ...]:
    warranty = vss_status.get("warranty") if isinstance(vss_status, Mapping) else None
    if not isinstance(warranty, Mapping):
        return ()
    warnings: list[PurchaseWarning] = []
    if warranty.get("status") == "EXPIRED":
        by = warranty.get("expiredBy")
        why = {"TIME": "its time limit", "MILEAGE": "its mileage limit"}.get(by, "")
        warnings.append(PurchaseWarning(
            WarningCode.WARRANTY_EXPIRED,
            "The manufacturer's warranty of this vehicle has expired"
            + (f" ({why} was reached)" if why else "") + ".",
        ))
    if warranty.get("maintenanceRisk") is True:
        warnings.append(PurchaseWarning(
            WarningCode.MAINTENANCE_RISK,
            "A scheduled maintenance service is overdue: insufficient maintenance may void the "
            "warranty. Book a service at an official or approved workshop.",
        ))
    return tuple(warnings)


def refusal_message(offer: ServiceOffer, shortfalls: tuple[Shortfall, ...]) -> str:
    parts = "; ".join(s.describe() for s in shortfalls)
    noun = "block" if len(shortfalls) == 1 else "blocks"
    return (f"{offer.name} cannot be purchased yet: complete the scheduled maintenance of the "
            f"{noun} {parts} at an official or approved workshop to unlock this service.")


def assess(
    offer: ServiceOffer,
    vss_status: Mapping[str, Any] | None,
    *,
    vss_error: str | None = None,
) -> Eligibility:
    """The eligibility of ``offer`` given VSS's answer (``vss_status``) or failure (``vss_error``)."""
    if not offer.maintenance_dependent:
        return Eligibility(
            Verdict.ALLOWED,
            message=f"{offer.name} has no maintenance requirement.",
            warnings=warranty_warnings(vss_status) if isinstance(vss_status, Mapping) else (),
        )

    compliance: dict[Block, int] | None = None
    if vss_error is None and vss_status is not None:
        try:
            compliance = parse_compliance(vss_status)
            missing = [r.block for r in offer.requirements if r.block not in compliance]
            if missing:
                raise InvalidVssStatus(f"no compliance reported for {', '.join(b.display_name for b in missing)}")
        except InvalidVssStatus as e:
            vss_error = f"{VSS_INVALID}: {e}"
            compliance = None
    elif vss_error is None:
        vss_error = VSS_UNAVAILABLE

    if compliance is None:
        assert vss_error is not None
        unknown = vss_error == VSS_NOT_FOUND
        return Eligibility(
            Verdict.ALLOWED_UNVERIFIED,
            message=(f"{offer.name} is available. The maintenance status of this vehicle could not "
                     "be verified at this time."),
            warnings=(PurchaseWarning(
                WarningCode.MAINTENANCE_UNVERIFIED,
                "The maintenance status could not be checked. Keep the vehicle's scheduled maintenance "
                "up to date: it protects your warranty and your safety.",
            ),),
            risk_decision=RISK_VSS_VEHICLE_UNKNOWN if unknown else RISK_VSS_UNAVAILABLE,
            risk_reason=vss_error,
        )

    assert vss_status is not None
    shortfalls = tuple(
        Shortfall(r.block, compliance[r.block], r.min_pct)
        for r in offer.requirements
        if compliance[r.block] < r.min_pct
    )
    warnings = warranty_warnings(vss_status)
    if shortfalls:
        return Eligibility(Verdict.REFUSED, shortfalls, refusal_message(offer, shortfalls),
                           warnings, compliance=compliance)
    return Eligibility(Verdict.ALLOWED, (), f"{offer.name} is available for this vehicle.",
                       warnings, compliance=compliance)
