"""Every webhook receiver of contracts/core.yaml (generated from `x-caas-access: webhook`)
refuses a missing or wrong signature, a stale or future timestamp (> 5 minutes) and another
source's secret; a replayed webhook-id is acknowledged and not processed twice."""

import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest
import requests
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from caas_core.store.schema import jobs, webhook_inbox
from caas_sim import catalogue
from tests.security.contract_ops import of_kind
from tests.security.live import KEYS, WEBHOOK_SECRET, LiveCore

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.security.test_webhook_receivers")

RECEIVERS = of_kind("webhook")
#: Receiver path -> the service that sends there (the catalogue's senders).
SOURCE = {path: name for name, path in catalogue.WEBHOOK_SENDERS.items()}
OTHER_SECRET = "whsec_" + "YW5vdGhlci1zb3VyY2VzLXNlY3JldC0wMDAwMDAwMA=="


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    db = tmp_path_factory.mktemp("core") / "core.db"
    secrets = {source: WEBHOOK_SECRET for source in SOURCE.values()}
    with LiveCore(services=["iot", "payments"], seed=0, with_sink=False,
                  core={"database_url": f"sqlite+aiosqlite:///{db}", "api_keys": KEYS,
                        "webhook_secrets": secrets}) as live:
        yield live


def signed(body: bytes, *, secret=WEBHOOK_SECRET, webhook_id=None, at: float | None = None) -> dict:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    stamp = datetime.fromtimestamp(int(at if at is not None else time.time()), tz=UTC)
    return {"content-type": "application/json", "webhook-id": webhook_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, stamp, body.decode())}


def post(live, op, body: bytes, headers: dict):
    return requests.post(live.url + op.path, data=body, headers=headers, timeout=30)


def test_every_receiver_is_covered():
    assert {op.path for op in RECEIVERS} == set(SOURCE)
    assert all(op.body_example is not None for op in RECEIVERS)


@pytest.mark.parametrize("op", RECEIVERS, ids=str)
def test_forged_or_stale_webhooks_are_401(live, op):
    body = orjson.dumps(op.body_example)
    good = signed(body)
    cases = {
        "no headers": {"content-type": "application/json"},
        "no signature": {k: v for k, v in good.items() if k != "webhook-signature"},
        "no id": {k: v for k, v in good.items() if k != "webhook-id"},
        "another source's secret": signed(body, secret=OTHER_SECRET),
        "signature of another body": {**good, "webhook-signature": signed(body + b" ")["webhook-signature"]},
        "signature of another id": {**good, "webhook-id": "msg_other"},
        "garbage signature": {**good, "webhook-signature": "v1,not base64!"},
        "unknown version": {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")},
        "stale (6 min)": signed(body, at=time.time() - 360),
        "future (6 min)": signed(body, at=time.time() + 360),
        "timestamp not a number": {**good, "webhook-timestamp": "yesterday"},
    }
    for name, headers in cases.items():
        r = post(live, op, body, headers)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json"), name
    # within the 5 minutes of tolerance, either way, it is accepted
    for skew in (-240, 240):
        assert post(live, op, body, signed(body, at=time.time() + skew)).status_code == 204


@pytest.mark.parametrize("op", RECEIVERS, ids=str)
def test_a_replayed_webhook_id_is_acknowledged_and_processed_once(live, op):
    body = orjson.dumps(op.body_example)
    webhook_id = f"msg_replay_{uuid.uuid4().hex[:12]}"
    for _ in range(3):  # the same delivery again, freshly signed (a sender's retry)
        assert post(live, op, body, signed(body, webhook_id=webhook_id)).status_code == 204
    source = SOURCE[op.path]

    async def counts():
        async with live.core.db.transaction(readonly=True) as conn:
            inbox = await conn.scalar(select(func.count()).select_from(webhook_inbox).where(
                webhook_inbox.c.source == source, webhook_inbox.c.webhook_id == webhook_id))
            work = await conn.scalar(select(func.count()).select_from(jobs).where(
                jobs.c.dedupe_key == f"webhook:{source}:{webhook_id}"))
        return inbox, work

    inbox, work = live.call(counts())
    assert inbox == 1
    assert work <= 1  # sources with a processor: one job; the others are recorded only
