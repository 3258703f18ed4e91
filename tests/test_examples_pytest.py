"""examples/pytest, a team's own suite on the pytest plugin, passes as its README runs it:
``pytest -p caas_sim.scenarios.pytest_plugin examples/pytest`` from the repository's root, under
pytest-asyncio's strict and auto modes."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

#: Each test runs pytest in a subprocess (a few seconds; much more on a loaded machine).
pytestmark = pytest.mark.timeout(400)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pytest"


@pytest.mark.parametrize("mode", ["strict", "auto"])
async def test_the_example_suite_passes(mode):
    tests = len(re.findall(r"^def test_", "".join(p.read_text() for p in EXAMPLE.glob("test_*.py")), re.MULTILINE))
    assert tests >= 3
    # A session of its own: none of this run's pytest or xdist variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-p", "caas_sim.scenarios.pytest_plugin", "examples/pytest", "-o",
        f"asyncio_mode={mode}", "-q", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 360)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    printed = out.decode()
    assert proc.returncode == 0, printed
    assert re.search(rf"\b{tests} passed\b", printed), printed
    assert not re.search(r"\b(failed|error|warning)", printed, re.IGNORECASE), printed
