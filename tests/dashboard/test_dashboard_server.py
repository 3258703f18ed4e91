"""The dashboard's server side without a browser: its event stream, clock and fault
endpoints, the vehicle page's data, its guard, and `caas-sim up` serving it. Worlds are
in-process stacks on a virtual clock; the dashboard talks to them over real sockets,
through the admin protocol only."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from caas_sim.scenarios.cli.servers import render_up, run_stack
from caas_sim.scenarios.dashboard import DASHBOARD_PORT, Dashboard, create_app
from caas_sim.scenarios.dashboard.app import HUB_KEY
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.client import AdminClient
from caas_sim.simulators.kit.clock import Clock

START = "2026-01-05T08:00:00.000Z"
JSON = {"Content-Type": "application/json"}
ACTIVATION = {"serviceId": "heated-seats", "configuration": {"featureFlags": ["heated_seats"], "parameters": {}},
              "duration": {"type": "PERMANENT"}}
#: Real seconds a test waits for what the dashboard's polling brings (it polls every 0.25 s).
DEADLINE = 20.0


@contextlib.asynccontextmanager
async def world(*, core: bool = False, **stack: object) -> AsyncIterator[tuple[Stack, Dashboard]]:
    params = {"services": ["iot", "payments"], "clock": Clock("virtual"), "seed": 3, "shutdown_timeout": 0.5,
              **stack}
    if core:
        params["core"] = {"database_url": "sqlite+aiosqlite:///:memory:",
                          "api_keys": {"dev-customer": {"role": "customer", "subject": "c-1"}}}
    async with Stack(**params) as started:
        services = {name: r.url for name, r in started.running.items() if name != "sink"}
        lanes = {"sink": started.url("sink")} if "sink" in started.running else {}
        async with Dashboard(services, port=0, token=started.admin_token, lanes=lanes, report=None) as board:
            yield started, board


async def events(session: aiohttp.ClientSession, url: str, *, last_id: int | None = None):
    """The dashboard's server-sent events as (event, data, id), one by one."""
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": str(last_id)} if last_id is not None else {})}
    async with session.get(f"{url}/api/events", headers=headers,
                           timeout=aiohttp.ClientTimeout(total=None, sock_read=DEADLINE)) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        event, data, ident = "message", [], None
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    yield event, orjson.loads("\n".join(data)), ident
                event, data, ident = "message", [], None
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("id: "):
                ident = int(line[4:])


async def until(stream, wanted, what: str):
    """The first event of ``stream`` for which ``wanted(event, data)`` holds, within the deadline."""
    try:
        async with asyncio.timeout(DEADLINE):
            async for event, data, ident in stream:
                if wanted(event, data):
                    return event, data, ident
    except TimeoutError:
        pytest.fail(f"no {what} within {DEADLINE:g} s")
    pytest.fail(f"the stream ended before {what}")


async def activate(session: aiohttp.ClientSession, stack: Stack, vin: str, **headers: str) -> dict:
    async with session.post(f"{stack.url('iot')}/ota/activate", json={"vin": vin, **ACTIVATION},
                            headers=headers) as resp:
        assert resp.status == 202, await resp.text()
        return await resp.json()


async def magic(session: aiohttp.ClientSession, stack: Stack, which: str = "healthy") -> str:
    async with session.get(f"{stack.url('iot')}/fleet/magic-vins") as resp:
        return (await resp.json())["vins"][which]


async def poll(check, what: str, *, deadline: float = DEADLINE):
    """``await check()`` until it is truthy (real-time polling of something another task does)."""
    end = time.monotonic() + deadline
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline:g} s")
        await asyncio.sleep(0.05)


# --- the event stream --------------------------------------------------------------------------

async def test_the_stream_sends_the_world_then_each_new_journal_entry_drawn():
    async with world() as (stack, board), aiohttp.ClientSession() as session:
        vin = await magic(session, stack)
        stream = events(session, board.url)
        _, hello, _ = await until(stream, lambda e, d: e == "hello", "hello")
        assert set(hello["services"]) == {"iot", "payments"}
        _, health, _ = await until(stream, lambda e, d: e == "health", "health")
        assert health["iot"]["health"]["clock"]["now"] == START and health["iot"]["health"]["busy"] == 0
        # The backlog: what the journal held already (the magic VINs read above, by a client).
        _, backlog, _ = await until(stream, lambda e, d: e == "journal", "the backlog")
        assert backlog[0]["operation"] == "getMagicVins" and backlog[0]["draw"]["from"] == "client"

        # A caller that propagates a correlation id of its own is drawn as the core.
        await activate(session, stack, vin, **{"X-Correlation-Id": "cor_browser_1"})
        _, fresh, last = await until(
            stream, lambda e, d: e == "journal" and any(x.get("operation") == "activateService" for x in d),
            "the activation in the journal")
        call = next(x for x in fresh if x.get("operation") == "activateService")
        assert call["draw"] == {"from": "core", "to": "iot", "label": "activateService → 202", "style": "call",
                                "mark": None}
        assert call["entities"]["vin"] == vin and call["id"] <= last
        await stream.aclose()

        # A browser that reconnects resumes after the last id it saw: no entry twice.
        await activate(session, stack, vin)
        resumed = events(session, board.url, last_id=last)
        _, again, _ = await until(resumed, lambda e, d: e == "journal", "the journal after a reconnection")
        assert again and all(x["id"] > last for x in again)
        await resumed.aclose()
        # An id this dashboard never gave (another one's, before a restart): everything again.
        stale = events(session, board.url, last_id=10**9)
        _, everything, _ = await until(stale, lambda e, d: e == "journal", "the whole backlog")
        assert everything[0]["id"] == 1
        await stale.aclose()


async def test_the_stream_marks_faults_and_tells_rules_added_elsewhere():
    async with world() as (stack, board), aiohttp.ClientSession() as session:
        vin = await magic(session, stack)
        stream = events(session, board.url)
        await until(stream, lambda e, d: e == "faults", "the rules")
        async with AdminClient(stack.url("iot")) as admin:  # as `caas-sim fault add` would
            await admin.add_fault({"id": "ecu", "match": {"selectors": {"vin": vin}}, "times": 1,
                                   "action": {"type": "activation_failed", "params": {"errorCode": "ECU_ERROR"}}})
        _, rules, _ = await until(stream, lambda e, d: e == "faults" and d["iot"]["rules"], "the new rule")
        assert [r["id"] for r in rules["iot"]["rules"]] == ["ecu"]
        await activate(session, stack, vin)
        _, batch, _ = await until(stream, lambda e, d: e == "journal" and any(x["kind"] == "fault" for x in d),
                                  "the applied fault")
        fault = next(x for x in batch if x["kind"] == "fault")
        assert fault["draw"]["mark"] == "fault" and fault["draw"]["from"] == fault["draw"]["to"] == "iot"
        assert fault["draw"]["label"] == "⚡ fault ecu: activation_failed"
        await stream.aclose()


async def test_nothing_is_polled_while_nobody_listens():
    async with world() as (_, board), aiohttp.ClientSession() as session:
        hub = board.app[HUB_KEY]
        assert hub.listening == 0 and hub._task is None
        stream = events(session, board.url)
        await until(stream, lambda e, d: e == "health", "health")
        assert hub.listening == 1 and not hub._task.done()
        await stream.aclose()

        async def stopped():
            return hub.listening == 0 and hub._task.done()
        await poll(stopped, "the poll loop ending with its last listener")


async def test_a_core_without_journal_or_faults_is_asked_once_and_shown_as_a_lane():
    async with world(core=True) as (_, board), aiohttp.ClientSession() as session:
        stream = events(session, board.url)
        _, hello, _ = await until(stream, lambda e, d: e == "hello" and d["absent"].get("core") == ["faults",
                                                                                                   "journal"],
                                  "the core's absent routes")
        assert "core" in hello["services"]
        async with session.get(f"{board.url}/api/faults") as resp:
            listed = await resp.json()
        assert listed["core"] == {"absent": True}
        assert {"vehicle_offline", "activation_failed", "latency"} <= {a["name"] for a in listed["iot"]["actions"]}
        await stream.aclose()


# --- the clock ------------------------------------------------------------------------------------

async def clocks(stack: Stack, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        async with AdminClient(stack.url(name)) as admin:
            out[name] = (await admin.clock())["now"]
    return out


async def test_advance_moves_every_clock_as_clock_advance_does_the_core_included():
    async with world(core=True) as (stack, board), aiohttp.ClientSession() as session:
        async with session.post(f"{board.url}/api/clock", json={"advance": "15m"}) as resp:
            assert resp.status == 200, await resp.text()
            moved = await resp.json()
        assert moved["seconds"] == 900 and set(moved["clocks"]) == {"iot", "payments", "core"}
        assert await clocks(stack, ["iot", "payments", "core"]) == dict.fromkeys(
            ["iot", "payments", "core"], "2026-01-05T08:15:00.000Z")
        async with session.post(f"{board.url}/api/clock", json={"advance": 86400}) as resp:
            assert (await resp.json())["clocks"]["core"]["now"] == "2026-01-06T08:15:00.000Z"


async def test_next_moves_to_the_next_due_event_and_refuses_when_nothing_is_due():
    async with world() as (stack, board), aiohttp.ClientSession() as session:
        await activate(session, stack, await magic(session, stack))  # the healthy vehicle answers 2 s later
        async with session.post(f"{board.url}/api/clock", json={"next": True}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["clocks"]["iot"]["now"] == "2026-01-05T08:00:02.000Z"
        assert any(e.get("event") == "ota.activated" for e in stack.service("iot").journal.entries())
        async with session.post(f"{board.url}/api/clock", json={"next": True}) as resp:
            assert resp.status == 409
            assert "nothing is due" in (await resp.json())["detail"]


@pytest.mark.parametrize("body, status", [({"advance": "soon"}, 400), ({"advance": 0}, 400), ({}, 400)])
async def test_a_move_that_is_no_duration_is_refused(body, status):
    async with world() as (stack, board), aiohttp.ClientSession() as session:
        async with session.post(f"{board.url}/api/clock", json=body) as resp:
            assert resp.status == status
            assert resp.content_type == "application/problem+json"
        assert (await clocks(stack, ["iot"]))["iot"] == START


async def test_real_clocks_are_not_moved():
    async with world(clock=Clock("real")) as (_, board), aiohttp.ClientSession() as session, \
            session.post(f"{board.url}/api/clock", json={"advance": "1h"}) as resp:
            assert resp.status == 409
            assert "real-time clock cannot be moved" in (await resp.json())["detail"]


async def test_a_core_without_admin_routes_keeps_its_own_clock_and_is_named():
    """A foreign core with no /__admin at all: its lane and a notice; the simulators move."""
    foreign = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({})

    foreign.router.add_get("/hello", hello)
    async with Stack(services=["iot"], clock=Clock("virtual"), shutdown_timeout=0.5) as stack, \
            TestServer(foreign) as core, aiohttp.ClientSession() as session:
        services = {"iot": stack.url("iot"), "core": str(core.make_url("")).rstrip("/")}
        async with Dashboard(services, port=0, report=None) as board:
            stream = events(session, board.url)
            await until(stream, lambda e, d: e == "notice" and "core serves no /__admin/health" in d["text"],
                        "the notice about the core")  # said once, as it is found, before the health it is in
            _, health, _ = await until(stream, lambda e, d: e == "health", "health")
            assert health["core"] == {"absent": True} and "health" in health["iot"]
            async with session.post(f"{board.url}/api/clock", json={"advance": "1h"}) as resp:
                moved = await resp.json()
            assert set(moved["clocks"]) == {"iot"} and moved["clocks"]["iot"]["now"] == "2026-01-05T09:00:00.000Z"
            assert moved["notes"] == ["core serves no /__admin/health: its clock is its own, not moved"]
            await stream.aclose()


# --- faults ---------------------------------------------------------------------------------------

async def test_rules_are_added_and_removed_through_the_services_admin_routes():
    async with world() as (stack, board), aiohttp.ClientSession() as session:
        rule = {"id": "slow-status", "match": {"method": "GET", "path": "/vehicles/{vin}/status"},
                "action": {"type": "latency", "params": {"ms": 2000}}, "times": 3}
        async with session.post(f"{board.url}/api/faults/iot", json=rule) as resp:
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["rule"]["remaining"] == 3
        async with AdminClient(stack.url("iot")) as admin:
            assert [r["id"] for r in (await admin.faults())["rules"]] == ["slow-status"]
        # The service's refusal comes back as it was: status and problem.
        async with session.post(f"{board.url}/api/faults/iot", json=rule) as resp:
            assert resp.status == 409 and "already exists" in (await resp.json())["detail"]
        async with session.post(f"{board.url}/api/faults/iot", json={"action": {"type": "no_such_thing"}}) as resp:
            assert resp.status == 400 and resp.content_type == "application/problem+json"
        async with session.post(f"{board.url}/api/faults/nowhere", json=rule) as resp:
            assert resp.status == 404
        async with session.delete(f"{board.url}/api/faults/iot/slow-status") as resp:
            assert resp.status == 200 and (await resp.json()) == {"removed": 1}
        async with session.delete(f"{board.url}/api/faults/iot/slow-status") as resp:
            assert resp.status == 404
        async with AdminClient(stack.url("iot")) as admin:
            assert (await admin.faults())["rules"] == []


async def test_changes_need_json_from_the_dashboard_itself():
    async with world() as (stack, board), aiohttp.ClientSession() as session:
        async with session.post(f"{board.url}/api/clock", data='{"advance": "1h"}',
                                headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 415
        async with session.post(f"{board.url}/api/faults/iot", json={"action": {"type": "reset"}},
                                headers={"Origin": "http://evil.example"}) as resp:
            assert resp.status == 403
        async with session.post(f"{board.url}/api/clock", json={"advance": "1h"},
                                headers={"Origin": board.url}) as resp:
            assert resp.status == 200
        async with AdminClient(stack.url("iot")) as admin:
            assert (await admin.faults())["rules"] == []


# --- the vehicle page -----------------------------------------------------------------------------

async def test_a_vehicle_is_its_status_from_the_iot_api_and_its_ota_requests_from_the_journal():
    async with world() as (stack, board), aiohttp.ClientSession() as session:
        vin = await magic(session, stack)
        accepted = await activate(session, stack, vin)
        async with session.post(f"{board.url}/api/clock", json={"advance": "1m"}) as resp:
            assert resp.status == 200
        async with session.get(f"{board.url}/api/vehicles/{vin.lower()}") as resp:
            vehicle = await resp.json()
        assert vehicle["vehicle"]["vin"] == vin and vehicle["vehicle"]["connectivity"] == "ONLINE"
        assert [s["serviceId"] for s in vehicle["vehicle"]["activeServices"]] == ["heated-seats"]
        [request] = vehicle["requests"]
        assert (request["requestId"], request["kind"], request["state"]) == (accepted["requestId"], "ACTIVATION",
                                                                              "ota.activated")
        assert [w["outcome"] for w in request["webhooks"]] == ["delivered"]
        assert {e["draw"]["label"] for e in vehicle["entries"]} >= {"activateService → 202", "ota.activated",
                                                                    "otaStatus → 204"}
        # The dashboard's own read of the status is in the IoT journal, as the dashboard's.
        status_reads = [e for e in stack.service("iot").journal.entries() if e.get("operation") == "getVehicleStatus"]
        assert status_reads[-1]["correlationId"].startswith("dashboard-")

        async with session.get(f"{board.url}/api/vehicles/WCA00000000000000") as resp:
            unknown = await resp.json()
        assert unknown["vehicle"] is None and unknown["status"] in (400, 404) and unknown["requests"] == []
        # Not a VIN: the dashboard says so itself; asked of the IoT simulator, it was a contract
        # violation in its journal, which failed the scenario running meanwhile.
        reads = len(stack.service("iot").journal.entries())
        async with session.get(f"{board.url}/api/vehicles/NOTAVIN") as resp:
            assert resp.status == 400 and resp.content_type == "application/problem+json"
            assert "not 17 letters and digits" in (await resp.json())["detail"]
        assert len(stack.service("iot").journal.entries()) == reads


# --- guard, report, `up` ------------------------------------------------------------------------

async def test_off_loopback_the_dashboard_wants_the_admin_token_once(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# Scenario report\n")
    app = create_app({"iot": "http://127.0.0.1:9"}, token="s3cret", guarded=True, report=report)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/api/info")).status == 401
        assert (await client.get("/?token=wrong")).status == 401
        opened = await client.get("/?token=s3cret", allow_redirects=False)
        assert opened.status == 302 and opened.headers["Location"] == "/"
        info = await client.get("/api/info")  # the cookie now
        assert info.status == 200 and (await info.json())["report"] is True
        assert (await client.get("/report")).status == 200
        assert (await client.get("/", headers={"Authorization": "Bearer s3cret"})).status == 200
    with pytest.raises(ValueError):
        create_app({}, guarded=True)


async def test_the_page_and_its_assets_are_served_and_nothing_else(tmp_path):
    app = create_app({"iot": "http://127.0.0.1:9"}, report=tmp_path / "none.md")
    async with TestClient(TestServer(app)) as client:
        page = await client.get("/")
        assert page.status == 200 and "/static/app.js" in await page.text()
        for name, ctype in [("app.js", "text/javascript"), ("style.css", "text/css")]:
            resp = await client.get(f"/static/{name}")
            assert resp.status == 200 and resp.content_type == ctype
        assert (await client.get("/static/..%2Fapp.py")).status == 404
        assert (await client.get("/report")).status == 404
        assert (await (await client.get("/api/info")).json())["report"] is False


async def test_up_serves_the_dashboard_and_lists_it_in_the_start_table():
    stack = Stack(services=["iot"], clock=Clock("virtual"), seed=1, shutdown_timeout=0.5)
    out, stop = io.StringIO(), asyncio.Event()
    task = asyncio.create_task(run_stack(stack, stop=stop, out=out, render=render_up, dashboard=0))
    try:
        async def table():
            return "Ctrl-C to stop" in out.getvalue() or task.done()
        await poll(table, "the start table")
        line = next(row for row in out.getvalue().splitlines() if row.startswith("dashboard "))
        url = line.split()[1]
        async with aiohttp.ClientSession() as session, session.get(f"{url}/api/info") as resp:
            assert set((await resp.json())["services"]) == {"iot"}  # the sink is a lane, not a service
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    assert DASHBOARD_PORT == 8190


def test_up_takes_no_dashboard_and_names_its_port_offset():
    from caas_sim.scenarios.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["up", "--no-dashboard"]).no_dashboard is True
    assert parser.parse_args(["up"]).no_dashboard is False
    up = parser._subparsers._group_actions[0].choices["up"]
    assert "dashboard +190" in up.format_help()
