"""schemathesis over the admin protocol, as every simulator serves it."""

import pytest

from tests.fuzzing import FUZZ, contract_schema, on_stack

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.kit.test_admin_contract")

# A well-formed rule can still name a domain fault this simulator does not have (400).
schema = contract_schema("admin.yaml", semantic=("400",))


@on_stack("iot")
@schema.parametrize()
@FUZZ
def test_admin_operations_conform(case, threaded_stack):
    case.call_and_validate(base_url=threaded_stack.url("iot"))
