"""schemathesis against the running VSS simulator, from contracts/vss.yaml and
contracts/vss-workshop.yaml (two contracts, one server).

Every default check, positive and negative data, and the stateful links of each
contract. The schemas are loaded at module level (from_fixture breaks on pytest
9.2, DESIGN.md) and the base URL comes from a simulator on a real socket.
"""

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from simulators.kit.contract import CONTRACTS_DIR, Contract
from simulators.vss import plans as pl
from simulators.vss.api import CONTRACT, WORKSHOP_CONTRACT
from simulators.vss.model import DEFAULT_WORKSHOPS, MAGIC_SERIALS

MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
core = schemathesis.openapi.from_path(CONTRACTS_DIR / CONTRACT)
core.config.generation.update(modes=MODES)
workshop = schemathesis.openapi.from_path(CONTRACTS_DIR / WORKSHOP_CONTRACT)
workshop.config.generation.update(modes=MODES)
# 422 is the workshop contract's answer to what a schema cannot say: a service
# type outside the vehicle's plan, a date in the future or before delivery, a
# mileage below an earlier reading, an Idempotency-Key reused with another body.
workshop.config.checks.positive_data_acceptance.expected_statuses = [
    *workshop.config.checks.positive_data_acceptance.expected_statuses, "422"]
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
STATEFUL = settings(max_examples=15, stateful_step_count=4, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))

VSS_STACK = pytest.mark.parametrize("threaded_stack", [{"services": ["vss"], "seed": 0}], indirect=True)


@pytest.fixture(scope="module")
def vss(threaded_stack):
    return threaded_stack


@VSS_STACK
@core.parametrize()
@FUZZ
def test_every_core_operation_conforms(case, vss):
    case.call_and_validate(base_url=vss.url("vss"))


@VSS_STACK
@workshop.parametrize()
@FUZZ
def test_every_workshop_operation_conforms(case, vss):
    case.call_and_validate(base_url=vss.url("vss"))


@VSS_STACK
def test_core_stateful_links(vss):
    core.config.update(base_url=vss.url("vss"))
    core.as_state_machine().run(settings=STATEFUL)


@VSS_STACK
def test_workshop_stateful_links(vss):
    workshop.config.update(base_url=vss.url("vss"))
    workshop.as_state_machine().run(settings=STATEFUL)


@VSS_STACK
def test_no_outbound_contract_violation(vss):
    """Run last in this module: whatever the fuzzers sent, what we answered conformed."""
    outbound = [e for e in vss.service("vss").journal.entries() if e["kind"] == "violation" and e["direction"] == "out"]
    assert outbound == []


# -------------------------------------------- the contracts agree with the code


def _schemas(name):
    return Contract(name).doc["components"]["schemas"]


def test_enums_of_the_contracts_are_the_plans_and_registry_of_the_code():
    for name in (CONTRACT, WORKSHOP_CONTRACT):
        schemas = _schemas(name)
        assert schemas["BlockCode"]["enum"] == [b.value for b in pl.Block]
        assert set(schemas["ServiceType"]["enum"]) == set(pl.SERVICE_TYPES)
    assert _schemas(CONTRACT)["BlockName"]["enum"] == list(pl.BLOCK_NAMES.values())
    assert _schemas(CONTRACT)["ServiceStatus"]["enum"] == [s.value for s in pl.Status]
    assert set(_schemas(WORKSHOP_CONTRACT)["WorkshopKind"]["enum"]) == {w.kind for w in DEFAULT_WORKSHOPS}
    magic = _schemas(CONTRACT)["MagicVins"]
    assert list(magic["properties"]["vins"]["properties"]) == list(MAGIC_SERIALS.values())
    description = Contract(CONTRACT).doc["info"]["description"]
    assert all(f"`{serial}`" in description and f"`{name}`" in description for serial, name in MAGIC_SERIALS.items())


@pytest.mark.parametrize("name", [CONTRACT, WORKSHOP_CONTRACT])
def test_schema_examples_are_valid(name):
    contract = Contract(name)
    for schema_name, schema in contract.doc["components"]["schemas"].items():
        validator = jsonschema_rs.Draft202012Validator(contract._deref(schema), validate_formats=True)
        for example in schema.get("examples", []):
            assert validator.is_valid(example), (schema_name, list(validator.iter_errors(example))[:1])


def test_magic_vin_examples_are_those_of_seed_0():
    from simulators.iot.fleet import Fleet
    fleet = Fleet(0)
    example = _schemas(CONTRACT)["MagicVins"]["examples"][0]["vins"]
    assert example == {name: fleet.vin_at(serial) for serial, name in MAGIC_SERIALS.items()}

