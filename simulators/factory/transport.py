"""The subcontracted transport company: home delivery from the dealership, on the clock.

Once the final payment is received, CaaS asks for a home delivery with an
address and a requested window; the carrier answers at once with a slot (the
first one of its working hours inside the window, after its lead time). On
the day, the truck leaves the dealership (OUT_FOR_DELIVERY) and reaches the
customer within the slot: DELIVERED, or CUSTOMER_ABSENT, in which case the
vehicle goes back to the dealership (RETURNED_TO_DEALERSHIP) where the
customer must collect it in person, unless another delivery is scheduled
(``POST`` again: a new attempt). A delivery still SCHEDULED is rescheduled by
posting a new request: the old one becomes RESCHEDULED. Each change after
scheduling is a signed ``deliveryStatus`` notification with a per-order
``sequence``.

LIMITATIONS (where this knowingly differs from a real carrier):
- Unlimited capacity: every slot of the working hours is free.
- Working hours and days are in UTC, with no public holidays.
- The final payment is not verified: its reference is recorded as given.
- Only two outcomes at the door (delivered, customer absent): no damage,
  refusal or partial delivery; the return to the dealership always succeeds.
- Deliveries are domestic: the address must be in the dealership's country.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from ..kit.clock import isoformat, parse_datetime, to_datetime
from ..kit.errors import ProblemError
from ..kit.faults import NoParams
from ..kit.service import Service
from . import magic as mg
from .model import FactoryModel, Order
from .shipping import tracking_number
from .timeline import DAY, unit

WEBHOOK = "deliveryStatus"
HOUR = 3600.0
ACTIVE = ("SCHEDULED", "OUT_FOR_DELIVERY", "CUSTOMER_ABSENT")


@dataclass(frozen=True, slots=True)
class DeliveryRules:
    """The carrier's service levels (the ``delivery`` option overrides any of them)."""
    lead_hours: float = 48.0        # earliest slot: this long after the request
    slot_hours: int = 2             # slot length; slots start at open_hour + k * slot_hours
    open_hour: int = 8
    close_hour: int = 20
    working_days: tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # Monday..Saturday
    departure_minutes: float = 60.0  # the truck leaves the dealership this long before the slot
    return_hours: float = 3.0       # back at the dealership this long after a failed attempt
    horizon_days: int = 60          # how far ahead a window may start

    @classmethod
    def from_options(cls, raw: Any) -> DeliveryRules:
        raw = dict(raw or {})
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"delivery: unknown option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        if "working_days" in raw:
            raw["working_days"] = tuple(int(d) for d in raw["working_days"])
        rules = cls(**raw)
        if not (0 <= rules.open_hour < rules.close_hour <= 24 and 1 <= rules.slot_hours <= rules.close_hour - rules.open_hour):
            raise ValueError("delivery: want 0 <= open_hour < close_hour <= 24 and 1 <= slot_hours <= opening hours")
        if not rules.working_days or not set(rules.working_days) <= set(range(7)):
            raise ValueError("delivery: working_days are weekday numbers 0 (Monday) .. 6 (Sunday)")
        if min(rules.lead_hours, rules.departure_minutes, rules.return_hours) < 0 or rules.horizon_days < 1:
            raise ValueError("delivery: durations must not be negative and horizon_days at least 1")
        return rules


@dataclass(slots=True)
class Delivery:
    id: str
    order_id: str
    attempt: int
    address: dict
    window: tuple[float, float]
    slot: tuple[float, float]
    final_payment_reference: str
    tracking_number: str
    scheduled_at: float
    correlation_id: str | None
    status: str = "SCHEDULED"
    history: list[dict] = field(default_factory=list)

    def view(self, carrier: str) -> dict:
        return {"deliveryId": self.id, "orderId": self.order_id, "attempt": self.attempt, "status": self.status,
                "address": self.address,
                "requestedWindow": {"start": isoformat(self.window[0]), "end": isoformat(self.window[1])},
                "slot": {"start": isoformat(self.slot[0]), "end": isoformat(self.slot[1])},
                "finalPaymentReference": self.final_payment_reference, "carrier": carrier,
                "trackingNumber": self.tracking_number, "scheduledAt": isoformat(self.scheduled_at),
                "history": list(self.history)}


def _instant(window: dict, key: str) -> float:
    """An RFC 3339 date-time as a timestamp; the spellings Python rejects (lower-case t/z,
    a leap second) are normalised first, and what still fails is a clear 422."""
    text = window[key].upper()
    if text[17:19] == "60":
        text = text[:17] + "59" + text[19:]
    try:
        return parse_datetime(text)
    except (ValueError, OverflowError):
        raise ProblemError(422, "Invalid delivery window", f"requestedWindow.{key} {window[key]!r} is not a "
                           "date-time this carrier understands", kind="invalid-window") from None


class Transport:
    def __init__(self, service: Service, factory: FactoryModel, rules: DeliveryRules):
        self.service = service
        self.factory = factory
        self.rules = rules
        self.deliveries: dict[str, Delivery] = {}
        self._by_order: dict[str, list[str]] = {}
        self._sequences: dict[str, int] = {}
        self._door_attempts: dict[str, int] = {}  # per order: attempts that reached the customer's door
        self._ids = itertools.count(1)
        service.faults.register("customer_absent", "Nobody is home when the truck arrives: CUSTOMER_ABSENT, "
                                "then the vehicle is returned to the dealership", NoParams)
        service.reset_hooks.append(self.reset)
        factory.on_forget.append(self.forget)

    def reset(self) -> None:
        self.deliveries.clear()
        self._by_order.clear()
        self._sequences.clear()
        self._door_attempts.clear()
        self._ids = itertools.count(1)

    def forget(self, order_id: str) -> None:
        """The factory forgot the order (past its bound, at rest): its deliveries go with it."""
        for delivery_id in self._by_order.pop(order_id, ()):
            del self.deliveries[delivery_id]
        self._sequences.pop(order_id, None)
        self._door_attempts.pop(order_id, None)

    @property
    def carrier(self) -> str:
        return self.factory.carrier["name"]

    # --- reads ----------------------------------------------------------
    def latest(self, order_id: str) -> Delivery | None:
        ids = self._by_order.get(order_id)
        return self.deliveries[ids[-1]] if ids else None

    def current(self, order_id: str) -> dict:
        self.factory.order(order_id)  # 404 for an unknown order
        delivery = self.latest(order_id)
        if delivery is None:
            raise ProblemError(404, "No delivery", f"no home delivery has been scheduled for order {order_id}",
                               kind="no-delivery")
        return delivery.view(self.carrier)

    def view_of(self, order_id: str) -> dict | None:
        delivery = self.latest(order_id)
        return delivery.view(self.carrier) if delivery else None

    # --- scheduling -----------------------------------------------------
    def schedule(self, order_id: str, body: dict, correlation_id: str | None = None) -> dict:
        order = self.factory.order(order_id)
        now = self.service.clock.now()
        self._check_vehicle(order)
        address = body["address"]
        if address["country"] != order.dealership["country"]:
            raise ProblemError(422, "Address outside the delivery area",
                               f"home deliveries from dealership {order.dealership['id']} are within "
                               f"{order.dealership['country']}; the address is in {address['country']}",
                               kind="outside-delivery-area")
        start, end = (_instant(body["requestedWindow"], k) for k in ("start", "end"))
        self._check_window(start, end, now)
        earliest = max(start, now + self.rules.lead_hours * HOUR)
        slot = self._first_slot(earliest, end)
        if slot is None:
            possible = self._first_slot(earliest, math.inf)
            raise ProblemError(422, "No delivery slot in the window",
                               f"the carrier needs {self.rules.lead_hours:g} h notice and delivers "
                               f"{self.rules.open_hour:02d}:00-{self.rules.close_hour:02d}:00 UTC in "
                               f"{self.rules.slot_hours} h slots; the first slot from the window's start "
                               f"begins at {isoformat(possible[0])}", kind="no-slot-available",
                               earliestSlotStart=isoformat(possible[0]))
        previous = self.latest(order.id)
        if previous is not None and previous.status == "SCHEDULED":
            self._record(previous, "RESCHEDULED", "Replaced by a new delivery request")
        ids = self._by_order.setdefault(order.id, [])
        digest = hashlib.blake2b(f"{self.service.seed}:factory:delivery:{next(self._ids)}".encode(), digest_size=10)
        delivery_id = "dlv_" + digest.hexdigest()
        delivery = Delivery(delivery_id, order.id, len(ids) + 1, address, (start, end), slot,
                            body["finalPaymentReference"],
                            tracking_number(self.service.seed, self.factory.carrier["code"], "D", delivery_id),
                            now, correlation_id)
        ids.append(delivery.id)
        self.deliveries[delivery.id] = delivery
        self._record(delivery, "SCHEDULED", f"Home delivery booked for {isoformat(slot[0])} - {isoformat(slot[1])}")
        self.factory.hold(order.id)  # until the vehicle is at rest again
        departure = max(now, slot[0] - self.rules.departure_minutes * 60)
        u = unit(self.service.seed, delivery.id, "at-the-door")
        at_door = slot[0] + round((0.1 + 0.8 * u) * (slot[1] - slot[0]) / 60) * 60
        self.service.at(departure, self._leave, delivery.id)
        self.service.at(at_door, self._at_the_door, delivery.id)
        return delivery.view(self.carrier)

    def _check_vehicle(self, order: Order) -> None:
        latest = self.latest(order.id)
        if latest is not None and latest.status == "DELIVERED":
            raise ProblemError(409, "Vehicle already delivered", f"order {order.id} was delivered to the customer",
                               kind="already-delivered")
        if latest is not None and latest.status in ("OUT_FOR_DELIVERY", "CUSTOMER_ABSENT"):
            raise ProblemError(409, "Delivery in progress",
                               f"delivery {latest.id} is {latest.status}; wait until the vehicle is back at the "
                               "dealership to schedule another", kind="delivery-in-progress")
        if order.status != "ARRIVED_AT_DEALERSHIP":
            raise ProblemError(409, "Vehicle not at the dealership",
                               f"order {order.id} is {order.status}; the vehicle is expected at the dealership on "
                               f"{isoformat(order.arrival_at)[:10]}", kind="vehicle-not-at-dealership")

    def _check_window(self, start: float, end: float, now: float) -> None:
        if end <= start:
            raise ProblemError(422, "Invalid delivery window", "requestedWindow.end must be after its start",
                               kind="invalid-window")
        if end <= now:
            raise ProblemError(422, "Invalid delivery window",
                               f"requestedWindow ends in the past (now {isoformat(now)})", kind="invalid-window")
        if start > now + self.rules.horizon_days * DAY:
            raise ProblemError(422, "Invalid delivery window",
                               f"requestedWindow may start at most {self.rules.horizon_days} days ahead",
                               kind="invalid-window")

    def _first_slot(self, earliest: float, end: float) -> tuple[float, float] | None:
        rules, length = self.rules, self.rules.slot_hours * HOUR
        day = math.floor(earliest / DAY) * DAY
        for _ in range(rules.horizon_days + 8):
            if to_datetime(day).weekday() in rules.working_days:
                for hour in range(rules.open_hour, rules.close_hour - rules.slot_hours + 1, rules.slot_hours):
                    begins = day + hour * HOUR
                    if begins < earliest:
                        continue
                    if begins + length > end:
                        return None
                    return begins, begins + length
            day += DAY
            if day >= end:
                return None
        return None

    # --- on the day -------------------------------------------------------
    def _leave(self, delivery_id: str) -> None:
        delivery = self.deliveries.get(delivery_id)
        if delivery is None or delivery.status != "SCHEDULED":
            return  # rescheduled or reset meanwhile
        self.factory.relocate(delivery.order_id, "OUT_FOR_DELIVERY")
        self._record(delivery, "OUT_FOR_DELIVERY", "The vehicle left the dealership on a car transporter",
                     notify=True)

    def _at_the_door(self, delivery_id: str) -> None:
        delivery = self.deliveries.get(delivery_id)
        if delivery is None or delivery.status != "OUT_FOR_DELIVERY":
            return
        order = self.factory.orders[delivery.order_id]
        tries = self._door_attempts[order.id] = self._door_attempts.get(order.id, 0) + 1
        behaviour = mg.customer(order.customer["lastName"])
        entities = self._entities(order, delivery)
        rule = self.service.domain_fault("customer_absent", entities=entities, correlation_id=delivery.correlation_id)
        if rule or behaviour == "always_absent" or (behaviour == "absent_once" and tries == 1):
            self.factory.relocate(order.id, "RETURNING_TO_DEALERSHIP")
            self._record(delivery, "CUSTOMER_ABSENT", "Nobody at the address; the vehicle is taken back to the "
                         "dealership, where the customer can collect it", notify=True)
            self.service.later(self.rules.return_hours * HOUR, self._returned, delivery.id)
        else:
            self.factory.relocate(order.id, "CUSTOMER")
            self._record(delivery, "DELIVERED", "Vehicle handed over to the customer", notify=True)

    def _returned(self, delivery_id: str) -> None:
        delivery = self.deliveries.get(delivery_id)
        if delivery is None or delivery.status != "CUSTOMER_ABSENT":
            return
        self.factory.relocate(delivery.order_id, "DEALERSHIP")
        self._record(delivery, "RETURNED_TO_DEALERSHIP", "Vehicle back at the dealership; customer pickup required "
                     "unless another delivery is scheduled", notify=True)

    # --- state and notifications --------------------------------------------
    def _entities(self, order: Order, delivery: Delivery) -> dict[str, str]:
        return {**order.entities, "deliveryId": delivery.id, "lastName": order.customer["lastName"]}

    def _record(self, delivery: Delivery, status: str, description: str, *, notify: bool = False) -> None:
        previous, delivery.status = delivery.status, status
        now = self.service.clock.now()
        delivery.history.append({"status": status, "description": description, "timestamp": isoformat(now)})
        order = self.factory.orders[delivery.order_id]
        entities = self._entities(order, delivery)
        self.service.journal.event(f"delivery.{status.lower()}", entities, attempt=delivery.attempt)
        if not notify:
            return
        sequence = self._sequences[order.id] = self._sequences.get(order.id, 0) + 1
        payload = {"eventType": "DELIVERY_STATUS", "orderId": order.id, "reference": order.reference,
                   "dealershipId": order.dealership["id"], "vin": order.vin, "deliveryId": delivery.id,
                   "attempt": delivery.attempt, "sequence": sequence, "status": status, "previousStatus": previous,
                   "description": description, "timestamp": isoformat(now),
                   "slot": {"start": isoformat(delivery.slot[0]), "end": isoformat(delivery.slot[1])},
                   "vehicleLocation": order.location, "carrier": self.carrier,
                   "trackingNumber": delivery.tracking_number}
        self.factory.notifier.send(WEBHOOK, payload, order_id=order.id,
                                   entities={**entities, "status": status, "notification": "DELIVERY_STATUS"},
                                   correlation_id=delivery.correlation_id, magic=order.magic)
