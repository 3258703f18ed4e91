"""Every catalogue scenario as its own test (the workers share them out one by one)."""

from __future__ import annotations

import pytest

from caas_sim.scenarios.scenario.loader import catalogue, load
from caas_sim.scenarios.scenario.report import failure_text
from caas_sim.scenarios.scenario.runner import run_in_process


@pytest.mark.parametrize("name", sorted(catalogue()))
async def test_scenario(name):
    outcome = await run_in_process(load(catalogue()[name]))
    if outcome.result == "xfail":
        pytest.xfail(outcome.failure.splitlines()[0])
    assert outcome.result == "passed", failure_text(outcome)
