"""The order timeline: what each stage of an order plans when it is entered, and the estimate.

Entering a status plans its stage: when it ends and the steps due on the way
(milestones, QC checkpoints, an announced delay, tracking checkpoints, the next
status). The estimated READY_FOR_SHIPMENT and arrival dates are the current
stage's end plus the durations of the stages still ahead (timeline.py draws
them), so they only move when a fault does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from operator import attrgetter

from ..kit.clock import isoformat
from ..kit.service import Service
from . import magic as mg
from .order import STATUSES, Order, Step, day_of
from .shipping import arrival, route, tracking_number
from .timeline import ASSEMBLY_MILESTONES, QC_CHECKPOINTS, StageDays, unit

_WHEN = attrgetter("when")


class Stages:
    def __init__(self, service: Service, days: StageDays, *, plant: dict, carrier: dict, qc_failure_rate: float):
        self.service = service
        self.days = days
        self.plant = plant
        self.carrier = carrier
        self.qc_failure_rate = qc_failure_rate
        self._planners: dict[str, Callable[[Order, float], list[Step]]] = {
            "ORDER_PLACED": self._order_placed, "PRODUCTION_SCHEDULED": self._production_scheduled,
            "PRODUCTION_IN_PROGRESS": self._production_in_progress, "QUALITY_CONTROL": self._quality_control,
            "READY_FOR_SHIPMENT": self._ready_for_shipment, "IN_TRANSIT": self._in_transit,
            "ARRIVED_AT_DEALERSHIP": self._arrived_at_dealership,
        }

    def plan(self, order: Order, status: str, now: float) -> list[Step]:
        """The steps of the stage ``order`` enters with ``status`` at ``now``, in time order."""
        steps = self._planners[status](order, now)
        steps.sort(key=_WHEN)
        return steps

    def seconds(self, order: Order, status: str) -> float:
        """How long the stage that starts with ``status`` lasts for this order (its current round)."""
        seed, rnd = self.service.seed, order.qc_failures
        if status == "ORDER_PLACED":
            return self.days.seconds(seed, order.id, "acceptance")
        if status == "PRODUCTION_SCHEDULED":
            return self.days.seconds(seed, order.id, "slot_wait")
        if status == "PRODUCTION_IN_PROGRESS":
            return self.days.seconds(seed, order.id, "assembly" if rnd == 0 else "rework", rnd)
        if status == "QUALITY_CONTROL":
            return self.days.seconds(seed, order.id, "quality_control", rnd)
        if status == "READY_FOR_SHIPMENT":
            return self.days.seconds(seed, order.id, "pickup")
        if status == "IN_TRANSIT":
            transit = self.days.seconds(seed, order.id, "transit")
            if order.dealership["country"] != self.plant["country"]:
                transit += self.days.seconds(seed, order.id, "cross_border")
            return transit
        raise ValueError(f"no stage after {status}")

    def reestimate(self, order: Order, reason: str | None) -> dict | None:
        """Project READY_FOR_SHIPMENT and arrival from the current stage's end; a revision if a date moved."""
        before = (day_of(order.arrival_at), day_of(order.ready_at)) if order.history else None
        index = STATUSES.index(order.status)
        t = order.stage_end
        for status in STATUSES[index + 1:-1]:  # each stage ahead starts where the previous ends
            if status == "READY_FOR_SHIPMENT":
                order.ready_at = t
            t += self.seconds(order, status)
        if index + 1 < len(STATUSES):
            order.arrival_at = t
        if order.tracking is not None and order.status == "IN_TRANSIT":
            order.tracking["eta"] = isoformat(order.arrival_at)
        if before is None:
            return None
        after = day_of(order.arrival_at), day_of(order.ready_at)
        if before == after:
            return None
        moved = date.fromisoformat(after[0]) - date.fromisoformat(before[0])
        return {"previousEstimatedDate": before[0], "previousEstimatedCompletionDate": before[1],
                "reason": reason or "REPLANNED", "delayDays": moved.days}

    # --- one planner per status ---------------------------------------------
    def _order_placed(self, order: Order, now: float) -> list[Step]:
        order.stage_end = now + self.seconds(order, "ORDER_PLACED")
        return [Step(order.stage_end, "status", "PRODUCTION_SCHEDULED")]

    def _production_scheduled(self, order: Order, now: float) -> list[Step]:
        order.stage_end = now + self.seconds(order, "PRODUCTION_SCHEDULED")
        return [Step(order.stage_end, "status", "PRODUCTION_IN_PROGRESS")]

    def _production_in_progress(self, order: Order, now: float) -> list[Step]:
        length = self.seconds(order, "PRODUCTION_IN_PROGRESS")
        order.stage_end = now + length
        steps = [Step(order.stage_end, "status", "QUALITY_CONTROL")]
        if order.qc_failures:  # rework: no milestones, straight back to QC
            return steps
        steps += [Step(now + length * (i + 1) / 5, "milestone", i) for i in range(len(ASSEMBLY_MILESTONES))]
        delay = self.service.domain_fault("production_delay", entities=order.entities,
                                          correlation_id=order.correlation_id)
        if delay is not None:
            order.pending_delay = delay.params["days"], delay.params["reason"]
        elif order.magic == "production_delay":
            order.pending_delay = mg.DELAY_DAYS, "SUPPLIER_SHORTAGE"
        if order.pending_delay:
            # Announced halfway, between the PAINT and POWERTRAIN_MARRIAGE milestones.
            steps.append(Step(now + length / 2, "delay"))
        return steps

    def _quality_control(self, order: Order, now: float) -> list[Step]:
        length = self.seconds(order, "QUALITY_CONTROL")
        order.stage_end = now + length
        if order.qc_failures_left is None:
            rule = self.service.domain_fault("qc_failed", entities=order.entities,
                                             correlation_id=order.correlation_id)
            order.qc_failures_left = rule.params["times"] if rule else 1 if order.magic == "qc_fails_once" else 0
        order.qc_rounds += 1
        seed, rnd = self.service.seed, order.qc_failures
        fails = order.qc_failures_left > 0 or unit(seed, order.id, "qc-natural", rnd) < self.qc_failure_rate
        checks = len(QC_CHECKPOINTS)
        at = lambda i: now + length * (i + 1) / (checks + 1)
        if fails:
            failing = int(unit(seed, order.id, "qc-failing-checkpoint", rnd) * checks)
            return [Step(at(i), "checkpoint", i) for i in range(failing)] + [Step(at(failing), "qc_failed", failing)]
        return [Step(at(i), "checkpoint", i) for i in range(checks)] + [
            Step(order.stage_end, "status", "READY_FOR_SHIPMENT")]

    def _ready_for_shipment(self, order: Order, now: float) -> list[Step]:
        order.ready_at = now  # reached: the estimate becomes the fact
        order.stage_end = now + self.seconds(order, "READY_FOR_SHIPMENT")
        return [Step(order.stage_end, "status", "IN_TRANSIT")]

    def _in_transit(self, order: Order, now: float) -> list[Step]:
        length = self.seconds(order, "IN_TRANSIT")
        order.stage_end = now + length
        order.location = "IN_TRANSIT"
        points = route(self.plant, order.dealership)
        loaded = points[0]
        order.tracking = {
            "carrier": self.carrier["name"],
            "trackingNumber": tracking_number(self.service.seed, self.carrier["code"], "S", order.id),
            "shippedAt": isoformat(now), "eta": isoformat(order.stage_end),
            "origin": self.plant["name"], "destination": arrival(order.dealership).location,
            "currentLocation": loaded.location,
            "checkpoints": [{"code": loaded.code, "location": loaded.location, "description": loaded.description,
                             "timestamp": isoformat(now)}],
        }
        return [Step(now + length * p.fraction, "tracking", p) for p in points[1:]] + [
            Step(order.stage_end, "status", "ARRIVED_AT_DEALERSHIP")]

    def _arrived_at_dealership(self, order: Order, now: float) -> list[Step]:
        order.arrival_at = now
        order.location = "DEALERSHIP"
        point = arrival(order.dealership)
        if order.tracking is not None:
            order.tracking["checkpoints"].append({"code": point.code, "location": point.location,
                                                  "description": point.description, "timestamp": isoformat(now)})
            order.tracking["currentLocation"] = point.location
        return []
