"""Every catalogue scenario as its own test, split over a few modules: the suite runs
with ``--dist loadfile`` (one worker per module), so shards are what run in parallel."""

from __future__ import annotations

import zlib

import pytest

from scenarios.scenario.loader import catalogue, load
from scenarios.scenario.report import failure_text
from scenarios.scenario.runner import run_in_process

SHARDS = 4
NAMES = sorted(catalogue())


def shard(index: int) -> list[str]:
    return [name for name in NAMES if zlib.crc32(name.encode()) % SHARDS == index]


async def check(name: str) -> None:
    outcome = await run_in_process(load(catalogue()[name]))
    if outcome.result == "xfail":
        pytest.xfail(outcome.failure.splitlines()[0])
    assert outcome.result == "passed", failure_text(outcome)
