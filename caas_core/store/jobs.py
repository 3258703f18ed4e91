"""The durable job queue: work to do at a time on the core's clock.

Why it is built this way:

- ``enqueue`` runs on the *caller's* connection, inside the caller's transaction. The
  state change and the job it causes commit together or not at all (transactional
  outbox): a crash before the commit loses both, a crash after it keeps both.
- ``claim_due`` leases jobs to a worker (``locked_by`` / ``locked_until``). A worker that
  crashes simply never completes; once its lease lapses the job is claimable again. So
  handlers must be idempotent, and a handler records its effects in the same transaction
  as ``complete``: then either both happened or neither did, and a rerun repeats nothing.
  Pass ``worker=`` to ``complete``/``retry``/``fail`` to fence a worker whose lease
  lapsed: the call returns False, and the handler must roll its transaction back.
- Times are the core's clock (virtual in scenarios), passed in by the caller: this
  module never reads wall time.
- On PostgreSQL several core processes share the queue: ``SELECT ... FOR UPDATE SKIP
  LOCKED`` lets each claim different rows without waiting on each other. On SQLite the
  claim runs in one ``BEGIN IMMEDIATE`` transaction (see ``db``), which excludes every
  other writer for its duration. SQLite ignores ``FOR UPDATE``, so the statement is the
  same on both.
- A lease lapses at ``locked_until <= now`` (not ``<``), the same boundary as
  ``run_at <= now``, so that ``next_due`` (which reports lease expiries too) names a time
  at which the job really is claimable: otherwise a coordinator moving its clock to
  ``next_due`` would find nothing to do there and stall.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import Database
from .lists import one_of
from .schema import jobs

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    payload: dict[str, Any]
    run_at: float
    attempts: int
    correlation_id: str | None


def new_job_id(kind: str) -> str:
    """``<initials of the kind>_<32 hex digits>``, e.g. ``ss_...`` for ``settle.sweep``.

    Job ids need not be deterministic: nothing outside the core sees them. They are
    time-ordered (48 bits of wall-clock milliseconds, a counter, then 64 random bits), so
    new rows land at the right edge of the primary-key index instead of on a random page:
    with random ids every commit of a webhook batch dirtied a page per job, and SQLite's
    CPU per job was almost twice as high (see docs/benchmarks.md). The random
    bits only keep processes apart: a generator of this module's own, seeded from the
    system once per process, not a system call per id.
    """
    return f"{_initials(kind)}_{_next_stamp():016x}{_random.getrandbits(64):016x}"


_random = random.Random()  # not the global one: a seeded test or scenario must not make two processes agree
os.register_at_fork(after_in_child=_random.seed)


@functools.lru_cache(maxsize=256)
def _initials(kind: str) -> str:
    words = [w for w in kind.replace(".", "_").replace("-", "_").split("_") if w]
    return "".join(w[0] for w in words).lower() or "job"


_last_stamp = 0


def _next_stamp() -> int:
    """48 bits of milliseconds then a 16-bit counter, strictly increasing in this process: jobs
    enqueued for the same run_at are claimed in the order they were enqueued (oldest id first)."""
    global _last_stamp
    _last_stamp = max(time.time_ns() // 1_000_000 << 16, _last_stamp + 1)
    return _last_stamp


# The hot statements, built once and run with parameters: building a statement and its
# cache key costs SQLAlchemy ~100-200 µs of CPU, more than PostgreSQL takes to run it.
_INSERT = jobs.insert()
_INSERT_ONCE = {dialect: insert(jobs).on_conflict_do_nothing(index_elements=["dedupe_key"])
                for dialect, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}
_COMPLETE = update(jobs).where(jobs.c.id == bindparam("job_id"), jobs.c.status == RUNNING).values(
    status=DONE, locked_by=None, locked_until=None)
_COMPLETE_LEASED = _COMPLETE.where(jobs.c.locked_by == bindparam("worker"))
_CANCEL_KEYED = update(jobs).where(jobs.c.status == PENDING, jobs.c.dedupe_key == bindparam("key")).values(
    status=CANCELLED)


async def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: Mapping[str, Any],
    *,
    run_at: float,
    now: float,
    dedupe_key: str | None = None,
    correlation_id: str | None = None,
) -> str:
    """Add a job inside the caller's transaction; return its id.

    With a ``dedupe_key`` that already names a job (in any status, even done or
    cancelled), return that job's id and insert nothing. A key names its job until the
    retention deletes it (``store.retention``): then the key is free again.
    """
    job_id = new_job_id(kind)
    values = {
        "id": job_id, "kind": kind, "payload": dict(payload), "run_at": run_at, "status": PENDING,
        "attempts": 0, "created_at": now, "updated_at": now, "dedupe_key": dedupe_key,
        "correlation_id": correlation_id,
    }
    if dedupe_key is None:
        await conn.execute(_INSERT, values)
        return job_id
    # ON CONFLICT DO NOTHING instead of catching IntegrityError: it leaves the
    # transaction usable on PostgreSQL without a savepoint, and a concurrent enqueue of
    # the same key waits for the other transaction and then inserts nothing.
    stmt = _INSERT_ONCE[conn.dialect.name]
    for _ in range(2):
        if (await conn.execute(stmt, values)).rowcount == 1:
            return job_id
        existing = await conn.scalar(select(jobs.c.id).where(jobs.c.dedupe_key == dedupe_key))
        if existing is not None:  # READ COMMITTED sees the row that conflicted...
            return existing
        # ...unless the retention deleted that (finished) job in between: the key is free now
    raise AssertionError(f"dedupe_key {dedupe_key!r} conflicts without a row")


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job for ``enqueue_many``: ``payload`` is already JSON text."""
    kind: str
    payload: str
    dedupe_key: str
    correlation_id: str | None = None


async def enqueue_many(conn: AsyncConnection, new: Sequence[NewJob], *, run_at: float, now: float) -> None:
    """Add many jobs with one ``executemany`` inside the caller's transaction (the
    group-commit path of webhook ingestion). Each has a ``dedupe_key``; one that already
    names a job inserts nothing, as in ``enqueue``. Plain driver SQL in key order, for
    the reasons given in ``inbox.accept_many``."""
    if new:
        qmark = conn.dialect.paramstyle == "qmark"
        await conn.exec_driver_sql(_enqueue_many_sql(qmark), _enqueue_many_rows(new, run_at, now))


def enqueue_many_sqlite(sqlite, new: Sequence[NewJob], *, run_at: float, now: float) -> None:
    """``enqueue_many`` on a ``sqlite3.Connection`` inside the caller's write transaction
    (``Database.run_sqlite_transaction``)."""
    if new:
        sqlite.executemany(_enqueue_many_sql(True), _enqueue_many_rows(new, run_at, now))


def _enqueue_many_sql(qmark: bool) -> str:
    marks = ", ".join("?" if qmark else f"${i + 1}" for i in range(10))
    return ("INSERT INTO jobs (id, kind, payload, run_at, status, attempts, created_at, updated_at, dedupe_key, "
            f"correlation_id) VALUES ({marks}) ON CONFLICT (dedupe_key) DO NOTHING")


def _enqueue_many_rows(new: Sequence[NewJob], run_at: float, now: float) -> list[tuple]:
    return [(new_job_id(job.kind), job.kind, job.payload, run_at, PENDING, 0, now, now, job.dedupe_key,
             job.correlation_id) for job in sorted(new, key=lambda j: j.dedupe_key)]


# Claims, built once. Lapsed leases (a worker crashed or stalled) first: they are few (at
# most the running jobs) and the oldest work. Then due jobs in (run_at, id) order, which the
# (status, run_at, id) index gives without sorting and stops reading after ``limit``: one
# query with an OR of both sorted every due job to take the first few, and a backlog of
# 15,000 jobs made each claim of 20 read all 15,000 (the queue drained in quadratic time).
_LAPSED = (select(jobs.c.id).where(jobs.c.status == RUNNING, jobs.c.locked_until <= bindparam("now"))
           .order_by(jobs.c.locked_until).limit(bindparam("limit", type_=Integer)).with_for_update(skip_locked=True))
_DUE = (select(jobs.c.id).where(jobs.c.status == PENDING, jobs.c.run_at <= bindparam("now"))
        .order_by(jobs.c.run_at, jobs.c.id).limit(bindparam("limit", type_=Integer)).with_for_update(skip_locked=True))
_CLAIM = {dialect: update(jobs).where(ids).values(
    status=RUNNING, locked_by=bindparam("worker"), locked_until=bindparam("until"), updated_at=bindparam("now")
).returning(jobs.c.id, jobs.c.kind, jobs.c.payload, jobs.c.run_at, jobs.c.attempts, jobs.c.correlation_id)
    for dialect, ids in one_of(jobs.c.id, "ids").items()}


async def claim_due(
    db: Database, *, now: float, worker: str, limit: int = 10, lease: float = 300.0
) -> list[Job]:
    """Lease up to ``limit`` due jobs to ``worker``: lapsed leases first, then the oldest
    ``run_at``, then id.

    Commits before returning: the lease is durable, and the caller runs each job in a
    transaction of its own that ends with ``complete``/``retry``/``fail``. On PostgreSQL
    ``SKIP LOCKED`` lets several processes claim side by side; SQLite's BEGIN IMMEDIATE
    serializes them.
    """
    if limit <= 0:
        return []
    async with db.transaction() as conn:
        ids = list((await conn.scalars(_LAPSED, {"now": now, "limit": limit})).all())
        if len(ids) < limit:
            ids += (await conn.scalars(_DUE, {"now": now, "limit": limit - len(ids)})).all()
        if not ids:
            return []
        rows = (await conn.execute(_CLAIM[conn.dialect.name], {
            "ids": ids, "worker": worker, "until": now + lease, "now": now})).all()
    # RETURNING has no defined order: restore the claim order
    claimed = sorted((Job(*row) for row in rows), key=lambda j: (j.run_at, j.id))
    return claimed


def _held(job_id: str, worker: str | None):
    """The job is still running (and, with ``worker``, still leased to that worker)."""
    cond = and_(jobs.c.id == job_id, jobs.c.status == RUNNING)
    return cond if worker is None else and_(cond, jobs.c.locked_by == worker)


async def _finish(conn: AsyncConnection, where, values: dict, now: float | None) -> bool:
    if now is not None:
        values["updated_at"] = now
    result = await conn.execute(update(jobs).where(where).values(**values))
    return result.rowcount == 1


async def complete(
    conn: AsyncConnection, job_id: str, *, worker: str | None = None, now: float | None = None
) -> bool:
    """Mark a running job done. False if it is not running (or not leased to ``worker``):
    the handler should then roll back the effects it recorded in this transaction."""
    params: dict[str, Any] = {"job_id": job_id, **({"updated_at": now} if now is not None else {})}
    if worker is not None:
        params["worker"] = worker
    return (await conn.execute(_COMPLETE_LEASED if worker is not None else _COMPLETE, params)).rowcount == 1


async def complete_many(conn: AsyncConnection, job_ids: Sequence[str], *, now: float | None = None) -> None:
    """``complete`` for many jobs, in one ``executemany`` (whose row count drivers do not all report)."""
    if job_ids:
        params = [{"job_id": job_id, **({"updated_at": now} if now is not None else {})} for job_id in job_ids]
        await conn.execute(_COMPLETE, params)


async def retry(
    conn: AsyncConnection,
    job_id: str,
    *,
    run_at: float,
    error: str,
    worker: str | None = None,
    now: float | None = None,
) -> bool:
    """Put a running job back to pending at ``run_at``, counting the failed attempt."""
    values = {
        "status": PENDING, "run_at": run_at, "attempts": jobs.c.attempts + 1, "last_error": error,
        "locked_by": None, "locked_until": None,
    }
    return await _finish(conn, _held(job_id, worker), values, now)


async def fail(
    conn: AsyncConnection,
    job_id: str,
    error: str,
    *,
    worker: str | None = None,
    now: float | None = None,
) -> bool:
    """Give up on a job for good (status failed), counting the failed attempt.

    Accepts pending jobs too, so a flow can fail a job it decides not to run."""
    where = or_(_held(job_id, worker), and_(jobs.c.id == job_id, jobs.c.status == PENDING))
    values = {
        "status": FAILED, "attempts": jobs.c.attempts + 1, "last_error": error,
        "locked_by": None, "locked_until": None,
    }
    return await _finish(conn, where, values, now)


async def reschedule(
    conn: AsyncConnection, job_id: str, *, run_at: float, worker: str | None = None, now: float | None = None
) -> bool:
    """A recurring job ran: put the same row back to pending at ``run_at``, its count of
    failed attempts cleared. The row and its dedupe key keep naming the one schedule, so it
    exists once however many processes enqueue it (``flows.pruning``)."""
    values = {"status": PENDING, "run_at": run_at, "attempts": 0, "last_error": None,
              "locked_by": None, "locked_until": None}
    return await _finish(conn, _held(job_id, worker), values, now)


async def postpone(conn: AsyncConnection, *, dedupe_key: str, run_at: float, now: float | None = None) -> bool:
    """Move the pending job named by ``dedupe_key`` to ``run_at`` (False if none is pending)."""
    values: dict[str, Any] = {"run_at": run_at, **({"updated_at": now} if now is not None else {})}
    where = and_(jobs.c.dedupe_key == dedupe_key, jobs.c.status == PENDING)
    return (await conn.execute(update(jobs).where(where).values(**values))).rowcount == 1


async def cancel(
    conn: AsyncConnection,
    *,
    kind: str | None = None,
    dedupe_key: str | None = None,
    now: float | None = None,
) -> int:
    """Cancel pending jobs matching every filter given; return how many.

    Running jobs are left alone (their worker decides); at least one filter is required
    so that a bug cannot cancel the whole queue.
    """
    if kind is None and dedupe_key is None:
        raise ValueError("cancel needs kind= or dedupe_key=")
    if kind is None:  # the hot case: one job named by its key
        params = {"key": dedupe_key, **({"updated_at": now} if now is not None else {})}
        return (await conn.execute(_CANCEL_KEYED, params)).rowcount
    where = [jobs.c.status == PENDING]
    if kind is not None:
        where.append(jobs.c.kind == kind)
    if dedupe_key is not None:
        where.append(jobs.c.dedupe_key == dedupe_key)
    values: dict[str, Any] = {"status": CANCELLED}
    if now is not None:
        values["updated_at"] = now
    result = await conn.execute(update(jobs).where(*where).values(**values))
    return result.rowcount


async def _read(source: Database | AsyncConnection, stmt):
    """Run one read on a connection the caller holds, or in a short read transaction."""
    if isinstance(source, AsyncConnection):
        return await source.scalar(stmt)
    async with source.transaction(readonly=True) as conn:
        return await conn.scalar(stmt)


async def next_due(db: Database | AsyncConnection, *, excluding: Collection[str] = ()) -> float | None:
    """The earliest time a job becomes claimable: the first ``run_at`` of pending jobs, or
    the lease expiry of a running job if earlier (so a crashed worker's job is picked up
    when the clock gets there). None when nothing is scheduled. For the admin health's
    ``nextDue``. Jobs of the kinds ``excluding`` are left out (they are still claimed)."""
    return (await due_times(db, excluding=excluding)).paced


@dataclass(frozen=True, slots=True)
class DueTimes:
    """When the next job becomes claimable (``first``), and the next one not of the kinds
    left out (``paced``: what sets the pace of a virtual clock); None for none."""
    first: float | None
    paced: float | None


async def due_times(db: Database | AsyncConnection, *, excluding: Collection[str] = ()) -> DueTimes:
    """Both times of ``next_due`` in one statement, built once per exclusion: a world in
    virtual time asks after every event. Each part follows the (status, run_at) index and
    stops at the first row (a minimum over a CASE read every pending job)."""
    if not isinstance(db, AsyncConnection):
        async with db.transaction(readonly=True) as conn:
            return await due_times(conn, excluding=excluding)
    first, paced, lease = (await db.execute(_due_statement(frozenset(excluding)))).one()
    earliest = lambda *times: min((t for t in times if t is not None), default=None)
    return DueTimes(earliest(first, lease), earliest(paced, lease))


@functools.cache
def _due_statement(excluding: frozenset[str]):
    pending = select(jobs.c.run_at).where(jobs.c.status == PENDING)
    paced = pending.where(jobs.c.kind.not_in(sorted(excluding))) if excluding else pending
    lease = select(func.min(jobs.c.locked_until)).where(jobs.c.status == RUNNING)
    return select(*(q.order_by(jobs.c.run_at).limit(1).scalar_subquery() for q in (pending, paced)),
                  lease.scalar_subquery())


async def count_due(db: Database, *, now: float, cap: int) -> int:
    """How many pending jobs are due by ``now``, counting at most ``cap``: an index range that
    stops at ``cap`` rows, cheap enough to sample often whatever the queue's depth."""
    async with db.transaction(readonly=True) as conn:
        return int(await conn.scalar(_COUNT_DUE, {"now": now, "cap": cap}))


_COUNT_DUE = select(func.count()).select_from(
    select(jobs.c.id).where(jobs.c.status == PENDING, jobs.c.run_at <= bindparam("now"))
    .limit(bindparam("cap", type_=Integer)).subquery())


async def count(
    db: Database | AsyncConnection, status: str | None = PENDING, *, kind: str | None = None
) -> int:
    """How many jobs have ``status`` (all statuses with None), optionally of one kind."""
    stmt = select(func.count()).select_from(jobs)
    if status is not None:
        stmt = stmt.where(jobs.c.status == status)
    if kind is not None:
        stmt = stmt.where(jobs.c.kind == kind)
    return int(await _read(db, stmt))


async def get(db: Database | AsyncConnection, job_id: str) -> dict[str, Any] | None:
    """Every column of one job (admin views and tests)."""
    stmt = select(jobs).where(jobs.c.id == job_id)
    if isinstance(db, AsyncConnection):
        row = (await db.execute(stmt)).mappings().first()
    else:
        async with db.transaction(readonly=True) as conn:
            row = (await conn.execute(stmt)).mappings().first()
    return dict(row) if row is not None else None
