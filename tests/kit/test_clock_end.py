"""At the latest instant the admin protocol lets the clock reach, every simulator still answers
its operations: the dates it works out ahead of now (an estimate, business days, a due date,
an expiry) are still dates. Before, the clock could reach 9999-12-31 and the factory and
Spain's registry answered a plain-text 500 there."""

from __future__ import annotations

import aiohttp
import pytest
import yaml

from caas_sim import catalogue
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.fleet import Fleet
from caas_sim.simulators.kit.clock import MAX_TIME, isoformat

VIN = Fleet(0).vin_at(1000)


def _requests(contract: str) -> list[tuple[str, str, dict | None]]:
    """(method, path, body) of every POST whose request body has an example, and every GET of a
    vehicle, with no path parameter but the vehicle's."""
    spec = yaml.safe_load((catalogue.CONTRACTS_DIR / contract).read_text())
    found = []
    for path, item in spec["paths"].items():
        if "{" in path.replace("{vin}", ""):
            continue
        path = path.replace("{vin}", VIN)
        if "get" in item and VIN in path:
            found.append(("GET", path, None))
        body = item.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json", {})
        examples = [body["example"]] if "example" in body else [e["value"] for e in body.get("examples", {}).values()]
        found += [("POST", path, example) for example in examples]
    return found


@pytest.mark.parametrize("entry", catalogue.SERVICES, ids=catalogue.NAMES)
async def test_every_operation_answers_at_the_clocks_last_instant(entry):
    sent = [request for contract in entry.contracts for request in _requests(contract)]
    assert sent, "the contract has examples to send"
    async with Stack(services=[entry.name], seed=0) as stack, aiohttp.ClientSession(stack.url(entry.name)) as http:
        async with http.post("/__admin/clock", json={"to": isoformat(MAX_TIME)}) as r:
            assert r.status == 200, await r.text()
        answers = []
        for method, path, body in sent:
            async with http.request(method, path, json=body) as r:
                answers.append((method, path, r.status, await r.text()))
    assert [a for a in answers if a[2] >= 500] == []


async def test_the_clock_stops_at_its_last_instant():
    async with Stack(services=["iot"], seed=0) as stack, aiohttp.ClientSession(stack.url("iot")) as http:
        async with http.post("/__admin/clock", json={"to": isoformat(MAX_TIME)}) as r:
            assert r.status == 200
        async with http.post("/__admin/clock", json={"advance": "1s"}) as r:
            assert r.status == 409
            assert f"past {isoformat(MAX_TIME)}" in (await r.json())["detail"]
        # a duration longer than any clock can go is as valid as any other: the move's 409, not a 400
        async with http.post("/__admin/clock", json={"advance": "1d712490387.299d"}) as r:
            assert r.status == 409
            assert f"past {isoformat(MAX_TIME)}" in (await r.json())["detail"]
