"""The VSS simulator end to end: real sockets, virtual time, computed compliance."""

import asyncio
from pathlib import Path

import aiohttp
import pytest

import caas_sim.simulators.vss
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.fleet import Fleet
from caas_sim.simulators.kit.clock import isoformat, parse_datetime
from caas_sim.simulators.kit.contract import Contract
from caas_sim.simulators.vss import plans as pl
from caas_sim.simulators.vss.api import CONTRACT, MODEL_KEY

DAY = 86400.0
PROFILE = Path(caas_sim.simulators.vss.__file__).parent / "profiles" / "availability-95.yaml"


@pytest.fixture
async def vss():
    async with Stack(services=["vss"], seed=0) as stack:
        async with aiohttp.ClientSession(stack.url("vss")) as http:
            magic = (await (await http.get("/fleet/magic-vins")).json())["vins"]
            yield stack, http, magic
        assert stack.violations() == []


async def status_of(http, vin):
    async with http.get(f"/vehicles/{vin}/maintenance-status") as r:
        assert r.status == 200, await r.text()
        return await r.json()


def pct(status):
    return {b["code"]: b["compliancePercent"] for b in status["blocks"]}


def service(status, service_type):
    return next(s for b in status["blocks"] for s in b["services"] if s["serviceType"] == service_type)


def record(vin, at, service_type="ENGINE_OIL", block="POWERTRAIN", workshop="OFF-ES-MAD01", **extra):
    return {"workshopId": workshop, "block": block, "serviceType": service_type,
            "performedAt": isoformat(at) if isinstance(at, float) else at, **extra}


async def test_magic_vins_have_their_documented_status(vss):
    _, http, magic = vss
    assert set(magic) == {"fully_compliant", "one_block_overdue", "several_blocks_low", "warranty_expired",
                          "unknown_in_vss", "never_serviced", "due_soon", "due_by_distance", "new_vehicle"}
    assert all(vin.endswith(str(serial)) for serial, vin in zip(range(999801, 999810), magic.values()))
    blocks = [b.value for b in pl.Block]

    full = await status_of(http, magic["fully_compliant"])
    assert [b["name"] for b in full["blocks"]] == list(pl.BLOCK_NAMES.values())
    assert set(pct(full).values()) == {100}
    assert {s["status"] for b in full["blocks"] for s in b["services"]} == {"UP_TO_DATE"}
    assert (full["warranty"]["status"], full["warranty"]["maintenanceRisk"]) == ("ACTIVE", False)

    one = await status_of(http, magic["one_block_overdue"])
    assert one == Contract(CONTRACT).doc["components"]["schemas"]["MaintenanceStatus"]["examples"][0]
    assert pct(one)["BRAKES"] < 80 and all(pct(one)[b] == 100 for b in blocks if b != "BRAKES")
    assert {s["status"] for s in one["blocks"][2]["services"]} == {"OVERDUE"}
    assert one["warranty"]["maintenanceRisk"] is True

    low = {b for b, p in pct(await status_of(http, magic["several_blocks_low"])).items() if p < 80}
    assert low == {"POWERTRAIN", "SUSPENSION_STEERING", "ELECTRONICS"}

    expired = await status_of(http, magic["warranty_expired"])
    assert expired["warranty"]["status"] == "EXPIRED" and expired["warranty"]["expiredBy"] == "TIME"
    assert set(pct(expired).values()) == {100}

    async with http.get(f"/vehicles/{magic['unknown_in_vss']}/maintenance-status") as r:
        assert r.status == 404
        assert (await r.json())["type"].endswith("/unknown-vehicle")
    assert magic["unknown_in_vss"] in Fleet(0)  # a fleet vehicle, just not registered in VSS

    never = await status_of(http, magic["never_serviced"])
    assert all(p < 100 for p in pct(never).values())
    assert {s["lastPerformedAt"] for b in never["blocks"] for s in b["services"]} == {None}

    soon = await status_of(http, magic["due_soon"])
    assert set(pct(soon).values()) == {100}
    assert "DUE_SOON" in {s["status"] for s in soon["blocks"][0]["services"]}

    new = await status_of(http, magic["new_vehicle"])
    assert set(pct(new).values()) == {100} and new["mileageKm"] < 1000


async def test_compliance_decays_with_virtual_time_and_a_workshop_record_restores_it(vss):
    stack, http, magic = vss
    vin = magic["due_soon"]
    first = await status_of(http, vin)
    powertrain = first["blocks"][0]
    yearly = next(s for s in powertrain["services"] if s["status"] == "DUE_SOON")
    due_at = parse_datetime(yearly["dueAt"])
    assert due_at - stack.clock.now() == pytest.approx(10 * DAY)

    await stack.advance("11d")  # past due, within the grace
    due = await status_of(http, vin)
    assert service(due, yearly["serviceType"])["status"] == "DUE" and pct(due)["POWERTRAIN"] == 95

    await stack.advance("30d")  # past the grace: overdue
    overdue = await status_of(http, vin)
    assert service(overdue, yearly["serviceType"])["status"] == "OVERDUE"
    assert pct(overdue)["POWERTRAIN"] < 80 and overdue["warranty"]["maintenanceRisk"] is True
    await stack.advance("90d")
    later = await status_of(http, vin)
    assert pct(later)["POWERTRAIN"] < pct(overdue)["POWERTRAIN"]  # keeps decaying while nobody services it

    body = record(vin, stack.clock.now(), yearly["serviceType"], workshop="APP-GB-MAN01")
    async with http.post(f"/workshop/vehicles/{vin}/services", json=body) as r:
        assert r.status == 201
        stored = await r.json()
        assert r.headers["Location"] == f"/workshop/vehicles/{vin}/services/{stored['recordId']}"
    restored = await status_of(http, vin)
    assert pct(restored)["POWERTRAIN"] == 100
    done = service(restored, yearly["serviceType"])
    assert (done["status"], done["lastWorkshopId"], done["lastPerformedAt"]) == (
        "UP_TO_DATE", "APP-GB-MAN01", stored["performedAt"])
    assert done["lastMileageKm"] == stored["mileageKm"] == restored["mileageKm"]
    assert restored["warranty"]["maintenanceRisk"] is False


async def test_services_fall_due_by_distance_before_their_date(vss):
    stack, http, magic = vss
    vin = magic["due_by_distance"]
    before = await status_of(http, vin)
    oil = before["blocks"][0]["services"][0]
    assert oil["intervalKm"] == 15000 and oil["status"] == "UP_TO_DATE"
    by_time = parse_datetime(oil["lastPerformedAt"]) + oil["intervalDays"] * DAY
    assert parse_datetime(oil["dueAt"]) < by_time - 200 * DAY
    await stack.advance("15d")
    after = await status_of(http, vin)
    assert after["mileageKm"] - before["mileageKm"] == 15 * 160
    assert after["mileageKm"] >= oil["dueMileageKm"]
    assert service(after, oil["serviceType"])["status"] == "DUE"


async def test_every_write_on_the_core_api_is_refused(vss):
    stack, http, magic = vss
    vin = magic["fully_compliant"]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        async with http.request(method, f"/vehicles/{vin}/maintenance-status", json={"blocks": []}) as r:
            assert r.status == 405 and r.headers["Allow"] == "GET"
            assert r.content_type == "application/problem+json"
            problem = await r.json()
            assert problem["type"].endswith("/read-only") and "read-only" in problem["detail"]
            assert "workshops" in problem["detail"]
    async with http.post(f"/vehicles/{vin}/services", json={}, headers={"X-Correlation-Id": "core-1"}) as r:
        assert r.status == 405 and r.headers["Allow"] == "" and r.headers["X-Correlation-Id"] == "core-1"
    async with http.options(f"/vehicles/{vin}/maintenance-status") as r:  # not a write: the usual 405
        assert r.status == 405 and r.headers["Allow"] == "GET" and "read-only" not in await r.text()
    async with http.get(f"/vehicles/{vin}/history") as r:
        assert r.status == 404 and r.content_type == "application/problem+json"
    refused = [e for e in stack.service("vss").journal.entries() if e["kind"] == "violation"]
    assert len(refused) == 5 and refused[-1]["correlationId"] == "core-1"
    assert set(pct(await status_of(http, vin)).values()) == {100}  # nothing changed
    assert stack.running["vss"].app[MODEL_KEY].vehicles == {}
    stack.service("vss").journal.clear()  # the violations were the point


@pytest.mark.parametrize("case,status,kind", [
    ({"workshopId": "XYZ-00-000"}, 403, "unknown-workshop"),
    ({"workshopId": "IND-ES-VLC01"}, 403, "workshop-not-approved"),
    ({"workshopId": "APP-DE-BER02"}, 403, "workshop-not-approved"),
    ({"block": "BRAKES"}, 422, "not-in-plan"),
    ({"serviceType": "HV_BATTERY_CHECK"}, 422, "not-in-plan"),  # an electric service on a combustion car
    ({"performedAt": "2026-01-06T08:00:00Z"}, 422, "invalid-service-date"),
    ({"performedAt": "2020-01-01T00:00:00Z"}, 422, "invalid-service-date"),
    ({"mileageKm": 100}, 422, "invalid-mileage"),  # below the readings of last week
    ({"performedAt": "2025-12-01T00:00:00Z", "mileageKm": 29000}, 422, "invalid-mileage"),  # above a later one
    ({"performedAt": "2025-12-29T17:00:00+01:00"}, 409, "duplicate-record"),  # done that (UTC) day
    ({"serviceType": "OIL"}, 400, "contract-violation"),
    ({"workshopId": None}, 400, "contract-violation"),
])
async def test_workshop_writes_are_validated(vss, case, status, kind):
    stack, http, magic = vss
    vin = magic["fully_compliant"]  # a combustion car, every service done 2025-12-29 at 29,200 - 280 km
    body = {**record(vin, "2026-01-05T07:00:00Z"), **case}
    body = {k: v for k, v in body.items() if v is not None}
    async with http.post(f"/workshop/vehicles/{vin}/services", json=body) as r:
        assert r.status == status
        problem = await r.json()
        assert problem["type"].endswith("/" + kind) and problem.get("detail")
    assert stack.running["vss"].app[MODEL_KEY].vehicles == {}
    if status == 400:
        stack.service("vss").journal.clear()  # the violation is expected here


async def test_workshop_records_history_and_idempotency(vss):
    stack, http, magic = vss
    vin = magic["fully_compliant"]
    async with http.get("/workshop/workshops") as r:
        registry = {w["workshopId"]: w for w in (await r.json())["workshops"]}
    assert {k for k, w in registry.items() if w["canRecord"]} == {
        "OFF-ES-MAD01", "OFF-FR-PAR01", "OFF-DE-MUC01", "OFF-GB-LON01",
        "APP-ES-BCN01", "APP-FR-LYO01", "APP-DE-HAM01", "APP-GB-MAN01"}
    history = (await (await http.get(f"/workshop/vehicles/{vin}/services")).json())["records"]
    assert len(history) == 12 and {r["source"] for r in history} == {"HISTORY"}

    await stack.advance("3d")
    body = record(vin, stack.clock.now() - 3600, "BRAKE_PADS", "BRAKES", "APP-FR-LYO01", mileageKm=29500,
                  notes="front pads")
    headers = {"Idempotency-Key": "job-4711"}
    async with http.post(f"/workshop/vehicles/{vin}/services", json=body, headers=headers) as r:
        assert r.status == 201
        first, location = await r.json(), r.headers["Location"]
    async with http.post(f"/workshop/vehicles/{vin}/services", json=body, headers=headers) as r:
        assert r.status == 201 and r.headers["Idempotent-Replayed"] == "true"
        assert await r.json() == first and r.headers["Location"] == location
    async with http.post(f"/workshop/vehicles/{vin}/services", json={**body, "mileageKm": 29501},
                         headers=headers) as r:
        assert r.status == 422
    assert first["workshopKind"] == "APPROVED" and first["source"] == "WORKSHOP" and first["notes"] == "front pads"
    assert first["recordedAt"] == isoformat(stack.clock.now())
    assert await (await http.get(location)).json() == first
    history = (await (await http.get(f"/workshop/vehicles/{vin}/services")).json())["records"]
    assert history[-1] == first and len(history) == 13
    one_of_history = history[0]
    async with http.get(f"/workshop/vehicles/{vin}/services/{one_of_history['recordId']}") as r:
        assert await r.json() == one_of_history
    async with http.get(f"/workshop/vehicles/{vin}/services/svc_0000000000000000") as r:
        assert r.status == 404 and (await r.json())["type"].endswith("/unknown-record")
    # Without a mileage, VSS uses its estimate for that date; odometers only go up from there.
    async with http.post(f"/workshop/vehicles/{vin}/services",
                         json=record(vin, stack.clock.now(), "CABIN_FILTER", "CLIMATE_CONTROL")) as r:
        assert (await r.json())["mileageKm"] == 29500 + int(3600 * 40 / DAY)
    async with http.post(f"/workshop/vehicles/{magic['unknown_in_vss']}/services", json=body) as r:
        assert r.status == 404
    model = stack.running["vss"].app[MODEL_KEY]
    assert list(model.vehicles) == [vin]  # only vehicles with recorded services take memory


async def test_domain_faults(vss):
    stack, http, magic = vss
    faults = stack.service("vss").faults
    full, other = magic["fully_compliant"], magic["new_vehicle"]

    faults.add({"id": "low-brakes", "action": {"type": "low_compliance", "params": {"block": "Brakes", "pct": 42}},
                "match": {"selectors": {"vin": full}}})
    faults.add({"id": "low-pt", "action": {"type": "low_compliance", "params": {"block": "POWERTRAIN", "pct": 10}},
                "match": {"selectors": {"vin": full}}, "times": 1})
    forced = pct(await status_of(http, full))
    assert (forced["BRAKES"], forced["POWERTRAIN"], forced["ELECTRONICS"]) == (42, 10, 100)
    assert pct(await status_of(http, full))["POWERTRAIN"] == 100  # `times: 1` is spent
    assert set(pct(await status_of(http, other)).values()) == {100}  # another VIN is untouched
    faults.clear()

    faults.add({"id": "gone", "action": {"type": "unknown_vehicle"}, "match": {"selectors": {"vin": full}}})
    async with http.get(f"/vehicles/{full}/maintenance-status") as r:
        assert r.status == 404
    async with http.post(f"/workshop/vehicles/{full}/services", json=record(full, stack.clock.now())) as r:
        assert r.status == 404
    await status_of(http, other)
    faults.clear()

    faults.add({"id": "down", "action": {"type": "vss_unavailable"}, "times": 1})
    async with http.get(f"/vehicles/{full}/maintenance-status") as r:
        assert r.status == 503 and r.headers["Retry-After"] == "60"
        assert (await r.json())["type"].endswith("/vss-unavailable")
    await status_of(http, full)
    faults.add({"id": "window", "action": {"type": "vss_unavailable"}, "window": {"from": "+1h", "until": "+3h"},
                "match": {"method": "GET", "path": "/vehicles/*"}})
    await stack.advance("2h")
    async with http.get(f"/vehicles/{full}/maintenance-status") as r:
        assert r.status == 503 and r.headers["Retry-After"] == "3600"  # until the window ends
    assert (await http.get("/workshop/workshops")).status == 200  # the rule matches the core's paths only
    assert (await http.get(f"/workshop/vehicles/{full}/services")).status == 200
    faults.clear()

    # Slow responses are the transport `latency` action: a wait on the virtual clock.
    faults.add({"id": "slow", "action": {"type": "latency", "params": {"ms": 8000}},
                "match": {"path": "/vehicles/*"}})
    started = stack.clock.now()
    pending = asyncio.ensure_future(status_of(http, full))
    await stack.advance("5s")
    assert not pending.done()
    await stack.advance("5s")
    slow = await asyncio.wait_for(pending, timeout=5)
    assert parse_datetime(slow["asOf"]) - started == pytest.approx(8.0)
    applied = [e["ruleId"] for e in stack.service("vss").journal.entries() if e["kind"] == "fault"]
    assert applied == ["low-brakes", "low-pt", "low-brakes", "gone", "gone", "down", "window", "slow"]


async def test_the_availability_profile_gives_95_percent_over_a_virtual_month():
    async with Stack(services=["vss"], seed=3, fault_profiles={"vss": str(PROFILE)}) as stack:
        vin = Fleet(3).vin_at(1234)
        answers, retry_ok = [], True
        async with aiohttp.ClientSession(stack.url("vss")) as http:
            await stack.advance("30m")  # poll at half past, away from the windows' edges
            for _ in range(30 * 24):  # every hour for 30 days
                async with http.get(f"/vehicles/{vin}/maintenance-status") as r:
                    answers.append(r.status)
                    if r.status == 503:
                        retry = int(r.headers["Retry-After"])
                        retry_ok &= 0 < retry <= 8 * 3600
                await stack.advance("1h")
        assert set(answers) == {200, 503} and retry_ok
        availability = answers.count(200) / len(answers)
        assert 0.94 <= availability <= 0.96, availability
        assert stack.violations() == []


async def test_vehicles_are_the_iot_fleet_and_derived_from_the_seed():
    async with Stack(services=["vss", "iot"], seed=11) as stack:
        async with aiohttp.ClientSession() as http:
            iot_magic = (await (await http.get(stack.url("iot") + "/fleet/magic-vins")).json())["vins"]
            for vin in [*iot_magic.values(), Fleet(11).vin_at(0), Fleet(11).vin_at(500_000)]:
                assert (await http.get(f"{stack.url('vss')}/vehicles/{vin}/maintenance-status")).status == 200
            for vin in (Fleet(12).vin_at(7), "WCA00000000000000"):  # another seed's VIN, a malformed one
                async with http.get(f"{stack.url('vss')}/vehicles/{vin}/maintenance-status") as r:
                    assert r.status == 404
        model = stack.running["vss"].app[MODEL_KEY]
        assert model.vehicles == {}  # reads materialise nothing

    async def fleet_view(seed):
        async with Stack(services=["vss"], seed=seed) as stack, aiohttp.ClientSession(stack.url("vss")) as http:
            fleet = Fleet(seed)
            return [(b["mileageKm"], b["deliveryDate"], tuple(pct(b).values()))
                    for b in [await status_of(http, fleet.vin_at(i)) for i in range(0, 100_000, 2_500)]]

    first = await fleet_view(5)
    assert first == await fleet_view(5)
    assert first != await fleet_view(6)


async def test_most_of_the_fleet_is_compliant_but_not_all(vss):
    stack = vss[0]
    model = stack.running["vss"].app[MODEL_KEY]
    views = [model.maintenance_status(model.fleet.vin_at(i), "getMaintenanceStatus") for i in range(0, 10**6, 1000)]
    compliant = sum(min(pct(v).values()) >= 80 for v in views) / len(views)
    assert 0.85 <= compliant <= 0.99, compliant
    assert 0 < sum(v["warranty"]["maintenanceRisk"] for v in views) < len(views) / 10
    assert {v["powertrain"] for v in views} == {"ICE", "EV"}
    assert model.vehicles == {}


# --------------------------------------------------------------- plans (pure rules)

OIL = pl.ServiceSpec("ENGINE_OIL", pl.Block.POWERTRAIN, "Engine oil", 365, 15_000)


def test_odometer_interpolates_between_readings_and_extrapolates_after_the_last():
    odo = pl.Odometer(0.0, 100, [pl.Reading(10 * DAY, 500), pl.Reading(20 * DAY, 2500)])
    assert odo.at(-1) == 0 and odo.at(5 * DAY) == 250 and odo.at(15 * DAY) == 1500 and odo.at(22 * DAY) == 2700
    assert odo.reach(300, 0) == pytest.approx(6 * DAY)  # the day-10 reading says it drove 50 km a day
    assert odo.reach(1500, 0) == pytest.approx(15 * DAY)
    assert odo.reach(2600, 0) == pytest.approx(21 * DAY)
    assert odo.reach(100, 15 * DAY) == 15 * DAY  # already past it
    same_day = pl.Odometer(0.0, 10, [pl.Reading(DAY, 5), pl.Reading(DAY, 7)])  # two records, one instant
    assert same_day.at(DAY) == 7 and same_day.reach(6, 0) == pytest.approx(DAY)


def test_assessment_statuses_and_scores_at_their_boundaries():
    odo = pl.Odometer(0.0, 10)  # 3,650 km a year: the oil change falls due by time
    last = pl.Reading(0.0, 0)
    by_day = {day: pl.assess(OIL, last, 0.0, odo, day * DAY) for day in (334, 335, 365, 394, 395, 730, 800)}
    assert [(a.status.value, round(a.score, 1)) for a in by_day.values()] == [
        ("UP_TO_DATE", 100), ("DUE_SOON", 100), ("DUE", 90), ("DUE", 90), ("OVERDUE", 45.9), ("OVERDUE", 0),
        ("OVERDUE", 0)]
    fast = pl.Odometer(0.0, 150)  # due by distance after 100 days, overdue at 16,000 km
    a = pl.assess(OIL, None, 0.0, fast, 107 * DAY)
    assert a.due_at == pytest.approx(100 * DAY) and a.overdue_at == pytest.approx(16_000 / 150 * DAY)
    assert a.status is pl.Status.OVERDUE and a.score == pytest.approx(50 * (1 - 1050 / 15_000))
    assert pl.block_compliance([a, by_day[334]]) == 73
    assert pl.block_compliance([]) == 100
    with pytest.raises(ValueError):
        pl.Policy(due_score=40, overdue_score=50)
