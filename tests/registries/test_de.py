"""Germany (KBA / Zulassungsbehörde): semi-automated registration, polled, in virtual time with business days.

The virtual clock starts on Monday 2026-01-05 08:00 UTC (09:00 in Berlin, the
office is open). Epiphany (6 January) is not a nationwide holiday.
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
from caas_sim.simulators.registries.de import NAME, national_holidays
from caas_sim.simulators.registries.plates import DE_PATTERN, de_plate_length


@functools.cache
def _examples():
    doc = yaml.load((CONTRACTS_DIR / "registry-de.yaml").read_text(), Loader=yaml.CSafeLoader)
    return doc["paths"]["/registrations"]["post"]["requestBody"]["content"]["application/json"]["examples"]


def example(name="approved", vin=None, address=None, **owner):
    body = copy.deepcopy(_examples()[name]["value"])
    if vin:
        body["vehicle"]["vin"] = vin
    body["owner"].update(owner)
    body["owner"]["address"].update(address or {})
    return body


async def at(stack, when):
    await stack.clock.advance_to(parse_datetime(when))


@pytest.fixture
async def kba(request):
    options = getattr(request, "param", {"processing_days": [2, 2]})
    async with Stack(services=[NAME], seed=5, options={NAME: options}) as stack:
        async with aiohttp.ClientSession(stack.url(NAME)) as http:
            yield stack, http
        assert stack.violations() == []
        assert stack.sink.received == []  # semi-automated: nothing is ever called back


async def post(http, path, body, status, **kw):
    async with http.post(path, json=body, **kw) as r:
        payload = await r.json()
        assert r.status == status, payload
        return payload, r.headers


async def poll(http, registration_id):
    async with http.get(f"/registrations/{registration_id}") as r:
        assert r.status == 200
        return await r.json()


def test_nationwide_holidays_2026():
    assert sorted(national_holidays(2026)) == [
        date(2026, 1, 1), date(2026, 4, 3), date(2026, 4, 6), date(2026, 5, 1), date(2026, 5, 14),
        date(2026, 5, 25), date(2026, 10, 3), date(2026, 12, 25), date(2026, 12, 26)]


async def test_happy_path_is_accepted_then_decided_by_a_clerk_and_polled(kba):
    stack, http = kba
    reg, headers = await post(http, "/registrations", example(), 202)
    assert headers["Location"] == f"/registrations/{reg['registrationId']}"
    assert (reg["status"], reg["plateNumber"], reg["estimatedCompletionDate"]) == ("UNDER_REVIEW", None, "2026-01-07")
    await at(stack, "2026-01-07T07:59:00Z")  # Wednesday, 08:59 in Berlin
    assert (await poll(http, reg["registrationId"]))["status"] == "UNDER_REVIEW"
    await at(stack, "2026-01-07T16:00:00Z")
    done = await poll(http, reg["registrationId"])
    assert done["status"] == "PLATE_ASSIGNED" and done["registrationDate"] == "2026-01-07"
    assert [h["status"] for h in done["history"]] == ["REGISTRATION_INITIATED", "UNDER_REVIEW", "APPROVED",
                                                      "PLATE_ASSIGNED"]
    # München, an electric vehicle: the E suffix counts toward the 8 characters.
    plate = done["plateNumber"]
    assert plate.startswith("M-") and plate.endswith("E") and DE_PATTERN.match(plate)
    assert de_plate_length(plate) <= 8
    assert done["registrationDocument"]["type"] == "ZULASSUNGSBESCHEINIGUNG_TEIL_I"


async def test_a_weekend_submission_waits_for_the_office_to_open(kba):
    stack, http = kba
    await at(stack, "2026-01-10T12:00:00Z")  # Saturday
    reg, _ = await post(http, "/registrations", example("company"), 202)
    assert (reg["status"], reg["estimatedCompletionDate"]) == ("REGISTRATION_INITIATED", "2026-01-13")
    await at(stack, "2026-01-12T07:59:00Z")
    assert (await poll(http, reg["registrationId"]))["status"] == "REGISTRATION_INITIATED"
    await at(stack, "2026-01-12T08:00:00Z")  # Monday 09:00 in Berlin
    under = await poll(http, reg["registrationId"])
    assert under["status"] == "UNDER_REVIEW" and under["history"][-1]["at"] == "2026-01-12T08:00:00.000Z"
    await at(stack, "2026-01-13T16:00:00Z")
    done = await poll(http, reg["registrationId"])
    assert done["status"] == "PLATE_ASSIGNED" and done["plateNumber"].startswith("S-")  # Stuttgart
    assert not done["plateNumber"].endswith("E")  # a diesel


async def test_additional_info_loop_restarts_the_processing_time(kba):
    stack, http = kba
    reg, _ = await post(http, "/registrations", example("additionalInfo"), 202)
    assert reg["status"] == "UNDER_REVIEW"
    await at(stack, "2026-01-07T16:00:00Z")
    asked = await poll(http, reg["registrationId"])
    assert asked["status"] == "ADDITIONAL_INFO_REQUIRED"
    assert {f["field"] for f in asked["requiredInfo"]["fields"]} == {"documents.PROOF_OF_ADDRESS",
                                                                     "vehicle.typeApprovalNumber"}
    await at(stack, "2026-01-08T10:00:00Z")  # Thursday
    info = {"documents": [{"type": "PROOF_OF_ADDRESS", "reference": "meldebescheinigung-1"}],
            "values": {"vehicle.typeApprovalNumber": "e1*2018/858*00042*03"}}
    back, _ = await post(http, f"/registrations/{reg['registrationId']}/additional-info", info, 202)
    assert (back["status"], back["estimatedCompletionDate"]) == ("UNDER_REVIEW", "2026-01-12")  # Fri 9, Mon 12
    await at(stack, "2026-01-09T16:00:00Z")
    assert (await poll(http, reg["registrationId"]))["status"] == "UNDER_REVIEW"
    await at(stack, "2026-01-12T16:00:00Z")
    done = await poll(http, reg["registrationId"])
    assert done["status"] == "PLATE_ASSIGNED" and done["registrationDate"] == "2026-01-12"


async def test_rejection_and_unavailability(kba):
    stack, http = kba
    reg, _ = await post(http, "/registrations", example("rejected"), 202)
    await stack.advance("3d")
    rejected = await poll(http, reg["registrationId"])
    assert rejected["status"] == "REJECTED" and rejected["rejection"]["code"] == "OWNER_DEBTS"
    resubmitted, _ = await post(http, "/registrations", example(vin=rejected["vin"]), 202)
    assert resubmitted["status"] == "UNDER_REVIEW"
    down, headers = await post(http, "/registrations", example(taxId="12345678938", vin="WVGZZZE2ZRP099999"), 503)
    assert down["reason"] == "OUTAGE" and headers["Retry-After"] == "3600"
    # Saturday 22:00 to Sunday 06:00 in Berlin: two windows back to back are one outage.
    await at(stack, "2026-01-10T22:30:00Z")  # Saturday 23:30 in Berlin
    night, headers = await post(http, "/registrations", example(vin="WVGZZZE2ZRP099999"), 503)
    assert night["availableAgainAt"] == "2026-01-11T05:00:00.000Z" and headers["Retry-After"] == str(6 * 3600 + 1800)
    async with http.get("/availability") as r:
        availability = await r.json()
    assert availability["nextMaintenance"] == {"from": "2026-01-10T21:00:00.000Z", "until": "2026-01-11T05:00:00.000Z"}


@pytest.mark.parametrize("tax_id,message", [
    ("36554266806", "exactly one digit must occur twice or three times"),
    ("36574261890", "check digit should be 2"),
    ("06574261809", None),  # a leading 0 breaks the contract's pattern: 400
])
async def test_steuer_id_rules(kba, tax_id, message):
    stack, http = kba
    if message is None:
        await post(http, "/registrations", example(taxId=tax_id), 400)
        stack.service(NAME).journal.clear()  # the violation is the point here
        return
    problem, _ = await post(http, "/registrations", example(taxId=tax_id), 422)
    assert problem["errors"][0]["field"] == "owner.taxId" and message in problem["errors"][0]["message"]


async def test_the_district_comes_from_the_city_else_from_the_postcode_zone(kba):
    stack, http = kba
    for i, (city, postcode) in enumerate([("Köln", "50667"), ("Muenchen", "80331"), ("Xanadu", "54290"),
                                          ("Frankfurt (Oder)", "15230"), ("Frankfurt am Main", "60311")]):
        await post(http, "/registrations", example(vin=f"WVGZZZE2ZRP{i:06d}", taxId="12345678995",
                                                   address={"city": city, "postalCode": postcode}), 202)
    await stack.advance("3d")
    plates = [r.plate for r in stack.running[NAME].app[MODEL_KEY].registrations.values()]
    assert [p.split("-")[0] for p in plates] == ["K", "M", "K", "FF", "F"]


async def test_company_vat_and_evb(kba):
    _stack, http = kba
    bad_vat, _ = await post(http, "/registrations", example("company", taxId="DE136695978"), 422)
    assert "check digit should be 6" in bad_vat["detail"]
    body = example("company")
    body["documents"][1]["reference"] = "not-an-evb"
    bad_evb, _ = await post(http, "/registrations", body, 422)
    assert bad_evb["errors"] == [{"field": "documents", "message": "INSURANCE_PROOF 'not-an-evb' is not an eVB "
                                                                     "number (7 upper-case letters and digits)"}]


@pytest.mark.parametrize("kba", [{"processing_days": [1, 3]}], indirect=True)
async def test_processing_time_is_one_to_three_business_days(kba):
    stack, http = kba
    due = set()
    for i in range(20):
        reg, _ = await post(http, "/registrations", example(vin=f"WVGZZZE2ZRP{i:06d}"), 202)
        due.add((reg["processingBusinessDays"], reg["estimatedCompletionDate"]))
    assert due == {(1, "2026-01-06"), (2, "2026-01-07"), (3, "2026-01-08")}
    await at(stack, "2026-01-08T16:00:00Z")
    plates = [r.plate for r in stack.running[NAME].app[MODEL_KEY].registrations.values()]
    assert len(set(plates)) == 20 and all(DE_PATTERN.match(p) and de_plate_length(p) <= 8 for p in plates)


async def test_same_seed_same_outcomes():
    async def run(seed):
        async with Stack(services=[NAME], seed=seed) as stack, aiohttp.ClientSession(stack.url(NAME)) as http:
            for i in range(10):
                await post(http, "/registrations", example(vin=f"WVGZZZE2ZRP{i:06d}"), 202)
            await stack.advance("7d")
            events = [(e["vt"], e["event"], e["entities"]["vin"], e.get("detail", {}).get("plate"))
                      for e in stack.service(NAME).journal.entries() if e["kind"] == "event"]
            return events

    first = await run(21)
    assert first == await run(21)
    assert first != await run(22)
