"""The webhook inbox: durable dedupe on (source, webhook-id) before acknowledging.

Simulators deliver at least once (and, under faults, twice or out of order). An endpoint
calls ``accept`` in the same transaction that records the webhook's effects or enqueues
the job that will process it, and answers 2xx only after that transaction commits:

- first delivery: ``accept`` is True; effects and inbox row commit together;
- redelivery after the commit: ``accept`` is False; acknowledge again, do nothing;
- crash before the commit: neither survives, the sender retries, nothing is lost;
- two deliveries racing: the primary key lets exactly one insert win (see ``accept``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import webhook_inbox


async def accept(
    conn: AsyncConnection, source: str, webhook_id: str, payload: Mapping[str, Any], now: float
) -> bool:
    """Record a webhook; True the first time, False for a duplicate.

    Race-safe through the primary key with ``INSERT ... ON CONFLICT DO NOTHING`` (both
    databases): a concurrent duplicate on PostgreSQL waits for the first transaction,
    then inserts nothing (or inserts, if the first rolled back). Unlike catching an
    IntegrityError, no statement fails, so the caller's transaction stays usable without
    a savepoint.
    """
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(webhook_inbox)
        .values(source=source, webhook_id=webhook_id, received_at=now, payload=dict(payload))
        .on_conflict_do_nothing(index_elements=["source", "webhook_id"])
    )
    return (await conn.execute(stmt)).rowcount == 1


async def mark_processed(
    conn: AsyncConnection, source: str, webhook_id: str, outcome: str, now: float
) -> bool:
    """Note when and how a webhook was handled; False if it was never accepted."""
    result = await conn.execute(
        update(webhook_inbox)
        .where(webhook_inbox.c.source == source, webhook_inbox.c.webhook_id == webhook_id)
        .values(processed_at=now, outcome=outcome)
    )
    return result.rowcount == 1


async def get(conn: AsyncConnection, source: str, webhook_id: str) -> dict[str, Any] | None:
    """The inbox row of one webhook (diagnostics and tests)."""
    row = (
        await conn.execute(
            select(webhook_inbox).where(
                webhook_inbox.c.source == source, webhook_inbox.c.webhook_id == webhook_id
            )
        )
    ).mappings().first()
    return dict(row) if row is not None else None
