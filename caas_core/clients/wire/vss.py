"""VSS, the vehicle service system (``contracts/vss.yaml``): a vehicle's maintenance status."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Wire

BlockCode = Literal["POWERTRAIN", "SUSPENSION_STEERING", "BRAKES", "ELECTRONICS", "CLIMATE_CONTROL", "DRIVETRAIN"]
BlockName = Literal["Powertrain", "Suspension & Steering", "Brakes", "Electronics", "Climate Control", "Drivetrain"]


class BlockCompliance(Wire):
    code: BlockCode
    name: BlockName
    compliancePercent: int = Field(ge=0, le=100)


class Warranty(Wire):
    status: Literal["ACTIVE", "EXPIRED"]
    expiredBy: Literal["TIME", "MILEAGE"] | None
    maintenanceRisk: bool


class MaintenanceStatus(Wire):
    """``GET /vehicles/{vin}/maintenance-status``."""
    vin: str
    blocks: list[BlockCompliance]
    warranty: Warranty
