"""The pytest plugin (scenarios/pytest_plugin.py), as a team uses it: suites of its own in a
folder outside this repository, run by pytest in a subprocess with ``-p caas_sim.scenarios.pytest_plugin``.

The world of the reference core under pytest-asyncio's strict and auto modes and under
xdist; a core of the team's own at ``--caas-core-url`` (a bare webhook receiver, and a core
speaking the admin protocol on a virtual clock); the entry point loading the plugin too."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from caas_sim import catalogue
from caas_sim.scenarios.pytest_plugin import CaasWorldError, WorldConfig, check_workers
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.clock import Clock
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET
from tests.worlds import free_port_base

#: Each test runs pytest in a subprocess (a few seconds; much more on a loaded machine).
pytestmark = pytest.mark.timeout(400)

ROOT = Path(__file__).resolve().parents[1]

INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
timeout = 300
"""

#: A team's suite against the reference core: every part of the fixture's API.
WORLD_SUITE = {
    "conftest.py": '''
        import os

        import pytest

        @pytest.fixture(scope="session")
        def caas_world_config(caas_world_config):
            """The team's own key beside the defaults."""
            keys = {**caas_world_config.api_keys, "team-ops": {"role": "operator", "subject": "ops-1"}}
            return caas_world_config.replace(api_keys=keys)

        @pytest.fixture(autouse=True)
        def which_world(caas_world_session):
            """Which worker had which world (its core's URL)."""
            out = os.environ.get("CAAS_TEST_OUT")
            if out:
                with open(os.path.join(out, os.environ.get("PYTEST_XDIST_WORKER", "main")), "a") as f:
                    f.write(caas_world_session.url("core") + "\\n")
    ''',
    "test_world.py": '''
        import asyncio
        import json
        import urllib.error
        import urllib.request
        from datetime import timedelta

        import pytest

        from caas_sim import catalogue
        from caas_sim.scenarios.pytest_plugin import DEFAULT_API_KEYS
        from caas_sim.simulators.admin_models import FaultAction, FaultMatch, FaultRuleInput
        from caas_sim.simulators.typed_client import AdminProblem
        from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET

        OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


        def get(url, headers=None):
            try:
                with OPENER.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())


        def test_the_world_has_every_service_the_keys_and_the_secrets(caas_world):
            assert caas_world.reference_core
            assert caas_world.admin("core").health().service == "core"
            assert [caas_world.admin(name).health().service for name in catalogue.NAMES] == list(catalogue.NAMES)
            assert caas_world.api_keys == {**DEFAULT_API_KEYS, "team-ops": {"role": "operator", "subject": "ops-1"}}
            assert caas_world.webhook_secrets == {name: DEFAULT_SECRET for name in catalogue.WEBHOOK_SENDERS}
            assert caas_world.webhook_urls["iot"] == caas_world.url("core") + "/caas/webhooks/ota-status"
            assert get(caas_world.url("core") + "/support/tickets", caas_world.auth("team-ops")) == (200, {"tickets": []})
            assert get(caas_world.url("core") + "/customers/c-1/purchases", caas_world.auth())[0] == 200


        def test_reset_drops_faults_journals_and_state_but_the_clock_goes_on(caas_world):
            rule = caas_world.fault("iot", FaultRuleInput(match=FaultMatch(selectors={"vin": "W*"}),
                                                          action=FaultAction(type="vehicle_offline")))
            assert [r.id for r in caas_world.faults("iot")] == [rule.id] and rule.hits == 0
            status, vins = get(caas_world.url("iot") + "/fleet/magic-vins")
            assert status == 200
            [entry] = [e for e in caas_world.journal("iot") if e.kind == "request"]
            assert entry.operation == "getMagicVins" and entry.path == "/fleet/magic-vins"
            later = caas_world.advance("1h")
            assert caas_world.now() == later

            caas_world.reset()
            assert caas_world.faults("iot") == [] and caas_world.journal("iot") == []
            assert caas_world.now() == later  # the clock never goes back
            assert caas_world.clear_faults() == 0


        def test_each_test_gets_a_fresh_world(caas_world):
            caas_world.fault("payments", {"action": {"type": "http_error", "params": {"status": 503}}})
            caas_world.fault("iot", {"action": {"type": "http_error", "params": {"status": 503}}})


        def test_each_test_gets_a_fresh_world_again(caas_world):
            assert caas_world.faults("payments") == [] and caas_world.faults("iot") == []


        @pytest.mark.asyncio
        async def test_a_coroutine_uses_it_too(caas_world):
            before = caas_world.now()
            assert caas_world.advance("15m") - before == timedelta(minutes=15)
            await asyncio.to_thread(caas_world.advance, "1m")  # this loop free meanwhile
            assert caas_world.now() - before == timedelta(minutes=16)


        def test_during_moves_the_clock_for_a_request_that_waits_on_it(caas_world):
            vin = get(caas_world.url("iot") + "/fleet/magic-vins")[1]["vins"]["healthy"]
            caas_world.fault("iot", {"match": {"method": "GET", "path": "/vehicles/{vin}/status"},
                                     "action": {"type": "latency", "params": {"ms": 30000}}})
            before = caas_world.now()
            status, body = caas_world.during(get, caas_world.url("iot") + f"/vehicles/{vin}/status")
            assert status == 200 and body["vin"] == vin
            assert caas_world.now() - before == timedelta(seconds=30)


        def test_mistakes_are_said_clearly(caas_world):
            with pytest.raises(AdminProblem) as unknown:
                caas_world.fault("iot", {"action": {"type": "explode"}})
            assert unknown.value.status == 400 and "explode" in str(unknown.value)
            with pytest.raises(KeyError, match="no service 'nope'"):
                caas_world.url("nope")
            with pytest.raises(KeyError, match="no API key"):
                caas_world.auth("nobody")
            assert caas_world.violations() == []
            assert caas_world.audit().ok
    ''',
}
WORLD_TESTS = 7

#: A team whose core only receives webhooks (no admin protocol): its URL from the ini file.
RECEIVER_SUITE = {
    "test_receiver.py": '''
        import json
        import os
        import urllib.request
        import warnings

        import pytest

        from caas_sim.scenarios.pytest_plugin import CaasWorldWarning

        OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        ACTIVATION = {"serviceId": "perf-boost", "duration": {"type": "PERMANENT"},
                      "configuration": {"featureFlags": ["performance_boost"], "parameters": {"power_kw": 30}}}


        def call(url, body=None):
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with OPENER.open(request, timeout=30) as resp:
                return json.loads(resp.read())


        def test_the_simulators_call_back_the_team_core(caas_world):
            base = int(os.environ["CAAS_TEST_PORT_BASE"])
            assert not caas_world.reference_core
            assert caas_world.url("core") == os.environ["CAAS_TEST_CORE"]
            assert caas_world.url("iot") == f"http://127.0.0.1:{base + 103}"
            assert caas_world.webhook_urls["iot"] == os.environ["CAAS_TEST_CORE"] + "/caas/webhooks/ota-status"
            vin = call(caas_world.url("iot") + "/fleet/magic-vins")["vins"]["healthy"]
            request_id = call(caas_world.url("iot") + "/ota/activate", {"vin": vin, **ACTIVATION})["requestId"]
            with open(os.environ["CAAS_TEST_OUT"], "w") as f:
                f.write(request_id)
            with pytest.warns(CaasWorldWarning, match="speaks no admin protocol"):
                caas_world.advance("1m")
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # said once
                caas_world.advance("1m")
            [sent] = [e for e in caas_world.journal("iot") if e.kind == "webhook" and e.status]
            assert sent.status == 204 and sent.peer.endswith("/caas/webhooks/ota-status")


        def test_the_world_is_reset_without_the_core(caas_world):
            assert [e for e in caas_world.journal("iot") if e.kind == "webhook"] == []
    ''',
}

#: A team whose core speaks the admin protocol on a virtual clock: it moves and resets with the world.
ADMIN_CORE_SUITE = {
    "test_admin_core.py": '''
        import json
        import urllib.error
        import urllib.request

        OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        KEY = {"Authorization": "Bearer team-key"}


        def call(url, body=None, headers=None):
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                                      **(headers or {})})
            try:
                with OPENER.open(request, timeout=30) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())


        def test_a_purchase_through_the_team_core_is_delivered(caas_world):
            vin = call(caas_world.url("iot") + "/fleet/magic-vins")[1]["vins"]["flaky_twice"]
            status, bought = call(f"{caas_world.url('core')}/customers/c-1/vehicles/{vin}/purchases",
                                  {"serviceId": "heated-seats", "durationType": "PERMANENT",
                                   "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}}, KEY)
            assert status == 201, bought
            caas_world.advance("30m")  # two failed attempts, backoff on the core's clock, then success
            status, purchase = call(f"{caas_world.url('core')}/purchases/{bought['purchaseId']}", headers=KEY)
            assert purchase["status"] == "ACTIVE" and purchase["attempts"] == 3
            assert caas_world.admin("core").clock().now == caas_world.now()  # one world, one time
            assert caas_world.audit().ok and caas_world.violations() == []


        def test_the_team_core_is_reset_with_the_world(caas_world):
            assert call(f"{caas_world.url('core')}/customers/c-1/purchases", headers=KEY)[1]["purchases"] == []
    ''',
}


def write_suite(folder: Path, files: dict[str, str], ini: str = INI) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pytest.ini").write_text(ini)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without pytest's and xdist's variables (the inner run is a
    session of its own), with this checkout importable, as an installed caas-sim would be."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CAAS_SIM_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env | extra


async def run_pytest(folder: Path, *args: str, env: dict[str, str] | None = None,
                     plugin: bool = True) -> tuple[int, str]:
    argv = [sys.executable, "-m", "pytest", *(["-p", "caas_sim.scenarios.pytest_plugin"] if plugin else []),
            "-p", "no:cacheprovider", "-q", "-rA", "-W", "error::pytest.PytestUnraisableExceptionWarning", *args]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=folder, env=env or clean_env(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 360)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode()


@pytest.mark.parametrize("mode", ["strict", "auto"])
async def test_the_reference_world_under_pytest_asyncio(tmp_path, mode):
    suite = write_suite(tmp_path / "team", WORLD_SUITE)
    rc, out = await run_pytest(suite, "-o", f"asyncio_mode={mode}", "-p", "no:xdist")
    assert rc == 0, out
    assert f"{WORLD_TESTS} passed" in out, out
    assert "warning" not in out.lower(), out


async def test_each_xdist_worker_has_a_world_of_its_own(tmp_path):
    suite = write_suite(tmp_path / "team", WORLD_SUITE)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, out = await run_pytest(suite, "-n", "2", "--dist", "load", env=clean_env(CAAS_TEST_OUT=str(out_dir)))
    assert rc == 0, out
    assert f"{WORLD_TESTS} passed" in out, out
    worlds = {path.name: set(path.read_text().split()) for path in out_dir.iterdir()}
    assert sorted(worlds) == ["gw0", "gw1"], worlds
    assert all(len(urls) == 1 for urls in worlds.values()), worlds  # one world per worker, all session long
    assert worlds["gw0"] != worlds["gw1"]  # on ports of their own


@pytest.fixture
async def receiver():
    """The team's core as far as webhooks go: records each POST and answers 204; no admin routes."""
    received: list[tuple[str, dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((request.path, dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{runner.addresses[0][1]}", received=received)
    await runner.cleanup()


async def test_a_team_core_without_the_admin_protocol_gets_the_webhooks(tmp_path, receiver):
    base = free_port_base([e.port - catalogue.CORE_PORT for e in catalogue.SERVICES])
    suite = write_suite(tmp_path / "team", RECEIVER_SUITE, ini=INI + f"caas_core_url = {receiver.url}/\n")
    out = tmp_path / "request-id"
    env = clean_env(CAAS_TEST_CORE=receiver.url, CAAS_TEST_PORT_BASE=str(base), CAAS_TEST_OUT=str(out))
    rc, printed = await run_pytest(suite, "--caas-port-base", str(base), "-p", "no:xdist", "-v", env=env)
    assert rc == 0, printed
    assert "2 passed" in printed, printed
    assert f"caas_world: the simulators' webhooks go to the core at {receiver.url}/" in printed  # the header
    [(path, headers, body)] = receiver.received
    assert path == "/caas/webhooks/ota-status"
    verified = Webhook(DEFAULT_SECRET).verify(body, headers)  # the development secret unless configured
    assert (verified["requestId"], verified["status"]) == (out.read_text(), "ACTIVATED")


@pytest.mark.parametrize(("option", "said"), [
    (("--caas-core-url", "not-a-url"), "--caas-core-url: not a base URL: 'not-a-url'"),
    (("--caas-core-url", "http://127.0.0.1:9000", "--caas-port-base", "70000"), "--caas-port-base: not a port base"),
])
async def test_options_that_cannot_work_stop_pytest_at_start(tmp_path, option, said):
    """Before, a bad port base was an OverflowError in each test's setup, and a URL that is not
    one was taken (the world started, on the default ports)."""
    suite = write_suite(tmp_path / "team", {"test_one.py": "def test_one(caas_world):\n    pass\n"})
    rc, out = await run_pytest(suite, *option, "-p", "no:xdist")
    assert rc == pytest.ExitCode.USAGE_ERROR, out
    assert said in out and "Traceback" not in out, out


async def test_a_team_core_with_xdist_workers_stops_pytest_at_start(tmp_path):
    """Before, the workers started and each test errored with the CaasWorldError's traceback."""
    suite = write_suite(tmp_path / "team", {"test_one.py": "def test_one(caas_world):\n    pass\n",
                                            "test_two.py": "def test_two(caas_world):\n    pass\n"})
    rc, out = await run_pytest(suite, "--caas-core-url", "http://127.0.0.1:9", "-n", "2")
    assert rc == pytest.ExitCode.USAGE_ERROR, out
    assert "caas_world: --caas-core-url: one core cannot serve 2 xdist workers' worlds" in out, out
    assert "Traceback" not in out and "bringing up nodes" not in out, out
    rc, out = await run_pytest(suite, "--caas-core-url", "http://127.0.0.1:9", "-n", "1", "--co")
    assert rc == 0, out  # one worker, one world: fine


def test_one_team_core_is_not_shared_by_xdist_workers():
    team = WorldConfig(core_url="http://127.0.0.1:9000")
    with pytest.raises(CaasWorldError, match="one core cannot serve 2 xdist workers' worlds"):
        check_workers(team, SimpleNamespace(workerinput={"workercount": 2}))
    check_workers(team, SimpleNamespace(workerinput={"workercount": 1}))
    check_workers(team, SimpleNamespace())  # no xdist
    check_workers(WorldConfig(), SimpleNamespace(workerinput={"workercount": 8}))  # a world per worker
    with pytest.raises(CaasWorldError):
        check_workers(team, 2)  # the controller, which counts them
    check_workers(team, 0)


async def test_a_team_core_speaking_the_admin_protocol_moves_and_resets_with_the_world(tmp_path):
    base = free_port_base([e.port - catalogue.CORE_PORT for e in catalogue.SERVICES])
    upstreams = {e.setting: f"http://127.0.0.1:{base + e.port - catalogue.CORE_PORT}" for e in catalogue.SERVICES}
    team_core = Stack(services=[], clock=Clock("virtual"), with_sink=False, shutdown_timeout=0.5,
                      core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'team.db'}", "upstreams": upstreams,
                            "api_keys": {"team-key": {"role": "customer", "subject": "c-1"}}})
    async with team_core:
        suite = write_suite(tmp_path / "team", ADMIN_CORE_SUITE)
        rc, printed = await run_pytest(suite, "--caas-core-url", team_core.url("core"), "--caas-port-base",
                                       str(base), "-p", "no:xdist")
    assert rc == 0, printed
    assert "2 passed" in printed and "CaasWorldWarning" not in printed, printed


async def test_the_entry_point_and_p_together_register_the_plugin_once(tmp_path):
    """Installed, caas-sim's entry point (``caas_sim = caas_sim.scenarios.pytest_plugin``) loads the
    plugin; ``-p caas_sim.scenarios.pytest_plugin`` or ``pytest_plugins`` then name it a second time."""
    dist = tmp_path / "site" / "caas_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: caas-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\ncaas_sim = caas_sim.scenarios.pytest_plugin\n")
    env = clean_env()
    env["PYTHONPATH"] += os.pathsep + str(dist.parent)
    suite = write_suite(tmp_path / "team", {"test_once.py": '''
        import sys

        def test_registered_once(pytestconfig):
            plugin = sys.modules["caas_sim.scenarios.pytest_plugin"]
            names = [name for name, p in pytestconfig.pluginmanager.list_name_plugin() if p is plugin]
            assert len(names) == 1, names
            assert pytestconfig.getoption("caas_core_url") is None
    '''})
    rc, out = await run_pytest(suite, "-p", "no:xdist", env=env)  # the entry point and -p
    assert rc == 0, out
    (suite / "conftest.py").write_text('pytest_plugins = ["caas_sim.scenarios.pytest_plugin"]\n')
    rc, out = await run_pytest(suite, "-p", "no:xdist", env=env, plugin=False)  # and pytest_plugins
    assert rc == 0, out
