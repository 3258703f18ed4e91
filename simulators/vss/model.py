"""VSS (Vehicle Service System): maintenance history and compliance, on the service's clock.

The VSS belongs to the network of official and approved workshops; CaaS only
reads it. A vehicle's maintenance status is computed on every query from its
maintenance plan (``plans.py``), the services workshops recorded and the clock:
nothing about compliance is stored, so advancing the clock past a due service
lowers its block's percentage, and a workshop record restores it.

Vehicles are those of the IoT fleet (``simulators.iot.fleet.Fleet``: same seed,
same VINs). What VSS knows of a vehicle before the simulator started (delivery
date, daily mileage, the services done so far) is derived from the seed by
hashing, so a vehicle costs nothing until a workshop records a service on it;
only those records are stored.

LIMITATIONS (where this knowingly differs from a real VSS):
- Nothing happens after the simulator's epoch unless a workshop records it: no
  customer services a car on their own, so, left alone for months, every
  vehicle drifts to overdue. Scenarios record services through the workshop API.
- Compliance reflects the current state of the plan, not a history of
  punctuality: a service recorded late restores its block in full.
- Mileage is an estimate: each vehicle drives a constant distance a day
  (derived from the seed), corrected by the odometer readings of workshop
  records. There are no telematics readings.
- One maintenance plan per powertrain (combustion, electric), whatever the
  model; every vehicle has a 4WD drivetrain to service.
- Delivery dates follow the VIN's model year only loosely (a model year not yet
  on sale at the epoch gets a delivery in the previous six months).
- Workshops are not authenticated: the ``workshopId`` in the body is trusted
  once it names an active official or approved workshop of the registry.
- Warranty is one term for the whole vehicle (years or kilometres, whichever
  first); VSS flags the maintenance risk but never voids a warranty itself.
"""

from __future__ import annotations

import bisect
import calendar
import hashlib
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from ..iot.fleet import MODELS, Fleet
from ..kit.clock import isoformat
from ..kit.errors import ProblemError
from ..kit.faults import FaultRule, NoParams
from ..kit.service import Service
from . import plans as pl
from .plans import DAY, Block

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

# ------------------------------------------------------------------ workshops

WorkshopKind = Literal["OFFICIAL", "APPROVED", "INDEPENDENT"]


@dataclass(frozen=True, slots=True)
class Workshop:
    id: str
    name: str
    kind: WorkshopKind
    country: str
    status: Literal["ACTIVE", "SUSPENDED"] = "ACTIVE"

    @property
    def can_record(self) -> bool:
        """Only active official and approved ("homologados") workshops write to VSS."""
        return self.kind in ("OFFICIAL", "APPROVED") and self.status == "ACTIVE"

    def view(self) -> dict:
        return {"workshopId": self.id, "name": self.name, "kind": self.kind, "country": self.country,
                "status": self.status, "canRecord": self.can_record}


DEFAULT_WORKSHOPS: tuple[Workshop, ...] = (
    Workshop("OFF-ES-MAD01", "Servicio Oficial Madrid Norte", "OFFICIAL", "ES"),
    Workshop("OFF-FR-PAR01", "Atelier Officiel Paris Est", "OFFICIAL", "FR"),
    Workshop("OFF-DE-MUC01", "Vertragswerkstatt München Süd", "OFFICIAL", "DE"),
    Workshop("OFF-GB-LON01", "Official Service Centre London West", "OFFICIAL", "GB"),
    Workshop("APP-ES-BCN01", "Taller Homologado Barcelona Sants", "APPROVED", "ES"),
    Workshop("APP-FR-LYO01", "Garage Agréé Lyon Confluence", "APPROVED", "FR"),
    Workshop("APP-DE-HAM01", "Autorisierte Werkstatt Hamburg Nord", "APPROVED", "DE"),
    Workshop("APP-GB-MAN01", "Approved Repairer Manchester", "APPROVED", "GB"),
    Workshop("APP-DE-BER02", "Autorisierte Werkstatt Berlin Mitte", "APPROVED", "DE", "SUSPENDED"),
    Workshop("IND-ES-VLC01", "Taller Independiente Valencia", "INDEPENDENT", "ES"),
)

# -------------------------------------------------------------- domain faults

_BLOCK_KEYS = tuple(Block) + tuple(pl.BLOCK_NAMES.values())


class UnavailableParams(NoParams):
    retry_after: int | None = Field(default=None, ge=0, le=86400,
                                    description="Retry-After seconds; default: until the rule's window ends, else 60")


class LowComplianceParams(NoParams):
    block: Literal[_BLOCK_KEYS]  # type: ignore[valid-type]
    pct: int = Field(ge=0, le=100)


DOMAIN_FAULTS = {
    "vss_unavailable": (("VSS answers 503 with Retry-After (match by operation and selectors; "
                         "the availability profile uses windows)"), UnavailableParams),
    "low_compliance": (("Force a block's compliance percentage for matching VINs (pct 0-100); "
                        "every matching rule applies, the first one listed wins for a block"), LowComplianceParams),
    "unknown_vehicle": ("VSS answers 404 for matching VINs, as if never registered", NoParams),
}
DEFAULT_RETRY_AFTER = 60

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


def add_years(ts: float, years: int) -> float:
    """The same calendar instant ``years`` later (29 February becomes 28 February)."""
    d = datetime.fromtimestamp(ts, tz=UTC)
    year = d.year + years
    day = min(d.day, calendar.monthrange(year, d.month)[1])
    return d.replace(year=year, day=day).timestamp()


def _date(ts: float) -> str:
    return isoformat(ts)[:10]


class VssModel:
    def __init__(self, service: Service, fleet: Fleet, *, policy: pl.Policy = pl.DEFAULT_POLICY,
                 warranty_years: int = 3, warranty_km: int = 100_000,
                 workshops: Iterable[Workshop] = DEFAULT_WORKSHOPS,
                 routes: dict[str, tuple[str, str]] | None = None):
        self.service = service
        # operationId -> (method, path template), so that domain fault rules can
        # match on method and path as transport rules do.
        self.routes = dict(routes or {})
        self.fleet = fleet
        self.epoch = fleet.epoch
        self.policy = policy
        if warranty_years < 1 or warranty_km < 1:
            raise ValueError("warranty_years and warranty_km must be positive")
        self.warranty_years, self.warranty_km = warranty_years, warranty_km
        self.workshops = {w.id: w for w in workshops}
        self._recorders = sorted(w.id for w in self.workshops.values() if w.can_record)
        if not self._recorders:
            raise ValueError("the workshop registry needs at least one active official or approved workshop")
        self.vehicles: dict[str, Vehicle] = {}
        self._ids = itertools.count(1)
        for name, (description, params) in DOMAIN_FAULTS.items():
            service.faults.register(name, description, params)
        service.reset_hooks.append(self.reset)

    def reset(self) -> None:
        self.vehicles.clear()
        self._ids = itertools.count(1)

    def magic_vins(self) -> dict[str, str]:
        return {name: self.fleet.vin_at(serial) for serial, name in MAGIC_SERIALS.items() if serial < self.fleet.size}

    def list_workshops(self, operation: str, correlation_id: str | None = None) -> dict:
        self._available(operation, {}, correlation_id)
        return {"workshops": [w.view() for w in self.workshops.values()]}

    # --- vehicles ---------------------------------------------------------
    def _facts(self, vin: str, operation: str, correlation_id: str | None, **entities: str) -> VehicleFacts:
        """The vehicle, after the availability and existence checks every operation makes."""
        entities = {"vin": vin, **entities}
        self._available(operation, entities, correlation_id)
        vehicle = self.vehicles.get(vin)
        facts = vehicle.facts if vehicle else self._derive(vin)
        if facts is None or self._fault("unknown_vehicle", operation, entities, correlation_id):
            raise ProblemError(404, "Unknown vehicle", f"no vehicle with VIN {vin} is registered in VSS",
                               kind="unknown-vehicle")
        return facts

    def _available(self, operation: str, entities: dict, correlation_id: str | None) -> None:
        rule = self._fault("vss_unavailable", operation, entities, correlation_id)
        if rule is None:
            return
        retry = rule.params.get("retry_after")
        if retry is None:
            until = rule.window_until
            retry = math.ceil(until - self.service.clock.now()) if until is not None else DEFAULT_RETRY_AFTER
        raise ProblemError(503, "VSS unavailable",
                           f"the Vehicle Service System is temporarily unavailable; retry in {retry} s",
                           kind="vss-unavailable", headers={"Retry-After": str(retry)})

    def _fault(self, action: str, operation: str, entities: dict, correlation_id: str | None) -> FaultRule | None:
        method, template = self.routes.get(operation, (None, None))
        return self.service.faults.take(action, method=method, template=template, operation=operation,
                                        entities=entities, correlation_id=correlation_id)

    def _derive(self, vin: str) -> VehicleFacts | None:
        index = self.fleet.index_of(vin)
        if index is None:
            return None
        magic_name = MAGIC_SERIALS.get(index)
        model = _MODEL_NAMES[vin[3]]
        powertrain = pl.Powertrain.EV if model.endswith(" EV") else pl.Powertrain.ICE
        if magic_name is not None:
            spec = MAGIC[magic_name]
            if spec is None:
                return None  # unknown_in_vss
            return VehicleFacts(vin, index, model, powertrain, self.epoch - spec.delivered_days_ago * DAY,
                                spec.km_per_day, "MAGIC", magic_name)
        s = self.fleet.seed
        year = _YEAR_CODES.get(vin[9], 2025)
        latest = self.epoch - 14 * DAY
        lo = min(datetime(year - 1, 7, 1, tzinfo=UTC).timestamp(), latest)
        hi = min(datetime(year, 12, 31, tzinfo=UTC).timestamp(), latest)
        if hi - lo < 30 * DAY:  # that model year is not on sale yet: a recent delivery
            lo, hi = latest - 180 * DAY, latest
        delivered = _between(lo, hi, s, "vss", index, "delivered")
        km_per_day = round(_between(18, 75, s, "vss", index, "km_per_day"), 1)
        u = _unit(s, "vss", index, "habit")
        habit = next(name for threshold, name in _HABITS if u < threshold)
        return VehicleFacts(vin, index, model, powertrain, delivered, km_per_day, habit, None)

    # --- history ----------------------------------------------------------
    def _history(self, facts: VehicleFacts) -> list[Record]:
        """Every record of the vehicle, oldest first: derived before the epoch, stored after."""
        derived = self._magic_history(facts) if facts.magic else self._habit_history(facts)
        stored = self.vehicles[facts.vin].records if facts.vin in self.vehicles else []
        return sorted([*derived, *stored], key=lambda r: r.performed_at)

    def _history_record(self, facts: VehicleFacts, spec: pl.ServiceSpec, n: int, at: float) -> Record:
        s = self.fleet.seed
        workshop = self.workshops[self._recorders[_digest(s, "vss", facts.index, "workshop", n) % len(self._recorders)]]
        rid = "svc_" + hashlib.blake2b(f"{s}:vss:{facts.vin}:{spec.code}:{n}".encode(), digest_size=8).hexdigest()
        km = math.floor((at - facts.delivered) / DAY * facts.km_per_day)
        return Record(rid, facts.vin, spec, at, km, workshop, at, "HISTORY")

    def _magic_history(self, facts: VehicleFacts) -> list[Record]:
        spec = MAGIC[facts.magic]  # type: ignore[index]
        days = spec.last_done_days_ago  # type: ignore[union-attr]
        out = []
        for service in facts.plan:
            ago = days.get(service.block, days.get(None))
            if ago is not None:
                out.append(self._history_record(facts, service, 0, self.epoch - ago * DAY))
        return out

    def _habit_history(self, facts: VehicleFacts) -> list[Record]:
        """What the owner did before the epoch: diligent owners service a little early,
        late ones a few weeks late, neglectful ones late and sometimes stop altogether."""
        s, index, out = self.fleet.seed, facts.index, []
        km_per_second = facts.km_per_day / DAY
        for service in facts.plan:
            stop = self.epoch
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
                out.append(self._history_record(facts, service, n, done))
                t = done
        return out

    # --- the core's query ---------------------------------------------------
    def maintenance_status(self, vin: str, operation: str, correlation_id: str | None = None) -> dict:
        facts = self._facts(vin, operation, correlation_id)
        now = self.service.clock.now()
        history = self._history(facts)
        odometer = pl.Odometer(facts.delivered, facts.km_per_day, (pl.Reading(r.performed_at, r.mileage_km)
                                                                    for r in history))
        last: dict[str, Record] = {}
        for record in history:  # oldest first: the last one wins
            last[record.spec.code] = record
        forced = self._forced_compliance(vin, operation, correlation_id)
        blocks, any_overdue = [], False
        for block, name in pl.BLOCK_NAMES.items():
            assessments = []
            for spec in facts.plan:
                if spec.block is block:
                    done = last.get(spec.code)
                    reading = pl.Reading(done.performed_at, done.mileage_km) if done else None
                    assessments.append((pl.assess(spec, reading, facts.delivered, odometer, now, self.policy), done))
            any_overdue |= any(a.status is pl.Status.OVERDUE for a, _ in assessments)
            pct = forced.get(block, pl.block_compliance(a for a, _ in assessments))
            blocks.append({"code": block.value, "name": name, "compliancePercent": pct,
                           "services": [_service_view(a, done) for a, done in assessments]})
        mileage = odometer.at(now)
        return {"vin": vin, "asOf": isoformat(now), "model": facts.model, "powertrain": facts.powertrain.value,
                "deliveryDate": _date(facts.delivered), "mileageKm": math.floor(mileage), "blocks": blocks,
                "warranty": self._warranty(facts, now, mileage, any_overdue)}

    def _forced_compliance(self, vin: str, operation: str, correlation_id: str | None) -> dict[Block, int]:
        forced: dict[Block, int] = {}
        method, template = self.routes.get(operation, (None, None))
        context = {"method": method, "template": template, "operation": operation, "entities": {"vin": vin},
                   "correlation_id": correlation_id}
        for rule in self.service.faults.take_all("low_compliance", **context):
            block = _block_key(rule.params["block"])
            forced.setdefault(block, rule.params["pct"])
        return forced

    def _warranty(self, facts: VehicleFacts, now: float, mileage: float, any_overdue: bool) -> dict:
        ends = add_years(facts.delivered, self.warranty_years)
        expired_by = "TIME" if now >= ends else "MILEAGE" if mileage >= self.warranty_km else None
        return {"status": "EXPIRED" if expired_by else "ACTIVE", "startDate": _date(facts.delivered),
                "endDate": _date(ends), "mileageLimitKm": self.warranty_km, "expiredBy": expired_by,
                # Insufficient maintenance may void the warranty: the manufacturer decides, VSS warns.
                "maintenanceRisk": expired_by is None and any_overdue}

    # --- the workshops' side -------------------------------------------------
    def service_records(self, vin: str, operation: str, correlation_id: str | None = None) -> dict:
        facts = self._facts(vin, operation, correlation_id)
        return {"vin": vin, "records": [r.view() for r in self._history(facts)]}

    def service_record(self, vin: str, record_id: str, operation: str, correlation_id: str | None = None) -> dict:
        facts = self._facts(vin, operation, correlation_id, recordId=record_id)
        for record in self._history(facts):
            if record.id == record_id:
                return record.view()
        raise ProblemError(404, "Unknown service record", f"no service record {record_id} for {vin}",
                           kind="unknown-record")

    def record_service(self, vin: str, workshop_id: str, block: str, service_type: str, performed_at: float,
                       mileage_km: int | None, notes: str | None, operation: str,
                       correlation_id: str | None = None) -> dict:
        facts = self._facts(vin, operation, correlation_id, workshopId=workshop_id, block=block,
                            serviceType=service_type)
        workshop = self.workshops.get(workshop_id)
        if workshop is None:
            raise ProblemError(403, "Unknown workshop",
                               f"{workshop_id} is not in the VSS workshop registry: only official and approved "
                               "workshops record services", kind="unknown-workshop")
        if not workshop.can_record:
            why = ("is suspended" if workshop.status == "SUSPENDED"
                   else f"is {workshop.kind.lower()}, not official or approved")
            raise ProblemError(403, "Workshop not authorised to record services", f"workshop {workshop_id} {why}",
                               kind="workshop-not-approved")
        spec = next((s for s in facts.plan if s.code == service_type), None)
        if spec is None or spec.block.value != block:
            expected = [s.code for s in facts.plan if s.block.value == block]
            raise ProblemError(422, "Service not in the maintenance plan",
                               f"{service_type} is not a {block} service of the {facts.powertrain.value} plan "
                               f"of {vin}; {block} services: {', '.join(expected)}", kind="not-in-plan")
        now = self.service.clock.now()
        if performed_at > now:
            raise ProblemError(422, "Service date in the future",
                               f"performedAt {isoformat(performed_at)} is after now ({isoformat(now)})",
                               kind="invalid-service-date")
        if performed_at < facts.delivered:
            raise ProblemError(422, "Service date before delivery",
                               f"performedAt {isoformat(performed_at)} is before the vehicle's delivery "
                               f"({_date(facts.delivered)})", kind="invalid-service-date")
        history = self._history(facts)
        day = _date(performed_at)
        if any(r.spec.code == service_type and _date(r.performed_at) == day for r in history):
            raise ProblemError(409, "Service already recorded",
                               f"{service_type} is already recorded for {vin} on {day}", kind="duplicate-record")
        mileage = self._check_mileage(facts, history, performed_at, mileage_km)
        record = Record(self._new_id(), vin, spec, performed_at, mileage, workshop, now, "WORKSHOP", notes)
        vehicle = self.vehicles.get(vin)
        if vehicle is None:
            vehicle = self.vehicles[vin] = Vehicle(facts)
        vehicle.records.append(record)
        self.service.journal.event("vss.service_recorded", {"vin": vin, "recordId": record.id,
                                                            "workshopId": workshop_id},
                                   block=block, serviceType=service_type, performedAt=isoformat(performed_at),
                                   mileageKm=mileage)
        return record.view()

    def _check_mileage(self, facts: VehicleFacts, history: list[Record], at: float, given: int | None) -> int:
        """Odometers only go up: a reading must lie between its neighbours in time."""
        times = [r.performed_at for r in history]
        i = bisect.bisect_right(times, at)
        before = history[i - 1] if i > 0 else None
        after = history[i] if i < len(history) else None
        if given is None:
            odometer = pl.Odometer(facts.delivered, facts.km_per_day,
                                   (pl.Reading(r.performed_at, r.mileage_km) for r in history))
            estimate = math.floor(odometer.at(at))
            return min(estimate, after.mileage_km) if after else estimate
        if before is not None and given < before.mileage_km:
            raise ProblemError(422, "Mileage lower than an earlier reading",
                               f"mileageKm {given} is below the {before.mileage_km} km recorded on "
                               f"{isoformat(before.performed_at)}", kind="invalid-mileage")
        if after is not None and given > after.mileage_km:
            raise ProblemError(422, "Mileage higher than a later reading",
                               f"mileageKm {given} is above the {after.mileage_km} km recorded on "
                               f"{isoformat(after.performed_at)}", kind="invalid-mileage")
        return given

    def _new_id(self) -> str:
        key = f"{self.fleet.seed}:vss:record:{next(self._ids)}"
        return "svc_" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def _service_view(a: pl.Assessment, done: Record | None) -> dict:
    return {"serviceType": a.spec.code, "name": a.spec.name, "status": a.status.value,
            "intervalDays": a.spec.every_days, "intervalKm": a.spec.every_km,
            "lastPerformedAt": isoformat(done.performed_at) if done else None,
            "lastMileageKm": done.mileage_km if done else None,
            "lastWorkshopId": done.workshop.id if done else None,
            "dueAt": isoformat(a.due_at), "dueMileageKm": math.floor(a.due_km) if a.due_km is not None else None,
            "overdueFrom": isoformat(a.overdue_at)}


def _block_key(value: str) -> Block:
    if value in Block.__members__:
        return Block(value)
    return next(b for b, name in pl.BLOCK_NAMES.items() if name == value)


def options_policy(options: dict[str, Any]) -> pl.Policy:
    """The compliance policy from SimConfig.options (grace_days, grace_km, soon_days,
    soon_km, due_score, overdue_score)."""
    names = ("grace_days", "grace_km", "soon_days", "soon_km", "due_score", "overdue_score")
    return pl.Policy(**{n: float(options[n]) for n in names if n in options})


def workshops_from(options: dict[str, Any]) -> tuple[Workshop, ...]:
    raw = options.get("workshops")
    if raw is None:
        return DEFAULT_WORKSHOPS
    return tuple(Workshop(w["workshopId"], w["name"], w["kind"], w["country"], w.get("status", "ACTIVE"))
                 for w in raw)
