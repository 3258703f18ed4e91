"""Read-only questions an outside observer asks of the core's records, each by name.

A harness that ran the core (a benchmark waiting for its queue to drain, an in-process
scenario checking an outcome) asks here instead of querying the tables itself, so that
the schema stays the store's own business: a renamed column changes this module, not
the callers. Every function reads in one read-only transaction of ``db`` (which may be
a ``Database`` opened only for this, with ``create=False``, beside a running core) and
writes nothing.

What a running core also serves over HTTP is better read there: ``GET /__admin/audit``
counts unprocessed webhooks and purchases in flight (``inFlight``). These functions are
for when a request to the core would change what is measured (a benchmark that counts
the server's CPU) or the core has no route for the question yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from .db import Database
from .jobs import PENDING
from .schema import collection_cases as _collection_cases
from .schema import jobs as _jobs
from .schema import purchases, webhook_inbox


async def unprocessed_webhooks(db: Database) -> int:
    """Webhooks accepted into the inbox whose processing has not finished yet."""
    async with db.transaction(readonly=True) as conn:
        return int(await conn.scalar(select(func.count()).select_from(webhook_inbox).where(
            webhook_inbox.c.processed_at.is_(None))))


async def purchases_in_status(db: Database, status: str) -> int:
    """How many purchases are in ``status`` (``"ACTIVE"``, ``"REFUNDED"``... as in core.yaml)."""
    async with db.transaction(readonly=True) as conn:
        return int(await conn.scalar(select(func.count()).select_from(purchases).where(
            purchases.c.status == status)))


async def delivery_times(db: Database) -> list[tuple[float, float]]:
    """``(accepted, delivered)`` of every delivered purchase: when the purchase was
    accepted and when its service was delivered, in seconds of the core's clock."""
    async with db.transaction(readonly=True) as conn:
        rows = (await conn.execute(select(purchases.c.created_at, purchases.c.delivered_at).where(
            purchases.c.delivered_at.is_not(None)))).all()
    return [(float(created), float(delivered)) for created, delivered in rows]


async def collection_cases(db: Database) -> list[dict[str, Any]]:
    """Every collection case (money owed after a failed settlement or a chargeback), as
    a dict: ``id``, ``payment_id``, ``customer_id``, ``amount_minor``, ``currency``,
    ``reason``, ``status`` (``open``, ``on_hold``, ...) and ``created_at``."""
    async with db.transaction(readonly=True) as conn:
        return [dict(row) for row in (await conn.execute(
            select(_collection_cases).order_by(_collection_cases.c.created_at, _collection_cases.c.id)
        )).mappings().all()]


async def job_queue(db: Database, now: float) -> tuple[dict[str, int], float | None]:
    """The pending jobs by kind, and when the oldest of those due by ``now`` was due
    (None: nothing is overdue)."""
    async with db.transaction(readonly=True) as conn:
        rows = (await conn.execute(select(_jobs.c.kind, func.count()).where(_jobs.c.status == PENDING)
                                   .group_by(_jobs.c.kind))).all()
        oldest = await conn.scalar(select(func.min(_jobs.c.run_at)).where(_jobs.c.status == PENDING,
                                                                           _jobs.c.run_at <= now))
    return {kind: int(n) for kind, n in rows}, (float(oldest) if oldest is not None else None)
