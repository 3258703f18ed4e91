"""United Kingdom (DVLA): asynchronous registration with signed status webhooks, in virtual time.

The virtual clock starts on Monday 2026-01-05 08:00 UTC, 08:00 in London: an
hour before the office opens.
"""

import copy
import functools
from datetime import date

import aiohttp
import pytest
import yaml

from caas_sim import catalogue
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.clock import parse_datetime
from caas_sim.simulators.kit.contract import CONTRACTS_DIR
from caas_sim.simulators.registries.api import MODEL_KEY
from caas_sim.simulators.registries.plates import UK_PATTERN
from caas_sim.simulators.registries.uk import NAME, bank_holidays

EPOCH = parse_datetime("2026-01-05T08:00:00Z")


@functools.cache
def _examples():
    doc = yaml.load((CONTRACTS_DIR / "registry-uk.yaml").read_text(), Loader=yaml.CSafeLoader)
    return doc["paths"]["/registrations"]["post"]["requestBody"]["content"]["application/json"]["examples"]


def example(name="approved", vin=None, address=None, **owner):
    body = copy.deepcopy(_examples()[name]["value"])
    if vin:
        body["vehicle"]["vin"] = vin
    for key, value in owner.items():
        if value is None:
            body["owner"].pop(key, None)
        else:
            body["owner"][key] = value
    body["owner"]["address"].update(address or {})
    return body


async def at(stack, when):
    await stack.clock.advance_to(parse_datetime(when))


@pytest.fixture
async def dvla(request):
    options = getattr(request, "param", {"processing_days": [5, 5]})
    async with Stack(services=[NAME], seed=8, options={NAME: options}) as stack:
        async with aiohttp.ClientSession(stack.url(NAME)) as http:
            yield stack, http
        assert stack.violations() == []
        assert stack.sink.rejected == 0  # every callback carried a valid signature


async def post(http, path, body, status, **kw):
    async with http.post(path, json=body, **kw) as r:
        payload = await r.json()
        assert r.status == status, payload
        return payload


def hooks(stack, registration_id=None):
    """(status, duplicate) of the callbacks received, in order of virtual time. APPROVED and
    PLATE_ASSIGNED leave at the same instant, and two deliveries of one instant may arrive
    in either order: those are sorted by status to compare."""
    received = [r for r in stack.sink.received
                if registration_id is None or r.payload["registrationId"] == registration_id]
    return [(r.payload["status"], r.duplicate) for r in sorted(received, key=lambda r: (r.at, r.payload["status"]))]


def test_bank_holidays_of_england_and_wales():
    # gov.uk/bank-holidays: 2026 Boxing Day is a Saturday (substitute Monday 28); 2027 Christmas and
    # Boxing Day fall on the weekend (substitutes Monday 27 and Tuesday 28).
    assert sorted(bank_holidays(2026)) == [
        date(2026, 1, 1), date(2026, 4, 3), date(2026, 4, 6), date(2026, 5, 4), date(2026, 5, 25),
        date(2026, 8, 31), date(2026, 12, 25), date(2026, 12, 28)]
    assert sorted(bank_holidays(2027)) == [
        date(2027, 1, 1), date(2027, 3, 26), date(2027, 3, 29), date(2027, 5, 3), date(2027, 5, 31),
        date(2027, 8, 30), date(2027, 12, 27), date(2027, 12, 28)]


def test_the_core_endpoint_is_the_default_webhook_url():
    assert catalogue.default_webhook_url(NAME) == "http://127.0.0.1:8000/caas/webhooks/registry-uk"


async def test_happy_path_is_accepted_then_called_back_on_every_change(dvla):
    stack, http = dvla
    reg = await post(http, "/registrations", example(), 202, headers={"X-Correlation-Id": "order-9"})
    assert (reg["status"], reg["estimatedCompletionDate"], reg["country"]) == ("REGISTRATION_INITIATED",
                                                                               "2026-01-12", "GB")
    assert stack.sink.received == []  # asynchronous: nothing before the clock moves
    await at(stack, "2026-01-05T09:00:00Z")
    assert hooks(stack) == [("UNDER_REVIEW", False)]
    assert stack.sink.received[0].at == EPOCH + 3600  # the office opens at 09:00
    await at(stack, "2026-01-12T17:00:00Z")
    assert hooks(stack) == [("UNDER_REVIEW", False), ("APPROVED", False), ("PLATE_ASSIGNED", False)]
    approved, assigned = sorted((r.payload for r in stack.sink.received[1:]), key=lambda p: p["status"])
    assert approved["timestamp"] == assigned["timestamp"]
    assert parse_datetime("2026-01-12T09:00:00Z") <= parse_datetime(assigned["timestamp"]) \
        < parse_datetime("2026-01-12T17:00:00Z")
    # London (NW) is region L; registered in January: the previous September's age identifier, 75.
    plate = assigned["plateNumber"]
    assert UK_PATTERN.match(plate) and plate[0] == "L" and plate[2:4] == "75"
    assert (assigned["registrationDate"], assigned["reference"]) == ("2026-01-12", "order-0001")
    async with http.get(f"/registrations/{reg['registrationId']}") as r:
        done = await r.json()
    assert done["status"] == "PLATE_ASSIGNED" and done["registrationDocument"]["type"] == "V5C"
    assert len(done["registrationDocument"]["number"]) == 11
    webhooks = [e for e in stack.service(NAME).journal.entries() if e["kind"] == "webhook"]
    assert {e["correlationId"] for e in webhooks} == {"order-9"}


async def test_the_age_identifier_is_that_of_the_registration_date(dvla):
    stack, http = dvla
    await at(stack, "2026-03-02T10:00:00Z")
    march = await post(http, "/registrations", example(), 202)
    await at(stack, "2026-08-24T10:00:00Z")  # Monday; the summer bank holiday is Monday 31 August
    august = await post(http, "/registrations", example("company"), 202)
    assert august["estimatedCompletionDate"] == "2026-09-01"  # Tue 25 .. Fri 28, (Mon 31), Tue 1 September
    await at(stack, "2026-09-02T10:00:00Z")
    plates = {r.payload["registrationId"]: r.payload["plateNumber"] for r in stack.sink.received
              if r.payload["status"] == "PLATE_ASSIGNED"}
    assert plates[march["registrationId"]][2:4] == "26"
    assert plates[august["registrationId"]][2:4] == "76"  # decided in September: 26 + 50
    assert plates[august["registrationId"]][0] == "M"  # Manchester


async def test_additional_info_loop_over_webhooks(dvla):
    stack, http = dvla
    reg = await post(http, "/registrations", example("additionalInfo"), 202)
    await at(stack, "2026-01-12T17:00:00Z")
    asked = stack.sink.received[-1].payload
    assert asked["status"] == "ADDITIONAL_INFO_REQUIRED"
    assert [f["field"] for f in asked["requiredInfo"]["fields"]] == ["documents.PROOF_OF_ADDRESS",
                                                                      "vehicle.typeApprovalNumber"]
    info = {"documents": [{"type": "PROOF_OF_ADDRESS", "reference": "council-tax-bill"}],
            "values": {"vehicle.typeApprovalNumber": "e11*2018/858*00077*00"}}
    back = await post(http, f"/registrations/{reg['registrationId']}/additional-info", info, 202)
    assert (back["status"], back["estimatedCompletionDate"]) == ("UNDER_REVIEW", "2026-01-19")
    await at(stack, "2026-01-19T17:00:00Z")
    # The UNDER_REVIEW that answered the additional information is in that answer, not called back.
    assert hooks(stack, reg["registrationId"]) == [("UNDER_REVIEW", False), ("ADDITIONAL_INFO_REQUIRED", False),
                                                   ("APPROVED", False), ("PLATE_ASSIGNED", False)]


async def test_rejection_is_called_back_and_unavailability_answers_503(dvla):
    stack, http = dvla
    reg = await post(http, "/registrations", example("rejected"), 202)
    down = await post(http, "/registrations", example(taxId="AA000003A", driverLicense=None), 503)
    assert down["fallback"] == "MANUAL_SUBMISSION" and "DVLA" in down["manualSubmission"]["channel"]
    await at(stack, "2026-01-12T17:00:00Z")
    rejected = stack.sink.received[-1].payload
    assert (rejected["status"], rejected["rejection"]["code"]) == ("REJECTED", "DOCUMENTS_INVALID")
    assert hooks(stack) == [("UNDER_REVIEW", False), ("REJECTED", False)]
    assert rejected["registrationId"] == reg["registrationId"]


async def test_callback_faults_duplicate_lose_delay_and_reorder(dvla):
    stack, http = dvla
    faults = stack.service(NAME).faults
    faults.add({"id": "dup", "action": {"type": "callback_duplicated", "params": {"copies": 1}},
                "match": {"selectors": {"reference": "dup"}}})
    faults.add({"id": "lost", "action": {"type": "callback_lost"}, "match": {"selectors": {"reference": "lost"}}})
    faults.add({"id": "swap", "action": {"type": "webhook_reordered"},
                "match": {"selectors": {"reference": "swap"}}, "times": 2})  # UNDER_REVIEW, then APPROVED
    faults.add({"id": "late", "action": {"type": "callback_delayed", "params": {"seconds": 7200}},
                "match": {"selectors": {"reference": "late"}}})
    ids = {}
    for i, ref in enumerate(["dup", "lost", "swap", "late"]):
        body = example(vin=f"SJNFAAZE1U0{i:06d}")
        body["reference"] = ref
        ids[ref] = (await post(http, "/registrations", body, 202))["registrationId"]
    await at(stack, "2026-01-13T12:00:00Z")
    assert hooks(stack, ids["dup"]) == [("UNDER_REVIEW", False), ("UNDER_REVIEW", True), ("APPROVED", False),
                                        ("PLATE_ASSIGNED", False), ("APPROVED", True), ("PLATE_ASSIGNED", True)]
    assert hooks(stack, ids["lost"]) == []
    async with http.get(f"/registrations/{ids['lost']}") as r:
        assert (await r.json())["status"] == "PLATE_ASSIGNED"  # the caller has to poll
    swapped = [r for r in stack.sink.received if r.payload["registrationId"] == ids["swap"]][-2:]
    assert [r.payload["status"] for r in swapped] == ["PLATE_ASSIGNED", "APPROVED"]
    assert swapped[1].at == swapped[0].at + 1  # held, then released right after the later one
    late = [r for r in stack.sink.received if r.payload["registrationId"] == ids["late"]]
    assert late[0].at == EPOCH + 3600 + 7200
    applied = {e["ruleId"] for e in stack.service(NAME).journal.entries() if e["kind"] == "fault"}
    assert applied == {"dup", "lost", "swap", "late"}


async def test_bank_holidays_lengthen_the_processing(dvla):
    stack, http = dvla
    await at(stack, "2026-04-02T10:00:00Z")  # Thursday before Easter
    reg = await post(http, "/registrations", example(), 202)
    assert reg["estimatedCompletionDate"] == "2026-04-13"  # Good Friday and Easter Monday do not count


@pytest.mark.parametrize("owner,field,message", [
    ({"driverLicense": "MORGA753126SM9IJ"}, "owner.driverLicense", "date of birth it encodes"),
    ({"taxId": "QQ123456A"}, "owner.taxId", "never used in the prefix"),
    ({"taxId": "AO123456A"}, "owner.taxId", "O is never the second letter"),
    ({"address": {"postalCode": "BT1 1AA", "city": "Belfast"}}, "owner.address.postalCode", "Northern Ireland"),
])
async def test_owner_checks(dvla, owner, field, message):
    _stack, http = dvla
    problem = await post(http, "/registrations", example(address=owner.pop("address", None), **owner), 422)
    assert problem["errors"][0]["field"] == field and message in problem["errors"][0]["message"]


async def test_companies_use_their_vat_number(dvla):
    stack, http = dvla
    bad = await post(http, "/registrations", example("company", taxId="GB802311781"), 422)
    assert "check digits are wrong" in bad["detail"]
    ok = await post(http, "/registrations", example("company"), 202)
    assert ok["owner"] == {"type": "COMPANY", "name": "Mobility Lane Ltd", "taxId": "GB980780684"}
    model = stack.running[NAME].app[MODEL_KEY]
    assert model.registrations[ok["registrationId"]].status == "REGISTRATION_INITIATED"


async def test_additional_info_values_are_checked_too(dvla):
    stack, http = dvla
    stack.service(NAME).faults.add({"action": {"type": "additional_info_required",
                                               "params": {"fields": ["owner.driverLicense"]}}, "times": 1})
    reg = await post(http, "/registrations", example(driverLicense=None), 202)
    await at(stack, "2026-01-12T17:00:00Z")
    assert stack.sink.received[-1].payload["status"] == "ADDITIONAL_INFO_REQUIRED"
    path = f"/registrations/{reg['registrationId']}/additional-info"
    wrong = await post(http, path, {"values": {"owner.driverLicense": "MORGA753116SM9IJ",
                                               "owner.dateOfBirth": "2030-01-01"}}, 422)
    assert [e["field"] for e in wrong["errors"]] == ["owner.driverLicense", "owner.dateOfBirth"]
    await post(http, path, {"values": {"owner.driverLicense": "MORGA753116SM9IJ"}}, 202)
    async with http.post("/registrations/reg_uk_0000000000000000/additional-info",
                         json={"values": {"owner.driverLicense": "MORGA753116SM9IJ"}}) as r:
        assert r.status == 404
