"""The same scenarios against services started as separate processes: `caas-sim up`
in one process (the core and every simulator, free ports), the runner in another."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIOS = ["activation-succeeds-on-the-third-attempt", "iot-api-down-then-recovering-delays-and-then-delivers",
             "maintenance-below-threshold-refuses-the-purchase-and-charges-nothing",
             "withdrawal-within-14-days-refunds-in-full-and-deactivates",
             "factory-down-at-reservation-queues-the-order-and-places-exactly-one",
             "sale-to-delivery-full-journey"]
CLI = [sys.executable, "-m", "scenarios.cli"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def services(tmp_path):
    keys = subprocess.run([*CLI, "scenario", "keys"], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    assert json.loads(keys)["dealership-TEST-UNAVAILABLE"] == {"role": "dealership", "subject": "TEST-UNAVAILABLE"}
    env = {**os.environ, "CAAS_API_KEYS": keys}
    up = subprocess.Popen([*CLI, "up", "--ephemeral", "--seed", "3",
                           "--database", f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=ROOT)
    urls, lines = {}, []
    try:
        for line in up.stdout:  # the URL table, then the clock line once everything listens
            lines.append(line)
            found = re.match(r"^(core|factory|vss|iot|payments|registry-\w\w)\s+(http://\S+)", line)
            if found:
                urls[found.group(1)] = found.group(2)
            if line.startswith("clock "):
                break
        assert "core" in urls, "".join(lines)
        yield urls
    finally:
        up.terminate()
        up.wait(timeout=30)


def test_scenarios_pass_against_separately_started_services(services, tmp_path):
    target = ",".join(f"{name}={url}" for name, url in services.items())
    run = subprocess.run([*CLI, "scenario", "run", *SCENARIOS, "--target", target,
                          "--junit", str(tmp_path / "junit.xml")],
                         check=False, capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("PASS ") >= 2 * len(SCENARIOS)  # progress line and summary row each
    assert f"{len(SCENARIOS)} passed, 0 failed" in run.stdout
