"""VSS (Vehicle Service System): maintenance history and compliance, on the service's clock.

The VSS belongs to the network of official and approved workshops; CaaS only
reads it. A vehicle's maintenance status is computed on every query from its
maintenance plan (``plans.py``), the services workshops recorded and the clock:
nothing about compliance is stored, so advancing the clock past a due service
lowers its block's percentage, and a workshop record restores it. (When each
service falls due, a function of the history alone, is kept for recently read
vehicles until their history changes: ``schedule.py``.)

Vehicles are those of the IoT fleet (``caas_sim.simulators.fleet.Fleet``: same seed,
same VINs). What VSS knows of a vehicle before the simulator started (delivery
date, daily mileage, the services done so far) is derived from the seed by
hashing (``vehicles.py``), so a vehicle costs nothing until a workshop records
a service on it; only those records are stored. Who may record them is the
workshop registry's business (``workshops.py``).

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
import hashlib
import itertools
import math
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

from pydantic import Field

from ..fleet import Fleet
from ..kit.clock import isoformat
from ..kit.errors import ProblemError
from ..kit.faults import FaultRule, NoParams
from ..kit.service import Service
from . import plans as pl
from .plans import Block
from .schedule import Schedule, date_of
from .vehicles import (
    MAGIC_SERIALS,
    Record,
    Vehicle,
    VehicleFacts,
    derive_facts,
    derived_history,
)
from .workshops import DEFAULT_WORKSHOPS, Workshop

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
#: Vehicles whose seed-derived facts and history, and schedule, are kept at hand.
RECENT_VEHICLES = 1024
T = TypeVar("T")

# ------------------------------------------------------------------ the model


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
        # Who recorded the services before the epoch: the workshops allowed to, in id order.
        self._recorders = tuple(self.workshops[i] for i in sorted(w.id for w in self.workshops.values()
                                                                   if w.can_record))
        if not self._recorders:
            raise ValueError("the workshop registry needs at least one active official or approved workshop")
        self.vehicles: dict[str, Vehicle] = {}
        # What the seed says of recently read vehicles (facts, history before the epoch): a
        # pure function of the VIN, computed again on a miss; hashing it costs more than
        # the rest of a maintenance-status answer.
        self._derived: dict[str, tuple[VehicleFacts, list[Record]]] = {}
        # When the services of recently read vehicles fall due: a function of their history.
        self._schedules: dict[str, Schedule] = {}
        self._ids = itertools.count(1)
        for name, (description, params) in DOMAIN_FAULTS.items():
            service.faults.register(name, description, params)
        service.reset_hooks.append(self.reset)

    def reset(self) -> None:
        self.vehicles.clear()
        self._schedules.clear()  # they count the workshops' records
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
        known = self._derived.get(vin)
        if known is not None:
            return known[0]
        facts = derive_facts(self.fleet, self.epoch, vin)
        if facts is not None:
            _keep_recent(self._derived, vin,
                         (facts, derived_history(facts, self.fleet.seed, self.epoch, self._recorders)))
        return facts

    # --- history ----------------------------------------------------------
    def _history(self, facts: VehicleFacts) -> list[Record]:
        """Every record of the vehicle, oldest first: derived before the epoch, stored after."""
        known = self._derived.get(facts.vin)
        derived = known[1] if known is not None and known[0] is facts else \
            derived_history(facts, self.fleet.seed, self.epoch, self._recorders)
        stored = self.vehicles[facts.vin].records if facts.vin in self.vehicles else []
        return sorted([*derived, *stored], key=lambda r: r.performed_at)

    # --- the core's query ---------------------------------------------------
    def maintenance_status(self, vin: str, operation: str, correlation_id: str | None = None) -> dict:
        facts = self._facts(vin, operation, correlation_id)
        schedule = self._schedule(facts)
        forced = self._forced_compliance(vin, operation, correlation_id)
        return schedule.status(vin, self.service.clock.now(), forced)

    def _schedule(self, facts: VehicleFacts) -> Schedule:
        """The vehicle's schedule, kept while its history stays the same (``record_service``
        and ``reset`` drop it)."""
        schedule = self._schedules.get(facts.vin)
        if schedule is None:
            schedule = _keep_recent(self._schedules, facts.vin, Schedule(
                facts, self._history(facts), self.policy, self.warranty_years, self.warranty_km))
        return schedule

    def _forced_compliance(self, vin: str, operation: str, correlation_id: str | None) -> dict[str, int]:
        """Block percentages (by block code) the ``low_compliance`` rules set; the first listed wins."""
        forced: dict[str, int] = {}
        method, template = self.routes.get(operation, (None, None))
        context = {"method": method, "template": template, "operation": operation, "entities": {"vin": vin},
                   "correlation_id": correlation_id}
        for rule in self.service.faults.take_all("low_compliance", **context):
            forced.setdefault(_block_code(rule.params["block"]), rule.params["pct"])
        return forced

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
                               f"({date_of(facts.delivered)})", kind="invalid-service-date")
        history = self._history(facts)
        day = date_of(performed_at)
        if any(r.spec.code == service_type and date_of(r.performed_at) == day for r in history):
            raise ProblemError(409, "Service already recorded",
                               f"{service_type} is already recorded for {vin} on {day}", kind="duplicate-record")
        mileage = self._check_mileage(facts, history, performed_at, mileage_km)
        record = Record(self._new_id(), vin, spec, performed_at, mileage, workshop, now, "WORKSHOP", notes)
        vehicle = self.vehicles.get(vin)
        if vehicle is None:
            vehicle = self.vehicles[vin] = Vehicle(facts)
        vehicle.records.append(record)
        self._schedules.pop(vin, None)
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


def _keep_recent(cache: dict[str, T], vin: str, value: T) -> T:
    """``value`` kept for ``vin``; past RECENT_VEHICLES, the oldest entry goes."""
    cache[vin] = value
    if len(cache) > RECENT_VEHICLES:
        del cache[next(iter(cache))]
    return value


def _block_code(value: str) -> str:
    """The code of a block named by its code or its name."""
    if value in Block.__members__:
        return Block(value).value
    return next(b.value for b, name in pl.BLOCK_NAMES.items() if name == value)


def options_policy(options: dict[str, Any]) -> pl.Policy:
    """The compliance policy from SimConfig.options (grace_days, grace_km, soon_days,
    soon_km, due_score, overdue_score)."""
    names = ("grace_days", "grace_km", "soon_days", "soon_km", "due_score", "overdue_score")
    return pl.Policy(**{n: float(options[n]) for n in names if n in options})
