"""The factory (``contracts/factory.yaml``): what placing an order and booking a home
delivery answer, and the ``orderStatus`` and ``deliveryStatus`` webhooks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Unusable, Wire, read_tagged

OrderStatus = Literal["ORDER_PLACED", "PRODUCTION_SCHEDULED", "PRODUCTION_IN_PROGRESS", "QUALITY_CONTROL",
                      "READY_FOR_SHIPMENT", "IN_TRANSIT", "ARRIVED_AT_DEALERSHIP"]
NotificationKind = Literal["STATUS_CHANGED", "MILESTONE_REACHED", "ESTIMATE_UPDATED", "TRACKING_UPDATED"]


class OrderConfirmation(Wire):
    """``POST /orders``, 201."""
    orderId: str
    estimatedDate: str  # a day (YYYY-MM-DD): arrival at the dealership, recorded as given


class OrderSummary(Wire):
    orderId: str
    reference: str
    status: OrderStatus


class OrderList(Wire):
    """``GET /orders?reference=``."""
    orders: list[OrderSummary]


class Window(Wire):
    start: str
    end: str


class Delivery(Wire):
    """``POST /orders/{orderId}/delivery``, 201: the booked home delivery."""
    deliveryId: str
    slot: Window
    carrier: str
    trackingNumber: str


class EstimateRevision(Wire):
    reason: Literal["QC_REWORK", "SUPPLIER_SHORTAGE", "PRODUCTION_LINE_STOPPAGE", "QUALITY_HOLD", "LOGISTICS",
                    "REPLANNED"]


class OrderStatusNotification(Wire):
    """The ``orderStatus`` webhook: manufacturing progress of an order."""
    eventType: Literal["ORDER_STATUS"]
    orderId: str
    vin: str | None = None
    sequence: int = Field(ge=1)
    notification: NotificationKind
    status: OrderStatus
    previousStatus: OrderStatus | None = None
    description: str | None = None
    estimatedDate: str | None = None
    estimateRevision: EstimateRevision | None = None


class DeliveryStatusNotification(Wire):
    """The ``deliveryStatus`` webhook: a home delivery's progress."""
    eventType: Literal["DELIVERY_STATUS"]
    orderId: str
    deliveryId: str
    sequence: int = Field(ge=1)
    status: Literal["OUT_FOR_DELIVERY", "DELIVERED", "CUSTOMER_ABSENT", "RETURNED_TO_DEALERSHIP"]
    description: str | None = None
    slot: Window | None = None


FactoryEvent = OrderStatusNotification | DeliveryStatusNotification
EVENTS: dict[str, type[Wire]] = {"ORDER_STATUS": OrderStatusNotification, "DELIVERY_STATUS": DeliveryStatusNotification}


def parse_event(body: Any) -> FactoryEvent:
    """A factory webhook body, told apart by its ``eventType``; ``Unusable`` when it is none
    the core knows or not what its contract describes."""
    return read_tagged(body, "eventType", EVENTS)  # type: ignore[return-value]


__all__ = ["Delivery", "DeliveryStatusNotification", "FactoryEvent", "OrderConfirmation", "OrderList",
           "OrderStatusNotification", "OrderSummary", "Unusable", "parse_event"]
