"""schemathesis against the running payment gateway simulator, from contracts/payments.yaml.

Every default check, positive and negative data, and the stateful links of the
contract (store a method, charge it, read it, refund it). The schema is loaded
at module level (from_fixture breaks on pytest 9.2, DESIGN.md) and the base URL
comes from a simulator on a real socket.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from simulators.kit.contract import CONTRACTS_DIR

schema = schemathesis.openapi.from_path(CONTRACTS_DIR / "payments.yaml")
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# What a schema cannot say: 422 for an unknown token, a card number failing its
# check digit, a refund above what is refundable, an Idempotency-Key reused; 402
# for a card the issuer refuses to store (an expiry date already past is valid
# JSON but declined).
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses, "402", "422"]
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def payments(threaded_stack):
    return threaded_stack


pytestmark = pytest.mark.parametrize("threaded_stack", [{"services": ["payments"], "seed": 0}], indirect=True)


@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case, payments):
    case.call_and_validate(base_url=payments.url("payments"))


def test_stateful_links(payments):
    schema.config.update(base_url=payments.url("payments"))
    workflow = schema.as_state_machine()
    workflow.run(settings=settings(max_examples=25, stateful_step_count=6, deadline=None, derandomize=True,
                                   suppress_health_check=list(HealthCheck)))


def test_no_outbound_contract_violation(payments):
    """Run last in this module: whatever the fuzzer sent, what we answered conformed."""
    outbound = [e for e in payments.service("payments").journal.entries()
                if e["kind"] == "violation" and e["direction"] == "out"]
    assert outbound == []
