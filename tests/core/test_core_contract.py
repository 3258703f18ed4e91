"""schemathesis against the running core, from contracts/core.yaml, with auth, on
SQLite and on PostgreSQL. Admin routes are left out: reset and clock moves would
pull the world from under the fuzzer (admin.yaml is fuzzed on its own)."""

import asyncio
import os
import threading
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from caas_sim import catalogue
from caas_sim.scenarios.stack import Stack
from tests.fuzzing import contract_schema, outbound_violations, run_stateful

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.core.test_core_contract")

POSTGRES_URL = os.environ.get("CAAS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
KEYS = {"k-ops": {"role": "operator", "subject": "ops"}}
SIMULATORS = list(catalogue.NAMES)
# Valid-looking requests the core may still refuse: unknown customers' vehicles and services
# (404), a refused purchase (422: maintenance, duration, declined card), the payment gateway
# down (503), and webhooks, whose generated signatures can never be valid (401).
def core_schema():
    return contract_schema("core.yaml", semantic=("401", "404", "409", "422", "503")).exclude(tag="admin")


schema = core_schema()
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def core(request, tmp_path_factory):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    run = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)
    database, admin = None, None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('core') / 'core.db'}"
    else:
        database = f"caas_{uuid.uuid4().hex[:12]}"
        try:
            admin = run(asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")))
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(f"PostgreSQL is required at {POSTGRES_URL} ({exc})", pytrace=False)
        run(admin.execute(f'CREATE DATABASE "{database}"'))
        url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{database}"
    stack = Stack(services=SIMULATORS, seed=0, core={"database_url": url, "api_keys": KEYS})
    run(stack.start())
    yield stack
    run(stack.stop())
    if database:
        run(admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)'))
        run(admin.close())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


AUTH = {"Authorization": "Bearer k-ops"}


@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case, core):
    case.call_and_validate(base_url=core.url("core"), headers=AUTH)


class OperatorKey:
    """The fuzzer authenticates as an operator; the ignored-auth check still tries without."""

    def get(self, case, context):
        return "k-ops"

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def test_stateful_links(core):
    stateful = core_schema()  # a schema per stack: the state machine keeps the first base URL it saw
    stateful.auth()(OperatorKey)
    run_stateful(stateful, core.url("core"), examples=15, steps=4, fresh=False)  # the simulators' journals stay


def test_the_core_broke_no_simulator_contract(core):
    assert outbound_violations(core, *SIMULATORS) == []
    found = [e for name in SIMULATORS for e in core.service(name).journal.violations()]
    assert found == [], [e.get("violation") for e in found]
