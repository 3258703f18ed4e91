"""store.lists: a list bound at execution is one array on PostgreSQL (one statement
whatever its length), an IN on SQLite, and both match the same rows."""

import pytest
from sqlalchemy import event, select

from caas_core.store import jobs
from caas_core.store.lists import one_of
from caas_core.store.schema import jobs as jobs_table

T = 1_767_600_000.0


async def _jobs(db, count: int) -> list[str]:
    async with db.transaction() as conn:
        return [await jobs.enqueue(conn, "test.kind", {}, run_at=T, now=T) for _ in range(count)]


@pytest.mark.parametrize("picked", [[], [1], [0, 2, None]])  # indexes into the jobs; None: no such id
async def test_the_listed_rows_match(db, picked):
    ids = await _jobs(db, 3)
    wanted = [ids[i] if i is not None else "nobody" for i in picked]
    async with db.transaction(readonly=True) as conn:
        found = (await conn.scalars(select(jobs_table.c.id).where(one_of(jobs_table.c.id, "ids")[db.dialect]),
                                    {"ids": wanted})).all()
    assert sorted(found) == sorted(w for w in wanted if w != "nobody")


async def test_claims_of_any_size_are_one_statement_on_postgresql(db):
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no arrays: one IN per length")
    await _jobs(db, 6)
    sent: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        if statement.startswith("UPDATE jobs"):
            sent.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for limit in (1, 2, 3):
            assert len(await jobs.claim_due(db, now=T + 1, worker="w", limit=limit)) == limit
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert len(sent) == 3 and len(set(sent)) == 1
