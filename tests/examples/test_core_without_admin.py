"""`caas-sim scenario run --target` against a core that serves none of the optional admin routes
(/__admin/health, /__admin/clock, /__admin/reset, /__admin/audit): it says once what it cannot
do, carries on in the simulators' scaled time with what it can, and exits 1 when nothing could
run. The simulators run here (scaled), the core is a stand-in with two routes; the runner is
the CLI in another process (examples/node-core is the full proof: test_node_core.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from xml.etree import ElementTree

from aiohttp import web

from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.clock import Clock

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["iot", "payments", "vss"]
OWN_CLOCK = "has neither /__admin/health nor /__admin/clock: it runs on its own clock"
HEADER = "# yaml-language-server: $schema=../scenario/scenario.schema.json\n"


def scenario(folder: Path, name: str, steps: str, expect: str = "") -> str:
    path = folder / f"{name}.yaml"
    path.write_text(HEADER + f"name: {name}\nproves: a core without admin routes\nworld:\n  seed: 1\n  actors:\n"
                    f"    alice: {{role: customer, subject: c-1}}\nsteps:\n{steps}" + (f"expect:\n{expect}" if expect
                                                                                      else ""))
    return str(path)


@contextlib.asynccontextmanager
async def world(clock: Clock, catch_all: bool = False) -> AsyncIterator[str]:
    """The simulators and a core with no admin route; yields the --target value. With
    ``catch_all``, the core answers every other path 200 with a JSON object of its own."""
    async def purchases(request: web.Request) -> web.Response:
        return web.json_response({"purchases": []})

    async def anything(request: web.Request) -> web.Response:
        return web.json_response({"purchaseId": 5, "status": "ACTIVATION_QUEUED"})

    core = web.Application()
    core.router.add_get("/customers/{customerId}/purchases", purchases)
    if catch_all:
        core.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(core)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    stack = await Stack(services=SERVICES, clock=clock, shutdown_timeout=0.5).start()
    try:
        yield ",".join([f"core=http://127.0.0.1:{port}", *(f"{name}={stack.url(name)}" for name in SERVICES)])
    finally:
        await stack.stop()
        await runner.cleanup()


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "caas_sim.scenarios.cli", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_it_says_once_what_it_cannot_do_and_plays_what_it_can(tmp_path):
    first = scenario(tmp_path, "first", "  - call: GET /fleet/magic-vins\n    service: iot\n  - advance: 10m\n",
                     "  - state: {get: /customers/c-1/purchases, as: alice, match: {purchases: []}}\n"
                     "  - audit: {ok: true}\n  - audit: {peers: true}\n")
    second = scenario(tmp_path, "second", "  - advance: 1m\n")
    long = scenario(tmp_path, "long", "  - advance: 3d\n")
    async with world(Clock("scaled", scale=3600)) as target:
        code, out, err = await cli("scenario", "run", first, second, long, "--target", target)
    assert code == 0 and "1 passed, 0 failed, 0 errors, 2 skipped" in out, out + err
    for notice in (OWN_CLOCK, "time runs at the simulators' rate (scaled:3600)",
                   "has no /__admin/reset: it keeps what a scenario leaves",
                   "has no /__admin/audit: its audit is skipped (reported as not checked); the peers' audit"):
        assert err.count(notice) == 1, err
    assert "first: audit: the core has no /__admin/audit" in out  # not checked, said in the summary
    assert "second: skipped: the core cannot be reset" in out
    assert "long: skipped: it needs virtual time: it may wait 3d, 1m12s of real time at scaled:3600" in out
    assert "Traceback" not in err and "Unclosed" not in err, err


async def test_a_run_where_nothing_can_run_exits_1(tmp_path):
    short = scenario(tmp_path, "short", "  - advance: 1m\n")
    async with world(Clock("virtual")) as target:  # nobody can move the core's clock, nor time then
        code, out, err = await cli("scenario", "run", short, "--target", target)
    assert code == 1, out + err
    assert err.count("the simulators' clock (iot, payments, vss) is virtual: it moves only when told") == 1, err
    assert "short: skipped: time cannot pass in this world" in out
    assert "every scenario was skipped (1): nothing was checked" in err
    assert "Traceback" not in err and "Unclosed" not in err, err


async def test_an_unreachable_core_is_one_line(tmp_path):
    short = scenario(tmp_path, "short", "  - advance: 1m\n")
    code, out, err = await cli("scenario", "run", short, "--target", "core=http://127.0.0.1:9")
    assert code == 1 and "cannot reach the core at http://127.0.0.1:9 (connection refused): start it" in err, out + err
    assert "caas-sim up" not in err, err  # it starts no core of your own: the hint was wrong
    assert "Traceback" not in err and "Unclosed" not in err, err


async def test_a_core_command_that_does_not_start_is_one_line(tmp_path):
    short = scenario(tmp_path, "short", "  - advance: 1m\n")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, out, err = await cli("scenario", "run", short, "--target", f"core=http://127.0.0.1:{port}",
                               "--core-command", "exit 3")
    assert code == 1 and "the core command exited with code 3 before the core listened" in err, out + err
    assert "Traceback" not in err and "Unclosed" not in err, err


async def test_a_core_answering_any_json_to_the_admin_routes_has_none_of_them(tmp_path):
    """Before, a 2xx JSON object that is not the admin protocol's health (a catch-all route)
    was read as one: a KeyError traceback; a simulator answering so is one line."""
    short = scenario(tmp_path, "short", "  - advance: 1m\n")
    async with world(Clock("scaled", scale=3600), catch_all=True) as target:
        code, out, err = await cli("scenario", "run", short, "--target", target)
        assert code == 0 and "1 passed" in out, out + err
        assert err.count(OWN_CLOCK) == 1, err
        assert "Traceback" not in err, err
        urls = dict(item.split("=", 1) for item in target.split(","))
        urls["iot"] = urls["core"]  # not the IoT simulator: the same catch-all
        code, out, err = await cli("scenario", "run", short, "--target", ",".join(f"{k}={v}" for k, v in urls.items()))
    core = urls["core"]
    assert code == 1 and f"{core}/__admin/health answered 200 Not an admin answer" in err, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


async def test_a_core_gone_between_scenarios_errs_the_rest_and_the_junit_is_written(tmp_path):
    """Before, the run ended at the failed restart with one line: no summary, no JUnit, the
    scenario that had passed reported nowhere."""
    names = [scenario(tmp_path, name, "  - advance: 1m\n") for name in ("one", "two", "three")]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    mark = tmp_path / "started"  # the core starts once, then its command fails
    command = (f"if [ -e {mark} ]; then exit 3; fi; touch {mark}; "
               f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1")
    junit = tmp_path / "junit.xml"
    async with world(Clock("scaled", scale=3600)) as target:
        others = target.partition(",")[2]
        code, out, err = await cli("scenario", "run", *names, "--target", f"core=http://127.0.0.1:{port},{others}",
                                   "--core-command", command, "--junit", str(junit))
    assert code == 1, out + err
    assert "1 passed, 0 failed, 2 errors" in out, out + err
    assert "two: ERROR the world could not be reset: the core command exited with code 3" in out, out
    assert "three: ERROR not run: the core command exited with code 3" in out, out
    suite = ElementTree.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("errors")) == ("3", "2")
    assert [case.find("error") is not None for case in suite] == [False, True, True]
    assert "Traceback" not in err, err


CRASHING_CORE = '''
import http.server, os, sys

class Core(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            os._exit(3)  # as a core dying of a bug would
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Core).serve_forever()
'''


async def test_a_core_that_dies_during_a_scenario_errs_it_naming_its_exit(tmp_path):
    """Before, the scenario failed with the connection error its step got: it read as the
    core's answer being wrong, where the core its command started had exited."""
    core = tmp_path / "crashing_core.py"
    core.write_text(CRASHING_CORE)
    names = [scenario(tmp_path, "dies", "  - call: GET /crash\n"), scenario(tmp_path, "after", "  - advance: 1m\n")]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    junit = tmp_path / "junit.xml"
    async with world(Clock("scaled", scale=3600)) as target:
        others = target.partition(",")[2]
        code, out, err = await cli("scenario", "run", *names, "--target", f"core=http://127.0.0.1:{port},{others}",
                                   "--core-command", f"exec {sys.executable} {core} {port}", "--junit", str(junit))
    assert code == 1, out + err
    assert "dies: ERROR the core command exited with code 3 during the scenario" in out, out + err
    assert "1 passed, 0 failed, 1 error" in out, out + err  # started afresh for the next scenario
    suite = ElementTree.parse(junit).getroot()
    assert [case.find("error") is not None for case in suite] == [True, False]
