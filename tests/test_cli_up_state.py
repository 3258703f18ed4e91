"""`caas-sim up` records where its services listen; `clock`, `fault`, `journal` and `audit`
find them there, the core included, and `clock advance` moves the whole world as one."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from caas_sim.scenarios import stack as stack_mod
from caas_sim.scenarios.cli import TOKEN_ENV, main
from caas_sim.scenarios.cli import state as state_mod
from tests.worlds import SERVICES, read_start_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def up(tmp_path, monkeypatch):
    """`caas-sim up --ephemeral` in its own process; its state file is this test's."""
    state_file = tmp_path / "up.json"
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "CAAS_API_KEYS")}  # development keys
    env[state_mod.STATE_ENV] = str(state_file)
    proc = subprocess.Popen([sys.executable, "-m", "caas_sim.scenarios.cli", "up", "--ephemeral", "--seed", "11",
                             "--database", f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = read_start_table(proc, "core", among=SERVICES)
        monkeypatch.setenv(state_mod.STATE_ENV, str(state_file))
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        yield proc, state_file, printed
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)


def http(method: str, url: str, body: dict | None = None, key: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=30) as r:
        return json.loads(r.read())


def run(capsys, *argv: str) -> list[str]:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip().splitlines()


def test_the_commands_reach_every_service_of_up_and_advance_moves_the_core(up, capsys):
    proc, state_file, printed = up
    recorded = json.loads(state_file.read_text())
    assert (recorded["pid"], recorded["services"]) == (proc.pid, printed)

    # clock show: every service of this `up`, the core included, at one time
    rows = [line.split() for line in run(capsys, "clock", "show")[1:]]
    assert {row[0] for row in rows} == set(printed) and "core" in printed
    assert {row[1] for row in rows} == {"2026-01-05T08:00:00.000Z"}

    # A purchase through the core, on a vehicle whose first two activations fail.
    vin = http("GET", printed["iot"] + "/fleet/magic-vins")["vins"]["flaky_twice"]
    purchase = http("POST", f"{printed['core']}/customers/c-1/vehicles/{vin}/purchases",
                    {"serviceId": "heated-seats", "durationType": "PERMANENT",
                     "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}}, key="dev-customer")
    assert purchase["status"] == "ACTIVATION_QUEUED"

    assert run(capsys, "clock", "advance", "15m") == [
        f"2026-01-05T08:15:00.000Z  virtual clock of {', '.join(printed)} (+15m)"]
    rows = [line.split() for line in run(capsys, "clock", "show")[1:]]
    assert {row[0]: row[1] for row in rows} == {name: "2026-01-05T08:15:00.000Z" for name in printed}
    after = http("GET", f"{printed['core']}/purchases/{purchase['purchaseId']}", key="dev-customer")
    assert (after["status"], after["attempts"]) == ("ACTIVE", 3)

    # journal and fault by name reach this `up`'s IoT simulator on its ephemeral port. The
    # core ran each retry at its due time: 1 and 5 minutes after the failure it learnt of.
    journal = run(capsys, "journal", "iot")
    assert [line.split()[1] for line in journal if "POST   /ota/activate" in line] == [
        "2026-01-05T08:00:00.000Z", "2026-01-05T08:02:00.000Z", "2026-01-05T08:08:00.000Z"]
    assert [line.split()[1] for line in journal if "event=ota.failed" in line] == [
        "2026-01-05T08:01:00.000Z", "2026-01-05T08:03:00.000Z"]
    run(capsys, "fault", "add", "iot", "--rule", '{"id": "slow", "action": {"type": "latency", "params": {"ms": 5}}}')
    assert run(capsys, "fault", "list", "iot")[1].split()[:2] == ["slow", "latency"]
    assert run(capsys, "audit")[-1] == "every invariant holds"  # the core, found the same way

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not state_file.exists()  # a clean exit takes its table away


def test_a_state_file_whose_process_is_gone_is_ignored(tmp_path, monkeypatch, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    state_file = tmp_path / "up.json"
    state_mod.write(state_file, {"iot": "http://127.0.0.1:9"})
    assert state_mod.running(state_file) == {"iot": "http://127.0.0.1:9"}  # this process lives
    state_file.write_text(json.dumps({"pid": gone.pid, "services": {"iot": "http://127.0.0.1:1"}}))
    assert state_mod.running(state_file) is None
    state_mod.remove(state_file)
    assert state_file.exists()  # not this process's table: left to its owner

    # The commands fall back to the default ports (here: one simulator, nothing listening).
    monkeypatch.setenv(state_mod.STATE_ENV, str(state_file))
    monkeypatch.setattr(stack_mod, "SERVICES", {"iot": (stack_mod.SERVICES["iot"][0], 9)})
    assert main(["clock", "show"]) == 1
    assert "no simulator answers on http://127.0.0.1:9:" in capsys.readouterr().err
