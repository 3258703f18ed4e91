"""A vehicle sale, from the reservation signal to the keys: its states and rules.

The sale's status follows the specification's Manufacturing Status Flow, then the
Final Payment, Registration and Transport Coordination sections::

    AWAITING_RESERVATION -reservation paid-> ORDER_QUEUED (factory unreachable: retried)
      -order placed-> ORDER_PLACED -> PRODUCTION_SCHEDULED -> PRODUCTION_IN_PROGRESS
      -> QUALITY_CONTROL (-> PRODUCTION_IN_PROGRESS on a failed QC: rework)
      -> READY_FOR_SHIPMENT -> IN_TRANSIT -> ARRIVED_AT_DEALERSHIP -> AWAITING_FINAL_PAYMENT
      -final payment-> REGISTRATION -plate-> READY_FOR_DELIVERY -> DELIVERY_SCHEDULED
      -> DELIVERED | AWAITING_COLLECTION (customer absent) -collected-> DELIVERED
    ORDER_QUEUED/ORDER_PLACED -factory rejects-> ORDER_REJECTED (reservation refunded)
    AWAITING_FINAL_PAYMENT -payment fails-> RETURNED_TO_STOCK (reservation lost)
    REGISTRATION -cannot resolve-> CANCELLED (everything paid refunded)

Manufacturing notifications are at least once and may arrive out of order: each carries
the factory's per-order ``sequence``. One is applied only when its sequence is newer
than the last applied one; a duplicate or an older one is recorded and changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SaleStatus(StrEnum):
    AWAITING_RESERVATION = "AWAITING_RESERVATION"
    ORDER_QUEUED = "ORDER_QUEUED"
    ORDER_PLACED = "ORDER_PLACED"
    ORDER_REJECTED = "ORDER_REJECTED"
    PRODUCTION_SCHEDULED = "PRODUCTION_SCHEDULED"
    PRODUCTION_IN_PROGRESS = "PRODUCTION_IN_PROGRESS"
    QUALITY_CONTROL = "QUALITY_CONTROL"
    READY_FOR_SHIPMENT = "READY_FOR_SHIPMENT"
    IN_TRANSIT = "IN_TRANSIT"
    ARRIVED_AT_DEALERSHIP = "ARRIVED_AT_DEALERSHIP"
    AWAITING_FINAL_PAYMENT = "AWAITING_FINAL_PAYMENT"
    RETURNED_TO_STOCK = "RETURNED_TO_STOCK"
    REGISTRATION = "REGISTRATION"
    READY_FOR_DELIVERY = "READY_FOR_DELIVERY"
    DELIVERY_SCHEDULED = "DELIVERY_SCHEDULED"
    AWAITING_COLLECTION = "AWAITING_COLLECTION"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


S = SaleStatus

#: The factory's statuses, in the order of the flow (the rework loop aside).
MANUFACTURING = (S.ORDER_PLACED, S.PRODUCTION_SCHEDULED, S.PRODUCTION_IN_PROGRESS, S.QUALITY_CONTROL,
                 S.READY_FOR_SHIPMENT, S.IN_TRANSIT, S.ARRIVED_AT_DEALERSHIP)
#: Where the factory's notifications still move the sale (later, the sale is CaaS's own).
FOLLOWS_FACTORY = frozenset({S.ORDER_QUEUED, *MANUFACTURING})
FINAL = frozenset({S.ORDER_REJECTED, S.RETURNED_TO_STOCK, S.DELIVERED, S.CANCELLED})
#: Where the dealership may still cancel the sale with a full refund.
CANCELLABLE = frozenset({S.ORDER_QUEUED, S.REGISTRATION})


class SaleConflict(Exception):
    """The operation does not apply to the sale in its current status (HTTP 409)."""

    def __init__(self, status: str, operation: str, allowed: frozenset[SaleStatus] | tuple[SaleStatus, ...]):
        super().__init__(f"cannot {operation} a sale in status {status}; only in "
                         f"{', '.join(sorted(s.value for s in allowed))}")
        self.status = status


def require(status: str, operation: str, *allowed: SaleStatus) -> None:
    if SaleStatus(status) not in allowed:
        raise SaleConflict(status, operation, allowed)


@dataclass(frozen=True, slots=True)
class StatusDecision:
    apply: bool
    status: SaleStatus | None  # the sale's new status when applied and it moves
    reason: str                # what the file records: applied, duplicate, stale, ...


def manufacturing_update(sale_status: str, last_sequence: int, notification: dict) -> StatusDecision:
    """What an ``orderStatus`` notification does to a sale.

    ``last_sequence`` is the sequence of the last notification applied (0: none).
    """
    sequence = notification.get("sequence") or 0
    if sequence <= last_sequence:
        return StatusDecision(False, None, "duplicate" if sequence == last_sequence else "stale")
    current = SaleStatus(sale_status)
    if current not in FOLLOWS_FACTORY:
        return StatusDecision(True, None, f"recorded (sale is {current.value})")
    # Every kind of notification carries the order's current status: a milestone after a
    # lost or stale status change still brings the sale up to date.
    new = SaleStatus(notification["status"])
    if new is current:
        return StatusDecision(True, None, "recorded")
    if current is S.ORDER_QUEUED or _rank(new) > _rank(current) or _is_rework(current, new, notification):
        # Arrival at the dealership is where the customer's part starts: ask for the final payment.
        return StatusDecision(True, S.AWAITING_FINAL_PAYMENT if new is S.ARRIVED_AT_DEALERSHIP else new, "applied")
    return StatusDecision(True, None, f"no regression from {current.value} to {new.value}")


def _rank(status: SaleStatus) -> int:
    return MANUFACTURING.index(status) if status in MANUFACTURING else -1


def _is_rework(current: SaleStatus, new: SaleStatus, notification: dict) -> bool:
    return (current is S.QUALITY_CONTROL and new is S.PRODUCTION_IN_PROGRESS
            and notification.get("notification") == "STATUS_CHANGED"
            and notification.get("previousStatus") == S.QUALITY_CONTROL.value)


#: The customer notice a manufacturing status causes (Transport Coordination table).
MANUFACTURING_NOTICES = {
    S.PRODUCTION_SCHEDULED: "MANUFACTURING_UPDATE",
    S.PRODUCTION_IN_PROGRESS: "MANUFACTURING_UPDATE",
    S.QUALITY_CONTROL: "MANUFACTURING_UPDATE",
    S.READY_FOR_SHIPMENT: "VEHICLE_READY_FOR_SHIPMENT",
    S.IN_TRANSIT: "VEHICLE_SHIPPED",
    S.AWAITING_FINAL_PAYMENT: "VEHICLE_AVAILABLE_FINAL_PAYMENT_REQUESTED",
}
