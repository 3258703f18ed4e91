"""schemathesis against the running IoT simulator, from contracts/iot.yaml.

Every default check, positive and negative data, and the stateful links of the
contract. The schema is loaded at module level (from_fixture breaks on pytest
9.2, DESIGN.md) and the base URL comes from a simulator on a real socket.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from simulators.kit.contract import CONTRACTS_DIR

schema = schemathesis.openapi.from_path(CONTRACTS_DIR / "iot.yaml")
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# 422 is the contract's answer to what a schema cannot say: an expiryDate in the
# past, a feature flag the vehicle's firmware lacks, an Idempotency-Key reused.
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses, "422"]
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def iot(threaded_stack):
    return threaded_stack


@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case, iot):
    case.call_and_validate(base_url=iot.url("iot"))


def test_stateful_links(iot):
    schema.config.update(base_url=iot.url("iot"))
    workflow = schema.as_state_machine()
    workflow.run(settings=settings(max_examples=25, stateful_step_count=6, deadline=None, derandomize=True,
                                   suppress_health_check=list(HealthCheck)))


def test_no_outbound_contract_violation(iot):
    """Run last in this module: whatever the fuzzer sent, what we answered conformed."""
    outbound = [e for e in iot.service("iot").journal.entries() if e["kind"] == "violation" and e["direction"] == "out"]
    assert outbound == []
