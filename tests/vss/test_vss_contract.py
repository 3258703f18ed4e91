"""schemathesis against the running VSS simulator, from contracts/vss.yaml and
contracts/vss-workshop.yaml (two contracts, one server).

Every default check, positive and negative data, and the stateful links of each
contract. The schemas are loaded at module level (from_fixture breaks on pytest
9.2, DESIGN.md) and the base URL comes from a simulator on a real socket.
"""

import jsonschema_rs
import pytest

from caas_sim.simulators.kit.contract import Contract
from caas_sim.simulators.vss import plans as pl
from caas_sim.simulators.vss.api import CONTRACT, WORKSHOP_CONTRACT
from caas_sim.simulators.vss.vehicles import MAGIC_SERIALS
from caas_sim.simulators.vss.workshops import DEFAULT_WORKSHOPS
from tests.fuzzing import (
    FUZZ,
    contract_schema,
    on_stack,
    outbound_violations,
    run_stateful,
)

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.vss.test_vss_contract")

core = contract_schema(CONTRACT)
# 422 is the workshop contract's answer to what a schema cannot say: a service
# type outside the vehicle's plan, a date in the future or before delivery, a
# mileage below an earlier reading, an Idempotency-Key reused with another body.
workshop = contract_schema(WORKSHOP_CONTRACT, semantic=("422",))
VSS = on_stack("vss")


@VSS
@core.parametrize()
@FUZZ
def test_every_core_operation_conforms(case, threaded_stack):
    case.call_and_validate(base_url=threaded_stack.url("vss"))


@VSS
@workshop.parametrize()
@FUZZ
def test_every_workshop_operation_conforms(case, threaded_stack):
    case.call_and_validate(base_url=threaded_stack.url("vss"))


@VSS
@pytest.mark.parametrize("schema", [core, workshop], ids=["core", "workshop"])
def test_stateful_links(schema, threaded_stack):
    run_stateful(schema, threaded_stack.url("vss"), examples=15, steps=4)


@VSS
def test_no_outbound_contract_violation(threaded_stack):
    """After the fuzzers of this module (one worker runs a whole file): what we answered conformed."""
    assert outbound_violations(threaded_stack, "vss") == []


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
    from caas_sim.simulators.fleet import Fleet
    fleet = Fleet(0)
    example = _schemas(CONTRACT)["MagicVins"]["examples"][0]["vins"]
    assert example == {name: fleet.vin_at(serial) for serial, name in MAGIC_SERIALS.items()}

