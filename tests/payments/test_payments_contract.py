"""schemathesis against the running payment gateway simulator, from contracts/payments.yaml.

Every default check, positive and negative data, and the stateful links of the
contract (store a method, charge it, read it, refund it). The schema is loaded
at module level (from_fixture breaks on pytest 9.2, DESIGN.md) and the base URL
comes from a simulator on a real socket.
"""

import pytest

from tests.fuzzing import (
    FUZZ,
    contract_schema,
    on_stack,
    outbound_violations,
    run_stateful,
)

# What a schema cannot say: 422 for an unknown token, a card number failing its
# check digit, a refund above what is refundable, an Idempotency-Key reused; 402
# for a card the issuer refuses to store (an expiry date already past is valid
# JSON but declined).
schema = contract_schema("payments.yaml", semantic=("402", "422"))
pytestmark = [pytest.mark.xdist_group("tests.payments.test_payments_contract"), on_stack("payments")]


@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case, threaded_stack):
    case.call_and_validate(base_url=threaded_stack.url("payments"))


def test_stateful_links(threaded_stack):
    run_stateful(schema, threaded_stack.url("payments"))


def test_no_outbound_contract_violation(threaded_stack):
    """Run last in this module: whatever the fuzzer sent, what we answered conformed."""
    assert outbound_violations(threaded_stack, "payments") == []
