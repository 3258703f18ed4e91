"""The bench's databases: throw-away PostgreSQL databases, and what it reads of the core's.

The bench waits on the core's records (the webhook queue drained, purchases ACTIVE)
through ``caas_core.store.inspect``, on a connection of its own, from the bench
process: asking the core over HTTP (``GET /__admin/audit`` counts the same things)
would spend the CPU of the very servers whose CPU per request is measured. Each call is
synchronous (its own event loop), as the bench's loops are. It writes one thing, before
it measures: the vehicles its customer holds (``hold_vehicles``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Self

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


class PostgresDatabase:
    """A throw-away database on the PostgreSQL server (created and dropped here)."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"caas_bench_{uuid.uuid4().hex[:10]}"
        base = server_url.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    async def _admin(self, sql: str) -> None:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        from caas_core.store.db import parse_url

        engine = create_async_engine(parse_url(self.server_url), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    def __enter__(self) -> Self:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def _on_database(database: str, work):
    """``work(db)`` on the core's database at ``database``, opened for this call only."""
    from caas_core.store.db import Database

    async def run():
        async with await Database.open(database, create=False) as db:
            return await work(db)

    return asyncio.run(run())


def unprocessed_webhooks(database: str) -> int:
    from caas_core.store import inspect

    return _on_database(database, inspect.unprocessed_webhooks)


def until_processed(database: str, timeout: float = 120.0) -> None:
    """Wait until every webhook in the inbox is processed (the jobs the load queued ran)."""
    deadline = time.monotonic() + timeout
    while unprocessed_webhooks(database):
        if time.monotonic() > deadline:
            raise RuntimeError(f"webhooks still unprocessed after {timeout:g} s")
        time.sleep(0.05)  # polling the queue's state


def pending_jobs(database: str) -> int:
    """Jobs waiting in the queue (any kind, due or not)."""
    from caas_core.store import inspect

    return sum(_on_database(database, lambda db: inspect.job_queue(db, 0.0))[0].values())


def count_active(database: str) -> int:
    """Purchases whose service is ACTIVE."""
    from caas_core.store import inspect

    return _on_database(database, lambda db: inspect.purchases_in_status(db, "ACTIVE"))


def hold_vehicles(database: str, customer_id: str, vins: list[str], model: str) -> None:
    """Record ``customer_id`` as the holder of each of ``vins``, as the delivery of the sales
    that sold them leaves the core's records (``flows.manufacturing``): what a purchase for a
    vehicle the customer already holds finds. The one write the bench makes to a core's
    records, before it measures."""
    from caas_core.store.schema import vehicles

    async def write(db) -> None:
        async with db.transaction() as conn:
            await conn.execute(vehicles.insert(), [{"vin": vin, "customer_id": customer_id, "model": model}
                                                   for vin in vins])

    _on_database(database, write)


def activation_latencies(database: str, scale: float) -> list[float]:
    """Real seconds from purchase accepted to ACTIVE, of each delivered purchase, sorted
    (the core's clock runs ``scale`` times real time)."""
    from caas_core.store import inspect

    times = _on_database(database, inspect.delivery_times)
    return sorted((delivered - created) / scale for created, delivered in times)


def commit_cpu(database: str, connections: int, commits: int = 4000) -> float:
    """µs of client CPU of one durable single-statement commit (an autocommit ``INSERT``)
    through asyncpg alone, ``connections`` at a time, on ``database``: the least a core
    pays per commit on this machine, with no SQLAlchemy and no logic."""
    import asyncpg

    from .bench_client import loop_factory

    async def measure() -> float:
        pool = await asyncpg.create_pool(database.replace("+asyncpg", ""), min_size=connections,
                                         max_size=connections)
        try:
            await pool.execute("CREATE TABLE commit_floor (id text PRIMARY KEY)")

            async def worker(prefix: str, count: int) -> None:
                for i in range(count):
                    await pool.execute("INSERT INTO commit_floor VALUES ($1)", f"{prefix}-{i}")

            per_worker = commits // connections
            await asyncio.gather(*(worker(f"w{k}", per_worker // 4) for k in range(connections)))  # warm-up
            started = time.process_time()
            await asyncio.gather(*(worker(f"m{k}", per_worker) for k in range(connections)))
            return (time.process_time() - started) / (per_worker * connections) * 1e6
        finally:
            await pool.close()

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(measure())
