"""What a vehicle's maintenance status owes to its history alone, kept between queries.

A maintenance status is a function of the vehicle's history (derived before the epoch,
recorded by workshops after) and of the clock. Working out when each service falls due
(by time, and by distance through the odometer) was most of the cost of a query, and it
depends on the history only. A ``Schedule`` holds it, with the text of its dates;
``status`` brings in the clock: statuses, scores, mileage and warranty at ``now``.
The model keeps the schedules of recently read vehicles and drops a vehicle's when its
history changes (a workshop records a service; a reset).
"""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime

from ..kit.clock import isoformat
from . import plans as pl
from .vehicles import Record, VehicleFacts

_OVERDUE = pl.Status.OVERDUE
_TEXT = {status: status.value for status in pl.Status}  # an enum's .value is a slow descriptor


def add_years(ts: float, years: int) -> float:
    """The same calendar instant ``years`` later (29 February becomes 28 February)."""
    d = datetime.fromtimestamp(ts, tz=UTC)
    year = d.year + years
    day = min(d.day, calendar.monthrange(year, d.month)[1])
    return d.replace(year=year, day=day).timestamp()


def date_of(ts: float) -> str:
    return isoformat(ts)[:10]


class Schedule:
    """When each service of one vehicle falls due, given its history (oldest record first).

    Kept as plain tuples and dicts of text and numbers, which the garbage collector does not
    track: a schedule of objects was some forty more for every recently read vehicle."""

    __slots__ = ("blocks", "delivery_date", "facts", "odometer", "policy", "warranty_end_date", "warranty_ends",
                 "warranty_km")

    def __init__(self, facts: VehicleFacts, history: list[Record], policy: pl.Policy, warranty_years: int,
                 warranty_km: int):
        self.facts, self.policy, self.warranty_km = facts, policy, warranty_km
        self.odometer = pl.Odometer(facts.delivered, facts.km_per_day,
                                    (pl.Reading(r.performed_at, r.mileage_km) for r in history))
        last: dict[str, Record] = {}
        for record in history:  # oldest first: the last one wins
            last[record.spec.code] = record
        # ((block code, name, ((due, the service's view but its status), ...)), ...), in the specification's order
        self.blocks = tuple((block.value, name, tuple(self._scheduled(spec, last.get(spec.code))
                                                      for spec in facts.plan if spec.block is block))
                            for block, name in pl.BLOCK_NAMES.items())
        self.delivery_date = date_of(facts.delivered)
        self.warranty_ends = add_years(facts.delivered, warranty_years)
        self.warranty_end_date = date_of(self.warranty_ends)

    def _scheduled(self, spec: pl.ServiceSpec, done: Record | None) -> tuple[tuple, dict]:
        """(when it falls due, its view but for the status): the view holds only text, numbers
        and None, which the garbage collector does not track; a query copies it with its status."""
        reading = pl.Reading(done.performed_at, done.mileage_km) if done else None
        due = pl.due(spec, reading, self.facts.delivered, self.odometer, self.policy)
        return tuple(due), {
            "serviceType": spec.code, "name": spec.name, "status": None, "intervalDays": spec.every_days,
            "intervalKm": spec.every_km, "lastPerformedAt": isoformat(done.performed_at) if done else None,
            "lastMileageKm": done.mileage_km if done else None, "lastWorkshopId": done.workshop.id if done else None,
            "dueAt": isoformat(due.due_at), "dueMileageKm": math.floor(due.due_km) if due.due_km is not None else None,
            "overdueFrom": isoformat(due.overdue_at)}

    def status(self, vin: str, now: float, forced: dict[str, int]) -> dict:
        """The maintenance status at ``now``; ``forced``: block percentages (by code) set by fault rules."""
        mileage = self.odometer.at(now)
        blocks, any_overdue = [], False
        for code, name, services in self.blocks:
            scores, views = [], []
            for due, view in services:
                status, score = pl.judge(due, now, mileage, self.policy)
                any_overdue |= status is _OVERDUE
                scores.append(score)
                views.append({**view, "status": _TEXT[status]})
            blocks.append({"code": code, "name": name, "compliancePercent": forced.get(code, pl.compliance(scores)),
                           "services": views})
        facts = self.facts
        return {"vin": vin, "asOf": isoformat(now), "model": facts.model, "powertrain": facts.powertrain.value,
                "deliveryDate": self.delivery_date, "mileageKm": math.floor(mileage), "blocks": blocks,
                "warranty": self._warranty(now, mileage, any_overdue)}

    def _warranty(self, now: float, mileage: float, any_overdue: bool) -> dict:
        expired_by = "TIME" if now >= self.warranty_ends else "MILEAGE" if mileage >= self.warranty_km else None
        return {"status": "EXPIRED" if expired_by else "ACTIVE", "startDate": self.delivery_date,
                "endDate": self.warranty_end_date, "mileageLimitKm": self.warranty_km, "expiredBy": expired_by,
                # Insufficient maintenance may void the warranty: the manufacturer decides, VSS warns.
                "maintenanceRisk": expired_by is None and any_overdue}

