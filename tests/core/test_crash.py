"""Kill the core between accepting a purchase and activating it: after a restart on the
same database the activation happens, and exactly once."""

import asyncio
import os
import signal
import socket
import sys

import aiohttp

from scenarios.stack import CORE_WEBHOOK_PATHS, Stack
from simulators.iot.api import MODEL_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_core(env: dict, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "scenarios.cli", "serve", "core", "--port",
                                                str(port), "--clock", "virtual", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    header = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    assert b"SERVICE" in header, (header, await proc.stderr.read())
    return proc


async def test_a_killed_core_activates_exactly_once_after_restart(tmp_path):
    async with Stack(services=["iot", "vss", "payments"], seed=0, with_sink=False) as stack:
        port = free_port()
        core_url = f"http://127.0.0.1:{port}"
        for name in ("iot", "payments"):
            stack.service(name).webhooks.subscribe("*", core_url + CORE_WEBHOOK_PATHS[name])
        env = {**os.environ, "CAAS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}",
               "CAAS_API_KEYS": '{"k": {"role": "customer", "subject": "c-1"}}',
               "CAAS_UPSTREAMS__IOT": stack.url("iot"), "CAAS_UPSTREAMS__VSS": stack.url("vss"),
               "CAAS_UPSTREAMS__PAYMENTS": stack.url("payments")}
        vin = stack.running["iot"].app[MODEL_KEY].fleet.magic_vins()["healthy"]
        # The IoT API refuses activations for now: the job stays queued in the core's database.
        stack.service("iot").faults.add({"id": "down", "match": {"operation": "activateService"},
                                         "action": {"type": "http_error", "params": {"status": 503}}})
        core = await start_core(env, port)
        body = {"serviceId": "heated-seats", "durationType": "PERMANENT",
                "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}}
        async with aiohttp.ClientSession(core_url, headers={"Authorization": "Bearer k"}) as http, \
                http.post(f"/customers/c-1/vehicles/{vin}/purchases", json=body) as r:
            assert r.status == 201
            purchase_id = (await r.json())["purchaseId"]
        # Kill it once it has tried (and met the 503): the retry is only in its database now.
        journal = stack.service("iot").journal
        for _ in range(100):
            if any(e.get("operation") == "activateService" and e.get("status") == 503 for e in journal.entries()):
                break
            await asyncio.sleep(0.05)  # the core is another process: poll for what it did
        core.send_signal(signal.SIGKILL)
        await core.wait()
        stack.service("iot").faults.clear()

        core = await start_core(env, port)
        try:
            async with aiohttp.ClientSession(core_url, headers={"Authorization": "Bearer k"}) as http:
                # The core and the simulators run on separate clocks here: move the core to its
                # retry (1 min), then the fleet while the core's 60 s attempt timeout still runs.
                async with http.post("/__admin/clock", json={"advance": "1m"}) as r:
                    assert r.status == 200
                await stack.advance("30s")  # the vehicle applies it; the callback reaches the core
                for _ in range(50):  # the core processes the callback on its own loop
                    async with http.get(f"/purchases/{purchase_id}") as r:
                        status = (await r.json())["status"]
                    if status == "ACTIVE":
                        break
                    await asyncio.sleep(0.1)
                assert status == "ACTIVE"
        finally:
            core.send_signal(signal.SIGTERM)
            await core.wait()
        accepted = [e for e in stack.service("iot").journal.entries()
                    if e.get("operation") == "activateService" and e.get("status") == 202]
        assert len(accepted) == 1
        activations = stack.running["iot"].app[MODEL_KEY].requests
        assert len([r for r in activations.values() if r.vin == vin]) == 1
