"""Who may call what, generated from the `x-caas-access` markers of contracts/core.yaml:
every operation has one; unknown or missing keys are 401; roles the marker does not list
are 403; a customer key on another customer's resource is 403, on its own it passes."""

import pytest
import requests

from tests.security.contract_ops import of_kind, operations
from tests.security.live import KEY_OF, KEYS, LiveCore

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.security.test_access_from_contract")

ROLES = {"customer", "dealership", "operator"}
OWNER_KINDS = {"customerId", "purchase", "sale"}


def test_every_operation_says_who_may_call_it():
    for op in operations():
        access = op.access
        assert access is not None, f"{op} has no x-caas-access marker"
        if isinstance(access, dict):
            assert access["roles"] and set(access["roles"]) <= ROLES, op
            assert set(access) <= {"roles", "owner"}, op
            if "owner" in access:
                assert access["owner"] in OWNER_KINDS, op
                assert access["owner"] in ("purchase", "sale") or "{" + access["owner"] + "}" in op.path, op
        else:
            assert access in ("webhook", "admin"), op
            assert op.path.startswith("/caas/webhooks/" if access == "webhook" else "/__admin/") \
                or (access == "admin" and op.path == "/metrics"), op
    assert {op.op_id for op in of_kind("customer")} >= {"purchaseService", "getPurchase", "listNotifications"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    db = tmp_path_factory.mktemp("core") / "core.db"
    with LiveCore(services=["iot", "vss", "payments", "factory"], seed=0,
                  core={"database_url": f"sqlite+aiosqlite:///{db}", "api_keys": KEYS}) as live:
        from caas_sim.simulators.iot.api import MODEL_KEY

        fleet = live.stack.running["iot"].app[MODEL_KEY].fleet
        live.vins = {"c-1": fleet.magic_vins()["healthy"], "c-2": fleet.vin_at(7)}  # a vehicle each
        # one purchase of each customer, so that `purchase`-owned operations have something to guard
        live.purchases = {}
        for customer in ("c-1", "c-2"):
            r = requests.post(f"{live.url}/customers/{customer}/vehicles/{live.vins[customer]}/purchases",
                              headers=bearer(KEY_OF["customer", customer]), timeout=30,
                              json={"serviceId": "heated-seats", "durationType": "PERMANENT",
                                    "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}})
            assert r.status_code == 201, r.text
            live.purchases[customer] = r.json()["purchaseId"]
        # and one sale each (sold by the test dealership), for `sale`-owned operations
        live.sales = {}
        for customer in ("c-1", "c-2"):
            r = requests.post(f"{live.url}/sales", headers=bearer(KEY_OF["dealership", "ES-MAD-001"]), timeout=30,
                              json=SALE | {"customer": {**SALE["customer"], "customerId": customer}})
            assert r.status_code == 201, r.text
            live.sales[customer] = r.json()["saleId"]
        yield live


SALE = {"customer": {"customerId": "c-1", "firstName": "Ana", "lastName": "Ruiz", "taxId": "12345678Z",
                     "dateOfBirth": "1990-01-01",
                     "address": {"line1": "Calle Mayor 1", "city": "Madrid", "postalCode": "28013", "country": "ES"}},
        "model": "CIRRUS", "price": {"value": 2_500_000, "currency": "EUR"},
        "reservation": {"value": 100_000, "currency": "EUR"},
        "insurance": {"provider": "Mapfre", "policyNumber": "POL-1", "validFrom": "2026-01-01"},
        "dealership": {"city": "Madrid"}}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def call(live, op, *, key: str | None, owner: str = "c-1", raw_auth: str | None = None):
    """Call ``op`` on resources of customer ``owner`` with a valid body (the contract is checked
    before authorisation: a bad body would hide the answer we look for)."""
    values = {"customerId": owner, "vin": live.vins[owner], "purchaseId": live.purchases[owner], "saleId": live.sales[owner],
              "dealershipId": "ES-MAD-001"}
    path = op.path.format(**{k: v for k, v in values.items() if "{" + k + "}" in op.path})
    headers = bearer(key) if key else {}
    if raw_auth is not None:
        headers = {"Authorization": raw_auth}
    return requests.request(op.method, live.url + path, headers=headers, json=op.body_example, timeout=30)


def assert_problem(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["status"] == status


@pytest.mark.parametrize("op", of_kind("customer"), ids=str)
def test_unknown_or_missing_keys_are_401(live, op):
    for auth in (None, "Bearer not-a-key", "Basic a2V5OnM=", "Bearer ", "bearer key-cust-1-s3cr3tX"):
        r = call(live, op, key=None, raw_auth=auth)
        assert_problem(r, 401)
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.mark.parametrize("op", of_kind("customer"), ids=str)
def test_roles_not_listed_are_403(live, op):
    for role in ROLES - set(op.roles):
        key = next(k for (r, _), k in KEY_OF.items() if r == role)
        assert_problem(call(live, op, key=key), 403)


@pytest.mark.parametrize("op", [op for op in of_kind("customer") if op.owner], ids=str)
def test_another_customers_resource_is_403_and_ones_own_is_not(live, op):
    assert "customer" in op.roles
    assert_problem(call(live, op, key=KEY_OF["customer", "c-2"], owner="c-1"), 403)
    assert_problem(call(live, op, key=KEY_OF["customer", "c-1"], owner="c-2"), 403)
    own = call(live, op, key=KEY_OF["customer", "c-2"], owner="c-2")
    assert own.status_code not in (401, 403), (own.status_code, own.text)
    if "operator" in op.roles:  # staff act for every customer
        r = call(live, op, key=KEY_OF["operator", "ops"], owner="c-1")
        assert r.status_code not in (401, 403), (r.status_code, r.text)


@pytest.mark.parametrize("op", [op for op in of_kind("customer") if not op.owner], ids=str)
def test_listed_roles_pass_where_nothing_is_owned(live, op):
    for role in op.roles:
        key = next(k for (r, _), k in KEY_OF.items() if r == role)
        r = call(live, op, key=key)
        assert r.status_code not in (401, 403), (op, role, r.status_code, r.text)
