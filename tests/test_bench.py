"""`caas-sim bench` cannot rot: its webhook measure and the OTA ceiling's unit run briefly.

Figures are not asserted (the machine is shared and noisy): only that every line of the
summary is measured and printed, with its ratios."""

import os

import pytest

from caas_sim.scenarios import bench

pytestmark = pytest.mark.timeout(120)


def test_the_webhook_measure_prints_both_ratios_of_each_line(capsys):
    bench.main("webhooks", duration=0.5, connections=4, rounds=1)
    out = capsys.readouterr().out
    ingestion = next(line for line in out.splitlines() if line.startswith("webhook ingestion"))
    throughput, capacity, target = ingestion.split()[-4:-1]
    assert float(throughput) > 0 and float(capacity) > 0 and target == ">=0.5"
    assert any(line.startswith("ingest + process") for line in out.splitlines())


def test_an_http_exchange_costs_some_cpu():
    assert 10 < bench.exchange_cpu(connections=4, requests=400) < 100_000  # µs, client and server together


def test_a_commit_costs_some_cpu():
    """The OTA line's database floor: single-statement commits on a throw-away database."""
    from caas_sim.scenarios.bench_db import (
        DEFAULT_POSTGRES,
        PostgresDatabase,
        commit_cpu,
    )

    with PostgresDatabase(os.environ.get("CAAS_TEST_POSTGRES_URL", DEFAULT_POSTGRES)) as db:
        assert 5 < commit_cpu(db.url, connections=4, commits=200) < 100_000  # µs of client CPU


def test_the_scaleout_measure_prints_each_rounds_pair():
    from caas_sim.scenarios.bench_db import DEFAULT_POSTGRES

    line = bench.bench_scaleout(duration=0.5, connections=4, rounds=2,
                                postgres=os.environ.get("CAAS_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    pairs = next(note for note in line.notes if note.startswith("2 processes / 1, round by round: "))
    ratios = [float(p.rstrip("x")) for p in pairs.split(": ")[1].split(", ")]
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
    assert line.target == 1.3 and line.subject_rps > 0 and line.baseline_rps > 0


def test_a_local_postgresqls_cpu_is_read_and_grows_with_its_work():
    """What `bench ota` prints beside the stack's CPU: the local server's own, read while the
    connection that made it work is open (a backend that exits takes its CPU with it)."""
    import asyncio

    import asyncpg

    from caas_sim.scenarios.bench_db import DEFAULT_POSTGRES
    from caas_sim.scenarios.bench_measure import postgres_cpu

    url = os.environ.get("CAAS_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    if not any(host in url for host in ("@127.0.0.1", "@localhost", "@/")):
        pytest.skip("PostgreSQL is not on this machine")

    async def work() -> tuple[float | None, float | None]:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            before = postgres_cpu()
            await conn.fetchval("SELECT count(*) FROM generate_series(1, 3000000)")  # ~0.2 s of its CPU
            return before, postgres_cpu()
        finally:
            await conn.close()

    before, after = asyncio.run(work())
    assert before is not None and after is not None and after - before >= 0.05


def test_the_bench_reads_the_cores_queue_and_purchases_through_the_stores_public_questions(tmp_path):
    """What the bench waits on (webhooks processed, purchases ACTIVE, their delivery times),
    read from a core's database as ``bench_db`` does: on a connection of its own."""
    import asyncio

    from sqlalchemy import insert, update

    from caas_core.store.db import Database
    from caas_core.store.schema import purchases, webhook_inbox
    from caas_sim.scenarios import bench_db

    url = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
    t = 1_767_600_000.0

    def purchase(n: int, status: str, delivered: float | None) -> dict:
        return {"id": f"pur_{n}", "customer_id": "c-1", "vin": f"V{n}", "service_id": "heated-seats",
                "duration_type": "PERMANENT", "status": status, "price_minor": 100, "currency": "EUR",
                "created_at": t, "updated_at": t, "delivered_at": delivered}

    async def seed(processed: bool) -> None:
        async with await Database.open(url) as db, db.transaction() as conn:
            if processed:
                await conn.execute(update(webhook_inbox).values(processed_at=t + 1))
                return
            await conn.execute(insert(webhook_inbox), [
                {"source": "iot", "webhook_id": f"msg_{n}", "received_at": t, "payload": {},
                 "processed_at": t if n else None} for n in range(3)])
            await conn.execute(insert(purchases), [purchase(1, "ACTIVE", t + 40), purchase(2, "ACTIVE", t + 20),
                                                   purchase(3, "PAYMENT_PENDING", None)])

    asyncio.run(seed(processed=False))
    assert bench_db.unprocessed_webhooks(url) == 1
    with pytest.raises(RuntimeError, match="unprocessed"):
        bench_db.until_processed(url, timeout=0.0)
    asyncio.run(seed(processed=True))
    bench_db.until_processed(url, timeout=5.0)
    assert bench_db.count_active(url) == 2
    assert bench_db.activation_latencies(url, scale=20.0) == [1.0, 2.0]  # (delivered - accepted) / scale, sorted


def test_the_sim_measure_prints_each_operation_against_the_echo_with_its_tail(capsys):
    comparisons = bench.bench_sim(duration=0.5, connections=4, rounds=1, only="iot status", held=300)
    bench.print_summary(comparisons)
    out = capsys.readouterr().out
    status = next(line for line in out.splitlines() if line.startswith("iot status") and "echo GET" in line)
    assert float(status.split()[-4]) > 0  # throughput against the echo
    assert any("p99" in note for c in comparisons for note in c.notes)
    assert [c.name for c in comparisons] == ["iot status", "iot model only", "iot kit only", "iot required pieces"]
    floor = next(c for c in comparisons if c.name == "iot required pieces")
    assert floor.subject_rps > 0 and not any("unexpected" in n for n in floor.notes)  # 202: its checks passed
    assert "after 300 requests of it answered" in out


def test_every_operation_of_the_sim_measure_is_answered_as_its_contract_says():
    """The bodies the bench sends are accepted (a refused body would measure error paths)."""
    import asyncio
    import importlib

    from aiohttp.test_utils import TestClient, TestServer

    from caas_sim import catalogue
    from caas_sim.scenarios.bench_sim import operations
    from caas_sim.simulators.kit.config import SimConfig

    async def check() -> None:
        for op in operations():
            app = importlib.import_module(catalogue.BY_NAME[op.service].module).create_app(SimConfig(seed=0))
            async with TestClient(TestServer(app)) as client:
                for n in range(3):
                    path, body = op.request(n)
                    headers = {"Content-Type": "application/json"} if body else {}
                    async with client.request(op.method, path, data=body or None, headers=headers) as r:
                        assert r.status in op.expected, (op.name, r.status, await r.text())

    asyncio.run(check())


def test_the_sim_measure_has_an_operation_of_every_simulator_of_the_catalogue():
    from caas_sim import catalogue
    from caas_sim.scenarios.bench_sim import operations

    assert {op.service for op in operations()} == set(catalogue.NAMES)


def test_the_paced_load_measures_with_its_own_heap_frozen():
    """A full collection of the load generator would count as the server's latency."""
    import gc

    from caas_sim.scenarios import bench_client
    from caas_sim.scenarios.bench_measure import Servers
    from caas_sim.scenarios.bench_paced import paced_blocking

    before, frozen_while_sending = gc.get_freeze_count(), []

    def make(n: int) -> bytes:
        frozen_while_sending.append(gc.get_freeze_count() > before)
        return bench_client.http_request("GET", "127.0.0.1", "/x")

    with Servers("echo") as servers:
        latencies = paced_blocking(servers.url, make, rate=200, duration=0.5, connections=4)
    assert latencies.statuses == {202: 100} and all(frozen_while_sending)
    assert gc.get_freeze_count() == 0
