"""What the core tells people and keeps for the record: notifications, support tickets,
and the audit log of risk decisions.

All writes take the caller's connection, so a notification or an audit entry commits
with the state change it describes (never "email sent" for a rolled-back purchase).
Notifications are an outbox the API reads (the reference core delivers nothing itself).

Ids default to ``<prefix>_<order><random>`` from the core's id source (``store.ids``:
seeded in a world on a virtual clock, so that the same seed gives the same ids). Callers
may pass ``id=`` derived from the entity instead, e.g. ``f"ntf_{purchase_id}_activated"``.
Listings order by ``created_at`` then id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .ids import of as id_source
from .schema import CHANNELS, audit_log, notifications, support_tickets


def _new_id(conn: AsyncConnection, prefix: str) -> str:
    # In write order: rows written at the same clock instant list in the order they were
    # written, since readers sort by (created_at, id).
    return id_source(conn).ordered(prefix)


# --- notifications ------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    id: str
    customer_id: str
    channel: str
    template: str
    payload: dict[str, Any]
    created_at: float
    read_at: float | None


async def notify(
    conn: AsyncConnection,
    customer_id: str,
    channel: str,
    template: str,
    payload: Mapping[str, Any],
    now: float,
    *,
    id: str | None = None,
) -> str:
    """Queue a notification on ``email``, ``push`` or ``in_vehicle``; return its id."""
    return (await notify_on(conn, customer_id, [channel], template, payload, now, ids=[id] if id else None))[0]


async def notify_on(
    conn: AsyncConnection,
    customer_id: str,
    channels: Sequence[str],
    template: str,
    payload: Mapping[str, Any],
    now: float,
    *,
    ids: Sequence[str] | None = None,
) -> list[str]:
    """The same notification on several channels, in one execution (one round trip); their ids."""
    if unknown := [c for c in channels if c not in CHANNELS]:
        raise ValueError(f"unknown channel {unknown[0]!r}; expected one of {CHANNELS}")
    if not channels:
        return []
    ids = list(ids or [_new_id(conn, "ntf") for _ in channels])
    await conn.execute(_INSERT_NOTIFICATION, [
        {"id": notification_id, "customer_id": customer_id, "channel": channel, "template": template,
         "payload": dict(payload), "created_at": now}
        for notification_id, channel in zip(ids, channels, strict=True)])
    return ids


_INSERT_NOTIFICATION = notifications.insert()  # built once (see jobs._INSERT)


async def notifications_for(
    conn: AsyncConnection,
    customer_id: str,
    *,
    channel: str | None = None,
    unread_only: bool = False,
) -> list[Notification]:
    """A customer's notifications, oldest first."""
    stmt = select(notifications).where(notifications.c.customer_id == customer_id)
    if channel is not None:
        stmt = stmt.where(notifications.c.channel == channel)
    if unread_only:
        stmt = stmt.where(notifications.c.read_at.is_(None))
    stmt = stmt.order_by(notifications.c.created_at, notifications.c.id)
    return [Notification(**row) for row in (await conn.execute(stmt)).mappings()]


async def mark_read(conn: AsyncConnection, notification_id: str, now: float) -> bool:
    """Mark read (first read wins); False if unknown or already read."""
    result = await conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id, notifications.c.read_at.is_(None))
        .values(read_at=now)
    )
    return result.rowcount == 1


# --- support tickets ----------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    id: str
    customer_id: str
    vin: str | None
    purchase_id: str | None
    subject: str
    diagnostics: dict[str, Any]
    status: str
    created_at: float


async def open_ticket(
    conn: AsyncConnection,
    customer_id: str,
    vin: str | None,
    subject: str,
    diagnostics: Mapping[str, Any],
    now: float,
    *,
    purchase_id: str | None = None,
    status: str = "open",
    id: str | None = None,
) -> str:
    """Open a support ticket (e.g. an activation that failed for good); return its id."""
    ticket_id = id or _new_id(conn, "tkt")
    await conn.execute(
        support_tickets.insert().values(
            id=ticket_id, customer_id=customer_id, vin=vin, purchase_id=purchase_id,
            subject=subject, diagnostics=dict(diagnostics), status=status, created_at=now,
        )
    )
    return ticket_id


async def tickets_for(conn: AsyncConnection, customer_id: str | None) -> list[Ticket]:
    """A customer's tickets (every ticket for ``None``: the operators' view), oldest first."""
    stmt = select(support_tickets).order_by(support_tickets.c.created_at, support_tickets.c.id)
    if customer_id is not None:
        stmt = stmt.where(support_tickets.c.customer_id == customer_id)
    return [Ticket(**row) for row in (await conn.execute(stmt)).mappings()]


async def set_ticket_status(conn: AsyncConnection, ticket_id: str, status: str) -> bool:
    result = await conn.execute(
        update(support_tickets).where(support_tickets.c.id == ticket_id).values(status=status)
    )
    return result.rowcount == 1


# --- audit log of risk decisions ----------------------------------------------------


@dataclass(frozen=True)
class Decision:
    id: str
    kind: str
    subject: str
    decision: str
    detail: dict[str, Any]
    created_at: float


async def record_decision(
    conn: AsyncConnection,
    kind: str,
    subject: str,
    decision: str,
    detail: Mapping[str, Any],
    now: float,
    *,
    id: str | None = None,
) -> str:
    """Append a risk decision (e.g. kind="purchase_risk", decision="flag") to the audit
    log; return its id. Append-only: there is no update or delete."""
    decision_id = id or _new_id(conn, "aud")
    await conn.execute(
        audit_log.insert().values(
            id=decision_id, kind=kind, subject=subject, decision=decision,
            detail=dict(detail), created_at=now,
        )
    )
    return decision_id


async def decisions(
    conn: AsyncConnection, *, subject: str | None = None, kind: str | None = None
) -> list[Decision]:
    """Audit entries, oldest first, optionally for one subject and/or kind."""
    stmt = select(audit_log)
    if subject is not None:
        stmt = stmt.where(audit_log.c.subject == subject)
    if kind is not None:
        stmt = stmt.where(audit_log.c.kind == kind)
    stmt = stmt.order_by(audit_log.c.created_at, audit_log.c.id)
    return [Decision(**row) for row in (await conn.execute(stmt)).mappings()]
