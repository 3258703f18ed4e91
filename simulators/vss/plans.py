"""Official maintenance plans: what each functional block needs, and when it falls due.

A plan is a list of services, each in one functional block (the specification's
six: Powertrain, Suspension & Steering, Brakes, Electronics, Climate Control,
Drivetrain) and each due every ``every_days`` or every ``every_km``, whichever
comes first, counted from the last time a workshop performed it (or from the
vehicle's delivery at 0 km when it never was).

Compliance is computed here, never stored: ``due`` turns one service's last
record and the odometer into when it falls due, ``judge`` that and the clock into
a status and a score (``assess`` does both), and ``block_compliance`` averages the
scores of a block into its percentage.

Scoring (``Policy``; every number is configurable through the simulator's options):

- ``UP_TO_DATE`` (not due yet) and ``DUE_SOON`` (due within ``soon_days`` or
  ``soon_km``): 100.
- ``DUE`` (past due, within the grace of ``grace_days`` / ``grace_km``): ``due_score`` (90).
- ``OVERDUE`` (past the grace): ``overdue_score`` (50), falling linearly to 0 as the
  lateness grows to one full interval (in time or in distance, the worse of the two).

So a block with an overdue service drops to 75% or less at once (two services a
block), below the specification's example threshold of 80%, and keeps falling
while nobody services the car; a workshop record makes the service current again.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

DAY = 86400.0

__all__ = [
    "BLOCK_NAMES", "DAY", "DEFAULT_POLICY", "PLANS", "SERVICE_TYPES", "Assessment", "Block", "Due", "Odometer",
    "Policy", "Powertrain", "Reading", "ServiceSpec", "Status", "assess", "block_compliance", "block_of",
    "compliance", "due", "judge", "plan_for",
]


class Block(StrEnum):
    POWERTRAIN = "POWERTRAIN"
    SUSPENSION_STEERING = "SUSPENSION_STEERING"
    BRAKES = "BRAKES"
    ELECTRONICS = "ELECTRONICS"
    CLIMATE_CONTROL = "CLIMATE_CONTROL"
    DRIVETRAIN = "DRIVETRAIN"


#: The specification's names, in its order (responses list blocks in this order).
BLOCK_NAMES: dict[Block, str] = {
    Block.POWERTRAIN: "Powertrain",
    Block.SUSPENSION_STEERING: "Suspension & Steering",
    Block.BRAKES: "Brakes",
    Block.ELECTRONICS: "Electronics",
    Block.CLIMATE_CONTROL: "Climate Control",
    Block.DRIVETRAIN: "Drivetrain",
}


class Powertrain(StrEnum):
    ICE = "ICE"  # combustion engine
    EV = "EV"  # battery electric


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    code: str
    block: Block
    name: str
    every_days: int
    every_km: int | None  # None: due by time only

    @property
    def every_seconds(self) -> float:
        return self.every_days * DAY


def _s(code: str, block: Block, name: str, every_days: int, every_km: int | None) -> ServiceSpec:
    return ServiceSpec(code, block, name, every_days, every_km)


_COMMON = (
    _s("WHEEL_ALIGNMENT", Block.SUSPENSION_STEERING, "Wheel alignment and steering check", 730, 30_000),
    _s("SHOCK_ABSORBERS", Block.SUSPENSION_STEERING, "Shock absorber inspection", 730, 40_000),
    _s("BRAKE_PADS", Block.BRAKES, "Brake pad inspection and replacement", 365, 20_000),
    _s("BRAKE_FLUID", Block.BRAKES, "Brake fluid replacement", 730, None),
    _s("SOFTWARE_UPDATE", Block.ELECTRONICS, "Workshop software update", 365, None),
    _s("DIAGNOSTICS", Block.ELECTRONICS, "Electronic diagnostics scan", 365, 15_000),
    _s("AC_SERVICE", Block.CLIMATE_CONTROL, "A/C service and refrigerant recharge", 730, None),
    _s("CABIN_FILTER", Block.CLIMATE_CONTROL, "Cabin filter replacement", 365, 15_000),
)

PLANS: dict[Powertrain, tuple[ServiceSpec, ...]] = {
    Powertrain.ICE: (
        _s("ENGINE_OIL", Block.POWERTRAIN, "Engine oil and filter change", 365, 15_000),
        _s("TRANSMISSION_FLUID", Block.POWERTRAIN, "Transmission fluid change", 1461, 60_000),
        *_COMMON,
        _s("DIFFERENTIAL_OIL", Block.DRIVETRAIN, "Differential oil change", 1461, 60_000),
        _s("DRIVESHAFT_4WD", Block.DRIVETRAIN, "Driveshaft, CV joints and 4WD coupling inspection", 730, 30_000),
    ),
    Powertrain.EV: (
        _s("HV_BATTERY_CHECK", Block.POWERTRAIN, "High-voltage battery health check", 365, 20_000),
        _s("BATTERY_COOLANT", Block.POWERTRAIN, "Battery coolant replacement", 1461, None),
        *_COMMON,
        _s("REDUCTION_GEAR_OIL", Block.DRIVETRAIN, "Reduction gear oil change", 1461, 60_000),
        _s("DRIVESHAFT_4WD", Block.DRIVETRAIN, "Driveshaft, CV joints and 4WD coupling inspection", 730, 30_000),
    ),
}

#: Every service type of every plan, code -> block (the contract's enum).
SERVICE_TYPES: dict[str, Block] = {s.code: s.block for plan in PLANS.values() for s in plan}


def plan_for(powertrain: Powertrain) -> tuple[ServiceSpec, ...]:
    return PLANS[powertrain]


def block_of(code: str) -> Block | None:
    return SERVICE_TYPES.get(code)


class Status(StrEnum):
    UP_TO_DATE = "UP_TO_DATE"
    DUE_SOON = "DUE_SOON"
    DUE = "DUE"
    OVERDUE = "OVERDUE"


@dataclass(frozen=True, slots=True)
class Policy:
    grace_days: float = 30
    grace_km: float = 1_000
    soon_days: float = 30
    soon_km: float = 1_500
    due_score: float = 90
    overdue_score: float = 50

    def __post_init__(self) -> None:
        if min(self.grace_days, self.grace_km, self.soon_days, self.soon_km) < 0:
            raise ValueError("grace and due-soon windows cannot be negative")
        if not 0 <= self.overdue_score <= self.due_score <= 100:
            raise ValueError("scores must satisfy 0 <= overdue_score <= due_score <= 100")
        if self.soon_km >= 15_000:  # the shortest distance interval of the plans
            raise ValueError("soon_km must be shorter than every distance interval (15000 km)")


DEFAULT_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class Reading:
    at: float
    km: float


class Odometer:
    """Mileage at any instant, from odometer readings (delivery at 0 km, then every
    workshop record): interpolated between two readings, and growing at
    ``km_per_day`` after the last one. Readings must not decrease with time
    (workshop records are validated so), which makes the curve monotonic."""

    __slots__ = ("_at", "_km", "km_per_second")

    def __init__(self, delivered: float, km_per_day: float, readings: Iterable[Reading] = ()):
        if km_per_day <= 0:
            raise ValueError("km_per_day must be positive")
        self.km_per_second = km_per_day / DAY
        points = sorted([Reading(delivered, 0.0), *(r for r in readings if r.at >= delivered)],
                        key=lambda r: r.at)
        # Tuples of floats: the garbage collector stops tracking them (a model keeps odometers).
        self._at = tuple(p.at for p in points)
        self._km = tuple(p.km for p in points)

    def at(self, t: float) -> float:
        i = bisect.bisect_right(self._at, t) - 1
        if i < 0:
            return 0.0  # not delivered yet
        if i == len(self._at) - 1:
            return self._km[i] + (t - self._at[i]) * self.km_per_second
        t0, t1, km0, km1 = self._at[i], self._at[i + 1], self._km[i], self._km[i + 1]
        return km0 + (km1 - km0) * (t - t0) / (t1 - t0)  # t0 <= t < t1, so t1 > t0

    def reach(self, km: float, since: float) -> float:
        """The first instant at or after ``since`` at which the odometer shows ``km``."""
        t0, km0 = since, self.at(since)
        for j in range(bisect.bisect_right(self._at, since), len(self._at)):
            if km0 >= km:
                return t0
            t1, km1 = self._at[j], self._km[j]
            if km1 >= km:
                return t0 + (t1 - t0) * (km - km0) / (km1 - km0)  # km0 < km <= km1
            t0, km0 = t1, km1
        return t0 + max(0.0, km - km0) / self.km_per_second


@dataclass(frozen=True, slots=True)
class Assessment:
    spec: ServiceSpec
    status: Status
    score: float
    last: Reading | None  # the last time it was performed, None if never
    due_at: float
    due_km: float | None
    overdue_at: float


class Due(NamedTuple):
    """When a service falls due, soon, and overdue: a function of its last record and the
    odometer, not of the clock (``judge`` brings the clock in). A tuple: a model may keep
    its values as a plain one, which the garbage collector stops tracking."""
    by_time: float
    due_at: float
    due_km: float | None
    overdue_at: float
    soon_at: float
    every_seconds: float
    every_km: int | None


def due(spec: ServiceSpec, last: Reading | None, delivered: float, odometer: Odometer,
        policy: Policy = DEFAULT_POLICY) -> Due:
    base_t, base_km = (last.at, last.km) if last else (delivered, 0.0)
    by_time = base_t + spec.every_seconds
    due_at, overdue_at, soon_at = by_time, by_time + policy.grace_days * DAY, by_time - policy.soon_days * DAY
    due_km = None
    if spec.every_km is not None:
        due_km = base_km + spec.every_km
        due_at = min(due_at, odometer.reach(due_km, base_t))
        overdue_at = min(overdue_at, odometer.reach(due_km + policy.grace_km, base_t))
        soon_at = min(soon_at, odometer.reach(due_km - policy.soon_km, base_t))
    return Due(by_time, due_at, due_km, overdue_at, soon_at, spec.every_seconds, spec.every_km)


def judge(due: tuple, now: float, mileage: float, policy: Policy = DEFAULT_POLICY) -> tuple[Status, float]:
    """The status and score at ``now``, when the odometer shows ``mileage``, of a service
    falling due as ``due`` says (a ``Due``, or the plain tuple of its values)."""
    by_time, due_at, due_km, overdue_at, soon_at, every_seconds, every_km = due
    if now >= overdue_at:
        lateness = (now - by_time) / every_seconds
        if due_km is not None:
            lateness = max(lateness, (mileage - due_km) / every_km)
        return Status.OVERDUE, policy.overdue_score * (1 - min(1.0, max(0.0, lateness)))
    if now >= due_at:
        return Status.DUE, policy.due_score
    if now >= soon_at:
        return Status.DUE_SOON, 100.0
    return Status.UP_TO_DATE, 100.0


def assess(spec: ServiceSpec, last: Reading | None, delivered: float, odometer: Odometer, now: float,
           policy: Policy = DEFAULT_POLICY) -> Assessment:
    d = due(spec, last, delivered, odometer, policy)
    status, score = judge(d, now, odometer.at(now), policy)
    return Assessment(spec, status, score, last, d.due_at, d.due_km, d.overdue_at)


def block_compliance(assessments: Iterable[Assessment]) -> int:
    """The block's percentage: the mean of its services' scores, rounded half up (0-100)."""
    return compliance([a.score for a in assessments])


def compliance(scores: list[float]) -> int:
    """The mean of ``scores``, rounded half up (0-100); 100 for none."""
    if not scores:
        return 100  # a block without scheduled services cannot be behind
    return min(100, max(0, math.floor(sum(scores) / len(scores) + 0.5)))
