"""The factory: order placement and manufacturing, on the service's clock.

``POST /orders`` is synchronous: the order is checked against the catalogue
and answered at once with its id, the estimated dates and ORDER_PLACED.
Manufacturing then follows the specification's state diagram on the clock:

    ORDER_PLACED -> PRODUCTION_SCHEDULED -> PRODUCTION_IN_PROGRESS -> QUALITY_CONTROL
      -> READY_FOR_SHIPMENT -> IN_TRANSIT -> ARRIVED_AT_DEALERSHIP
    (QUALITY_CONTROL -> PRODUCTION_IN_PROGRESS when QC fails: rework, then QC again)

Each stage lasts a duration drawn from the seed and the order (timeline.py) and
is planned when the order enters it (stages.py).
Every status change, component-assembly milestone, QC checkpoint, estimate
revision and shipment checkpoint is one ``orderStatus`` notification with a
per-order ``sequence``, kept in the order's history and sent as a signed
webhook, at least once (notifier.py). The estimate given at placement is
what happens unless a QC failure or a production delay moves it; a move is
announced with ``estimateRevision``.

LIMITATIONS (where this knowingly differs from a real factory):
- One plant, unlimited capacity: orders never compete for line slots, and the
  slot wait is drawn per order, not planned.
- The estimate is exact (the simulator knows its own draws) and only moves on
  QC failures and production delays; real estimates drift.
- The CaaS-side states of the diagram (AWAITING_FINAL_PAYMENT, REGISTRATION,
  RETURNED_TO_STOCK) are the core's: the factory stops at ARRIVED_AT_DEALERSHIP
  and is never told that a vehicle went back to stock.
- Orders cannot be amended or cancelled once placed.
- Times of day are not shift-aware: stages end at any hour, weekends included.
- The order rejection rules are the catalogue's (discontinued model, options
  not offered, two options of one exclusive group) plus faults; no credit or
  allocation checks.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Literal, NoReturn

from pydantic import Field

from ..kit.clock import isoformat
from ..kit.errors import ProblemError
from ..kit.faults import NoParams
from ..kit.retention import Retention
from ..kit.service import Service
from ..kit.untracked import RecordStore
from . import catalogue
from . import magic as mg
from .notifier import Notifier
from .order import REFERENCE, Order, Step, day_of, on_its_way, values_of
from .stages import Stages
from .timeline import ASSEMBLY_MILESTONES, DAY, QC_CHECKPOINTS, StageDays
from .vins import VinPool

WEBHOOK = "orderStatus"
#: Orders kept: past this many, the oldest with no stage ahead (delivered, cancelled, or
#: waiting at the dealership) are forgotten (404). A count, not an age: a car may wait at a
#: dealership for months, and a world of a test holds far fewer.
ORDERS_KEPT = 100_000
#: Where a home-delivered vehicle stops: an order there with no stage ahead may be forgotten.
AT_REST = ("DEALERSHIP", "CUSTOMER")
DELAY_REASONS = ("SUPPLIER_SHORTAGE", "PRODUCTION_LINE_STOPPAGE", "QUALITY_HOLD", "LOGISTICS")
_DELAY_TEXT = {
    "SUPPLIER_SHORTAGE": "a supplier shortage of components",
    "PRODUCTION_LINE_STOPPAGE": "a stoppage of the production line",
    "QUALITY_HOLD": "a quality hold on a batch of parts",
    "LOGISTICS": "inbound logistics problems",
}


class RejectedParams(NoParams):
    reason: Literal[catalogue.REJECTION_REASONS] = "PRODUCTION_CAPACITY_EXCEEDED"  # type: ignore[valid-type]


class UnavailableParams(NoParams):
    retry_after: int = Field(default=120, ge=0, le=86400)


class SlowParams(NoParams):
    seconds: float = Field(default=45, gt=0, le=3600)
    create: bool = True


class QcFailedParams(NoParams):
    times: int = Field(default=1, ge=1, le=10)


class DelayParams(NoParams):
    days: int = Field(default=7, ge=1, le=365)
    reason: Literal[DELAY_REASONS] = "SUPPLIER_SHORTAGE"  # type: ignore[valid-type]


FAULTS = {
    "order_rejected": ("POST /orders is refused: 422 order-rejected with `reason`", RejectedParams),
    "factory_unavailable": ("POST /orders answers 503 with Retry-After: `retry_after` seconds", UnavailableParams),
    "slow_placement": (("POST /orders takes `seconds` of clock time (beyond a caller's 30 s timeout); "
                        "with create=true the order is created anyway, with create=false the factory "
                        "gives up with 504 and creates nothing"), SlowParams),
    "qc_failed": (("Quality control fails `times` times in a row for the order (consulted when it first "
                   "enters QUALITY_CONTROL); each failure means rework and another QC"), QcFailedParams),
    "production_delay": (("Production slips `days` days for `reason`, announced mid-assembly with an "
                          "ESTIMATE_UPDATED notification (consulted when production starts)"), DelayParams),
}


class FactoryModel:
    def __init__(self, service: Service, *, stage_days: StageDays, vins: VinPool, plant: dict, carrier: dict,
                 placement_seconds: float = 0.0, qc_failure_rate: float = 0.0):
        self.service = service
        self.vins = vins
        self.carrier = carrier
        self.placement_seconds = placement_seconds
        self.stages = Stages(service, stage_days, plant=plant, carrier=carrier, qc_failure_rate=qc_failure_rate)
        self.notifier = Notifier(service)
        self.retention = Retention(service.clock.now, keep=ORDERS_KEPT)
        self._on_fire = self._fire  # one bound method for every order's timer, not one each
        self.orders: RecordStore[Order] = RecordStore(Order.unpack, Order.pack)
        # reference -> its order's id, or a list of ids when it has several (rare: a list per
        # reference would be one more object per order for the collector to walk)
        self._by_reference: dict[str, str | list[str]] = {}
        self._attempts: dict[str, int] = {}  # placement attempts of a TEST-UNAVAILABLE order's reference
        self._ids = itertools.count(1)
        self.on_forget: list[Callable[[str], None]] = []  # what else keeps an order's records (transport)
        for name, (description, params) in FAULTS.items():
            service.faults.register(name, description, params)
        service.reset_hooks.append(self.reset)

    def reset(self) -> None:
        self.retention.clear()
        self.orders.clear()
        self._by_reference.clear()
        self._attempts.clear()
        self._ids = itertools.count(1)
        self.notifier.reset()
        self.vins.reset()

    def prune(self) -> None:
        """Forget the oldest orders with no stage ahead past ``ORDERS_KEPT``."""
        for order_id in self.retention.due():
            packed = self.orders.raw(order_id)
            if packed is None:
                continue
            if on_its_way(packed):
                self.retention.touched(order_id, finished=False)  # until its last step
                continue
            del self.orders[order_id]
            for forget in self.on_forget:
                forget(order_id)
            reference = values_of(packed)[REFERENCE]
            siblings = self._by_reference.get(reference)
            if isinstance(siblings, list) and order_id in siblings:
                siblings.remove(order_id)
                if len(siblings) == 1:
                    self._by_reference[reference] = siblings[0]
            elif siblings == order_id:
                del self._by_reference[reference]
                self._attempts.pop(reference, None)

    # --- reads ----------------------------------------------------------
    def order(self, order_id: str) -> Order:
        """The order, unpacked: a change is kept by writing it back (``self.orders[id] = order``)."""
        order = self.orders.get(order_id)
        if order is None:
            raise ProblemError(404, "Unknown order", f"no factory order {order_id}", kind="unknown-order")
        return order

    def view(self, order_id: str) -> dict:
        order = self.order(order_id)
        last_change = next(e for e in reversed(order.history) if e["notification"] == "STATUS_CHANGED")
        return {
            "orderId": order.id, "reference": order.reference, "status": order.status,
            "statusDescription": last_change["description"], "model": order.model.code,
            "options": list(order.options), "customer": order.customer, "dealership": order.dealership,
            "vin": order.vin, "vehicleLocation": order.location, "createdAt": isoformat(order.created),
            "updatedAt": isoformat(order.updated), "estimatedDate": day_of(order.arrival_at),
            "estimatedCompletionDate": day_of(order.ready_at),
            "qualityControl": {"rounds": order.qc_rounds, "failures": order.qc_failures},
            "history": list(order.history), "tracking": self._tracking(order),
        }

    def find(self, reference: str) -> dict:
        ids = self._by_reference.get(reference, ())
        orders = [self.orders[i] for i in ((ids,) if isinstance(ids, str) else ids)]
        return {"orders": [{"orderId": o.id, "reference": o.reference, "status": o.status,
                            "createdAt": isoformat(o.created), "estimatedDate": day_of(o.arrival_at)}
                           for o in orders]}

    # --- placement ------------------------------------------------------
    async def place(self, body: dict, correlation_id: str | None = None) -> dict:
        """Check, then create, an order; raises ProblemError for a refusal (503, 504, 422)."""
        self.prune()
        dealership, reference = body["dealership"], body["reference"]
        behaviour = mg.dealership(dealership["id"])
        entities = {"reference": reference, "dealershipId": dealership["id"], "model": body["model"]}
        take = lambda action: self.service.domain_fault(action, entities=entities, correlation_id=correlation_id)
        # Only a magic dealership's references count their attempts: any other reference,
        # refused before it made an order, would be kept here for good.
        attempt = 0
        if behaviour == "unavailable_twice":
            attempt = self._attempts[reference] = self._attempts.get(reference, 0) + 1
        if rule := take("factory_unavailable"):
            self._unavailable(rule.params["retry_after"])
        if attempt and attempt <= mg.UNAVAILABLE_ATTEMPTS:
            self._unavailable(mg.UNAVAILABLE_RETRY_AFTER)
        seconds, create = self.placement_seconds, True
        if rule := take("slow_placement"):
            seconds, create = rule.params["seconds"], rule.params["create"]
        elif behaviour in ("slow_created", "slow_not_created"):
            seconds, create = mg.SLOW_SECONDS, behaviour == "slow_created"
        if seconds > 0:
            # The order system really is this slow: a clock wait, so 45 s cost nothing in virtual time.
            await self.service.hold(seconds)
        if not create:
            self.service.journal.event("order.placement_timed_out", entities, seconds=seconds)
            raise ProblemError(504, "Order placement timed out",
                               f"the factory's order system gave up after {seconds:g} s; no order was created",
                               kind="placement-timeout")
        refusal = catalogue.rejection(body["model"], body["options"])
        if refusal is None and behaviour == "rejected":
            refusal = "DEALERSHIP_NOT_AUTHORISED", f"dealership {dealership['id']} may not order from this factory"
        if refusal is None and (rule := take("order_rejected")):
            refusal = rule.params["reason"], f"the factory refused the order (fault rule {rule.id})"
        if refusal is not None:
            reason, detail = refusal
            self.service.journal.event("order.rejected", entities, reason=reason)
            raise ProblemError(422, "Order rejected", detail, kind="order-rejected", reason=reason)
        return self._create(body, correlation_id, behaviour)

    def _unavailable(self, retry_after: int) -> NoReturn:
        raise ProblemError(503, "Factory unavailable",
                           f"the factory's order system is unavailable; retry in {retry_after} s",
                           kind="factory-unavailable", headers={"Retry-After": str(retry_after)})

    def _create(self, body: dict, correlation_id: str | None, behaviour: str | None) -> dict:
        now = self.service.clock.now()
        digest = hashlib.blake2b(f"{self.service.seed}:factory:order:{next(self._ids)}".encode(), digest_size=10)
        order = Order("ord_" + digest.hexdigest(), body["reference"], catalogue.MODELS[body["model"]],
                      tuple(body["options"]), body["customer"], body["dealership"], now, correlation_id, behaviour)
        siblings = self._by_reference.setdefault(order.reference, order.id)
        if isinstance(siblings, list):
            siblings.append(order.id)
        elif siblings != order.id:
            self._by_reference[order.reference] = [siblings, order.id]
        self._enter(order, "ORDER_PLACED",
                    f"Order confirmed: {order.model.name} for dealership {order.dealership['id']}")
        self._arm(order)
        self.orders[order.id] = order
        placed = order.history[-1]
        return {"orderId": order.id, "reference": order.reference, "status": order.status,
                "statusDescription": placed["description"], "createdAt": isoformat(now),
                "estimatedDate": placed["estimatedDate"], "estimatedCompletionDate": day_of(order.ready_at)}

    # --- manufacturing ----------------------------------------------------
    def _enter(self, order: Order, status: str, description: str | Callable[[Order], str], *,
               reason: str | None = None, milestone: dict | None = None) -> None:
        """Move to ``status``: plan the stage, re-estimate, notify. A callable description is
        written once the stage is planned (it may name the stage's end or the tracking number)."""
        now = self.service.clock.now()
        previous, order.status, order.updated = order.status, status, now
        order.steps = self.stages.plan(order, status, now)
        revision = self.stages.reestimate(order, reason)
        text = description(order) if callable(description) else description
        self._notify(order, "STATUS_CHANGED", text, previous, milestone=milestone, revision=revision)

    # --- the clock --------------------------------------------------------
    def _arm(self, order: Order) -> None:
        """The timer of the order's next step: one per order, armed once its change is done
        (at placement and after each step), so that none is ever cancelled."""
        self.retention.touched(order.id, finished=not order.steps)  # every change of an order ends here
        if order.steps:
            self.service.at(order.steps[0].when, self._on_fire, order.id)

    def _fire(self, order_id: str) -> None:
        order = self.orders.get(order_id)
        if order is None or not order.steps:
            return  # reset in between
        step = order.steps.pop(0)
        getattr(self, f"_on_{step.kind}")(order, step)
        self._arm(order)
        self.orders[order_id] = order

    def hold(self, order_id: str) -> None:
        """Keep the order until it is relocated at rest: a home delivery is booked for it, and
        its next move must find the order there."""
        self.retention.touched(order_id, finished=False)

    def relocate(self, order_id: str, location: str) -> None:
        """Where the vehicle is now (the home delivery moves it); on the road, it is held."""
        order = self.orders[order_id]
        order.location = location
        self.orders[order_id] = order
        self.retention.touched(order_id, finished=location in AT_REST and not order.steps)

    def _on_status(self, order: Order, step: Step) -> None:
        status = step.arg
        if status == "PRODUCTION_SCHEDULED":
            self._enter(order, status, lambda o: f"Order accepted by the plant; production starts on "
                                                 f"{day_of(o.stage_end)}")
        elif status == "PRODUCTION_IN_PROGRESS":
            order.vin = self.vins.allocate(order.model.vin_line)
            self._enter(order, status, f"Manufacturing started; VIN {order.vin} assigned")
        elif status == "QUALITY_CONTROL":
            text = ("Assembly complete; quality control started" if order.qc_failures == 0 else
                    f"Rework complete; quality control round {order.qc_failures + 1} started")
            self._enter(order, status, text)
        elif status == "READY_FOR_SHIPMENT":
            self._enter(order, status, "Quality control passed; vehicle ready for shipment, awaiting the carrier")
        elif status == "IN_TRANSIT":
            self._enter(order, status, lambda o: (
                f"Shipped to dealership {o.dealership['id']} by {self.carrier['name']}, tracking "
                f"{o.tracking['trackingNumber']}; expected on {day_of(o.arrival_at)}"))
        else:
            self._enter(order, status, f"Vehicle arrived at dealership {order.dealership['id']}; receipt confirmed")

    def _on_milestone(self, order: Order, step: Step) -> None:
        code, text = ASSEMBLY_MILESTONES[step.arg]
        milestone = {"code": code, "description": text, "stage": "ASSEMBLY", "step": step.arg + 1,
                     "of": len(ASSEMBLY_MILESTONES), "result": "COMPLETED"}
        self._notify(order, "MILESTONE_REACHED",
                     f"Assembly milestone {step.arg + 1}/{len(ASSEMBLY_MILESTONES)}: {text}", order.status,
                     milestone=milestone)

    def _on_checkpoint(self, order: Order, step: Step) -> None:
        code, text = QC_CHECKPOINTS[step.arg]
        milestone = {"code": code, "description": text, "stage": "QUALITY_CONTROL", "step": step.arg + 1,
                     "of": len(QC_CHECKPOINTS), "result": "PASSED"}
        self._notify(order, "MILESTONE_REACHED", f"QC checkpoint passed: {text}", order.status, milestone=milestone)

    def _on_qc_failed(self, order: Order, step: Step) -> None:
        code, text = QC_CHECKPOINTS[step.arg]
        order.qc_failures += 1
        order.qc_failures_left = max(0, (order.qc_failures_left or 0) - 1)
        self.service.journal.event("order.qc_failed", order.entities, checkpoint=code, round=order.qc_rounds)
        milestone = {"code": code, "description": text, "stage": "QUALITY_CONTROL", "step": step.arg + 1,
                     "of": len(QC_CHECKPOINTS), "result": "FAILED"}
        self._enter(order, "PRODUCTION_IN_PROGRESS", f"Quality control failed at checkpoint {code}: "
                    "vehicle sent back for rework", reason="QC_REWORK", milestone=milestone)

    def _on_delay(self, order: Order, step: Step) -> None:
        days, reason = order.pending_delay
        order.pending_delay = None
        shift = days * DAY
        for later in order.steps:
            later.when += shift
        order.stage_end += shift
        revision = self.stages.reestimate(order, reason)
        self.service.journal.event("order.delayed", order.entities, days=days, reason=reason)
        self._notify(order, "ESTIMATE_UPDATED", f"Production delayed by {days} days due to {_DELAY_TEXT[reason]}",
                     order.status, revision=revision)

    def _on_tracking(self, order: Order, step: Step) -> None:
        point = step.arg
        now = self.service.clock.now()
        order.tracking["checkpoints"].append({"code": point.code, "location": point.location,
                                              "description": point.description, "timestamp": isoformat(now)})
        order.tracking["currentLocation"] = point.location
        self._notify(order, "TRACKING_UPDATED", point.description, order.status)

    # --- notifications -----------------------------------------------------------
    def _tracking(self, order: Order) -> dict | None:
        if order.tracking is None:
            return None
        return {**order.tracking, "checkpoints": list(order.tracking["checkpoints"])}

    def _notify(self, order: Order, kind: str, description: str, previous: str | None, *,
                milestone: dict | None = None, revision: dict | None = None) -> None:
        order.sequence += 1
        event = {"sequence": order.sequence, "notification": kind, "status": order.status,
                 "previousStatus": previous, "description": description,
                 "timestamp": isoformat(self.service.clock.now()), "milestone": milestone,
                 "estimatedDate": day_of(order.arrival_at), "estimateRevision": revision}
        order.history.append(event)
        entities = order.entities
        self.service.journal.event(f"order.{kind.lower()}", entities, sequence=order.sequence,
                                   status=order.status)
        payload = {"eventType": "ORDER_STATUS", "orderId": order.id, "reference": order.reference,
                   "dealershipId": order.dealership["id"], "vin": order.vin, **event,
                   "estimatedCompletionDate": day_of(order.ready_at), "tracking": self._tracking(order)}
        self.notifier.send(WEBHOOK, payload, order_id=order.id,
                           entities={**entities, "status": order.status, "notification": kind},
                           correlation_id=order.correlation_id, magic=order.magic)
