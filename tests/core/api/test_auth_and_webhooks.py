import time
from datetime import UTC, datetime

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from caas_core.api.auth import authenticate, require_owner, require_role
from caas_core.api.problems import Problem
from caas_core.api.webhook_auth import verify
from caas_core.settings import DEVELOPMENT_SECRET, ApiKey, CoreSettings

KEYS = {"k-cust": ApiKey(role="customer", subject="c-1"), "k-op": ApiKey(role="operator", subject="ops"),
        "k-dealer": ApiKey(role="dealership", subject="d-1")}


@pytest.mark.parametrize("header,status", [(None, 401), ("Basic abc", 401), ("Bearer ", 401), ("Bearer nope", 401)])
def test_who_are_you_is_401_with_a_challenge(header, status):
    with pytest.raises(Problem) as exc:
        authenticate(header, KEYS)
    assert exc.value.status == status and exc.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_not_yours_is_403():
    customer = authenticate("Bearer k-cust", KEYS)
    require_owner(customer, "c-1")
    with pytest.raises(Problem) as exc:
        require_owner(customer, "c-2")
    assert exc.value.status == 403 and "another customer" in exc.value.detail
    with pytest.raises(Problem) as exc:
        require_role(authenticate("Bearer k-dealer", KEYS), "operator")
    assert exc.value.status == 403 and "dealership" in exc.value.detail
    require_owner(authenticate("Bearer k-op", KEYS), "c-2")  # operators act for anyone


def signed(body: bytes, *, at: float, secret: str = DEVELOPMENT_SECRET, webhook_id: str = "msg_1") -> dict:
    ts = datetime.fromtimestamp(int(at), tz=UTC)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at)),
            "webhook-signature": Webhook(secret).sign(webhook_id, ts, body.decode())}


def test_a_genuine_fresh_webhook_is_accepted():
    body = orjson.dumps({"paymentId": "p1", "status": "SETTLED"})
    now = time.time()
    assert verify(body, signed(body, at=now), DEVELOPMENT_SECRET, now=now, tolerance=300) == (
        "msg_1", {"paymentId": "p1", "status": "SETTLED"})


def test_the_v1_signature_that_matches_counts_among_others_and_malformed_ones():
    """Standard Webhooks: several space-separated signatures, any v1 one may match; one that
    is not base64 (or not ASCII) is skipped, not an error."""
    body = orjson.dumps({"x": 1})
    now = time.time()
    headers = signed(body, at=now)
    good = headers["webhook-signature"]
    for others in ("v2,AAAA", "v1,not*base64", "v1,caf\u00e9", "v1,AAAA"):
        mixed = {**headers, "webhook-signature": f"{others} {good}"}
        assert verify(body, mixed, DEVELOPMENT_SECRET, now=now, tolerance=300)[0] == "msg_1"


@pytest.mark.parametrize("tamper,kind", [
    (lambda b, h: (b + b" ", h), "webhook-signature"),                     # body changed after signing
    (lambda b, h: (b, {**h, "webhook-signature": "v1,AAAA"}), "webhook-signature"),
    (lambda b, h: (b, {k: v for k, v in h.items() if k != "webhook-id"}), "webhook-signature"),
    (lambda b, h: (b, signed(b, at=time.time() - 301)), "webhook-timestamp"),  # stale
    (lambda b, h: (b, signed(b, at=time.time() + 301)), "webhook-timestamp"),  # from the future
    (lambda b, h: (b, signed(b, at=time.time(), secret="whsec_" + "b3RoZXI=")), "webhook-signature"),
])
def test_forged_stale_or_unsigned_webhooks_are_refused(tamper, kind):
    body = orjson.dumps({"x": 1})
    raw, headers = tamper(body, signed(body, at=time.time()))
    with pytest.raises(Problem) as exc:
        verify(raw, headers, DEVELOPMENT_SECRET, now=time.time(), tolerance=300)
    assert exc.value.status == 401 and exc.value.kind == kind


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("CAAS_OTA__ATTEMPTS", "5")
    monkeypatch.setenv("CAAS_API_KEYS", '{"k": {"role": "customer", "subject": "c-9"}}')
    monkeypatch.setenv("CAAS_WEBHOOK_SECRETS", '{"payments": "whsec_cGF5"}')
    settings = CoreSettings()
    assert settings.ota.attempts == 5 and settings.api_keys["k"].subject == "c-9"
    assert settings.webhook_secret("payments") == "whsec_cGF5"
    assert settings.webhook_secret("iot") == DEVELOPMENT_SECRET
    monkeypatch.setenv("CAAS_OTA__ATTEMPTS", "9")
    with pytest.raises(ValueError, match="attempts"):
        CoreSettings()
