"""France (ANTS, SIV): synchronous registration end to end, in virtual time with business days.

The virtual clock starts on Monday 2026-01-05 08:00 UTC (09:00 in Paris).
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
from caas_sim.simulators.registries.fr import NAME, national_holidays
from caas_sim.simulators.registries.plates import FR_PATTERN


@functools.cache
def _examples():
    doc = yaml.load((CONTRACTS_DIR / "registry-fr.yaml").read_text(), Loader=yaml.CSafeLoader)
    return doc["paths"]["/registrations"]["post"]["requestBody"]["content"]["application/json"]["examples"]


def example(name="approved", vin=None, **owner):
    body = copy.deepcopy(_examples()[name]["value"])
    if vin:
        body["vehicle"]["vin"] = vin
    body["owner"].update(owner)
    return body


@pytest.fixture
async def ants(request):
    options = getattr(request, "param", {"processing_days": [3, 3]})
    async with Stack(services=[NAME], seed=11, options={NAME: options}) as stack:
        async with aiohttp.ClientSession(stack.url(NAME)) as http:
            yield stack, http
        assert stack.violations() == []


async def post(http, path, body, status, **kw):
    async with http.post(path, json=body, **kw) as r:
        payload = await r.json()
        assert r.status == status, payload
        return payload


async def status_of(http, registration_id):
    async with http.get(f"/registrations/{registration_id}") as r:
        return (await r.json())["status"]


def test_french_public_holidays_2026():
    # Code du travail L3133-1: 1 Jan, Easter Monday (6 Apr), 1 May, 8 May, Ascension (14 May),
    # Whit Monday (25 May), 14 Jul, 15 Aug, 1 Nov, 11 Nov, 25 Dec.
    assert sorted(national_holidays(2026)) == [
        date(2026, 1, 1), date(2026, 4, 6), date(2026, 5, 1), date(2026, 5, 8), date(2026, 5, 14),
        date(2026, 5, 25), date(2026, 7, 14), date(2026, 8, 15), date(2026, 11, 1), date(2026, 11, 11),
        date(2026, 12, 25)]


async def test_happy_path_gives_the_siv_number_at_once_and_the_certificate_after_three_business_days(ants):
    stack, http = ants
    reg = await post(http, "/registrations", example(), 201)
    assert (reg["status"], reg["plateNumber"], reg["country"]) == ("APPROVED", "HA-001-AA", "FR")
    assert reg["estimatedCompletionDate"] == "2026-01-08"  # Tue 6, Wed 7, Thu 8
    company = await post(http, "/registrations", example("company"), 201)
    assert company["plateNumber"] == "HA-002-AA" and company["owner"]["taxId"] == "73282932000074"
    await stack.clock.advance_to(parse_datetime("2026-01-07T23:00:00Z"))
    assert await status_of(http, reg["registrationId"]) == "APPROVED"
    await stack.clock.advance_to(parse_datetime("2026-01-08T16:00:00Z"))  # 17:00 in Paris
    async with http.get(f"/registrations/{reg['registrationId']}") as r:
        done = await r.json()
    assert done["status"] == "PLATE_ASSIGNED"
    assert done["registrationDocument"]["type"] == "CERTIFICAT_IMMATRICULATION"


async def test_business_days_skip_the_may_holidays(ants):
    stack, http = ants
    await stack.clock.advance_to(parse_datetime("2026-04-30T08:00:00Z"))  # Thursday
    reg = await post(http, "/registrations", example(), 201)
    # Friday 1 May is a holiday: Monday 4, Tuesday 5, Wednesday 6.
    assert (reg["registrationDate"], reg["estimatedCompletionDate"]) == ("2026-04-30", "2026-05-06")
    await stack.clock.advance_to(parse_datetime("2026-05-11T08:00:00Z"))  # Friday 8 May is a holiday too
    later = await post(http, "/registrations", example(vin="VF1RCB00X71234999"), 201)
    assert later["estimatedCompletionDate"] == "2026-05-15"  # Tue 12, Wed 13, (Thu 14 Ascension), Fri 15


@pytest.mark.parametrize("ants", [{"processing_days": [3, 7], "plate_start": "SR-998-ZZ"}], indirect=True)
async def test_the_siv_series_skips_ss_and_stays_in_format(ants):
    _stack, http = ants
    plates = [(await post(http, "/registrations", example(vin=f"VF1RCB00X7{i:07d}"), 201))["plateNumber"]
              for i in range(3)]
    assert plates == ["SR-998-ZZ", "SR-999-ZZ", "ST-001-AA"]
    assert all(FR_PATTERN.match(p) for p in plates)


async def test_additional_info_loop_with_a_fault_rule(ants):
    stack, http = ants
    stack.service(NAME).faults.add({"action": {"type": "additional_info_required", "params": {
        "fields": ["documents.MANDAT_IMMATRICULATION", "owner.driverLicense"]}}, "times": 1})
    reg = await post(http, "/registrations", example(), 201)
    assert reg["status"] == "ADDITIONAL_INFO_REQUIRED"
    path = f"/registrations/{reg['registrationId']}/additional-info"
    problem = await post(http, path, {"documents": [{"type": "MANDAT_IMMATRICULATION", "reference": "m-1"}]}, 422)
    assert [e["field"] for e in problem["errors"]] == ["owner.driverLicense"]
    done = await post(http, path, {"documents": [{"type": "MANDAT_IMMATRICULATION", "reference": "m-1"}],
                                   "values": {"owner.driverLicense": "130175200123"}}, 200)
    assert done["status"] == "APPROVED" and FR_PATTERN.match(done["plateNumber"])
    magic = await post(http, "/registrations", example("additionalInfo"), 201)
    assert magic["status"] == "ADDITIONAL_INFO_REQUIRED"


async def test_rejection_and_unavailability(ants):
    stack, http = ants
    rejected = await post(http, "/registrations", example("rejected"), 201)
    assert rejected["rejection"]["code"] == "TYPE_APPROVAL_MISMATCH"
    down = await post(http, "/registrations", example(taxId="0000000003003"), 503)
    assert down["manualSubmission"]["url"] == "https://immatriculation.ants.gouv.fr"
    await stack.clock.advance_to(parse_datetime("2026-01-11T04:00:00Z"))  # Sunday 05:00 in Paris
    maintenance = await post(http, "/registrations", example(), 503)
    assert maintenance["reason"] == "MAINTENANCE" and maintenance["availableAgainAt"] == "2026-01-11T05:00:00.000Z"
    async with http.get(f"/registrations/{rejected['registrationId']}") as r:
        assert r.status == 503  # the whole registry is down, reads included
    async with http.get("/availability") as r:
        assert (await r.json())["status"] == "UNAVAILABLE"


@pytest.mark.parametrize("tax_id,message", [
    ("3023217600054", "key (last three digits) should be 053"),
    ("4023217600053", None),  # the first digit is 0-3: a contract violation (400), not a 422
])
async def test_numero_fiscal_key(ants, tax_id, message):
    stack, http = ants
    async with http.post("/registrations", json=example(taxId=tax_id)) as r:
        problem = await r.json()
    if message is None:
        assert r.status == 400
        stack.service(NAME).journal.clear()  # the violation is the point here
    else:
        assert r.status == 422 and message in problem["errors"][0]["message"]


async def test_company_identifiers(ants):
    _stack, http = ants
    siren = example("company", taxId="732829320")
    assert (await post(http, "/registrations", siren, 201))["status"] == "APPROVED"
    bad = await post(http, "/registrations", example("company", taxId="73282932000079"), 422)
    assert "SIRET 73282932000079" in bad["detail"]
