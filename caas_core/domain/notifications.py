"""Which customer notices the service path sends, and on which channels.

The specification: on activation success "Email + Push: Service active" and "Display in
vehicle UI"; after the final OTA failure, "Email + push notification"; IoT API down,
"Notify customer: Delayed activation"; every refund outcome, "Notify customer"; the payment
gateway down, "Defer payment ... Notify customer". A refund the gateway could not pay back
(a closed card, say) is refunded by hand: the customer is told (``REFUND_FAILED``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Channel(StrEnum):
    EMAIL = "EMAIL"
    PUSH = "PUSH"
    IN_VEHICLE = "IN_VEHICLE"


class NoticeKind(StrEnum):
    SERVICE_ACTIVATED = "SERVICE_ACTIVATED"
    ACTIVATION_DELAYED = "ACTIVATION_DELAYED"
    ACTIVATION_FAILED_REFUNDED = "ACTIVATION_FAILED_REFUNDED"
    WITHDRAWAL_CONFIRMED = "WITHDRAWAL_CONFIRMED"
    WITHDRAWAL_REFUSED = "WITHDRAWAL_REFUSED"
    SUBSCRIPTION_CANCELLED = "SUBSCRIPTION_CANCELLED"
    SERVICE_EXPIRED = "SERVICE_EXPIRED"
    REFUND_COMPLETED = "REFUND_COMPLETED"
    REFUND_FAILED = "REFUND_FAILED"
    PAYMENT_DEFERRED = "PAYMENT_DEFERRED"
    MANUAL_PAYMENT_REQUIRED = "MANUAL_PAYMENT_REQUIRED"
    PAYMENT_FAILED = "PAYMENT_FAILED"


CHANNELS: Mapping[NoticeKind, tuple[Channel, ...]] = MappingProxyType({
    NoticeKind.SERVICE_ACTIVATED: (Channel.EMAIL, Channel.PUSH, Channel.IN_VEHICLE),
    NoticeKind.ACTIVATION_DELAYED: (Channel.EMAIL, Channel.PUSH),
    NoticeKind.ACTIVATION_FAILED_REFUNDED: (Channel.EMAIL, Channel.PUSH),
    NoticeKind.WITHDRAWAL_CONFIRMED: (Channel.EMAIL, Channel.PUSH),
    NoticeKind.WITHDRAWAL_REFUSED: (Channel.EMAIL, Channel.PUSH),
    NoticeKind.SUBSCRIPTION_CANCELLED: (Channel.EMAIL, Channel.PUSH),
    NoticeKind.SERVICE_EXPIRED: (Channel.PUSH, Channel.IN_VEHICLE),
    NoticeKind.REFUND_COMPLETED: (Channel.EMAIL,),
    NoticeKind.REFUND_FAILED: (Channel.EMAIL, Channel.PUSH),
    NoticeKind.PAYMENT_DEFERRED: (Channel.EMAIL, Channel.PUSH),
    NoticeKind.MANUAL_PAYMENT_REQUIRED: (Channel.EMAIL, Channel.PUSH),
    NoticeKind.PAYMENT_FAILED: (Channel.EMAIL, Channel.PUSH),
})


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    channels: tuple[Channel, ...]
    data: Mapping[str, Any] = field(default_factory=dict)


def notice(kind: NoticeKind, **data: Any) -> Notice:
    return Notice(kind, CHANNELS[kind], MappingProxyType(dict(data)))
