"""One seed, one report: a scenario run twice in a world on a virtual clock gives the same
report byte for byte, the core's ids included, wall times aside; and a core restarted on
its database still never hands out an id twice."""

import re

from caas_core.store.db import Database, create_schema, drop_schema
from caas_core.store.ids import IdSource
from caas_sim.scenarios.scenario import report
from caas_sim.scenarios.scenario.loader import catalogue, load
from caas_sim.scenarios.scenario.runner import run_in_process

#: The purchase id is in a path the report draws (POST /purchases/<id>/withdrawal).
SCENARIO = "withdrawal-within-14-days-refunds-in-full-and-deactivates"
WALL = {"wall", "latencyMs"}


def without_wall_times(text: str) -> str:
    return re.sub(r"\d+\.\d+ s\b", "<wall>", text)


def world_facts(entry: dict) -> dict:
    """A journal entry without what the wall clock decides: its wall time, its latency, and
    the free port the core listened on."""
    kept = {k: v for k, v in entry.items() if k not in WALL}
    if "peer" in kept:
        kept["peer"] = re.sub(r":\d+/", ":<port>/", kept["peer"])
    return kept


async def test_the_same_seed_gives_the_same_report_byte_for_byte():
    first, second = [await run_in_process(load(catalogue()[SCENARIO]), seed=5) for _ in range(2)]
    assert first.result == second.result == "passed"
    one, two = (without_wall_times(report.markdown([o], 1.0, 5)) for o in (first, second))
    assert "/withdrawal → 200" in one
    assert one == two
    assert [world_facts(e) for e in first.journal] == [world_facts(e) for e in second.journal]


async def test_seeded_ids_repeat_on_a_fresh_database_and_never_on_the_same_one(tmp_path):
    async def ids_of(db: Database, seed: int | None = 5, virtual: bool = True) -> tuple[int, list[str]]:
        source = await IdSource.open(db, seed=seed, virtual=virtual)
        return source.boot, [source.new("pur") for _ in range(200)] + [source.ordered("ntf") for _ in range(200)]

    async with await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}") as a, \
            await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}") as b:
        first_boot, first = await ids_of(a)
        assert (await ids_of(b))[1] == first  # a fresh database: the same ids again
        second_boot, restarted = await ids_of(a)  # a restart (or a second process) on `a`
        assert (first_boot, second_boot) == (1, 2) and not set(first) & set(restarted)
        # A reset empties the database; the boots it handed out stay taken.
        source = await IdSource.open(a, seed=5, virtual=True)
        await drop_schema(a.engine)
        await create_schema(a.engine)
        await source.carry_over(a)
        assert (await ids_of(a))[0] == source.boot + 1
        # No seed, or a clock that is not virtual: random ids, as in production.
        assert (await ids_of(b, seed=None))[1] != first and (await ids_of(b, virtual=False))[1] != first
    # Rows written at one instant list in write order (readers sort by created_at, then id).
    assert first[200:] == sorted(first[200:])
