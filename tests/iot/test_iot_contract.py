"""schemathesis against the running IoT simulator, from contracts/iot.yaml."""

from tests.fuzzing import (
    FUZZ,
    contract_schema,
    on_stack,
    outbound_violations,
    run_stateful,
)

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
