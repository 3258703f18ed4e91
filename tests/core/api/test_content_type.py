"""A JSON body under any other media type is refused before anything happens: 415
problem+json naming application/json on every operation of contracts/core.yaml that takes
one (400 on the webhook receivers, whose contract answers 204, 400 or 401), and nothing is
charged, stored or queued. ``application/json; charset=utf-8`` is JSON."""

import orjson
import pytest
import requests
from sqlalchemy import func, select

from caas_core.store.schema import webhook_inbox
from caas_sim import catalogue
from caas_sim.simulators.kit.contract import Contract
from tests.security.live import KEY_OF, KEYS, WEBHOOK_SECRET, LiveCore
from tests.security.test_webhook_receivers import signed

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.core.api.test_content_type")

PURCHASE = orjson.dumps({"serviceId": "heated-seats", "durationType": "PERMANENT",
                         "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}})
NOT_JSON = ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]  # None: no Content-Type
JSON_BODIES = [op for op in Contract("core.yaml").operations.values() if op.body is not None]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    db = tmp_path_factory.mktemp("core") / "core.db"
    secrets = dict.fromkeys(catalogue.WEBHOOK_SENDERS, WEBHOOK_SECRET)
    with LiveCore(services=["iot", "vss", "payments"], seed=0, with_sink=False,
                  core={"database_url": f"sqlite+aiosqlite:///{db}", "api_keys": KEYS,
                        "webhook_secrets": secrets}) as live:
        yield live


def post(url: str, body: bytes, content_type: str | None, key: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if content_type:
        headers["Content-Type"] = content_type
    # requests adds no Content-Type of its own to bytes
    return requests.post(url, data=body, headers=headers, timeout=30)


def assert_415(r: requests.Response) -> None:
    assert r.status_code == 415, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["status"] == 415 and "application/json" in r.json()["detail"]
    assert r.headers["Accept-Post"] == "application/json"


def test_a_purchase_not_sent_as_json_is_415_and_charges_nothing(live):
    from caas_sim.simulators.iot.api import MODEL_KEY

    vin = live.stack.running["iot"].app[MODEL_KEY].fleet.magic_vins()["healthy"]
    url, key = f"{live.url}/customers/c-1/vehicles/{vin}/purchases", KEY_OF["customer", "c-1"]
    for content_type in NOT_JSON:
        assert_415(post(url, PURCHASE, content_type, key))
    purchases = requests.get(f"{live.url}/customers/c-1/purchases", headers={"Authorization": f"Bearer {key}"},
                             timeout=30)
    assert purchases.json() == {"purchases": []}
    payments = [e for e in live.stack.service("payments").journal.entries() if e.get("operation") == "initiatePayment"]
    assert payments == []
    # the very same body, labelled JSON, is a purchase: the refusals above were for the label alone
    r = post(url, PURCHASE, "application/json; charset=utf-8", key)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("op", [op for op in JSON_BODIES if not op.path.startswith("/caas/webhooks/")], ids=lambda op: op.id)
def test_every_operation_taking_json_refuses_other_media_types(live, op):
    assert op.method == "POST"
    path = op.path.replace("{", "").replace("}", "")  # 415 comes before any lookup of the path's ids
    for content_type in NOT_JSON:
        assert_415(post(live.url + path, b"{}", content_type, KEY_OF["operator", "ops"]))


@pytest.mark.parametrize("op", [op for op in JSON_BODIES if op.path.startswith("/caas/webhooks/")], ids=lambda op: op.id)
def test_a_signed_webhook_labelled_otherwise_is_400_and_not_stored(live, op):
    body = b'{"status": "SETTLED"}'
    headers = signed(body)
    r = requests.post(live.url + op.path, data=body, headers={**headers, "content-type": "text/plain"}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/webhook-body") and "application/json" in r.json()["detail"]

    async def stored():
        async with live.core.db.transaction(readonly=True) as conn:
            return await conn.scalar(select(func.count()).select_from(webhook_inbox).where(
                webhook_inbox.c.webhook_id == headers["webhook-id"]))

    assert live.call(stored()) == 0
