"""store.direct: a prebuilt statement answers as through SQLAlchemy, in the caller's
transaction, with SQLAlchemy's errors; on PostgreSQL it does not go through SQLAlchemy."""

import pytest
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import IntegrityError

from caas_core.store import direct, jobs
from caas_core.store.db import DatabaseUnavailable
from caas_core.store.schema import jobs as jobs_table

T = 1_767_600_000.0
_BY_ID = select(jobs_table).where(jobs_table.c.id == bindparam("job_id"))
_BY_IDS = select(jobs_table.c.id).where(jobs_table.c.id.in_(bindparam("ids", expanding=True)))
_RETRY = update(jobs_table).where(jobs_table.c.id == bindparam("b_id"))


def _row(job_id: str, **values) -> dict:
    return {"id": job_id, "kind": "test.kind", "payload": {"list": [1, 2], "text": "é"}, "run_at": T + 0.25,
            "status": "pending", "attempts": 0, "created_at": T, "updated_at": T, "dedupe_key": job_id,
            "correlation_id": None, **values}


async def test_rows_and_counts_are_sqlalchemys(db):
    async with db.transaction() as conn:
        inserted = await direct.execute(conn, jobs._INSERT, _row("j-1"))
        changed = await direct.execute(conn, _RETRY, {"b_id": "j-1", "attempts": 2, "delay_notified": True})
        missed = await direct.execute(conn, _RETRY, {"b_id": "nobody", "attempts": 2})
        row = (await direct.execute(conn, _BY_ID, {"job_id": "j-1"})).one()
        through_sqlalchemy = (await conn.execute(_BY_ID, {"job_id": "j-1"})).mappings().one()
    assert (inserted.rowcount, changed.rowcount, missed.rowcount) == (1, 1, 0)
    assert dict(row) == dict(through_sqlalchemy)
    assert row["payload"] == {"list": [1, 2], "text": "é"} and row["run_at"] == T + 0.25
    assert row["delay_notified"] is True and row["attempts"] == 2


async def test_a_conflict_that_inserts_nothing_counts_zero(db):
    insert_once = jobs._INSERT_ONCE[db.dialect]
    async with db.transaction() as conn:
        first = await direct.execute(conn, insert_once, _row("j-1"))
        again = await direct.execute(conn, insert_once, _row("j-2", dedupe_key="j-1"))
    assert (first.rowcount, again.rowcount) == (1, 0)


async def test_it_runs_in_the_callers_transaction(db):
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await direct.execute(conn, jobs._INSERT, _row("j-1"))
            raise RuntimeError("roll back")
    async with db.transaction(readonly=True) as conn:
        assert (await direct.execute(conn, _BY_ID, {"job_id": "j-1"})).first() is None


async def test_a_duplicate_is_sqlalchemys_integrity_error(db):
    async with db.transaction() as conn:
        await direct.execute(conn, jobs._INSERT, _row("j-1"))
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await direct.execute(conn, jobs._INSERT, _row("j-1", dedupe_key="other"))


async def test_an_expanding_in_runs_through_sqlalchemy(db):
    async with db.transaction() as conn:
        for job_id in ("j-1", "j-2"):
            await direct.execute(conn, jobs._INSERT, _row(job_id))
        found = await direct.execute(conn, _BY_IDS, {"ids": ["j-1", "j-2", "j-3"]})
    assert sorted(row["id"] for row in found.all()) == ["j-1", "j-2"]


async def test_a_server_gone_mid_transaction_is_unavailable_and_the_pool_recovers(db):
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL backend terminated under its connection")
    with pytest.raises(DatabaseUnavailable):
        async with db.transaction() as conn:
            await direct.execute(conn, jobs._INSERT, _row("j-1"))
            backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            async with db.transaction(readonly=True) as other:
                await other.execute(text(f"SELECT pg_terminate_backend({backend})"))
            await direct.execute(conn, _RETRY, {"b_id": "j-1", "attempts": 1})
    async with db.transaction() as conn:
        assert (await direct.execute(conn, jobs._INSERT, _row("j-2"))).rowcount == 1
        assert (await direct.execute(conn, _BY_ID, {"job_id": "j-1"})).first() is None  # never committed


async def test_postgresql_statements_do_not_go_through_sqlalchemy(db, monkeypatch):
    if db.dialect != "postgresql":
        pytest.skip("SQLite runs every statement through SQLAlchemy")
    async with db.transaction() as conn:
        async def refuse(*_args, **_kwargs):
            raise AssertionError("went through AsyncConnection.execute")

        monkeypatch.setattr(type(conn), "execute", refuse)
        await direct.execute(conn, jobs._INSERT, _row("j-1"))
        assert (await direct.execute(conn, _BY_ID, {"job_id": "j-1"})).one()["status"] == "pending"
