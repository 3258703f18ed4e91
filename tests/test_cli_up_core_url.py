"""`caas-sim up` aimed at any core: `--core-url`, `--webhook-url`, `--secret`, `--port-base`,
the start table's webhook targets and secrets, and `caas-sim secrets`.

The team's core here is a tiny aiohttp receiver in the test; `up` runs as a subprocess (as a
developer runs it), and the OTA callback comes from the IoT simulator's own API (a magic
healthy VIN) and one `clock advance`, no purchase needed."""

import asyncio
import base64
import contextlib
import json
import os
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from caas_sim import catalogue
from caas_sim.scenarios.cli import TOKEN_ENV, main
from caas_sim.scenarios.cli.servers import up_ports
from caas_sim.scenarios.cli.state import STATE_ENV
from caas_sim.scenarios.cli.webhooks import env_name
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET
from tests.worlds import free_port_base

ROOT = Path(__file__).resolve().parents[1]
SEED = 23
#: Bring-your-own secrets (Standard Webhooks: whsec_ and base64 of random bytes).
TEAM_SECRET = "whsec_" + base64.b64encode(b"the team's own 32-byte secret!!!").decode()
IOT_SECRET = "whsec_" + base64.b64encode(b"iot signs with this one, 32 byte").decode()
ACTIVATION = {"serviceId": "perf-boost", "duration": {"type": "PERMANENT"},
              "configuration": {"featureFlags": ["performance_boost"], "parameters": {"power_kw": 30}}}


async def cli(*argv: str) -> int:
    """main() runs its own event loop: keep it off the loop serving the receiver."""
    return await asyncio.to_thread(main, list(argv))


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("caas-sim: error: ")
    return lines[0]


@pytest.fixture(autouse=True)
def own_state(monkeypatch, tmp_path):
    """This test's state file, no admin token and no core secrets from the environment."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "up.json"))
    for name in (TOKEN_ENV, "CAAS_API_KEYS", "CAAS_WEBHOOK_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "up.json"


class Receiver:
    """The team's core, as far as webhooks go: records every POST and answers 204."""

    def __init__(self):
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver():
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield found
    await runner.cleanup()


@contextlib.asynccontextmanager
async def up(*argv: str):
    """`caas-sim up ARGV` in its own process until the clock line; yields the process and its
    start table ({service: [url, admin, webhooks, secret]}), then stops it with SIGTERM."""
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "CAAS_API_KEYS", "CAAS_WEBHOOK_SECRETS")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "caas_sim.scenarios.cli", "up", "--seed", str(SEED),
                                                *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    table, lines = {}, []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "up ended early:\n" + "".join(lines)
            lines.append(line)
            fields = line.split()
            in_table = "" not in [line.strip() for line in lines]  # the table ends at the first blank line
            if in_table and fields and (fields[0] in catalogue.BY_NAME or fields[0] in ("core", "sink")):
                table[fields[0]] = fields[1:] if fields[0] != "sink" else fields[1:2]
            if line.startswith("clock "):
                break
        yield proc, table, "".join(lines)
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def secrets(capsys, *argv: str) -> list[str]:
    capsys.readouterr()
    assert await cli("secrets", *argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip().splitlines()


async def activate_healthy(iot_url: str) -> str:
    async with aiohttp.ClientSession(iot_url) as http:
        vin = (await (await http.get("/fleet/magic-vins")).json())["vins"]["healthy"]
        async with http.post("/ota/activate", json={"vin": vin, **ACTIVATION}) as answer:
            assert answer.status == 202, await answer.text()
            return (await answer.json())["requestId"]


async def test_core_url_delivers_a_signed_ota_callback_verified_with_the_printed_secret(receiver, own_state, capsys):
    async with up("--core-url", receiver.url, "--ephemeral", "--services", "iot,payments,vss",
                  "--secret", TEAM_SECRET, "--secret", f"iot={IOT_SECRET}",
                  "--webhook-url", f"payments={receiver.url}/elsewhere/payments") as (_proc, table, printed):
        # Simulators only: no reference core, no sink.
        assert set(table) == {"iot", "payments", "vss"}
        iot_url, admin, hooks, secret = table["iot"]
        assert (admin, hooks, secret) == (f"{iot_url}/__admin", f"{receiver.url}/caas/webhooks/ota-status",
                                          IOT_SECRET)
        assert table["payments"][2:] == [f"{receiver.url}/elsewhere/payments", TEAM_SECRET]  # --webhook-url wins
        assert table["vss"][2:] == ["-", "-"]  # it sends none
        assert f"no reference core: the webhooks go to your core at {receiver.url}" in printed

        # `caas-sim secrets`: one environment line per service that sends webhooks, from the
        # state file, which only its owner may read.
        lines = await secrets(capsys)
        assert lines == [f"CAAS_SIM_IOT_WEBHOOK_SECRET={IOT_SECRET}", f"CAAS_SIM_PAYMENTS_WEBHOOK_SECRET={TEAM_SECRET}"]
        assert json.loads((await secrets(capsys, "--format", "json"))[0]) == {"iot": IOT_SECRET,
                                                                              "payments": TEAM_SECRET}
        assert stat.S_IMODE(own_state.stat().st_mode) == 0o600
        loaded = dict(line.split("=", 1) for line in lines)
        # `caas-sim audit` asks the core the simulators serve, not whatever listens on the
        # default port (the receiver has no audit: its 404 is the answer)
        assert await cli("audit") == 1
        assert receiver.url in capsys.readouterr().err

        request_id = await activate_healthy(iot_url)
        assert receiver.received == []  # asynchronous: nothing before the clock moves
        assert await cli("clock", "advance", "1m") == 0
        await asyncio.wait_for(receiver.arrived.wait(), 10)

    [(path, headers, body)] = receiver.received
    assert path == "/caas/webhooks/ota-status"
    verified = Webhook(loaded["CAAS_SIM_IOT_WEBHOOK_SECRET"]).verify(body, headers)
    assert (verified["requestId"], verified["status"]) == (request_id, "ACTIVATED")
    assert headers["webhook-id"].startswith("msg_")
    with pytest.raises(WebhookVerificationError):  # not the development secret: the one we brought
        Webhook(DEFAULT_SECRET).verify(body, headers)
    assert not own_state.exists()  # a clean stop takes the table (and its secrets) away


async def test_webhook_url_without_core_url_overrides_one_service_and_the_sink_keeps_the_rest(receiver, capsys):
    async with up("--no-core", "--ephemeral", "--services", "iot,payments",
                  "--webhook-url", f"iot={receiver.url}/my/ota") as (_proc, table, printed):
        sink = table["sink"][0]
        assert table["iot"][2:] == [f"{receiver.url}/my/ota", DEFAULT_SECRET]
        assert table["payments"][2:] == [f"{sink}/webhooks/payments", DEFAULT_SECRET]  # today's behaviour
        assert "development secret" in printed
        assert await secrets(capsys) == [f"{env_name(name)}={DEFAULT_SECRET}" for name in ("iot", "payments")]

        await activate_healthy(table["iot"][0])
        assert await cli("clock", "advance", "1m") == 0
        await asyncio.wait_for(receiver.arrived.wait(), 10)
    [(path, headers, body)] = receiver.received
    assert path == "/my/ota"
    assert Webhook(DEFAULT_SECRET).verify(body, headers)["status"] == "ACTIVATED"


async def test_port_base_puts_every_service_on_its_offset_and_the_reference_core_gets_the_secrets(tmp_path, capsys):
    names = ["iot", "payments", "vss"]
    base = free_port_base([0, 102, 103, 104, 199])
    async with up("--port-base", str(base), "--services", ",".join(names), "--secret", TEAM_SECRET,
                  "--database", f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as (_proc, table, _printed):
        assert {name: row[0] for name, row in table.items()} == {
            "core": f"http://127.0.0.1:{base}", "sink": f"http://127.0.0.1:{base + 199}",
            "vss": f"http://127.0.0.1:{base + 102}",
            "iot": f"http://127.0.0.1:{base + 103}", "payments": f"http://127.0.0.1:{base + 104}"}
        assert table["iot"][2:] == [f"http://127.0.0.1:{base}/caas/webhooks/ota-status", TEAM_SECRET]

        # A purchase through the reference core: it hears of the activation only if it verifies
        # the IoT simulator's callback with the secret we brought.
        async with aiohttp.ClientSession() as http:
            vin = (await (await http.get(table["iot"][0] + "/fleet/magic-vins")).json())["vins"]["healthy"]
            auth = {"Authorization": "Bearer dev-customer"}
            async with http.post(f"{table['core'][0]}/customers/c-1/vehicles/{vin}/purchases", headers=auth,
                                 json={"serviceId": "heated-seats", "durationType": "PERMANENT",
                                       "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}}) as answer:
                purchase = await answer.json()
                assert (answer.status, purchase["status"]) == (201, "ACTIVATION_QUEUED"), purchase
            assert await cli("clock", "advance", "15m") == 0
            async with http.get(f"{table['core'][0]}/purchases/{purchase['purchaseId']}", headers=auth) as answer:
                assert (await answer.json())["status"] == "ACTIVE"
        assert await secrets(capsys) == [f"{env_name(n)}={TEAM_SECRET}" for n in ("iot", "payments")]


def test_port_offsets_are_the_catalogue_ports_minus_8000():
    assert up_ports(["iot", "registry-uk"]) == {"iot": 8103, "registry-uk": 8114, "sink": 8199, "core": 8000}
    assert up_ports(["factory", "vss"], 18000) == {"factory": 18101, "vss": 18102, "sink": 18199, "core": 18000}
    assert [env_name(name) for name in catalogue.WEBHOOK_SENDERS] == [
        "CAAS_SIM_FACTORY_WEBHOOK_SECRET", "CAAS_SIM_IOT_WEBHOOK_SECRET", "CAAS_SIM_PAYMENTS_WEBHOOK_SECRET",
        "CAAS_SIM_REGISTRY_UK_WEBHOOK_SECRET"]


async def test_the_sink_verifies_each_service_with_its_own_secret():
    async with Stack(services=["iot"], seed=SEED, webhook_secrets={"iot": IOT_SECRET}) as stack:
        await activate_healthy(stack.url("iot"))
        await stack.advance("1m")
        assert stack.sink.rejected == 0
        assert [r.payload["status"] for r in stack.sink.received] == ["ACTIVATED"]


async def test_secrets_without_a_running_up_says_so(own_state, capsys):
    assert await cli("secrets") == 1
    line = one_line_error(capsys.readouterr().err)
    assert str(own_state) in line and "caas-sim up" in line


@pytest.mark.parametrize("argv", [
    ["up", "--port-base", "18000", "--ephemeral"],
    ["up", "--port-base", "0"],
    ["up", "--port-base", "65400"],
    ["up", "--port-base", "eight"],
    ["up", "--core-url", "127.0.0.1:9000"],
    ["up", "--core-url", "http://127.0.0.1:9000", "--database", "sqlite+aiosqlite:///never.db"],
    ["up", "--webhook-url", "iot"],
    ["up", "--webhook-url", "iot=somewhere"],
    ["up", "--webhook-url", "vss=http://127.0.0.1:9000/vss"],
    ["up", "--webhook-url", "nosuch=http://127.0.0.1:9000/x"],
    ["up", "--webhook-url", "iot=http://127.0.0.1:9000/a", "--webhook-url", "iot=http://127.0.0.1:9000/b"],
    ["up", "--services", "payments", "--webhook-url", "iot=http://127.0.0.1:9000/ota"],
    ["up", "--secret", "not-a-secret"],
    ["up", "--secret", "whsec_"],
    ["up", "--secret", "whsec_!!not*base64"],
    ["up", "--secret", "iot=c2VjcmV0"],
    ["up", "--secret", f"registry-es={TEAM_SECRET}"],
    ["up", "--secret", TEAM_SECRET, "--secret", IOT_SECRET],
    ["up", "--secret", f"iot={TEAM_SECRET}", "--secret", f"iot={IOT_SECRET}"],
    ["up", "--services", "payments", "--secret", f"iot={IOT_SECRET}"],
    ["serve", "iot", "--secret", "plain"],
    ["serve", "core", "--secret", TEAM_SECRET],
    ["secrets", "--format", "yaml"],
])
def test_usage_errors_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    one_line_error(capsys.readouterr().err)


def test_a_rejected_secret_is_not_repeated_whole(capsys):
    typo = "whsec_c2VjcmV0LWZvci1pb3QtMDEyMzQ1Njc4OQ=*"
    assert main(["up", "--secret", f"iot={typo}"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "not a webhook secret" in line and typo not in line
