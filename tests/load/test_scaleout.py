"""`caas-sim serve core --workers 2`: two processes, one port, one PostgreSQL.

Webhooks sent concurrently (each id twice) reach both processes; each is recorded once
and its job runs exactly once: a settlement failure of a delivered purchase opens one
collection case per payment, so a job run twice would open two.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest
from sqlalchemy import func, select

from caas_core.flows.pruning import PRUNE
from caas_core.store.db import Database
from caas_core.store.schema import (
    collection_cases,
    jobs,
    payments,
    purchases,
    webhook_inbox,
)
from caas_sim.scenarios.bench import DEFAULT_POSTGRES, PostgresDatabase

pytestmark = pytest.mark.timeout(90)
COUNT = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _seed(url: str) -> None:
    async with await Database.open(url) as db, db.transaction() as conn:
        for n in range(COUNT):
            await conn.execute(purchases.insert().values(
                id=f"pur_{n}", customer_id="c-1", vin=f"VIN{n:014d}", service_id="heated-seats",
                duration_type="PERMANENT", price_minor=29_900, currency="EUR", status="ACTIVE", payment_id=f"pay_{n}",
                created_at=1.0, updated_at=1.0, delivered_at=2.0))
            await conn.execute(payments.insert().values(
                id=f"pay_{n}", purchase_id=f"pur_{n}", gateway_payment_id=f"gw_{n}", kind="SERVICE",
                amount_minor=29_900, currency="EUR", status="PENDING", created_at=1.0))


async def _deliver(url: str) -> list[int]:
    import base64
    import hashlib
    import hmac

    from caas_core.settings import DEVELOPMENT_SECRET

    key = base64.b64decode(DEVELOPMENT_SECRET.removeprefix("whsec_"))

    async def post(session, n: int) -> int:
        body = orjson.dumps({"event": "paymentSettlement", "sequence": 2, "paymentId": f"gw_{n}", "status": "FAILED",
                             "failureReason": "INSUFFICIENT_FUNDS", "settlementDate": "2026-01-07T08:00:00.000Z",
                             "settlementAmount": {"value": 0, "currency": "EUR"},
                             "metadata": {"fees": {"value": 0, "currency": "EUR"}}})
        webhook_id, ts = f"msg_scale_{n}", str(int(time.time()))
        sig = base64.b64encode(hmac.new(key, f"{webhook_id}.{ts}.".encode() + body, hashlib.sha256).digest())
        headers = {"webhook-id": webhook_id, "webhook-timestamp": ts, "webhook-signature": f"v1,{sig.decode()}",
                   "Content-Type": "application/json"}
        # a new connection each time, so that the kernel spreads them over both processes
        async with aiohttp.ClientSession() as s, s.post(f"{url}/caas/webhooks/payments", data=body,
                                                        headers=headers) as answer:
            return answer.status

    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(post(session, n % COUNT) for n in range(2 * COUNT)))


async def _counts(url: str) -> tuple[int, int, int, int, int]:
    webhook_jobs = select(func.count()).select_from(jobs).where(jobs.c.kind != PRUNE)
    async with await Database.open(url, create=False) as db, db.transaction(readonly=True) as conn:
        return (await conn.scalar(select(func.count()).select_from(webhook_inbox)),
                await conn.scalar(webhook_jobs),
                await conn.scalar(webhook_jobs.where(jobs.c.status == "done")),
                await conn.scalar(select(func.count()).select_from(collection_cases)),
                await conn.scalar(select(func.count()).select_from(jobs).where(jobs.c.kind == PRUNE)))


def test_two_core_processes_share_inbox_and_queue(tmp_path):
    port = _free_port()
    with PostgresDatabase(DEFAULT_POSTGRES) as pg:
        asyncio.run(_seed(pg.url))
        server = subprocess.Popen([sys.executable, "-m", "caas_sim.scenarios.cli", "serve", "core", "--workers", "2",
                                   "--port", str(port), "--clock", "real", "--database", pg.url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            header = ""
            while "processes" not in header and server.poll() is None:
                header = server.stdout.readline()
            assert "2 processes" in header, header + server.stderr.read()
            children = [int(p) for p in header.split("pids ")[1].split(")")[0].split()]
            assert len(children) == 2
            statuses = asyncio.run(_deliver(f"http://127.0.0.1:{port}"))
            assert set(statuses) == {204}
            deadline = time.monotonic() + 30
            while (counts := asyncio.run(_counts(pg.url)))[2] < COUNT and time.monotonic() < deadline:
                time.sleep(0.2)
            # inbox rows, webhook jobs, those done, collection cases; and one prune job, both processes having started
            assert counts == (COUNT, COUNT, COUNT, COUNT, 1)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        assert server.returncode == 0
        for pid in children:  # the children are gone too
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
