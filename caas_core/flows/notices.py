"""Telling the customer: one outbox row per channel the notice goes on (domain.notifications)."""

from __future__ import annotations

from ..domain.notifications import CHANNELS, NoticeKind
from ..store import outbox


async def notify(conn, purchase, notice: NoticeKind, now: float) -> None:
    await outbox.notify_on(conn, purchase["customer_id"], [channel.value.lower() for channel in CHANNELS[notice]],
                           notice.value, {"purchaseId": purchase["id"], "serviceId": purchase["service_id"],
                                          "vin": purchase["vin"]}, now)
