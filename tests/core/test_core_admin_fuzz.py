"""schemathesis over the core's admin operations (left out of test_core_contract.py, where a
reset or clock move would pull the world from under the other fuzzers): an isolated core,
every check, positive and negative data, seeded. The audit must stay a clean 200."""

import pytest

from tests.fuzzing import FUZZ, contract_schema

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.core.test_core_admin_fuzz")

schema = contract_schema("core.yaml", semantic=("409",)).include(tag="admin")


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    from tests.security.live import KEYS, LiveCore

    db = tmp_path_factory.mktemp("core") / "core.db"
    with LiveCore(services=["iot"], seed=0, with_sink=False,
                  core={"database_url": f"sqlite+aiosqlite:///{db}", "api_keys": KEYS}) as live:
        yield live


@schema.parametrize()
@FUZZ
def test_every_admin_operation_conforms(case, core):
    case.call_and_validate(base_url=core.url)
