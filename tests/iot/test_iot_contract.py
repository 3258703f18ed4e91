"""schemathesis against the running IoT simulator, from contracts/iot.yaml."""

import pytest

from tests.fuzzing import (
    FUZZ,
    contract_schema,
    on_stack,
    outbound_violations,
    run_stateful,
)

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.iot.test_iot_contract")

# 422: an expiryDate in the past, a feature flag the vehicle's firmware lacks, an Idempotency-Key reused.
schema = contract_schema("iot.yaml", semantic=("422",))
IOT = on_stack("iot")


@IOT
@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case, threaded_stack):
    case.call_and_validate(base_url=threaded_stack.url("iot"))


@IOT
def test_stateful_links(threaded_stack):
    run_stateful(schema, threaded_stack.url("iot"))


@IOT
def test_no_outbound_contract_violation(threaded_stack):
    assert outbound_violations(threaded_stack, "iot") == []
