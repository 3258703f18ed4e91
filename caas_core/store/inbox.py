"""The webhook inbox: durable dedupe on (source, webhook-id) before acknowledging.

Simulators deliver at least once (and, under faults, twice or out of order). The receivers
gather deliveries into one transaction (``flows.webhooks``) that records them with
``accept_many`` (``accept_many_sqlite`` on a SQLite file) together with the jobs that will
process them, and answer 2xx only after that transaction commits:

- first delivery: the pair comes back as new; inbox row and job commit together;
- redelivery after the commit: not new; acknowledge again, do nothing;
- crash before the commit: neither survives, the sender retries, nothing is lost;
- two deliveries racing: the primary key lets exactly one row exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import webhook_inbox

#: The dedupe key of the job that processes a webhook is this prefix, its source, ":" and its id.
JOB_KEY_PREFIX = "webhook:"


def job_key(source: str, webhook_id: str) -> str:
    """The dedupe key of the job that processes a webhook (``flows.webhooks``): one job per
    inbox row, and the way the audit and the retention find one from the other."""
    return f"{JOB_KEY_PREFIX}{source}:{webhook_id}"


def job_key_of(table=webhook_inbox):
    """``job_key`` as a SQL expression over an inbox table (or an alias of it)."""
    return literal(JOB_KEY_PREFIX) + table.c.source + literal(":") + table.c.webhook_id


async def mark_processed(
    conn: AsyncConnection, source: str, webhook_id: str, outcome: str, now: float
) -> bool:
    """Note when and how a webhook was handled; False if it was never accepted."""
    result = await conn.execute(_MARK_PROCESSED, {"b_source": source, "b_webhook_id": webhook_id,
                                                   "processed_at": now, "outcome": outcome})
    return result.rowcount == 1


async def mark_processed_many(conn: AsyncConnection, marks: Sequence[tuple[str, str, str, float]]) -> None:
    """``mark_processed`` for many webhooks, (source, webhook id, outcome, now) each, in one ``executemany``."""
    if marks:
        await conn.execute(_MARK_PROCESSED, [{"b_source": source, "b_webhook_id": webhook_id, "processed_at": now,
                                              "outcome": outcome} for source, webhook_id, outcome, now in marks])


# built once: a statement's construction costs more CPU than its run (see jobs._INSERT)
_MARK_PROCESSED = update(webhook_inbox).where(webhook_inbox.c.source == bindparam("b_source"),
                                              webhook_inbox.c.webhook_id == bindparam("b_webhook_id"))


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


@dataclass(frozen=True, slots=True)
class Arrival:
    """One delivery to record: ``payload`` is the JSON text of the body as it arrived
    (already parsed once by the endpoint, so it is known to be a JSON object)."""
    source: str
    webhook_id: str
    payload: str
    processed_outcome: str | None = None  # set for sources nobody processes: recorded as handled


async def accept_many(conn: AsyncConnection, arrivals: Sequence[Arrival], now: float) -> set[tuple[str, str]]:
    """Record many deliveries; return the (source, webhook id) pairs seen for the first time.

    The group-commit path of every receiver on PostgreSQL (see ``flows.webhooks``): one
    ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING``, so the
    database itself says which rows are new (exact even when processes race on an id), in
    one round trip. Reading the known ids first with ``webhook_id IN (...)`` let the planner,
    on statistics of a smaller inbox, scan every row of the source per batch (the ids as a
    filter, not an index condition): ingestion slowed as the inbox grew. Plain driver SQL:
    SQLAlchemy's per-statement and per-row expression work cost more than the database did
    (see docs/benchmarks.md). Rows go in key order, so that two transactions with
    overlapping ids lock them in the same order.
    """
    unique = _unique(arrivals)
    if not unique:
        return set()
    if conn.dialect.name != "postgresql":  # (the SQLite path is accept_many_sqlite; this one serves tests)
        return await _accept_reading_first(conn, unique, now)
    columns = list(zip(*_rows(unique, now), strict=True))
    rows = (await conn.exec_driver_sql(_PG_INSERT_NEW, tuple(list(column) for column in columns))).all()
    return {(source, webhook_id) for source, webhook_id in rows}


_PG_INSERT_NEW = (
    "INSERT INTO webhook_inbox (source, webhook_id, received_at, payload, processed_at, outcome) "
    "SELECT s, w, r, p::json, pa, o FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::float8[], "
    "$6::text[]) WITH ORDINALITY AS t(s, w, r, p, pa, o, n) ORDER BY n "
    "ON CONFLICT (source, webhook_id) DO NOTHING RETURNING source, webhook_id")


async def _accept_reading_first(conn: AsyncConnection, unique: Sequence[Arrival], now: float) -> set[tuple[str, str]]:
    mark = _placeholders(conn)
    known: set[tuple[str, str]] = set()
    for source, ids in _by_source(unique).items():
        rows = (await conn.exec_driver_sql(_known_sql(mark, len(ids)), (source, *ids))).all()
        known.update((source, row[0]) for row in rows)
    fresh = [a for a in unique if (a.source, a.webhook_id) not in known]
    if fresh:
        await conn.exec_driver_sql(_insert_sql(mark), _rows(fresh, now))
    return {(a.source, a.webhook_id) for a in fresh}


def accept_many_sqlite(sqlite, arrivals: Sequence[Arrival], now: float) -> set[tuple[str, str]]:
    """``accept_many`` on a ``sqlite3.Connection`` inside the caller's write transaction
    (``Database.run_sqlite_transaction``): the same statements, with no hop per statement."""
    unique = _unique(arrivals)
    if not unique:
        return set()
    mark = lambda n: "?"
    known: set[tuple[str, str]] = set()
    for source, ids in _by_source(unique).items():
        known.update((source, row[0]) for row in sqlite.execute(_known_sql(mark, len(ids)), (source, *ids)))
    fresh = [a for a in unique if (a.source, a.webhook_id) not in known]
    if fresh:
        sqlite.executemany(_insert_sql(mark), _rows(fresh, now))
    return {(a.source, a.webhook_id) for a in fresh}


def _unique(arrivals: Sequence[Arrival]) -> list[Arrival]:
    """One arrival per (source, id), the first of each, in key order."""
    return sorted({(a.source, a.webhook_id): a for a in reversed(arrivals)}.values(),
                  key=lambda a: (a.source, a.webhook_id))


def _by_source(unique: Sequence[Arrival]) -> dict[str, list[str]]:
    by_source: dict[str, list[str]] = {}
    for a in unique:
        by_source.setdefault(a.source, []).append(a.webhook_id)
    return by_source


def _known_sql(mark, count: int) -> str:
    return (f"SELECT webhook_id FROM webhook_inbox WHERE source = {mark(1)} AND webhook_id IN "
            f"({', '.join(mark(i + 2) for i in range(count))})")


def _insert_sql(mark) -> str:
    return ("INSERT INTO webhook_inbox (source, webhook_id, received_at, payload, processed_at, outcome) "
            f"VALUES ({', '.join(mark(i + 1) for i in range(6))}) ON CONFLICT (source, webhook_id) DO NOTHING")


def _rows(fresh: Sequence[Arrival], now: float) -> list[tuple]:
    return [(a.source, a.webhook_id, now, a.payload, now if a.processed_outcome else None, a.processed_outcome)
            for a in fresh]


def _placeholders(conn: AsyncConnection):
    """n -> the driver's n-th positional placeholder (1-based): ``?`` or ``$n``."""
    if conn.dialect.paramstyle == "qmark":
        return lambda n: "?"
    return lambda n: f"${n}"
