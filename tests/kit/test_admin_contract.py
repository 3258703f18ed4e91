"""schemathesis over the admin protocol, as every simulator serves it."""

from tests.fuzzing import FUZZ, contract_schema, on_stack

# A well-formed rule can still name a domain fault this simulator does not have (400).
schema = contract_schema("admin.yaml", semantic=("400",))


@on_stack("iot")
@schema.parametrize()
@FUZZ
def test_admin_operations_conform(case, threaded_stack):
    case.call_and_validate(base_url=threaded_stack.url("iot"))
