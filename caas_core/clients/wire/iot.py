"""The API IoT (``contracts/iot.yaml``): what its OTA commands answer, a vehicle's status,
and the ``otaStatus`` callback."""

from __future__ import annotations

from typing import Any, Literal

from .base import Unusable, Wire, read

RequestStatus = Literal["QUEUED", "IN_PROGRESS", "COMPLETED", "FAILED"]
OtaErrorCode = Literal["VEHICLE_OFFLINE", "TIMEOUT", "ECU_ERROR", "CONFIG_REJECTED", "LOW_BATTERY",
                       "FEATURE_NOT_INSTALLED"]
CallbackStatus = Literal["ACTIVATED", "FAILED", "DEACTIVATED", "EXPIRED"]


class ActivationAccepted(Wire):
    """``POST /ota/activate`` and ``POST /ota/deactivate``, 202: the command is queued."""
    requestId: str
    status: RequestStatus


class ActiveService(Wire):
    serviceId: str
    status: Literal["ACTIVE", "PENDING", "ERROR"]


class Diagnostics(Wire):
    errorCodes: list[str]
    firmwareVersion: str
    networkSignalStrength: int
    installedFeatures: list[str]


class VehicleStatus(Wire):
    """``GET /vehicles/{vin}/status``."""
    vin: str
    connectivity: Literal["ONLINE", "OFFLINE", "LIMITED"]
    lastSeen: str
    model: str
    activeServices: list[ActiveService]
    diagnostics: Diagnostics


class OtaStatusCallback(Wire):
    """The ``otaStatus`` webhook: the outcome of an activation or a deactivation."""
    requestId: str
    vin: str
    serviceId: str
    status: CallbackStatus
    errorCode: OtaErrorCode | None = None


def parse_callback(body: Any) -> OtaStatusCallback:
    """An ``otaStatus`` body; ``Unusable`` when it is not one."""
    return read(OtaStatusCallback, body, "otaStatus")


__all__ = ["ActivationAccepted", "OtaStatusCallback", "Unusable", "VehicleStatus", "parse_callback"]
