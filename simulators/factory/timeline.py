"""How long manufacturing takes: stage durations, milestones and checkpoints.

Every duration is a pure function of (seed, order id, stage, round): the same
order takes the same time on every run, whatever else happens meanwhile, and
the factory's estimate at placement is exactly what happens unless a fault
(QC failure, production delay) intervenes. Ranges are days and configurable
with the ``stage_days`` option, e.g. ``{"slot_wait": [3, 5]}``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

DAY = 86400.0

#: (min, max) days of each stage; a realistic default of about 2.5 to 6.5 weeks in all.
DEFAULT_STAGE_DAYS: dict[str, tuple[float, float]] = {
    "acceptance": (0.5, 2.0),       # ORDER_PLACED -> PRODUCTION_SCHEDULED: the plant accepts and plans
    "slot_wait": (7.0, 21.0),       # PRODUCTION_SCHEDULED -> PRODUCTION_IN_PROGRESS: waiting for the line slot
    "assembly": (3.0, 6.0),         # PRODUCTION_IN_PROGRESS -> QUALITY_CONTROL
    "quality_control": (1.0, 2.0),  # QUALITY_CONTROL -> READY_FOR_SHIPMENT (or back to rework)
    "rework": (2.0, 5.0),           # PRODUCTION_IN_PROGRESS again after a failed QC
    "pickup": (1.0, 4.0),           # READY_FOR_SHIPMENT -> IN_TRANSIT: waiting for the carrier's truck
    "transit": (2.0, 5.0),          # IN_TRANSIT -> ARRIVED_AT_DEALERSHIP, same country as the plant
    "cross_border": (1.0, 3.0),     # added to transit for a dealership in another country
}

#: Component-assembly milestones, reported at 1/5 .. 4/5 of the assembly; 5/5 is "assembly complete".
ASSEMBLY_MILESTONES: tuple[tuple[str, str], ...] = (
    ("BODY_IN_WHITE", "Body welded and VIN stamped"),
    ("PAINT", "Body painted and cured"),
    ("POWERTRAIN_MARRIAGE", "Powertrain and chassis joined to the body"),
    ("INTERIOR_TRIM", "Interior, glazing and wheels fitted"),
)

#: Quality-control checkpoints, passed at 1/5 .. 4/5 of QC; a failure sends the car to rework.
QC_CHECKPOINTS: tuple[tuple[str, str], ...] = (
    ("STATIC_INSPECTION", "Static inspection: fit, finish and paint"),
    ("ELECTRICAL_CHECK", "End-of-line electrical check and firmware flash"),
    ("DYNAMIC_TEST", "Rolling-road and test-track run"),
    ("WATER_TEST", "Water-tightness test"),
)


def unit(seed: int, *parts: object) -> float:
    """A uniform number in [0, 1) fixed by the seed and ``parts``."""
    return _unit_of(":".join(map(str, (seed, *parts))))


def _unit_of(text: str) -> float:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


@dataclass(frozen=True, slots=True)
class StageDays:
    ranges: dict[str, tuple[float, float]]

    @classmethod
    def from_options(cls, raw: Any) -> StageDays:
        ranges = dict(DEFAULT_STAGE_DAYS)
        for stage, pair in (raw or {}).items():
            if stage not in ranges:
                raise ValueError(f"stage_days: unknown stage {stage!r}; known: {', '.join(ranges)}")
            try:
                lo, hi = (float(v) for v in pair)
            except (TypeError, ValueError):
                raise ValueError(f"stage_days.{stage}: want [min, max] days, got {pair!r}") from None
            if not 0 <= lo <= hi <= 365:
                raise ValueError(f"stage_days.{stage}: want 0 <= min <= max <= 365, got [{lo}, {hi}]")
            ranges[stage] = (lo, hi)
        return cls(ranges)

    def seconds(self, seed: int, order_id: str, stage: str, round_: int = 0) -> float:
        """The duration of ``stage`` (its ``round_``-th time) for this order, in whole minutes."""
        lo, hi = self.ranges[stage]
        # unit(seed, order_id, stage, round_), its text spelt out: an order's placement draws six.
        days = lo + (hi - lo) * _unit_of(f"{seed}:{order_id}:{stage}:{round_}")
        return round(days * 1440) * 60.0
