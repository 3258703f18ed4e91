"""What VSS knows of a vehicle without storing anything: facts (model, delivery, daily
mileage, owner's habit) and the services done before the simulator's epoch, all
functions of (seed, VIN); the magic VINs that fix them; and the records workshops add.

The history before the epoch is derived, not stored: ``derived_history`` gives the
same records for the same seed on every run, with ids, dates and workshops hashed
from the vehicle's fleet index.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ..fleet import MODELS, Fleet
from ..kit.clock import isoformat
from . import plans as pl
from .plans import DAY, Block
from .workshops import Workshop

# ----------------------------------------------------------------- magic VINs

#: Serial (last six VIN digits) -> behaviour, like test cards; see MAGIC.
MAGIC_SERIALS: dict[int, str] = {
    999801: "fully_compliant",      # every service done a week ago: 100% everywhere for months
    999802: "one_block_overdue",    # Brakes long overdue, every other block 100%
    999803: "several_blocks_low",   # Powertrain, Suspension & Steering and Electronics overdue
    999804: "warranty_expired",     # maintained, but delivered more than 3 years ago
    999805: "unknown_in_vss",       # in the fleet, never registered in VSS: 404
    999806: "never_serviced",       # two years on the road without a single service
    999807: "due_soon",             # the Powertrain service falls due 10 days after the epoch
    999808: "due_by_distance",      # 160 km a day: services fall due by distance, ~14 days in
    999809: "new_vehicle",          # delivered two weeks before the epoch, nothing due
}


@dataclass(frozen=True, slots=True)
class MagicSpec:
    delivered_days_ago: float
    km_per_day: float
    #: days before the epoch each block's services were last done; key None is the
    #: default for the other blocks, value None means never done.
    last_done_days_ago: dict[Block | None, float | None]


MAGIC: dict[str, MagicSpec | None] = {
    "fully_compliant": MagicSpec(730, 40, {None: 7}),
    "one_block_overdue": MagicSpec(820, 30, {None: 7, Block.BRAKES: 800}),
    "several_blocks_low": MagicSpec(850, 30, {None: 7, Block.POWERTRAIN: 450, Block.SUSPENSION_STEERING: 800,
                                               Block.ELECTRONICS: 500}),
    "warranty_expired": MagicSpec(1130, 40, {None: 7}),
    "unknown_in_vss": None,
    "never_serviced": MagicSpec(800, 40, {None: None}),
    "due_soon": MagicSpec(720, 30, {None: 7, Block.POWERTRAIN: 355}),
    "due_by_distance": MagicSpec(400, 160, {None: 80}),
    "new_vehicle": MagicSpec(14, 40, {None: None}),
}

# ------------------------------------------------------------------ vehicles

# Cumulative shares of maintenance habits before the epoch.
_HABITS = ((0.70, "DILIGENT"), (0.90, "LATE"), (1.00, "NEGLECTFUL"))
# ISO 3779 model-year codes, 2010-2039.
_YEAR_CODES = {c: 2010 + i for i, c in enumerate("ABCDEFGHJKLMNPRSTVWXY123456789")}
_MODEL_NAMES = dict(MODELS)


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def _unit(*parts: object) -> float:
    return _digest(*parts) / 2.0**64


def _between(lo: float, hi: float, *parts: object) -> float:
    return lo + (hi - lo) * _unit(*parts)


@dataclass(frozen=True, slots=True)
class VehicleFacts:
    """What VSS knows of a vehicle without storing anything: a function of (seed, VIN)."""
    vin: str
    index: int
    model: str
    powertrain: pl.Powertrain
    delivered: float
    km_per_day: float
    habit: str
    magic: str | None

    @property
    def plan(self) -> tuple[pl.ServiceSpec, ...]:
        return pl.plan_for(self.powertrain)


@dataclass(slots=True)
class Record:
    id: str
    vin: str
    spec: pl.ServiceSpec
    performed_at: float
    mileage_km: int
    workshop: Workshop
    recorded_at: float
    source: Literal["HISTORY", "WORKSHOP"]
    notes: str | None = None

    def view(self) -> dict:
        out = {"recordId": self.id, "vin": self.vin, "block": self.spec.block.value, "serviceType": self.spec.code,
               "performedAt": isoformat(self.performed_at), "mileageKm": self.mileage_km,
               "workshopId": self.workshop.id, "workshopKind": self.workshop.kind,
               "recordedAt": isoformat(self.recorded_at), "source": self.source}
        if self.notes is not None:
            out["notes"] = self.notes
        return out


@dataclass(slots=True)
class Vehicle:
    """A vehicle some workshop recorded a service on: the only per-vehicle memory."""
    facts: VehicleFacts
    records: list[Record] = field(default_factory=list)


def derive_facts(fleet: Fleet, epoch: float, vin: str) -> VehicleFacts | None:
    """The vehicle as VSS knows it, or None if the fleet has no such VIN or VSS never registered it."""
    index = fleet.index_of(vin)
    if index is None:
        return None
    magic_name = MAGIC_SERIALS.get(index)
    model = _MODEL_NAMES[vin[3]]
    powertrain = pl.Powertrain.EV if model.endswith(" EV") else pl.Powertrain.ICE
    if magic_name is not None:
        spec = MAGIC[magic_name]
        if spec is None:
            return None  # unknown_in_vss
        return VehicleFacts(vin, index, model, powertrain, epoch - spec.delivered_days_ago * DAY,
                            spec.km_per_day, "MAGIC", magic_name)
    s = fleet.seed
    year = _YEAR_CODES.get(vin[9], 2025)
    latest = epoch - 14 * DAY
    lo = min(datetime(year - 1, 7, 1, tzinfo=UTC).timestamp(), latest)
    hi = min(datetime(year, 12, 31, tzinfo=UTC).timestamp(), latest)
    if hi - lo < 30 * DAY:  # that model year is not on sale yet: a recent delivery
        lo, hi = latest - 180 * DAY, latest
    delivered = _between(lo, hi, s, "vss", index, "delivered")
    km_per_day = round(_between(18, 75, s, "vss", index, "km_per_day"), 1)
    u = _unit(s, "vss", index, "habit")
    habit = next(name for threshold, name in _HABITS if u < threshold)
    return VehicleFacts(vin, index, model, powertrain, delivered, km_per_day, habit, None)


# ------------------------------------------------------------------- history


def derived_history(facts: VehicleFacts, seed: int, epoch: float, recorders: Sequence[Workshop]) -> list[Record]:
    """The services done before the epoch (by one of ``recorders``), as the magic or the owner's habit says."""
    if facts.magic:
        return _magic_history(facts, seed, epoch, recorders)
    return _habit_history(facts, seed, epoch, recorders)


def _history_record(facts: VehicleFacts, spec: pl.ServiceSpec, n: int, at: float, seed: int,
                    recorders: Sequence[Workshop]) -> Record:
    workshop = recorders[_digest(seed, "vss", facts.index, "workshop", n) % len(recorders)]
    rid = "svc_" + hashlib.blake2b(f"{seed}:vss:{facts.vin}:{spec.code}:{n}".encode(), digest_size=8).hexdigest()
    km = math.floor((at - facts.delivered) / DAY * facts.km_per_day)
    return Record(rid, facts.vin, spec, at, km, workshop, at, "HISTORY")


def _magic_history(facts: VehicleFacts, seed: int, epoch: float, recorders: Sequence[Workshop]) -> list[Record]:
    spec = MAGIC[facts.magic]  # type: ignore[index]
    days = spec.last_done_days_ago  # type: ignore[union-attr]
    out = []
    for service in facts.plan:
        ago = days.get(service.block, days.get(None))
        if ago is not None:
            out.append(_history_record(facts, service, 0, epoch - ago * DAY, seed, recorders))
    return out


def _habit_history(facts: VehicleFacts, seed: int, epoch: float, recorders: Sequence[Workshop]) -> list[Record]:
    """What the owner did before the epoch: diligent owners service a little early,
    late ones a few weeks late, neglectful ones late and sometimes stop altogether."""
    s, index, out = seed, facts.index, []
    km_per_second = facts.km_per_day / DAY
    for service in facts.plan:
        stop = epoch
        if facts.habit == "NEGLECTFUL" and _unit(s, "vss", index, service.code, "skip") < 0.5:
            stop -= _between(30, 400, s, "vss", index, service.code, "stop") * DAY
        interval = service.every_seconds
        if service.every_km is not None:
            interval = min(interval, service.every_km / km_per_second)
        t = facts.delivered
        for n in itertools.count():
            parts = (s, "vss", index, service.code, n)
            if facts.habit == "DILIGENT":
                done = t + interval - _between(0, 21, *parts) * DAY
            elif facts.habit == "LATE":
                done = t + interval + _between(3, 40, *parts) * DAY
            else:
                done = t + interval + _between(0, 120, *parts) * DAY
            if done >= stop:
                break
            out.append(_history_record(facts, service, n, done, seed, recorders))
            t = done
    return out
