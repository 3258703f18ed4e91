"""Spain (DGT): synchronous registration end to end, in virtual time with business days.

The virtual clock starts on Monday 2026-01-05 08:00 UTC (09:00 in Madrid);
Tuesday 2026-01-06 (Epiphany) is a national holiday.
"""

import copy
import functools
from datetime import date

import aiohttp
import pytest
import yaml

from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.clock import parse_datetime
from caas_sim.simulators.kit.contract import CONTRACTS_DIR
from caas_sim.simulators.registries.api import MODEL_KEY
from caas_sim.simulators.registries.es import NAME, national_holidays
from caas_sim.simulators.registries.plates import ES_PATTERN


@functools.cache
def _examples():
    doc = yaml.load((CONTRACTS_DIR / "registry-es.yaml").read_text(), Loader=yaml.CSafeLoader)
    return doc["paths"]["/registrations"]["post"]["requestBody"]["content"]["application/json"]["examples"]


def example(name="approved", **changes):
    body = copy.deepcopy(_examples()[name]["value"])
    for path, value in changes.items():
        node, *keys = path.split("__")
        target = body[node]
        for key in keys[:-1]:
            target = target[key]
        if keys:
            target[keys[-1]] = value
        else:
            body[node] = value
    return body


async def at(stack, when):
    await stack.clock.advance_to(parse_datetime(when))


@pytest.fixture
async def dgt(request):
    options = getattr(request, "param", {"processing_days": [2, 2]})
    async with Stack(services=[NAME], seed=3, options={NAME: options}) as stack:
        async with aiohttp.ClientSession(stack.url(NAME)) as http:
            yield stack, http
        assert stack.violations() == []


async def post(http, path, body, status, **kw):
    async with http.post(path, json=body, **kw) as r:
        payload = await r.json()
        assert r.status == status, payload
        return payload, r.headers


async def get(http, registration_id):
    async with http.get(f"/registrations/{registration_id}") as r:
        assert r.status == 200
        return await r.json()


def test_spanish_national_holidays_2026():
    # BOE: 1 Jan, 6 Jan, Good Friday (3 Apr), 1 May, 15 Aug, 12 Oct, 1 Nov, 6 Dec, 8 Dec, 25 Dec.
    assert sorted(national_holidays(2026)) == [
        date(2026, 1, 1), date(2026, 1, 6), date(2026, 4, 3), date(2026, 5, 1), date(2026, 8, 15),
        date(2026, 10, 12), date(2026, 11, 1), date(2026, 12, 6), date(2026, 12, 8), date(2026, 12, 25)]


async def test_happy_path_answers_with_the_plate_and_issues_the_permiso_two_business_days_later(dgt):
    stack, http = dgt
    reg, headers = await post(http, "/registrations", example(), 201, headers={"X-Correlation-Id": "order-1"})
    assert headers["Location"] == f"/registrations/{reg['registrationId']}"
    assert (reg["status"], reg["plateNumber"], reg["registrationDate"]) == ("APPROVED", "0000 NDB", "2026-01-05")
    assert [h["status"] for h in reg["history"]] == ["REGISTRATION_INITIATED", "UNDER_REVIEW", "APPROVED"]
    # Two business days from Monday 5 January: Tuesday 6 is Epiphany, so Wednesday 7 and Thursday 8.
    assert (reg["processingBusinessDays"], reg["estimatedCompletionDate"]) == (2, "2026-01-08")
    await at(stack, "2026-01-08T07:59:00Z")  # 08:59 in Madrid: the office has not opened yet
    assert (await get(http, reg["registrationId"]))["status"] == "APPROVED"
    await at(stack, "2026-01-08T16:00:00Z")  # 17:00 in Madrid
    done = await get(http, reg["registrationId"])
    assert done["status"] == "PLATE_ASSIGNED" and done["plateNumber"] == "0000 NDB"
    assert done["registrationDocument"]["type"] == "PERMISO_CIRCULACION"
    issued = parse_datetime(done["registrationDocument"]["issuedAt"])
    assert parse_datetime("2026-01-08T08:00:00Z") <= issued < parse_datetime("2026-01-08T16:00:00Z")
    events = [e["event"] for e in stack.service(NAME).journal.entries() if e["kind"] == "event"]
    assert events == ["registration.registration_initiated", "registration.under_review", "registration.approved",
                      "registration.plate_assigned"]


async def test_plates_follow_the_national_sequence_and_are_never_reused(dgt):
    _stack, http = dgt
    plates = []
    for i in range(12):
        reg, _ = await post(http, "/registrations", example(vehicle__vin=f"VSSZZZK1ZSR{i:06d}"), 201)
        plates.append(reg["plateNumber"])
    assert plates == [f"{i:04d} NDB" for i in range(12)]
    assert all(ES_PATTERN.match(p) for p in plates)


@pytest.mark.parametrize("dgt", [{"processing_days": [2, 5], "plate_start": "9998 BZZ"}], indirect=True)
async def test_processing_days_are_drawn_in_the_range_from_seed_and_vin(dgt):
    _stack, http = dgt
    seen = set()
    for i in range(30):
        reg, _ = await post(http, "/registrations", example(vehicle__vin=f"VSSZZZK1ZSR{i:06d}"), 201)
        seen.add(reg["processingBusinessDays"])
        if i == 2:
            assert reg["plateNumber"] == "0000 CBB" and reg["registrationDate"] == "2026-01-05"
    assert seen == {2, 3, 4, 5}


async def test_additional_info_loop(dgt):
    stack, http = dgt
    reg, _ = await post(http, "/registrations", example("additionalInfo"), 201)
    assert reg["status"] == "ADDITIONAL_INFO_REQUIRED" and reg["plateNumber"] is None
    assert [f["field"] for f in reg["requiredInfo"]["fields"]] == ["documents.PROOF_OF_ADDRESS",
                                                                    "vehicle.typeApprovalNumber"]
    path = f"/registrations/{reg['registrationId']}/additional-info"
    missing, _ = await post(http, path, {"values": {"vehicle.typeApprovalNumber": "e9*2018/858*00123*01"}}, 422)
    assert missing["errors"] == [{"field": "documents.PROOF_OF_ADDRESS", "message": "asked for and not supplied"}]
    info = {"documents": [{"type": "PROOF_OF_ADDRESS", "reference": "doc-address-1"}],
            "values": {"vehicle.typeApprovalNumber": "e9*2018/858*00123*01"}}
    await stack.advance("1d")  # the answer may come any time: the registry waits
    done, _ = await post(http, path, info, 200, headers={"Idempotency-Key": "info-1"})
    assert done["status"] == "APPROVED" and ES_PATTERN.match(done["plateNumber"])
    assert done["registrationDate"] == "2026-01-06" and done["requiredInfo"] is None
    assert [h["status"] for h in done["history"]] == ["REGISTRATION_INITIATED", "UNDER_REVIEW",
                                                      "ADDITIONAL_INFO_REQUIRED", "UNDER_REVIEW", "APPROVED"]
    replay, headers = await post(http, path, info, 200, headers={"Idempotency-Key": "info-1"})
    assert replay == done and headers["Idempotent-Replayed"] == "true"
    again, _ = await post(http, path, info, 409)
    assert (again["type"].rsplit("/", 1)[1], again["registrationStatus"]) == ("not-awaiting-info", "APPROVED")
    await stack.advance("7d")
    assert (await get(http, reg["registrationId"]))["status"] == "PLATE_ASSIGNED"


async def test_missing_documents_and_a_fault_ask_for_information(dgt):
    stack, http = dgt
    reg, _ = await post(http, "/registrations", example(documents=[]), 201)
    assert [f["field"] for f in reg["requiredInfo"]["fields"]] == ["documents.PURCHASE_CONTRACT",
                                                                    "documents.TECHNICAL_SPECS"]
    policy = {"type": "additional_info_required", "params": {"fields": ["documents.REGISTRATION_TAX_576"]}}
    stack.service(NAME).faults.add({"id": "policy", "action": policy,
                                    "match": {"selectors": {"dealership": "DLR-MAD-001"}}, "times": 1})
    other, _ = await post(http, "/registrations", example("company", purchase__dealership="DLR-MAD-001"), 201)
    assert [f["field"] for f in other["requiredInfo"]["fields"]] == ["documents.REGISTRATION_TAX_576"]
    done, _ = await post(http, f"/registrations/{other['registrationId']}/additional-info",
                         {"documents": [{"type": "REGISTRATION_TAX_576", "reference": "576-2026-1"}]}, 200)
    assert done["status"] == "APPROVED"


async def test_rejection_then_a_corrected_resubmission_of_the_same_vehicle(dgt):
    stack, http = dgt
    rejected, _ = await post(http, "/registrations", example("rejected"), 201)
    assert rejected["status"] == "REJECTED"
    assert rejected["rejection"] == {"code": "OWNER_DEBTS",
                                     "reason": "The owner has unpaid traffic fines recorded with the DGT"}
    vin = rejected["vin"]
    corrected, _ = await post(http, "/registrations", example(vehicle__vin=vin), 201)
    assert corrected["status"] == "APPROVED" and corrected["registrationId"] != rejected["registrationId"]
    conflict, _ = await post(http, "/registrations", example(vehicle__vin=vin), 409)
    assert conflict["registrationId"] == corrected["registrationId"]
    stack.service(NAME).faults.add({"action": {"type": "registration_rejected", "params": {
        "code": "VEHICLE_REPORTED_STOLEN", "reason": "Reported stolen"}}, "match": {"selectors": {"vin": "*77"}}})
    stolen, _ = await post(http, "/registrations", example(vehicle__vin="VSSZZZK1ZSR000077"), 201)
    assert stolen["rejection"]["code"] == "VEHICLE_REPORTED_STOLEN"


async def test_unavailable_registry_answers_503_with_the_manual_fallback(dgt):
    stack, http = dgt
    down, headers = await post(http, "/registrations", example("approved", owner__taxId="00000003A",
                                                               owner__driverLicense="00000003A"), 503)
    assert headers["Retry-After"] == "3600"
    assert (down["reason"], down["fallback"]) == ("OUTAGE", "MANUAL_SUBMISSION")
    assert down["manualSubmission"]["url"] == "https://sede.dgt.gob.es"
    assert stack.running[NAME].app[MODEL_KEY].registrations == {}
    # Scheduled maintenance: Sunday 11 January, 01:00-05:00 in Madrid.
    await at(stack, "2026-01-11T01:30:00Z")
    async with http.get("/availability") as r:
        availability = await r.json()
    assert (availability["status"], availability["reason"]) == ("UNAVAILABLE", "MAINTENANCE")
    assert availability["availableAgainAt"] == "2026-01-11T04:00:00.000Z"
    maintenance, headers = await post(http, "/registrations", example(), 503)
    assert maintenance["reason"] == "MAINTENANCE" and headers["Retry-After"] == str(150 * 60)
    await at(stack, "2026-01-11T04:00:00Z")
    stack.service(NAME).faults.add({"action": {"type": "registry_unavailable", "params": {"retry_after": 60}},
                                    "times": 1})
    outage, headers = await post(http, "/registrations", example(), 503, headers={"Idempotency-Key": "k1"})
    assert outage["reason"] == "OUTAGE" and headers["Retry-After"] == "60"
    ok, _ = await post(http, "/registrations", example(), 201, headers={"Idempotency-Key": "k1"})  # 503 never replayed
    assert ok["status"] == "APPROVED"


async def test_invalid_data_lists_every_error(dgt):
    stack, http = dgt
    body = example(owner__taxId="12345678A", owner__driverLicense="12345678A", vehicle__engineType="DIESEL",
                   vehicle__power={"kw": 150, "hp": 150}, insurance__validFrom="2026-01-06",
                   purchase__date="2026-02-01")
    problem, _ = await post(http, "/registrations", body, 422)
    assert problem["type"].endswith("/invalid-data")
    assert [e["field"] for e in problem["errors"]] == [
        "vehicle.emissions", "vehicle.power.hp", "owner.taxId", "purchase.date", "insurance.validFrom"]
    assert "control letter should be Z" in problem["errors"][2]["message"]
    licence, _ = await post(http, "/registrations", example(owner__driverLicense="X2482300W"), 422)
    assert licence["errors"][0]["field"] == "owner.driverLicense"
    nie, _ = await post(http, "/registrations",
                        example(owner__taxId="X2482300W", owner__driverLicense="X2482300W"), 201)
    assert nie["status"] == "APPROVED"
    cif, _ = await post(http, "/registrations", example("company", owner__taxId="B12345608"), 422)
    assert "CIF B12345608" in cif["detail"]
    stack.service(NAME).faults.add({"action": {"type": "invalid_data", "params": {
        "field": "owner.address.street", "message": "not in the street register"}}, "times": 1})
    injected, _ = await post(http, "/registrations", example("company"), 422)
    assert injected["errors"] == [{"field": "owner.address.street", "message": "not in the street register"}]


@pytest.mark.parametrize("dgt", [{"processing_days": [2, 2], "slow_extra_days": 10}], indirect=True)
async def test_slow_processing_completes_after_the_published_date(dgt):
    stack, http = dgt
    slow, _ = await post(http, "/registrations", example("slow"), 201)
    stack.service(NAME).faults.add({"action": {"type": "processing_delay", "params": {"business_days": 3}},
                                    "match": {"selectors": {"reference": "late-*"}}})
    late, _ = await post(http, "/registrations", example(reference="late-1"), 201)
    assert slow["estimatedCompletionDate"] == late["estimatedCompletionDate"] == "2026-01-08"
    await at(stack, "2026-01-13T17:00:00Z")  # Tuesday: 2 + 3 business days after Monday 5, Epiphany skipped
    assert (await get(http, late["registrationId"]))["status"] == "PLATE_ASSIGNED"
    assert (await get(http, slow["registrationId"]))["status"] == "APPROVED"
    await at(stack, "2026-01-22T17:00:00Z")  # Thursday: 12 business days after Monday 5
    assert (await get(http, slow["registrationId"]))["status"] == "PLATE_ASSIGNED"


async def test_unknown_registration_is_404(dgt):
    _stack, http = dgt
    async with http.get("/registrations/reg_es_0000000000000000") as r:
        assert r.status == 404 and (await r.json())["type"].endswith("/unknown-registration")


async def test_the_vin_check_digit_is_not_enforced_unless_asked(dgt):
    _stack, http = dgt
    european = "WVWZZZ1JZ3W386752"  # a real Golf: a filler where North America puts the check digit
    ok, _ = await post(http, "/registrations", example(vehicle__vin=european), 201)
    assert ok["vin"] == european


@pytest.mark.parametrize("dgt", [{"processing_days": [2, 2], "enforce_vin_check_digit": True}], indirect=True)
async def test_the_vin_check_digit_can_be_enforced(dgt):
    _stack, http = dgt
    problem, _ = await post(http, "/registrations", example(vehicle__vin="WVWZZZ1JZ3W386752"), 422)
    assert problem["errors"] == [{"field": "vehicle.vin", "message": "check digit (position 9) should be 9"}]
    ok, _ = await post(http, "/registrations", example(vehicle__vin="1M8GDM9AXKP042788"), 201)
    assert ok["status"] == "APPROVED"


async def test_idempotent_submission(dgt):
    stack, http = dgt
    first, _ = await post(http, "/registrations", example(), 201, headers={"Idempotency-Key": "order-1"})
    replay, headers = await post(http, "/registrations", example(), 201, headers={"Idempotency-Key": "order-1"})
    assert replay == first and headers["Idempotent-Replayed"] == "true"
    await post(http, "/registrations", example("company"), 422, headers={"Idempotency-Key": "order-1"})
    assert len(stack.running[NAME].app[MODEL_KEY].registrations) == 1


@pytest.mark.parametrize("dgt", [{"processing_days": [1, 1], "holidays": [], "maintenance": [],
                                  "office_hours": ["08:00", "15:00"]}], indirect=True)
async def test_calendar_maintenance_and_office_hours_are_options(dgt):
    stack, http = dgt
    reg, _ = await post(http, "/registrations", example(), 201)
    assert reg["estimatedCompletionDate"] == "2026-01-06"  # Epiphany counts once holidays are []
    await at(stack, "2026-01-06T14:00:00Z")  # 15:00 in Madrid: the office has closed
    assert (await get(http, reg["registrationId"]))["status"] == "PLATE_ASSIGNED"
    await at(stack, "2026-01-11T02:00:00Z")  # Sunday night, no maintenance configured
    async with http.get("/availability") as r:
        availability = await r.json()
    assert availability["status"] == "AVAILABLE" and availability["nextMaintenance"] is None
