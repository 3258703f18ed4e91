"""`caas-sim bench` cannot rot: its webhook measure and the OTA ceiling's unit run briefly.

Figures are not asserted (the machine is shared and noisy): only that every line of the
summary is measured and printed, with its ratios."""

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
