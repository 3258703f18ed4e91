"""Admin routes need a token when one is set, and always off loopback; every request body
has a size limit (413, problem+json) on every operation that takes one."""

import time

import orjson
import pytest
import requests

from caas_core.api.app import MAX_BODY
from tests.security.contract_ops import of_kind, operations
from tests.security.live import ADMIN_TOKEN, KEYS, LiveCore
from tests.security.test_webhook_receivers import signed

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.security.test_admin_and_limits")

ADMIN = of_kind("admin")
WITH_BODY = [op for op in operations() if op.method in ("POST", "PUT", "PATCH")]
OFF_LOOPBACK = "192.0.2.2"  # this machine's own non-loopback address (see hostname -I)


def core(tmp_path, **settings):
    return LiveCore(services=["iot"], seed=0, with_sink=False,
                    core={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", "api_keys": KEYS,
                          **settings})


def admin_call(url, op, headers):
    return requests.request(op.method, url + op.path, headers=headers, json=op.body_example, timeout=30)


def test_every_admin_route_needs_the_token_once_one_is_set(tmp_path):
    assert {op.op_id for op in ADMIN} >= {"getHealth", "getClock", "moveClock", "reset", "getAudit"}
    with core(tmp_path, admin_token=ADMIN_TOKEN) as live:
        for op in ADMIN:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN},
                            {"Authorization": "Bearer key-ops-s3cr3t"}):  # an API key is not the admin token
                r = admin_call(live.url, op, headers)
                assert r.status_code == 401, (op, headers, r.status_code)
                assert r.headers["Content-Type"].startswith("application/problem+json")
            r = admin_call(live.url, op, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert r.status_code == 200, (op, r.status_code, r.text)


def test_off_loopback_admin_routes_refuse_callers_without_a_token(tmp_path):
    import socket

    try:
        socket.create_server((OFF_LOOPBACK, 0)).close()
    except OSError:
        pytest.fail(f"{OFF_LOOPBACK} is not an address of this machine: set OFF_LOOPBACK to one", pytrace=False)
    live = core(tmp_path)
    live.stack.host = OFF_LOOPBACK
    with live:
        for op in ADMIN:
            r = admin_call(live.url, op, {})
            assert r.status_code == 401, (op, r.status_code, r.text)
        # the customer API is not admin: it answers as usual
        r = requests.get(live.url + "/catalogue/services", headers={"Authorization": "Bearer key-ops-s3cr3t"},
                         timeout=30)
        assert r.status_code == 200


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with core(tmp_path_factory.mktemp("core"), admin_token=ADMIN_TOKEN) as live:
        yield live


@pytest.mark.parametrize("op", WITH_BODY, ids=str)
def test_every_request_body_has_a_size_limit(live, op):
    big = orjson.dumps({"padding": "x" * (MAX_BODY + 1)})
    headers = {"Content-Type": "application/json", "Authorization": "Bearer key-ops-s3cr3t"}
    if op.access == "webhook":
        headers = signed(big)
    elif op.access == "admin":
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    path = op.path.replace("{customerId}", "c-1").replace("{vin}", "1HGCM82633A004352").replace(
        "{purchaseId}", "pur_x")
    started = time.perf_counter()
    r = requests.request(op.method, live.url + path, data=big, headers=headers, timeout=30)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["status"] == 413
    assert time.perf_counter() - started < 30  # answered, not hung on the body
