"""schemathesis against the running factory simulator, from contracts/factory.yaml.

Every default check, positive and negative data, and the stateful links of the
contract (place an order, read it, find it by reference, ask for its home
delivery). The schema is loaded at module level (from_fixture breaks on pytest
9.2, DESIGN.md) and the base URL comes from a simulator on a real socket. The
clock never moves here, so orders stay in production: delivery requests meet
409, as the contract says they do.
"""

import pytest

from tests.fuzzing import (
    FUZZ,
    contract_schema,
    on_stack,
    outbound_violations,
    run_stateful,
)

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.factory.test_factory_contract")

# 422 is the contract's answer to what a schema cannot say: an order the factory
# rejects (options a model does not offer), a delivery window that holds no slot,
# an Idempotency-Key reused with another body.
schema = contract_schema("factory.yaml", semantic=("422",))
FACTORY = on_stack("factory")


@FACTORY
@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case, threaded_stack):
    case.call_and_validate(base_url=threaded_stack.url("factory"))


@FACTORY
def test_stateful_links(threaded_stack):
    emptied = run_stateful(schema, threaded_stack.url("factory"), examples=15)
    # The links were followed from real orders, not only from fuzzed ids.
    entries = emptied + threaded_stack.service("factory").journal.entries()
    assert any(e.get("operation") == "getOrder" and e.get("status") == 200 for e in entries)


@FACTORY
def test_no_outbound_contract_violation(threaded_stack):
    """After the fuzzers of this module (one worker runs a whole file): answers and webhooks conformed."""
    assert outbound_violations(threaded_stack, "factory") == []


def test_the_python_catalogue_and_rules_agree_with_the_contract():
    """The codes the model uses are the contract's enums: no second copy may drift."""
    from caas_sim.simulators.factory import catalogue, model, order, timeline, transport

    schemas = schema.raw_schema["components"]["schemas"]
    enum = lambda name: set(schemas[name]["enum"])
    assert enum("ModelCode") == set(catalogue.MODELS)
    assert enum("OptionCode") == set(catalogue.OPTIONS)
    assert enum("RejectionReason") == set(catalogue.REJECTION_REASONS)
    assert enum("OrderStatus") == set(order.STATUSES)
    assert set(schemas["Milestone"]["properties"]["code"]["enum"]) == {
        code for code, _ in timeline.ASSEMBLY_MILESTONES + timeline.QC_CHECKPOINTS}
    assert set(schemas["EstimateRevision"]["properties"]["reason"]["enum"]) == {
        *model.DELAY_REASONS, "QC_REWORK", "REPLANNED"}
    assert set(schemas["Catalogue"]["properties"]["models"]["items"]["properties"]["body"]["enum"]) == {
        m.body for m in catalogue.MODELS.values()}
    assert set(schemas["Catalogue"]["properties"]["models"]["items"]["properties"]["powertrain"]["enum"]) == {
        m.powertrain for m in catalogue.MODELS.values()}
    assert set(schemas["DeliveryStatusNotification"]["properties"]["status"]["enum"]) < enum("DeliveryStatus")
    assert {transport.WEBHOOK, model.WEBHOOK} == set(schema.raw_schema["webhooks"])
