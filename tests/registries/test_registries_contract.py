"""The registry contracts: schemathesis against the running simulators, and the contracts' own honesty.

Every default check, positive and negative data and the stateful links of each
contract. The schemas are loaded at module level (from_fixture breaks on pytest
9.2, DESIGN.md); one stack serves every registry on real sockets. The registries
are the service catalogue's (its rows with a country): a new country is fuzzed
and checked here as soon as it has its row.
"""

import asyncio
import copy
import functools
import importlib
from pathlib import Path

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, settings

import caas_sim.simulators.registries
from caas_sim import catalogue
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.config import SimConfig
from caas_sim.simulators.kit.contract import CONTRACTS_DIR, Contract
from caas_sim.simulators.registries import vocabulary as base
from caas_sim.simulators.registries.api import MODEL_KEY
from tests.fuzzing import contract_schema, on_stack, outbound_violations, run_stateful

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.registries.test_registries_contract")

SERVICES = tuple(e.name for e in catalogue.REGISTRY_COUNTRIES.values())
IDS = [name.removeprefix("registry-") for name in SERVICES]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
# What the contracts say a schema cannot express: 422 for the semantic rules (check
# digits, dates against the clock, engine and power consistency), 409 for a VIN that
# already has a registration or information supplied to one that did not ask for it.
SCHEMAS = {name: contract_schema(catalogue.entry(name).contract, semantic=("409", "422")) for name in SERVICES}
# One stack of every registry for every test of this module that runs against it.
STACK = on_stack(*SERVICES)


def _conforms(name: str):
    """The fuzz test of one registry: a test function of its own (schemathesis parametrizes
    one schema per function), so that each registry keeps its own test id."""
    @STACK
    @SCHEMAS[name].parametrize()
    @FUZZ
    def test(case, threaded_stack):
        case.call_and_validate(base_url=threaded_stack.url(name))

    test.__name__ = test.__qualname__ = f"test_{name.replace('-', '_')}_conforms"
    return test


for _name in SERVICES:  # test_registry_es_conforms, test_registry_fr_conforms, ...
    globals()[f"test_{_name.replace('-', '_')}_conforms"] = _conforms(_name)


@STACK
@pytest.mark.parametrize("name", SERVICES, ids=IDS)
def test_stateful_links(name, threaded_stack):
    run_stateful(SCHEMAS[name], threaded_stack.url(name), examples=10, steps=5)


@STACK
def test_no_outbound_contract_violation(threaded_stack):
    """After the fuzzers of this module (one worker runs a whole file): what we answered conformed."""
    assert outbound_violations(threaded_stack, *SERVICES) == []


# --- the contracts themselves --------------------------------------------------------

@functools.cache
def _doc(name):
    return yaml.load((CONTRACTS_DIR / catalogue.entry(name).contract).read_text(), Loader=yaml.CSafeLoader)


SHARED = ("Problem", "Violation", "FieldError", "InvalidDataProblem", "ConflictProblem", "UnavailableProblem",
          "Money", "EngineType", "Vehicle", "TypeApprovalNumber", "Purchase", "Insurance", "Document",
          "RegistrationRequest", "RegistrationStatus", "Rejection", "RequiredInfo", "HistoryEntry", "Date",
          "Instant", "Identifier")


@pytest.mark.parametrize("name", SHARED)
def test_the_shared_parts_of_the_registry_contracts_do_not_drift(name):
    schemas = [_doc(service)["components"]["schemas"][name] for service in SERVICES]
    for other in schemas[1:]:
        assert other == schemas[0], f"{name} differs between registry contracts"


@pytest.mark.parametrize("name", SERVICES, ids=IDS)
def test_model_vocabulary_matches_the_contract(name):
    doc = _doc(name)["components"]["schemas"]
    module = importlib.import_module(catalogue.entry(name).module)
    country = module.COUNTRY
    assert (country.service, country.iso) == (name, catalogue.entry(name).country)
    assert set(doc["RegistrationStatus"]["enum"]) == set(base.STATUSES)
    assert tuple(doc["Rejection"]["properties"]["code"]["enum"]) == base.REJECTION_CODES
    assert tuple(doc["DocumentType"]["enum"]) == country.document_types
    assert set(country.required_documents) <= set(country.document_types)
    assert doc["InfoField"]["enum"] == [*base.VALUE_FIELDS, *(f"documents.{t}" for t in country.document_types)]
    assert set(base.MAGIC_INFO_FIELDS) <= set(doc["InfoField"]["enum"])
    assert doc["Registration"]["properties"]["integrationMethod"]["const"] == country.method.value
    assert doc["Registration"]["properties"]["country"]["const"] == country.iso
    assert doc["RegistrationDocument"]["properties"]["type"]["const"] == country.registration_document
    assert set(doc["AdditionalInfo"]["properties"]["values"]["properties"]) == set(base.VALUE_FIELDS)
    description = _doc(name)["info"]["description"]
    for tax_id in country.magic_tax_ids:
        assert f"`{tax_id}`" in description
    # Every domain fault the model registers is documented.
    app = module.create_app(SimConfig(seed=0))
    registered = {spec.name for spec in app[MODEL_KEY].service.faults.specs.values() if spec.kind == "domain"}
    assert registered and registered <= set(description.split("`"))


EXPECTED = {  # example name -> status once the create answer is given and every timer has run
    "approved": "PLATE_ASSIGNED", "company": "PLATE_ASSIGNED", "additionalInfo": "ADDITIONAL_INFO_REQUIRED",
    "rejected": "REJECTED", "slow": "PLATE_ASSIGNED",
}


@pytest.mark.parametrize("name", SERVICES, ids=IDS)
async def test_every_documented_example_does_what_its_summary_says(name):
    """The request examples of a contract, posted to a fresh simulator, end as documented."""
    examples = _doc(name)["paths"]["/registrations"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == set(EXPECTED)
    async with Stack(services=[name], seed=0) as stack, aiohttp.ClientSession(stack.url(name)) as http:
        ids = {}
        for key, example in examples.items():
            async with http.post("/registrations", json=example["value"]) as r:
                assert r.status in (201, 202), (key, await r.text())
                ids[key] = (await r.json())["registrationId"]
        await stack.advance("40d")
        model = stack.running[name].app[MODEL_KEY]
        assert {key: model.registrations[i].status for key, i in ids.items()} == EXPECTED
        info = _doc(name)["paths"]["/registrations/{registrationId}/additional-info"]["post"]["requestBody"]
        body = info["content"]["application/json"]["examples"]["magic"]["value"]
        async with http.post(f"/registrations/{ids['additionalInfo']}/additional-info", json=body) as r:
            assert r.status in (200, 202)
        await stack.advance("40d")
        assert model.registrations[ids["additionalInfo"]].status == "PLATE_ASSIGNED"
        assert stack.violations() == []


@pytest.mark.parametrize("name", SERVICES, ids=IDS)
async def test_the_shipped_fault_profile_loads_and_applies_in_every_registry(name):
    profile = Path(caas_sim.simulators.registries.__file__).parent / "profiles" / "bad-week.yaml"
    examples = _doc(name)["paths"]["/registrations"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    async with Stack(services=[name], seed=2, fault_profiles={name: str(profile)}) as stack, \
            aiohttp.ClientSession(stack.url(name)) as http:
        await stack.advance("3h")  # inside the outage window

        async def submit(i):
            body = copy.deepcopy(examples["approved"]["value"])
            body["vehicle"]["vin"] = body["vehicle"]["vin"][:11] + f"{i:06d}"
            async with http.post("/registrations", json=body) as r:
                return r.status

        # Injected latency is a wait on the virtual clock: the answers come as it advances.
        pending = asyncio.gather(*(submit(i) for i in range(10)))
        await stack.advance("1m")
        assert set(await asyncio.wait_for(pending, timeout=10)) == {503}
        await stack.advance("4h")
        pending = asyncio.gather(*(submit(i) for i in range(10, 50)))
        await stack.advance("1m")
        assert set(await asyncio.wait_for(pending, timeout=10)) <= {201, 202}
        await stack.advance("30d")
        applied = {e["ruleId"] for e in stack.service(name).journal.entries() if e["kind"] == "fault"}
        assert {"api-slow", "outage", "backlog", "policy-change"} <= applied
        assert stack.violations() == []


@pytest.mark.parametrize("name", SERVICES, ids=IDS)
def test_the_contracts_own_examples_conform(name):
    """Request, response and webhook examples are checked against their own schemas."""
    doc = _doc(name)
    contract = Contract(CONTRACTS_DIR / catalogue.entry(name).contract)
    checked = 0
    for op in contract.operations.values():
        spec = doc["paths"][op.path][op.method.lower()]
        body = spec.get("requestBody", {}).get("content", {}).get("application/json", {})
        for example in body.get("examples", {}).values():
            assert op.body.is_valid(example["value"]), example["summary"]
            checked += 1
        for status, response in spec["responses"].items():
            response = contract._resolve(response)
            for media in response.get("content", {}).values():
                if "example" in media:
                    assert op.check_response(int(status), media["example"]) == [], (op.id, status)
                    checked += 1
    for webhook, item in doc.get("webhooks", {}).items():
        for example in item["post"]["requestBody"]["content"]["application/json"]["examples"].values():
            assert contract.check_webhook(webhook, example["value"]) == [], example["summary"]
            checked += 1
    assert checked >= 12
