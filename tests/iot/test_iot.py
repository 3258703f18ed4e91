"""The API IoT simulator end to end: real sockets, virtual time, signed callbacks."""

import asyncio
import gc
import time
import tracemalloc

import aiohttp
import pytest

from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.fleet import Fleet
from caas_sim.simulators.iot.api import MODEL_KEY
from caas_sim.simulators.kit.errors import ProblemError

PERF = {"featureFlags": ["performance_boost"], "parameters": {"power_kw": 30}}


def activation(vin, service_id="perf-boost", duration=None, flags=PERF):
    return {"vin": vin, "serviceId": service_id, "configuration": flags, "duration": duration or {"type": "PERMANENT"}}


@pytest.fixture
async def iot():
    async with Stack(services=["iot"], seed=42) as stack:
        async with aiohttp.ClientSession(stack.url("iot")) as http:
            magic = (await (await http.get("/fleet/magic-vins")).json())["vins"]
            yield stack, http, magic
        assert stack.violations() == []


async def outcomes(stack):
    return [(r.payload["vin"], r.payload["status"], r.payload["errorCode"]) for r in stack.sink.received]


async def test_healthy_vehicle_activates_and_callback_arrives_after_realistic_latency(iot):
    stack, http, magic = iot
    start = stack.clock.now()
    async with http.post("/ota/activate", json=activation(magic["healthy"]), headers={"X-Correlation-Id": "c-1"}) as r:
        assert r.status == 202
        accepted = await r.json()
        assert r.headers["Location"] == f"/ota/activations/{accepted['requestId']}"
    assert stack.sink.received == []  # asynchronous: nothing before the clock moves
    await stack.advance("1m")
    [received] = stack.sink.received
    assert received.payload["status"] == "ACTIVATED" and received.payload["requestId"] == accepted["requestId"]
    assert received.at - start == pytest.approx(2.0)
    status = await (await http.get(f"/vehicles/{magic['healthy']}/status")).json()
    assert [(s["serviceId"], s["status"]) for s in status["activeServices"]] == [("perf-boost", "ACTIVE")]
    request = await (await http.get(f"/ota/activations/{accepted['requestId']}")).json()
    assert (request["status"], request["outcome"]) == ("COMPLETED", "ACTIVATED")
    webhook = next(e for e in stack.service("iot").journal.entries() if e["kind"] == "webhook")
    assert webhook["correlationId"] == "c-1"


async def test_magic_vins_cover_the_common_failures(iot):
    stack, http, magic = iot
    for vin in magic.values():
        async with http.post("/ota/activate", json=activation(vin)) as r:
            assert r.status == 202
    await stack.advance("15m")
    by_vin = {}
    for r in stack.sink.received:
        by_vin.setdefault(r.payload["vin"], []).append((r.payload["status"], r.payload["errorCode"], r.duplicate))
    assert by_vin[magic["always_offline"]] == [("FAILED", "VEHICLE_OFFLINE", False)]
    assert by_vin[magic["activation_fails"]] == [("FAILED", "ECU_ERROR", False)]
    assert by_vin[magic["flaky_twice"]] == [("FAILED", "VEHICLE_OFFLINE", False)]
    assert magic["callback_lost"] not in by_vin
    assert by_vin[magic["callback_duplicated"]] == [("ACTIVATED", None, False), ("ACTIVATED", None, True)]
    assert by_vin[magic["sleeping"]] == [("ACTIVATED", None, False)]
    assert by_vin[magic["limited"]] == [("ACTIVATED", None, False)]
    # the flaky vehicle succeeds on its third command; the lost callback was only the first
    for vin in (magic["flaky_twice"], magic["flaky_twice"], magic["callback_lost"]):
        await http.post("/ota/activate", json=activation(vin))
        await stack.advance("5m")
    statuses = [(r.payload["vin"], r.payload["status"]) for r in stack.sink.received[-3:]]
    assert statuses == [(magic["flaky_twice"], "FAILED"), (magic["flaky_twice"], "ACTIVATED"),
                        (magic["callback_lost"], "ACTIVATED")]
    diagnostics = await (await http.get(f"/vehicles/{magic['activation_fails']}/status")).json()
    assert diagnostics["diagnostics"]["errorCodes"] == ["ECU_ERROR"]
    assert diagnostics["activeServices"][0]["status"] == "ERROR"


async def test_domain_faults(iot):
    stack, http, magic = iot
    vin = magic["healthy"]
    faults = stack.service("iot").faults
    faults.add({"id": "off", "action": {"type": "vehicle_offline"}, "match": {"selectors": {"vin": vin}}, "times": 2})
    faults.add({"id": "ecu", "action": {"type": "activation_failed", "params": {"errorCode": "LOW_BATTERY"}},
                "match": {"selectors": {"serviceId": "heated"}}})
    faults.add({"id": "dup", "action": {"type": "callback_duplicated", "params": {"copies": 2}},
                "match": {"selectors": {"serviceId": "dup"}}})
    faults.add({"id": "late", "action": {"type": "callback_delayed", "params": {"seconds": 3600}},
                "match": {"selectors": {"serviceId": "late"}}})
    faults.add({"id": "lost", "action": {"type": "callback_lost"}, "match": {"selectors": {"serviceId": "lost"}}})
    status = await (await http.get(f"/vehicles/{vin}/status")).json()
    assert status["connectivity"] == "OFFLINE"  # reads see the fault without consuming it
    for _ in range(3):
        await http.post("/ota/activate", json=activation(vin))
        await stack.advance("2m")
    assert [s for _, s, _ in await outcomes(stack)] == ["FAILED", "FAILED", "ACTIVATED"]
    stack.sink.received.clear()
    for service_id in ("heated", "dup", "late", "lost"):
        await http.post("/ota/activate", json=activation(vin, service_id, flags={"featureFlags": ["heated_seats"]}))
    await stack.advance("30m")
    assert [(r.payload["serviceId"], r.payload["status"], r.duplicate) for r in stack.sink.received] == [
        ("heated", "FAILED", False), ("dup", "ACTIVATED", False), ("dup", "ACTIVATED", True), ("dup", "ACTIVATED", True)]
    await stack.advance("1h")
    assert stack.sink.received[-1].payload["serviceId"] == "late"
    applied = [e["ruleId"] for e in stack.service("iot").journal.entries() if e["kind"] == "fault"]
    assert applied.count("off") == 2 and {"ecu", "dup", "late", "lost"} <= set(applied)


async def test_a_request_reports_its_own_one_attempt_not_the_vehicles_commands(iot):
    """One push per request (the caller retries): before, ``attempts`` counted every command
    the vehicle ever got, so a vehicle's fourth request said 4."""
    stack, http, magic = iot
    for vin in (magic["flaky_twice"], magic["healthy"]):
        ids = []
        for _ in range(4):
            async with http.post("/ota/activate", json=activation(vin)) as r:
                ids.append((await r.json())["requestId"])
            await stack.advance("5m")
        attempts = [(await (await http.get(f"/ota/activations/{i}")).json())["attempts"] for i in ids]
        assert attempts == [1, 1, 1, 1]


async def test_a_reordered_callback_arrives_after_the_vehicles_next_one(iot):
    """``callback_reordered``: an earlier command's outcome overtaken by a later one's, what a
    core must not take for the vehicle's last word."""
    stack, http, magic = iot
    vin = magic["healthy"]
    stack.service("iot").faults.add({"id": "late-fail", "action": {"type": "callback_reordered"},
                                     "match": {"selectors": {"vin": vin}}, "times": 1})
    stack.service("iot").faults.add({"id": "ecu", "action": {"type": "activation_failed"},
                                     "match": {"selectors": {"vin": vin}}, "times": 1})
    first = await (await http.post("/ota/activate", json=activation(vin))).json()
    await stack.advance("2m")
    assert stack.sink.received == []  # held back
    second = await (await http.post("/ota/activate", json=activation(vin))).json()
    await stack.advance("2m")
    assert [(r.payload["requestId"], r.payload["status"]) for r in stack.sink.received] == [
        (second["requestId"], "ACTIVATED"), (first["requestId"], "FAILED")]
    applied = [e["ruleId"] for e in stack.service("iot").journal.entries() if e["kind"] == "fault"]
    assert "late-fail" in applied


async def test_temporary_service_expires_on_the_clock_and_can_be_deactivated(iot):
    stack, http, magic = iot
    vin = magic["healthy"]
    expiry = "2026-01-08T08:00:00Z"  # three days after the virtual epoch
    await http.post("/ota/activate", json=activation(vin, "track-day", {"type": "TEMPORARY", "expiryDate": expiry}))
    await http.post("/ota/activate", json=activation(vin, "winter", flags={"featureFlags": ["winter_package"]}))
    await stack.advance("1m")
    async with http.post("/ota/deactivate", json={"vin": vin, "serviceId": "winter"}) as r:
        assert r.status == 202
    await stack.advance("3d")
    assert [(r.payload["serviceId"], r.payload["status"]) for r in stack.sink.received] == [
        ("track-day", "ACTIVATED"), ("winter", "ACTIVATED"), ("winter", "DEACTIVATED"), ("track-day", "EXPIRED")]
    expired_at = stack.sink.received[-1].payload["timestamp"]
    assert expired_at == "2026-01-08T08:00:00.000Z"
    status = await (await http.get(f"/vehicles/{vin}/status")).json()
    assert status["activeServices"] == []
    async with http.post("/ota/deactivate", json={"vin": vin, "serviceId": "winter"}) as r:
        assert r.status == 422


@pytest.mark.parametrize("body,status,title", [
    (activation("WCA00000000000000"), 404, "Unknown vehicle"),
    (activation(None, flags={"featureFlags": ["warp_drive"]}), 422, "Feature flag not installed on the vehicle"),
    (activation(None, duration={"type": "TEMPORARY"}), 400, "Request violates contract"),
    (activation(None, duration={"type": "TEMPORARY", "expiryDate": "2020-01-01T00:00:00Z"}), 422, "Invalid duration"),
    (activation(None, duration={"type": "PERMANENT", "autoRenewal": True}), 400, "Request violates contract"),
    (activation(None, duration={"type": "SUBSCRIPTION", "expiryDate": "2020-01-01T00:00:00Z"}), 422, "Invalid duration"),
    ({"vin": "short"}, 400, "Request violates contract"),
])
async def test_bad_requests_get_clear_problems(iot, body, status, title):
    stack, http, magic = iot
    if body.get("vin") is None:
        body["vin"] = magic["healthy"]
    async with http.post("/ota/activate", json=body) as r:
        assert r.status == status
        problem = await r.json()
        assert problem["title"] == title and problem["status"] == status and problem.get("detail")
    if status == 400:
        stack.service("iot").journal.clear()  # the violation is expected here


async def test_same_seed_same_outcomes_and_event_sequence():
    async def run(seed):
        async with Stack(services=["iot"], seed=seed) as stack, aiohttp.ClientSession(stack.url("iot")) as http:
            fleet = Fleet(seed)
            for index in range(0, 200_000, 5000):
                await http.post("/ota/activate", json=activation(fleet.vin_at(index)))
            await stack.advance("2h")
            return [(round(r.at, 3), r.payload["vin"], r.payload["status"], r.payload["errorCode"])
                    for r in stack.sink.received]

    first = await run(7)
    assert first == await run(7)
    assert first != await run(8)


async def test_a_million_vehicle_fleet_starts_fast_and_memory_grows_with_touched_vehicles_only():
    t0 = time.perf_counter()
    stack = Stack(services=["iot"], seed=1, options={"iot": {"fleet_size": 1_000_000}}, with_sink=False)
    await stack.start()
    started = time.perf_counter() - t0
    model = stack.running["iot"].app[MODEL_KEY]
    fleet = model.fleet
    try:
        assert len(fleet) == 1_000_000
        assert started < 1.0
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.take_snapshot()
        for index in range(0, 1_000_000, 1000):  # reading status does not materialise a vehicle
            model.status(fleet.vin_at(index))
        assert model.vehicles == {}
        for index in range(1000):
            model.activate(fleet.vin_at(index * 997), "s", {"featureFlags": ["sport_mode"]}, {"type": "PERMANENT"})
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
        tracemalloc.stop()
        assert len(model.vehicles) == 1000
        per_vehicle = grown / 1000
        # a touched vehicle with one service and one request costs a few kB, not the fleet
        assert 200 < per_vehicle < 20_000, per_vehicle
    finally:
        await stack.stop()


async def test_the_shipped_fault_profile_loads_and_applies():
    from pathlib import Path

    import caas_sim.simulators.iot

    profile = Path(caas_sim.simulators.iot.__file__).parent / "profiles" / "flaky-network.yaml"
    async with Stack(services=["iot"], seed=5, fault_profiles={"iot": str(profile)}) as stack:
        fleet = Fleet(5)
        async with aiohttp.ClientSession(stack.url("iot")) as http:
            async def post(index):
                async with http.post("/ota/activate", json=activation(fleet.vin_at(index))) as r:
                    return r.status

            # Injected latency is a wait on the virtual clock: requests finish as it advances.
            pending = asyncio.gather(*(post(index) for index in range(60)))
            await stack.advance("1h")
            statuses = await asyncio.wait_for(pending, timeout=10)
        applied = {e["ruleId"] for e in stack.service("iot").journal.entries() if e["kind"] == "fault"}
        assert {"api-slow", "vehicles-unreachable"} <= applied
        assert set(statuses) <= {202, 503}
        assert stack.violations() == []


async def test_a_finished_request_is_readable_for_a_week_then_404_and_the_vehicle_keeps_its_service(iot):
    from caas_sim.simulators.iot.model import REQUEST_TTL

    stack, http, magic = iot
    async with http.post("/ota/activate", json=activation(magic["healthy"])) as r:
        request_id = (await r.json())["requestId"]
    await stack.advance("1m")  # finished
    await stack.advance(f"{int(REQUEST_TTL) - 120}s")
    async with http.get(f"/ota/activations/{request_id}") as r:
        assert r.status == 200 and (await r.json())["outcome"] == "ACTIVATED"
    await stack.advance("2m")
    async with http.get(f"/ota/activations/{request_id}") as r:
        assert r.status == 404 and r.content_type == "application/problem+json"
        assert "kept 7 days" in (await r.json())["detail"]
    status = await (await http.get(f"/vehicles/{magic['healthy']}/status")).json()
    assert [(s["serviceId"], s["status"]) for s in status["activeServices"]] == [("perf-boost", "ACTIVE")]
    assert stack.running["iot"].app[MODEL_KEY].requests == {}


async def test_a_temporary_service_expires_with_its_callback_after_its_request_was_forgotten(iot):
    from caas_sim.simulators.kit.clock import isoformat

    stack, http, magic = iot
    expiry = isoformat(stack.clock.now() + 10 * 86400)
    async with http.post("/ota/activate", json=activation(magic["healthy"], duration={"type": "TEMPORARY",
                                                                                      "expiryDate": expiry})) as r:
        request_id = (await r.json())["requestId"]
    await stack.advance("11d")
    assert (await http.get(f"/ota/activations/{request_id}")).status == 404
    assert [(c.payload["requestId"], c.payload["status"]) for c in stack.sink.received] == [
        (request_id, "ACTIVATED"), (request_id, "EXPIRED")]


async def test_vehicles_and_requests_are_bytes_in_dicts_the_collector_does_not_track():
    """A touched vehicle and an OTA request are kept as bytes (model.py): a full collection
    neither walks them nor visits the dicts that hold them, whatever a load left behind."""
    from caas_sim.simulators.iot.api import create_app
    from caas_sim.simulators.iot.model import UNTOUCHED, Request, Vehicle
    from caas_sim.simulators.kit.config import SimConfig

    model = create_app(SimConfig(seed=3))[MODEL_KEY]
    vins = [model.fleet.vin_at(index) for index in range(40)]
    accepted = [model.activate(vin, "s", {"featureFlags": ["sport_mode"]}, {"type": "PERMANENT"}) for vin in vins]
    await model.service.clock.advance(3600)
    temporary = {"type": "TEMPORARY", "expiryDate": "2026-01-06T08:00:00Z"}
    model.activate(vins[0], "t", {"featureFlags": ["sport_mode"]}, temporary)
    model.deactivate(vins[1], "s")
    await model.service.clock.advance(2 * 86400)
    views = [model.request(a["requestId"]) for a in accepted]
    assert {v["status"] for v in views} <= {"COMPLETED", "FAILED"}
    assert all(model.vehicles[vin].callbacks >= 1 for vin in vins)
    assert model.status(vins[0])["activeServices"][0]["serviceId"] == "s"  # "t" expired
    assert [s["serviceId"] for s in model.status(vins[1])["activeServices"]] == []
    del views
    gc.collect()
    for store in (model.vehicles, model.requests):
        assert all(type(packed) is bytes for packed in store.raw_values())
        assert not gc.is_tracked(store._raw)
    assert [o for o in gc.get_objects() if isinstance(o, (Vehicle, Request)) and o is not UNTOUCHED] == []


async def test_past_the_requests_kept_the_oldest_finished_are_forgotten_and_one_in_flight_is_kept():
    from caas_sim.simulators.iot.api import create_app
    from caas_sim.simulators.kit.config import SimConfig

    model = create_app(SimConfig(seed=3, options={"requests_kept": 3}))[MODEL_KEY]
    vins = [model.fleet.vin_at(index) for index in range(6)]
    activate = lambda vin: model.activate(vin, "s", {"featureFlags": ["sport_mode"]}, {"type": "PERMANENT"})["requestId"]
    finished = [activate(vin) for vin in vins[:5]]
    await model.service.clock.advance(3600)
    in_flight = activate(vins[5])  # forgetting runs before a new request
    assert [model.requests.get(i) is not None for i in finished] == [False, False, True, True, True]
    with pytest.raises(ProblemError) as refused:
        model.request(finished[0])
    assert refused.value.status == 404 and "the newest 3 at most" in refused.value.detail
    assert model.request(in_flight)["status"] in ("QUEUED", "IN_PROGRESS")
