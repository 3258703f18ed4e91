"""schemathesis over the admin protocol, as every simulator serves it."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from simulators.kit.contract import CONTRACTS_DIR

schema = schemathesis.openapi.from_path(CONTRACTS_DIR / "admin.yaml")
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# A well-formed rule can still name a domain fault this simulator does not have (400),
# or a time the clock cannot move to (409): the schema cannot know either.
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses, "400"]


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_admin_operations_conform(case, threaded_stack):
    case.call_and_validate(base_url=threaded_stack.url("iot"))
