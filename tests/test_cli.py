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


BAD_URLS = ("notaurl", "http://127.0.0.1:99999", "ftp://x", "http://[::1", "http://127.0.0.1:8000/base?x=1")
SCENARIO = "activation-succeeds-on-the-third-attempt"


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
    # the core keeps no journal and no fault rules: it answered 404
    ["journal", "core"],
    ["fault", "list", "core"],
    ["fault", "add", "core", "--rule", "{}"],
    *(["audit", "--target", bad] for bad in BAD_URLS),
    ["audit", "--peers", "--payments", "notaurl"],
    ["audit", "--peers", "--iot", "http://127.0.0.1:99999"],
    ["audit", "--payments", "http://127.0.0.1:8104"],  # --payments without --peers
    ["scenario", "run", SCENARIO, "--target", "core=http://127.0.0.1:99999"],
    ["scenario", "run", SCENARIO, "--target", "core=http://127.0.0.1:9000,iot=notaurl"],
    ["scenario", "run", SCENARIO, "--target", "core=http://127.0.0.1:9000,core=http://127.0.0.1:9001"],
    ["scenario", "run", SCENARIO, "--jobs", "0"],
    ["scenario", "run", SCENARIO, "--jobs", "-3"],
    ["scenario", "run", "--all", SCENARIO],
    ["scenario", "list", "--catalogue", "/nonexistent"],
    ["scenario", "run", SCENARIO, "--catalogue", "/nonexistent"],
    ["demo", "--jobs", "0"],
    ["load", "webhooks", "--clock", "fast"],
    *(["bench", "sim", option, "0"] for option in ("--rounds", "--connections", "--duration")),
    ["bench", "sim", "nosuch"],
    ["serve", "core", "--workers", "0"],
    ["up", "--no-core", "--core-url", "http://127.0.0.1:9000"],
    ["up", "--faults", "vss=flaky-network"],
])
def test_usage_errors_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("argv,said", [
    (["clock", "advance", "-3d"], "the clock never moves backward"),
    (["scenario", "run", "--all", SCENARIO], "--all or names, not both"),
    (["bench", "sim", "nosuch"], "(see `caas-sim bench --help`)"),
    (["up", "--faults", "vss=flaky-network"], "vss ships (it ships: availability-95)"),
    (["journal", "core"], "the core keeps no journal"),
    (["journal", "nosuch"], f"known: {', '.join(stack_mod.SERVICES)} (or give --url)"),  # not the core: no journal
    (["scenario", "list", "--catalogue", "/nonexistent"], "--catalogue /nonexistent: no such directory"),
    (["scenario", "run", SCENARIO, "--target", "core=http://127.0.0.1:9000,core=http://127.0.0.1:9001"],
     "--target core: given twice"),
])
def test_usage_errors_say_what_is_wrong(argv, said, capsys):
    assert main(argv) == 2
    assert said in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("argv", [
    ["demo", "--report", "/proc/caas-sim-report"],
    ["scenario", "run", SCENARIO, "--report", "{file}"],
    ["scenario", "run", SCENARIO, "--junit", "{tmp}"],
    ["scenario", "run", SCENARIO, "--junit", "/proc/caas-sim-report/j.xml"],
    ["load", "webhooks", "--report", "/proc/caas-sim-report"],
    ["up", "--state-file", "{tmp}"],
    ["up", "--state-file", "/proc/caas-sim-up.json"],
])
def test_an_output_that_cannot_be_written_is_refused_before_the_run(argv, tmp_path, capsys):
    """They ran every scenario (or the load), then crashed writing the report; `up` left a
    partial state file, webhook secrets included, at the filesystem's root."""
    (tmp_path / "afile").write_text("")
    argv = [arg.format(tmp=tmp_path, file=tmp_path / "afile") for arg in argv]
    assert main(argv) == 2
    one_line_error(capsys.readouterr().err)
    assert capsys.readouterr().out == ""  # nothing ran
    assert not list(Path(tmp_path.parent).glob(f".{tmp_path.name}.*"))


@pytest.mark.parametrize("content", ["{not json", "[]", '{"pid": 1}', None])
@pytest.mark.parametrize("how", ["option", "env"])
def test_a_state_file_named_that_is_no_service_table_is_an_error(content, how, tmp_path, monkeypatch, capsys):
    """It was ignored: the commands then drove whatever listened on the default ports."""
    path = tmp_path / "up.json"
    if content is None:
        path.mkdir()  # a folder
    else:
        path.write_text(content)
    given = ["--state-file", str(path)] if how == "option" else []
    if how == "env":
        monkeypatch.setenv(STATE_ENV, str(path))
    assert main(["clock", "show", *given]) == 2
    assert str(path) in one_line_error(capsys.readouterr().err)


def test_scenario_list_prints_each_broken_file_once(tmp_path, capsys):
    """Every line was prefixed twice: ``DIR:?: DIR/x.yaml:1: ...``."""
    (tmp_path / "broken.yaml").write_text("name: broken\nsteps: [\n")
    assert main(["scenario", "list", "--catalogue", str(tmp_path)]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"caas-sim: error: {tmp_path / 'broken.yaml'}:") and f"{tmp_path}:?" not in line


def test_a_state_file_whose_process_is_gone_is_still_ignored(tmp_path, monkeypatch, capsys):
    path = tmp_path / "up.json"
    path.write_text('{"pid": 999999999, "services": {"iot": "http://127.0.0.1:1"}}')
    url = dead_url()
    monkeypatch.setattr(stack_mod, "SERVICES", {"iot": (stack_mod.SERVICES["iot"][0], int(url.rsplit(":", 1)[1]))})
    assert main(["clock", "show", "--state-file", str(path)]) == 1
    assert url in one_line_error(capsys.readouterr().err)  # the default ports, as documented


def test_writing_the_state_file_leaves_no_partial_file(tmp_path):
    with pytest.raises(IsADirectoryError):
        state.write(tmp_path, {"iot": "http://127.0.0.1:8103"})
    with pytest.raises(TypeError):  # fails halfway through writing
        state.write(tmp_path / "up.json", {"iot": object()})
    assert list(tmp_path.iterdir()) == []
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))


def test_up_names_the_service_whose_port_is_taken(tmp_path, capsys):
    """It named the sink: a failed start stops what started, and it looked for the first
    service missing from what runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        base = port - (stack_mod.SERVICES["iot"][1] - 8000)
        assert main(["up", "--no-core", "--no-dashboard", "--port-base", str(base), "--services", "iot",
                     "--state-file", str(tmp_path / "up.json")]) == 1
    assert f"cannot listen on 127.0.0.1:{port} for iot: address already in use" in \
        one_line_error(capsys.readouterr().err)


def test_up_names_the_service_that_rejects_its_fault_profile(tmp_path, capsys):
    profile = tmp_path / "bad.yaml"
    profile.write_text("- action: {type: explode}\n")
    assert main(["up", "--no-core", "--ephemeral", "--no-dashboard", "--services", "factory,iot",
                 "--faults", f"iot={profile}", "--state-file", str(tmp_path / "up.json")]) == 1
    assert "cannot start iot: unknown fault action 'explode'" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("database", ["notaurl", "postgresql://nobody@127.0.0.1:1/x"])
def test_up_says_when_the_core_cannot_open_its_database(database, tmp_path, capsys):
    assert main(["up", "--ephemeral", "--no-dashboard", "--services", "iot", "--database", database,
                 "--state-file", str(tmp_path / "up.json")]) == 1
    assert "the core cannot open its database" in one_line_error(capsys.readouterr().err)


def test_a_profile_that_is_not_utf8_is_named(tmp_path, capsys):
    profile = tmp_path / "bin.yaml"
    profile.write_bytes(b"rules:\n  - action: {type: \xff}\n")
    assert main(["fault", "add", "iot", "--url", dead_url(), "--file", str(profile)]) == 2
    assert f"{profile}: not UTF-8" in one_line_error(capsys.readouterr().err)


async def test_audit_peers_checks_each_url_is_the_service_it_stands_for(capsys):
    """The IoT simulator as --payments gave a false verdict; the gateway as --iot a traceback."""
    async with Stack(services=["iot", "payments"], ports={}, with_sink=False) as world:
        iot, payments = world.url("iot"), world.url("payments")
        assert await cli("audit", "--peers", "--payments", iot, "--iot", iot) == 1
        assert f"{iot} is iot, not the payments simulator" in one_line_error(capsys.readouterr().err)
        assert await cli("audit", "--peers", "--payments", payments, "--iot", payments) == 1
        assert f"{payments} is payments, not the iot simulator" in one_line_error(capsys.readouterr().err)
        assert await cli("audit", "--peers", "--payments", payments, "--iot", iot) == 0


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


async def test_a_rule_the_contract_refuses_names_the_field_that_is_wrong(iot, capsys):
    rule = '{"action": {"type": "latency", "params": {"ms": 10}}, "probability": 2}'
    assert await cli("fault", "add", "iot", "--url", iot, "--rule", rule) == 1
    line = one_line_error(capsys.readouterr().err)
    assert "/rules/0/probability: 2 is greater than the maximum of 1" in line and "oneOf" not in line


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
                       ("payments moved too: one clock with iot (the simulators of one `caas-sim up` cannot "
                        "move apart)")]


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
