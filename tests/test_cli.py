"""`caas-sim` against services started in the test, on ephemeral ports (`--url`)."""

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from caas_sim.scenarios import stack as stack_mod
from caas_sim.scenarios.cli import TOKEN_ENV, main, state
from caas_sim.scenarios.cli.state import STATE_ENV
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.client import AdminClient
from caas_sim.simulators.kit.clock import Clock

ROOT = Path(__file__).resolve().parents[1]
RULE = '{"id": "slow", "match": {"method": "GET", "path": "/vehicles/{vin}/status"}, ' \
       '"action": {"type": "latency", "params": {"ms": 2000}}, "times": 3}'


async def cli(*argv: str) -> int:
    """main() runs its own event loop: keep it off the loop serving the stack."""
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
async def iot():
    async with Stack(services=["iot"], ports={}, with_sink=False) as stack:
        yield stack.url("iot")


@pytest.fixture(autouse=True)
def no_token_from_env(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


@pytest.fixture(autouse=True)
def no_running_up(monkeypatch, tmp_path):
    # A `caas-sim up` someone runs on this machine records its services: not these tests' world.
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "no-up.json"))


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("caas-sim: error: ")
    return lines[0]


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("up", "serve", "fault", "clock", "journal", "demo", "bench"):
        assert f"    {command}" in out
    assert main(["fault", "add", "--help"]) == 0
    assert "--rule" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    [],
    ["fault"],
    ["fault", "add", "iot"],
    ["fault", "add", "nosuch", "--rule", "{}"],
    ["fault", "add", "iot", "--rule", "{not json"],
    ["fault", "list"],
    ["fault", "list", "--url", "127.0.0.1:8103"],
    ["clock", "advance", "soon"],
    *(["clock", "advance", bad] for bad in ("nan", "inf", "1e400", "99999999999d", "1e20", "-3d")),
    *(["serve", "iot", "--clock", bad] for bad in ("scaled:nan", "scaled:inf")),
    ["clock", "advance", "1h", "--service", "nosuch"],
    ["serve", "nosuch"],
    ["serve", "iot", "--port", "70000"],
    ["up", "--clock", "sideways"],
    ["up", "--services", "iot,nosuch"],
    ["up", "--faults", "iot"],
    ["journal", "iot", "--since", "-1"],
])
def test_usage_errors_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    one_line_error(capsys.readouterr().err)


def test_a_missing_profile_is_a_usage_error(tmp_path, capsys):
    assert main(["up", "--faults", f"iot={tmp_path / 'missing.yaml'}"]) == 2
    assert "missing.yaml" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("command", [["serve", "iot"], ["up"]])
def test_binding_off_loopback_needs_a_token(command, capsys):
    assert main([*command, "--host", "0.0.0.0"]) == 2
    assert "--admin-token" in one_line_error(capsys.readouterr().err)


async def test_a_service_that_is_not_running_is_named_with_a_hint(capsys):
    url = dead_url()
    assert await cli("fault", "list", "iot", "--url", url) == 1
    line = one_line_error(capsys.readouterr().err)
    assert url in line and "caas-sim up" in line


async def test_fault_add_list_clear(iot, capsys, tmp_path):
    assert await cli("fault", "add", "iot", "--url", iot, "--rule", RULE) == 0
    assert "slow" in capsys.readouterr().out
    profile = tmp_path / "offline.yaml"
    profile.write_text("rules:\n  - action: {type: vehicle_offline}\n    match: {selectors: {vin: 'W*'}}\n"
                       "    probability: 0.5\n")
    assert await cli("fault", "add", "iot", "--url", iot, "--file", str(profile)) == 0
    capsys.readouterr()

    assert await cli("fault", "list", "iot", "--url", iot) == 0
    header, first, second = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["ID", "ACTION", "MATCH", "SCOPE", "HITS"]
    assert first.split() == ["slow", "latency", "ms=2000.0", "jitter_ms=0", "GET", "/vehicles/{vin}/status",
                             "3/3", "left", "0"]
    assert second.split() == ["rule-1", "vehicle_offline", "vin=W*", "p=0.5", "0"]

    assert await cli("fault", "clear", "iot", "--url", iot) == 0
    assert "removed 2 rules" in capsys.readouterr().out
    assert await cli("fault", "list", "--url", iot) == 0
    assert "no fault rules" in capsys.readouterr().out


async def test_a_rule_the_service_rejects_fails_with_its_reason(iot, capsys):
    assert await cli("fault", "add", "iot", "--url", iot, "--rule", '{"action": {"type": "explode"}}') == 1
    line = one_line_error(capsys.readouterr().err)
    assert "400 Invalid fault rule" in line and "explode" in line


async def test_clock_advance_moves_a_shared_clock_once(capsys):
    shared = Clock("virtual")
    async with Stack(services=["iot"], ports={}, with_sink=False, clock=shared) as one, \
            Stack(services=["iot"], ports={}, with_sink=False, clock=shared) as two:
        assert await cli("clock", "advance", "1h", "--url", one.url("iot"), "--url", two.url("iot")) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out == [f"2026-01-05T09:00:00.000Z  virtual clock of {one.url('iot')}, {two.url('iot')} (+1h)"]
        assert shared.now_iso() == "2026-01-05T09:00:00.000Z"


async def test_clock_advance_reports_every_service_its_clock_moved(tmp_path, monkeypatch, capsys):
    # `--service iot` of an `up` moves the clock iot shares with payments: both are named, as
    # moved together; a sub-second move is printed as it is (it said +2s for 1.5).
    async with Stack(services=["iot", "payments"], ports={}, with_sink=False) as up:
        state_file = tmp_path / "up.json"
        state.write(state_file, {"iot": up.url("iot"), "payments": up.url("payments")})
        monkeypatch.setenv(STATE_ENV, str(state_file))
        assert await cli("clock", "advance", "1.5", "--service", "iot") == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out == ["2026-01-05T08:00:01.500Z  virtual clock of iot, payments (+1.5s)",
                       "payments share a clock with iot: they moved too (one clock cannot move alone)"]


async def test_clock_advance_past_the_clock_end_says_so(iot, capsys):
    assert await cli("clock", "advance", "2880000d", "--url", iot) == 1
    assert "cannot move the clock past 9900-01-01" in one_line_error(capsys.readouterr().err)


async def test_clock_advance_moves_distinct_clocks_that_read_the_same(capsys):
    # Two processes' virtual clocks both start at the same instant: equal epochs are not one clock.
    async with Stack(services=["iot"], ports={}, with_sink=False) as one, \
            Stack(services=["iot"], ports={}, with_sink=False) as two:
        assert await cli("clock", "advance", "90m", "--url", one.url("iot"), "--url", two.url("iot")) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out == [f"2026-01-05T09:30:00.000Z  virtual clock of {one.url('iot')}, {two.url('iot')} (+1h30m)"]
        assert one.clock.now_iso() == two.clock.now_iso() == "2026-01-05T09:30:00.000Z"


async def test_clock_commands_default_to_the_simulators_that_answer(iot, monkeypatch, capsys):
    # Only this simulator: never probe (and move) services a developer runs on the default ports.
    port = int(iot.rsplit(":", 1)[1])
    monkeypatch.setattr(stack_mod, "SERVICES", {"iot": (stack_mod.SERVICES["iot"][0], port)})
    assert await cli("clock", "advance", "15m") == 0
    assert capsys.readouterr().out.startswith("2026-01-05T08:15:00.000Z  virtual clock of iot")
    assert await cli("clock", "show") == 0
    _header, row = capsys.readouterr().out.strip().splitlines()
    assert row.split() == ["iot", "2026-01-05T08:15:00.000Z", "virtual", "0", "-", "0"]


async def test_clock_show_of_nothing_running_says_so(monkeypatch, capsys):
    url = dead_url()
    port = int(url.rsplit(":", 1)[1])
    monkeypatch.setattr(stack_mod, "SERVICES", {"iot": (stack_mod.SERVICES["iot"][0], port)})
    assert await cli("clock", "show") == 1
    line = one_line_error(capsys.readouterr().err)
    assert url in line and "caas-sim up" in line


async def test_journal_prints_one_entry_a_line(iot, capsys):
    async with AdminClient(iot) as admin:
        await admin.add_fault({"id": "boom", "match": {"path": "/fleet/*"},
                               "action": {"type": "http_error", "params": {"status": 503}}, "times": 1})
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.get(iot + "/fleet/magic-vins"):
                pass
    assert await cli("journal", "iot", "--url", iot, "--limit", "2") == 0  # pages until the end
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:3] for line in lines] == [["1", "2026-01-05T08:00:00.000Z", "fault"],
                                                    ["2", "2026-01-05T08:00:00.000Z", "request"],
                                                    ["3", "2026-01-05T08:00:00.000Z", "request"]]
    assert lines[1].split()[3:] == ["in", "GET", "/fleet/magic-vins", "503", "rule=boom"]
    assert lines[2].split()[3:] == ["in", "GET", "/fleet/magic-vins", "200"]
    assert await cli("journal", "iot", "--url", iot, "--since", "2") == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


def test_serve_prints_where_it_listens_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(TOKEN_ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "caas_sim.scenarios.cli", "serve", "iot", "--port", "0"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        header = proc.stdout.readline().split()
        row = proc.stdout.readline().split()
        assert header == ["SERVICE", "URL", "ADMIN", "CONTRACT"]
        assert row[0] == "iot" and row[2] == row[1] + "/__admin" and row[3].endswith("iot.yaml")
        assert proc.stdout.readline().strip() == ""
        clock = proc.stdout.readline()
        assert clock.startswith("clock virtual at 2026-01-05T08:00:00.000Z")
        # no service table: the hint names the service's URL (`clock` alone looks for an `up`)
        assert f"`caas-sim clock advance 15m --url {row[1]}`" in clock
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_serve_reports_a_profile_it_cannot_load(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    assert await cli("serve", "iot", "--port", "0", "--faults", str(broken)) == 2
    assert "not valid YAML (line 2" in one_line_error(capsys.readouterr().err)
    rejected = tmp_path / "rejected.yaml"
    rejected.write_text("- action: {type: explode}\n")
    assert await cli("serve", "iot", "--port", "0", "--faults", str(rejected)) == 1
    assert "cannot start iot: unknown fault action 'explode'" in one_line_error(capsys.readouterr().err)


def test_load_without_locust_says_how_to_get_it_before_anything_starts(monkeypatch, capsys):
    """locust is an extra of the wheel: without it, `load` said so only once its run had started."""
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "locust" else found(name, *a))
    assert main(["load", "ota", "--duration", "5s"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "locust is not installed here" in line and "pip install locust" in line
