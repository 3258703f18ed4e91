"""After the final OTA failure: reconcile with the vehicle, open a support ticket, refund.

Specification: "ALL_RETRIES_FAILED -> GET_VEHICLE_STATUS (query vehicle state proactively)
-> SEND_TO_TECH_SUPPORT (create support ticket) -> REFUND_CUSTOMER + NOTIFY_CUSTOMER
(email + push)"; "Critical: customer never pays for undelivered service".

``resolve_final_failure`` takes the body of the IoT ``GET /vehicles/{vin}/status`` (or the
error that prevented it) and returns the plan. If the vehicle reports the service
``ACTIVE`` (the activation did happen, e.g. its callback was lost), the service was
delivered after all: the purchase becomes ``ACTIVATED``, no refund, no ticket, the
success notice goes out. Otherwise: ``ALL_ATTEMPTS_FAILED``, a ticket carrying the
vehicle's diagnostics (``SupportTicket.diagnostics``), a full refund
(``refunds.undelivered_refund``) and the failure notice by email and push. The plan also
says how the feature ends off on the vehicle (``FinalFailurePlan.switch_off``): confirmed
off when the vehicle reports the service ERROR or not listed, nothing to switch off when
no attempt ever reached it and its status could not be read, else a deactivation (the
vehicle may still apply an attempt: PENDING).

``resolve_final_deactivation_failure`` does the same after a deactivation's last failure:
the vehicle reporting the service off settles it; otherwise a ticket with the vehicle's
diagnostics (the customer no longer pays for a service the vehicle still runs).
``out_of_step_ticket`` is the ticket for a purchase ACTIVE in the core that the vehicle
reports ERROR or does not list.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .catalogue import ServiceOffer
from .money import Money
from .notifications import NoticeKind
from .ota_policy import VEHICLE_ABSENT, VEHICLE_NOT_RUNNING, ActivationProgress
from .purchase import PurchaseEvent
from .refunds import RefundDecision, undelivered_refund


class Priority(StrEnum):
    NORMAL = "NORMAL"
    HIGH = "HIGH"


@dataclass(frozen=True, slots=True)
class VehicleCheck:
    """What the vehicle status says about one service."""
    service_status: str | None          # ACTIVE | PENDING | ERROR | None (not listed)
    connectivity: str | None
    last_seen: str | None
    firmware_version: str | None
    network_signal_strength: int | None
    error_codes: tuple[str, ...]
    installed_features: tuple[str, ...] | None

    @property
    def service_active(self) -> bool:
        return self.service_status == "ACTIVE"

    @property
    def on_vehicle(self) -> str:
        """ACTIVE | PENDING | ERROR as the vehicle lists the service, ABSENT when not listed."""
        return self.service_status or VEHICLE_ABSENT

    @property
    def feature_off(self) -> bool:
        """The vehicle does not run the service: not listed, or ERROR (its configuration did not take)."""
        return self.on_vehicle in VEHICLE_NOT_RUNNING


@dataclass(frozen=True, slots=True)
class SupportTicket:
    category: str
    priority: Priority
    purchase_id: str
    vin: str
    service_id: str
    opened_at: float
    summary: str
    attempts: int
    last_error: str | None
    failure_reason: str
    vehicle_status_error: str | None
    connectivity: str | None
    last_seen: str | None
    firmware_version: str | None
    network_signal_strength: int | None
    error_codes: tuple[str, ...]
    missing_features: tuple[str, ...]
    service_status_on_vehicle: str | None

    def diagnostics(self) -> dict[str, Any]:
        """The ticket's ``diagnostics`` (contracts/core.yaml, ``OtaFailureDiagnostics``): flat, so
        support reads the vehicle's state (null where its status could not be read, the
        reason in ``vehicleStatusError``) next to the OTA history, whatever the IoT's own shape."""
        return {
            "connectivity": self.connectivity, "lastSeen": self.last_seen,
            "firmwareVersion": self.firmware_version, "networkSignalStrength": self.network_signal_strength,
            "errorCodes": list(self.error_codes), "serviceStatusOnVehicle": self.service_status_on_vehicle,
            "missingFeatures": list(self.missing_features), "vehicleStatusError": self.vehicle_status_error,
            "attempts": self.attempts, "lastError": self.last_error, "priority": self.priority.value,
        }


class Resolution(StrEnum):
    DELIVERED = "DELIVERED"        # the vehicle reports the service active: no refund
    UNDELIVERED = "UNDELIVERED"    # refund in full, ticket, notify


class SwitchOff(StrEnum):
    """How an undelivered service ends off on the vehicle."""
    CONFIRMED = "CONFIRMED"        # the vehicle reports it ERROR or does not list it
    NOT_NEEDED = "NOT_NEEDED"      # no attempt reached the vehicle (and its status is unknown)
    DEACTIVATE = "DEACTIVATE"      # it may run it (PENDING, or unknown after an attempt): deactivate


@dataclass(frozen=True, slots=True)
class FinalFailurePlan:
    resolution: Resolution
    purchase_event: PurchaseEvent
    ticket: SupportTicket | None
    refund: RefundDecision | None
    notices: tuple[NoticeKind, ...]
    switch_off: SwitchOff | None = None   # None when delivered


def check_vehicle(vehicle_status: Mapping[str, Any] | None, service_id: str) -> VehicleCheck | None:
    """Read the IoT ``VehicleStatus`` body (None if absent or unreadable)."""
    if not isinstance(vehicle_status, Mapping):
        return None
    services = vehicle_status.get("activeServices")
    status = None
    if isinstance(services, list):
        for s in services:
            if isinstance(s, Mapping) and s.get("serviceId") == service_id:
                status = s.get("status") if isinstance(s.get("status"), str) else None
    diag = vehicle_status.get("diagnostics")
    diag = diag if isinstance(diag, Mapping) else {}
    codes = diag.get("errorCodes")
    installed = diag.get("installedFeatures")
    signal = diag.get("networkSignalStrength")
    return VehicleCheck(
        service_status=status,
        connectivity=_str(vehicle_status.get("connectivity")),
        last_seen=_str(vehicle_status.get("lastSeen")),
        firmware_version=_str(diag.get("firmwareVersion")),
        network_signal_strength=signal if type(signal) is int else None,
        error_codes=tuple(c for c in codes if isinstance(c, str)) if isinstance(codes, list) else (),
        installed_features=tuple(f for f in installed if isinstance(f, str)) if isinstance(installed, list) else None,
    )


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def support_ticket(
    *,
    purchase_id: str,
    vin: str,
    offer: ServiceOffer,
    progress: ActivationProgress,
    failure_reason: str,
    vehicle: VehicleCheck | None,
    vehicle_status_error: str | None,
    opened_at: float,
    category: str = "OTA_ACTIVATION_FAILED",
    headline: str | None = None,
    priority: Priority | None = None,
) -> SupportTicket:
    """A ticket with the vehicle's diagnostics; ``headline`` replaces the activation's
    "OTA activation of ... failed" opening of the summary (other escalations)."""
    missing: tuple[str, ...] = ()
    if vehicle is not None and vehicle.installed_features is not None:
        missing = tuple(f for f in offer.feature_flags if f not in vehicle.installed_features)
    online = vehicle is not None and vehicle.connectivity == "ONLINE"
    if priority is None:
        priority = Priority.HIGH if (online or missing) else Priority.NORMAL
    where = (f"vehicle {vehicle.connectivity}" if vehicle is not None and vehicle.connectivity
             else f"vehicle status unavailable ({vehicle_status_error or 'unreadable'})")
    headline = headline or (f"OTA activation of {offer.service_id} failed on {vin} after "
                            f"{progress.vehicle_attempts} attempt(s)")
    summary = f"{headline}: {failure_reason}; {where}"
    if missing:
        summary += f"; features not installed: {', '.join(missing)}"
    return SupportTicket(
        category=category, priority=priority, purchase_id=purchase_id, vin=vin,
        service_id=offer.service_id, opened_at=opened_at, summary=summary,
        attempts=progress.vehicle_attempts, last_error=progress.last_error, failure_reason=failure_reason,
        vehicle_status_error=vehicle_status_error if vehicle is None else None,
        connectivity=vehicle.connectivity if vehicle else None,
        last_seen=vehicle.last_seen if vehicle else None,
        firmware_version=vehicle.firmware_version if vehicle else None,
        network_signal_strength=vehicle.network_signal_strength if vehicle else None,
        error_codes=vehicle.error_codes if vehicle else (),
        missing_features=missing,
        service_status_on_vehicle=vehicle.service_status if vehicle else None,
    )


def resolve_final_failure(
    *,
    purchase_id: str,
    vin: str,
    offer: ServiceOffer,
    progress: ActivationProgress,
    failure_reason: str,
    vehicle_status: Mapping[str, Any] | None,
    vehicle_status_error: str | None = None,
    charged: Money,
    already_refunded: Money,
    settlement_failed: bool = False,
    now: float,
) -> FinalFailurePlan:
    vehicle = check_vehicle(vehicle_status, offer.service_id)
    if vehicle is not None and vehicle.service_active:
        return FinalFailurePlan(Resolution.DELIVERED, PurchaseEvent.ACTIVATED, None, None,
                                (NoticeKind.SERVICE_ACTIVATED,))
    if vehicle is None and vehicle_status_error is None:
        vehicle_status_error = "no vehicle status"
    ticket = support_ticket(purchase_id=purchase_id, vin=vin, offer=offer, progress=progress,
                            failure_reason=failure_reason, vehicle=vehicle,
                            vehicle_status_error=vehicle_status_error, opened_at=now)
    refund = undelivered_refund(charged, already_refunded, settlement_failed=settlement_failed)
    if vehicle is not None:
        switch_off = SwitchOff.CONFIRMED if vehicle.feature_off else SwitchOff.DEACTIVATE
    else:
        switch_off = SwitchOff.NOT_NEEDED if progress.vehicle_attempts == 0 else SwitchOff.DEACTIVATE
    return FinalFailurePlan(Resolution.UNDELIVERED, PurchaseEvent.ALL_ATTEMPTS_FAILED, ticket, refund,
                            (NoticeKind.ACTIVATION_FAILED_REFUNDED,), switch_off)


@dataclass(frozen=True, slots=True)
class DeactivationFailurePlan:
    confirmed_off: bool            # the vehicle reports the service off after all: nothing more to do
    ticket: SupportTicket | None   # otherwise: support switches it off


def resolve_final_deactivation_failure(
    *,
    purchase_id: str,
    vin: str,
    offer: ServiceOffer,
    progress: ActivationProgress,
    failure_reason: str,
    purchase_state: str,
    vehicle_status: Mapping[str, Any] | None,
    vehicle_status_error: str | None = None,
    now: float,
) -> DeactivationFailurePlan:
    """After a deactivation's last failure: the vehicle's status settles it when it reports the
    service off; else a ticket with its diagnostics (the vehicle runs a service the customer
    no longer has, e.g. refunded)."""
    vehicle = check_vehicle(vehicle_status, offer.service_id)
    if vehicle is not None and vehicle.feature_off:
        return DeactivationFailurePlan(True, None)
    if vehicle is None and vehicle_status_error is None:
        vehicle_status_error = "no vehicle status"
    state = (f"still {vehicle.on_vehicle} on the vehicle" if vehicle is not None
             else "its state on the vehicle is unknown")
    ticket = support_ticket(
        purchase_id=purchase_id, vin=vin, offer=offer, progress=progress,
        failure_reason=f"{failure_reason}; the purchase is {purchase_state} and the service is {state}",
        vehicle=vehicle, vehicle_status_error=vehicle_status_error, opened_at=now,
        category="OTA_DEACTIVATION_FAILED", priority=Priority.HIGH,
        headline=(f"OTA deactivation of {offer.service_id} failed on {vin} after "
                  f"{progress.vehicle_attempts} attempt(s)"))
    return DeactivationFailurePlan(False, ticket)


def out_of_step_ticket(
    *,
    purchase_id: str,
    vin: str,
    offer: ServiceOffer,
    progress: ActivationProgress,
    reason: str,
    vehicle_status: Mapping[str, Any] | None,
    now: float,
) -> SupportTicket:
    """A purchase ACTIVE (delivered, and paid for) that the vehicle reports ERROR or does not list."""
    vehicle = check_vehicle(vehicle_status, offer.service_id)
    on_vehicle = vehicle.on_vehicle if vehicle is not None else "unknown"
    return support_ticket(
        purchase_id=purchase_id, vin=vin, offer=offer, progress=progress, failure_reason=reason,
        vehicle=vehicle, vehicle_status_error=None if vehicle is not None else "no vehicle status", opened_at=now,
        category="VEHICLE_OUT_OF_STEP", priority=Priority.HIGH,
        headline=f"{offer.service_id} is ACTIVE for the customer but {on_vehicle} on {vin}")
