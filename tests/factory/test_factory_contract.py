"""schemathesis against the running factory simulator, from contracts/factory.yaml.

Every default check, positive and negative data, and the stateful links of the
contract (place an order, read it, find it by reference, ask for its home
delivery). The schema is loaded at module level (from_fixture breaks on pytest
9.2, DESIGN.md) and the base URL comes from a simulator on a real socket. The
clock never moves here, so orders stay in production: delivery requests meet
409, as the contract says they do.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from simulators.kit.contract import CONTRACTS_DIR

schema = schemathesis.openapi.from_path(CONTRACTS_DIR / "factory.yaml")
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# 422 is the contract's answer to what a schema cannot say: an order the factory
# rejects (options a model does not offer), a delivery window that holds no slot,
# an Idempotency-Key reused with another body.
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses, "422"]
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def factory(threaded_stack):
    return threaded_stack


on_factory = pytest.mark.parametrize("threaded_stack", [{"services": ["factory"], "seed": 0}], indirect=True)


@on_factory
@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case, factory):
    case.call_and_validate(base_url=factory.url("factory"))


@on_factory
def test_stateful_links(factory):
    schema.config.update(base_url=factory.url("factory"))
    workflow = schema.as_state_machine()
    workflow.run(settings=settings(max_examples=15, stateful_step_count=6, deadline=None, derandomize=True,
                                   suppress_health_check=list(HealthCheck)))
    # The links were followed from real orders, and whatever the fuzzers of this process sent,
    # what we answered and notified (ORDER_PLACED webhooks) conformed. Checked here, not in a
    # test of its own, because xdist may run such a test in another process with another stack.
    entries = factory.service("factory").journal.entries()
    assert any(e.get("operation") == "getOrder" and e.get("status") == 200 for e in entries)
    assert [e for e in entries if e["kind"] == "violation" and e["direction"] == "out"] == []


def test_the_python_catalogue_and_rules_agree_with_the_contract():
    """The codes the model uses are the contract's enums: no second copy may drift."""
    from simulators.factory import catalogue, model, timeline, transport

    schemas = schema.raw_schema["components"]["schemas"]
    enum = lambda name: set(schemas[name]["enum"])
    assert enum("ModelCode") == set(catalogue.MODELS)
    assert enum("OptionCode") == set(catalogue.OPTIONS)
    assert enum("RejectionReason") == set(catalogue.REJECTION_REASONS)
    assert enum("OrderStatus") == set(model.STATUSES)
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
