"""The payment gateway simulator end to end: real sockets, virtual time, signed webhooks."""

import asyncio
import re
from functools import lru_cache
from pathlib import Path

import aiohttp
import pytest
import yaml

from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.kit.clock import DEFAULT_EPOCH, parse_datetime
from caas_sim.simulators.kit.contract import CONTRACTS_DIR, Contract
from caas_sim.simulators.kit.faults import FaultError
from caas_sim.simulators.payments import cards
from caas_sim.simulators.payments import faults as pf
from caas_sim.simulators.payments.api import MODEL_KEY
from caas_sim.simulators.payments.money import fee, fmt
from caas_sim.simulators.payments.ratelimit import RateLimiter
from caas_sim.simulators.payments.settings import Settings

HOUR, DAY = 3600.0, 86400.0


#: Fixed delays (no per-payment draw) where a test needs exact times.
FIXED = {"card_settlement_delay": "1d", "bank_settlement_delay": "2d", "refund_delay": "1h"}


@lru_cache(maxsize=1)
def contract() -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load((CONTRACTS_DIR / "payments.yaml").read_text(), Loader=loader)


def payment(token="pm_card_visa", payment_type="SERVICE", value=4999, currency="EUR", customer="cust-1",
            order="ord-1", method_type=None):
    method_type = method_type or ("BANK_TRANSFER" if token.startswith("pm_bank") else "CARD")
    return {"paymentType": payment_type, "amount": {"value": value, "currency": currency},
            "paymentMethod": {"type": method_type, "token": token},
            "metadata": {"customerId": customer, "orderId": order, "description": "test"}}


class Gateway:
    """The simulator as the core sees it: HTTP calls, and webhooks at the stand-in core."""

    def __init__(self, stack, http):
        self.stack, self.http = stack, http

    async def call(self, method, path, body=None, headers=None):
        async with self.http.request(method, path, json=body, headers=headers) as r:
            return r.status, await r.json(), r.headers

    async def pay(self, *args, headers=None, **kwargs):
        status, body, _ = await self.call("POST", "/payments/initiate", payment(*args, **kwargs), headers)
        assert status == 201, body
        return body

    async def refund(self, payment_id, value=None, currency="EUR", reason="WITHDRAWAL", headers=None):
        body = {"reason": reason}
        if value is not None:
            body["amount"] = {"value": value, "currency": currency}
        return await self.call("POST", f"/payments/{payment_id}/refund", body, headers)

    async def get(self, payment_id):
        status, body, _ = await self.call("GET", f"/payments/{payment_id}")
        assert status == 200, body
        return body

    def webhooks(self, payment_id=None, unique=True):
        return [r for r in self.stack.sink.received
                if (payment_id is None or r.payload["paymentId"] == payment_id) and not (unique and r.duplicate)]

    def outcomes(self, payment_id):
        """(event, status or reason) of every first delivery for a payment, in arrival order."""
        return [(r.payload["event"], r.payload.get("status") or r.payload.get("reason"),
                 r.payload.get("failureReason")) for r in self.webhooks(payment_id)]

    def faults(self, *rules):
        for rule in rules:
            self.stack.service("payments").faults.add(rule)


@pytest.fixture
async def gw(request):
    options = getattr(request, "param", {})
    async with Stack(services=["payments"], seed=42, options={"payments": options}) as stack:
        async with aiohttp.ClientSession(stack.url("payments")) as http:
            yield Gateway(stack, http)
        assert stack.violations() == []


def fixed(**extra):
    return pytest.mark.parametrize("gw", [{**FIXED, **extra}], indirect=True)


# --------------------------------------------------------------- test tokens

SETTLED = ("paymentSettlement", "SETTLED", None)
TOKENS = {
    "pm_card_visa": ("AUTHORIZED", None, [SETTLED]),
    "pm_card_mastercard": ("AUTHORIZED", None, [SETTLED]),
    "pm_card_amex": ("AUTHORIZED", None, [SETTLED]),
    "pm_card_declined": ("DECLINED", "GENERIC_DECLINE", []),
    "pm_card_insufficient_funds": ("DECLINED", "INSUFFICIENT_FUNDS", []),
    "pm_card_expired": ("DECLINED", "EXPIRED_CARD", []),
    "pm_card_lost": ("DECLINED", "LOST_CARD", []),
    "pm_card_stolen": ("DECLINED", "STOLEN_CARD", []),
    "pm_card_charge_fails": ("DECLINED", "DO_NOT_HONOR", []),
    "pm_card_settlement_fails": ("AUTHORIZED", None, [("paymentSettlement", "FAILED", "INSUFFICIENT_FUNDS")]),
    "pm_card_chargeback": ("AUTHORIZED", None, [SETTLED, ("paymentChargeback", "FRAUDULENT", None)]),
    "pm_card_settled_then_reversed": ("AUTHORIZED", None, [SETTLED, ("paymentSettlement", "FAILED", "BANK_REVERSAL")]),
    "pm_card_refund_fails": ("AUTHORIZED", None, [SETTLED]),
    "pm_bank_sepa": ("PROCESSING", None, [SETTLED]),
    "pm_bank_insufficient_funds": ("PROCESSING", None, [("paymentSettlement", "FAILED", "INSUFFICIENT_FUNDS")]),
    "pm_bank_account_closed": ("PROCESSING", None, [("paymentSettlement", "FAILED", "ACCOUNT_CLOSED")]),
}


def test_every_test_token_is_tested_and_documented():
    assert set(TOKENS) == set(cards.TEST_TOKENS)
    description = contract()["info"]["description"]
    documented = dict(re.findall(r"^\| `(pm_\w+)` \| `(\w+)` \|", description, re.MULTILINE))
    assert set(documented) == set(cards.TEST_TOKENS)
    for token, number in documented.items():  # the table's number gives the token's behaviour
        method = cards.TEST_TOKENS[token]
        behaviour = cards.TEST_CARD_NUMBERS.get(number) or cards.TEST_IBANS[number]
        assert method.last4 == number[-4:]
        assert behaviour == method.behaviour or (token, behaviour) == ("pm_card_expired", cards.EXPIRED)


async def test_each_test_token_forces_its_outcome(gw):
    answers = {token: await gw.pay(token, order=f"o-{token}") for token in TOKENS}
    assert {t: (a["status"], a["declineReason"]) for t, a in answers.items()} == {
        t: (status, decline) for t, (status, decline, _) in TOKENS.items()}
    assert gw.webhooks() == []  # asynchronous: nothing before the clock moves
    await gw.stack.advance("12d")
    assert {t: gw.outcomes(a["paymentId"]) for t, a in answers.items()} == {t: later for t, (_, _, later) in TOKENS.items()}
    for token, answer in answers.items():
        arrived = gw.webhooks(answer["paymentId"])
        sequences = [r.payload["sequence"] for r in arrived]
        assert sequences == sorted(set(sequences)), token
        if arrived:  # the settlement comes when announced, hours to days later
            expected = parse_datetime(answer["expectedSettlementDate"])
            assert arrived[0].at == expected and 6 * HOUR <= expected - DEFAULT_EPOCH <= 3 * DAY, token


STORED = [  # number, store status, decline at store, charge status, charge decline
    ("4242424242424242", 201, None, "AUTHORIZED", None),
    ("5555555555554444", 201, None, "AUTHORIZED", None),
    ("2223003122003222", 201, None, "AUTHORIZED", None),  # any other valid Mastercard
    ("4000000000000002", 402, "GENERIC_DECLINE", None, None),
    ("4000000000009995", 201, None, "DECLINED", "INSUFFICIENT_FUNDS"),
    ("4000000000000069", 402, "EXPIRED_CARD", None, None),
    ("4000000000009987", 402, "LOST_CARD", None, None),
    ("4000000000009979", 402, "STOLEN_CARD", None, None),
    ("4000000000000341", 201, None, "DECLINED", "DO_NOT_HONOR"),  # stores fine, charges fail
    ("4000000000007700", 201, None, "AUTHORIZED", None),
]


async def test_test_card_numbers_behave_once_stored(gw):
    for number, stored, store_decline, charged, charge_decline in STORED:
        card = {"number": number, "expMonth": 12, "expYear": 2030, "cvc": "123"}
        status, body, headers = await gw.call("POST", "/payment-methods", {"type": "CARD", "customerId": "cust-1",
                                                                           "card": card})
        assert status == stored, (number, body)
        if stored == 402:
            assert body["declineReason"] == store_decline and store_decline in body["detail"]
            continue
        assert headers["Location"] == f"/payment-methods/{body['token']}"
        assert body["card"] == {"brand": cards.card_brand(number), "last4": number[-4:], "expMonth": 12,
                                "expYear": 2030}
        assert number not in str(body)  # the number is never kept
        answer = await gw.pay(body["token"])
        assert (answer["status"], answer["declineReason"]) == (charged, charge_decline), number
        assert (await gw.call("GET", f"/payment-methods/{body['token']}"))[1] == body


async def test_stored_bank_accounts_and_their_test_ibans(gw):
    tokens = {}
    for iban in cards.TEST_IBANS:
        status, body, _ = await gw.call("POST", "/payment-methods", {
            "type": "BANK_TRANSFER", "bankAccount": {"iban": iban, "holderName": "Jonas Weber"}})
        assert status == 201 and body["bankAccount"] == {"country": "DE", "last4": iban[-4:], "holderName": "Jonas Weber"}
        assert body["expired"] is False and body["card"] is None
        tokens[iban] = (await gw.pay(body["token"], method_type="BANK_TRANSFER"))["paymentId"]
    await gw.stack.advance("4d")
    assert [gw.outcomes(tokens[iban]) for iban in cards.TEST_IBANS] == [
        [SETTLED], [("paymentSettlement", "FAILED", "INSUFFICIENT_FUNDS")],
        [("paymentSettlement", "FAILED", "ACCOUNT_CLOSED")]]


# ------------------------------------------------- synchronous and asynchronous types

@fixed()
async def test_reservation_and_final_are_confirmed_synchronously_and_still_settle_later(gw):
    reservation = await gw.pay(payment_type="RESERVATION", value=150000)
    final = await gw.pay(payment_type="FINAL", value=3850000, order="ord-2")
    declined = await gw.pay("pm_card_insufficient_funds", payment_type="FINAL", order="ord-3")
    assert [reservation["status"], final["status"], declined["status"]] == ["CAPTURED", "CAPTURED", "DECLINED"]
    assert declined["expectedSettlementDate"] is None
    view = await gw.get(final["paymentId"])
    assert view["amountCaptured"] == {"value": 3850000, "currency": "EUR"}
    assert [e["type"] for e in view["events"]] == ["INITIATED", "CAPTURED"]
    await gw.stack.advance("23h")
    assert gw.webhooks() == []
    await gw.stack.advance("1h")
    settled = {r.payload["paymentId"]: r.payload for r in gw.webhooks()}
    assert set(settled) == {reservation["paymentId"], final["paymentId"]}
    fees = fee(3850000, 140, 25)
    assert fees == 53925  # 1.4 % + 0.25 EUR
    assert settled[final["paymentId"]]["metadata"]["fees"] == {"value": fees, "currency": "EUR"}
    assert settled[final["paymentId"]]["metadata"]["netAmount"] == {"value": 3850000 - fees, "currency": "EUR"}
    assert settled[final["paymentId"]]["settlementDate"] == "2026-01-06T08:00:00.000Z"
    assert re.fullmatch(r"BTX[0-9A-F]{16}", settled[final["paymentId"]]["metadata"]["bankTransactionId"])
    assert (await gw.get(final["paymentId"]))["status"] == "SETTLED"
    assert (await gw.get(declined["paymentId"]))["settlement"] is None


@fixed(card_settlement_delay="3d")
async def test_settlement_days_later_fires_on_a_clock_advance_and_can_be_delayed(gw):
    gw.faults({"id": "late", "action": {"type": "settlement_delayed", "params": {"days": 2}},
               "match": {"selectors": {"orderId": "late-*"}}})
    on_time = await gw.pay(order="ord-1")
    late = await gw.pay(order="late-1")
    bank = await gw.pay("pm_bank_sepa", order="ord-2")
    assert on_time["expectedSettlementDate"] == late["expectedSettlementDate"] == "2026-01-08T08:00:00.000Z"
    assert bank["expectedSettlementDate"] == "2026-01-07T08:00:00.000Z"
    await gw.stack.advance("2d")
    assert [r.payload["paymentId"] for r in gw.webhooks()] == [bank["paymentId"]]
    await gw.stack.advance("1d")
    assert [r.payload["paymentId"] for r in gw.webhooks()][1:] == [on_time["paymentId"]]
    assert (await gw.get(late["paymentId"]))["status"] == "AUTHORIZED"  # past its expected date, not paid
    await gw.stack.advance("2d")
    [arrived] = gw.webhooks(late["paymentId"])
    assert arrived.at - DEFAULT_EPOCH == 5 * DAY


# --------------------------------------------------------------- late events

@fixed(chargeback_delay="10d")
async def test_chargeback_after_settlement(gw):
    gw.faults({"action": {"type": "chargeback", "params": {"reason": "PRODUCT_NOT_RECEIVED", "seconds": 86400}},
               "match": {"selectors": {"customerId": "disputer"}}})
    by_card = await gw.pay("pm_card_chargeback", value=10000)
    by_fault = await gw.pay(customer="disputer")
    await gw.stack.advance("2d")
    settled, chargeback = gw.webhooks(by_fault["paymentId"])
    assert (settled.payload["status"], chargeback.payload["reason"]) == ("SETTLED", "PRODUCT_NOT_RECEIVED")
    assert chargeback.at - settled.at == DAY  # the rule's own delay
    # a partial refund before the dispute: the chargeback takes what is left
    assert (await gw.refund(by_card["paymentId"], 3000))[0] == 202
    await gw.stack.advance("10d")
    assert gw.outcomes(by_card["paymentId"]) == [SETTLED, ("refundStatus", "SUCCEEDED", None),
                                                 ("paymentChargeback", "FRAUDULENT", None)]
    payload = gw.webhooks(by_card["paymentId"])[-1].payload
    assert payload["amount"] == {"value": 7000, "currency": "EUR"} and payload["fee"] == {"value": 1500, "currency": "EUR"}
    assert payload["chargebackDate"] == "2026-01-16T08:00:00.000Z"  # 10 days after settlement
    view = await gw.get(by_card["paymentId"])
    assert view["status"] == "CHARGED_BACK" and view["chargeback"]["chargebackId"] == payload["chargebackId"]
    assert view["amountRefundable"]["value"] == 0
    status, problem, _ = await gw.refund(by_card["paymentId"], 100)
    assert (status, problem["title"]) == (422, "Payment charged back")


@fixed(refund_delay="4d")
async def test_settled_then_failed_by_a_bank_reversal(gw):
    gw.faults({"action": {"type": "settlement_reversed"}, "match": {"selectors": {"orderId": "rev-*"}}})
    by_card = await gw.pay("pm_card_settled_then_reversed")
    by_fault = await gw.pay(order="rev-1", payment_type="FINAL")
    await gw.stack.advance("1d")
    status, _, _ = await gw.refund(by_card["paymentId"], 1000)  # still pending when the bank reverses
    assert status == 202
    await gw.stack.advance("5d")
    for p in (by_card, by_fault):
        settled, reversed_ = [r.payload for r in gw.webhooks(p["paymentId"]) if r.payload["event"] == "paymentSettlement"]
        assert (settled["status"], reversed_["status"], reversed_["failureReason"]) == ("SETTLED", "FAILED", "BANK_REVERSAL")
        assert reversed_["sequence"] > settled["sequence"]
        assert reversed_["settlementDate"] == "2026-01-09T08:00:00.000Z"  # 3 days after settlement
        view = await gw.get(p["paymentId"])
        assert (view["status"], view["failureReason"]) == ("FAILED", "BANK_REVERSAL")
    # the refund was due after the reversal: nothing to give back
    assert gw.outcomes(by_card["paymentId"])[1:] == [("paymentSettlement", "FAILED", "BANK_REVERSAL"),
                                                     ("refundStatus", "FAILED", "PAYMENT_FAILED")]
    assert (await gw.refund(by_card["paymentId"], 100))[1]["title"] == "Payment failed"


# ------------------------------------------------------------------ refunds

@fixed()
async def test_full_and_partial_refunds_and_over_refunds_refused(gw):
    p = (await gw.pay(value=10000))["paymentId"]
    await gw.stack.advance("1d")
    status, first, headers = await gw.refund(p, 3000, reason="OTA_ACTIVATION_FAILURE")
    assert status == 202 and first["status"] == "PENDING" and headers["Location"] == f"/refunds/{first['refundId']}"
    assert (await gw.refund(p, 5000))[0] == 202
    # pending refunds count: only 20.00 EUR left
    status, problem, _ = await gw.refund(p, 2001)
    assert (status, problem["title"]) == (422, "Refund exceeds the refundable amount")
    assert problem["detail"] == (f"refund of 20.01 EUR exceeds the refundable 20.00 EUR of {p} "
                                 "(captured 100.00 EUR, refunded 0.00 EUR, pending refunds 80.00 EUR)")
    status, problem, _ = await gw.refund(p, 100, currency="GBP")
    assert (status, problem["title"]) == (422, "Currency mismatch")
    view = await gw.get(p)
    assert (view["amountRefundPending"]["value"], view["amountRefundable"]["value"]) == (8000, 2000)
    await gw.stack.advance("1h")
    assert [r.payload["status"] for r in gw.webhooks(p)[1:]] == ["SUCCEEDED", "SUCCEEDED"]
    status, refund, _ = await gw.call("GET", f"/refunds/{first['refundId']}")
    assert status == 200 and refund["status"] == "SUCCEEDED" and refund["completedAt"] == "2026-01-06T09:00:00.000Z"
    status, rest, _ = await gw.refund(p)  # no amount: everything left
    assert status == 202 and rest["amount"] == {"value": 2000, "currency": "EUR"}
    await gw.stack.advance("1h")
    view = await gw.get(p)
    assert view["status"] == "REFUNDED" and view["amountRefunded"]["value"] == 10000
    assert [e["type"] for e in view["events"]] == ["INITIATED", "AUTHORIZED", "SETTLED", "REFUND_REQUESTED",
                                                   "REFUND_REQUESTED", "REFUND_SUCCEEDED", "REFUND_SUCCEEDED",
                                                   "REFUND_REQUESTED", "REFUND_SUCCEEDED"]
    status, problem, _ = await gw.refund(p, 1)
    assert (status, problem["title"]) == (422, "Nothing left to refund")


@fixed()
async def test_refunds_wait_for_settlement_and_fail_with_it(gw):
    ok = (await gw.pay())["paymentId"]
    bad = (await gw.pay("pm_card_settlement_fails"))["paymentId"]
    assert (await gw.refund(ok))[0] == 202 and (await gw.refund(bad))[0] == 202
    await gw.stack.advance("23h")
    assert gw.webhooks() == []  # refund due after 1 h, but paid out of settled funds
    await gw.stack.advance("1h")
    assert gw.outcomes(ok) == [SETTLED, ("refundStatus", "SUCCEEDED", None)]
    assert gw.outcomes(bad) == [("paymentSettlement", "FAILED", "INSUFFICIENT_FUNDS"),
                                ("refundStatus", "FAILED", "PAYMENT_FAILED")]
    declined = (await gw.pay("pm_card_declined"))["paymentId"]
    for payment_id, title in ((bad, "Payment failed"), (declined, "Payment not captured")):
        status, problem, _ = await gw.refund(payment_id)
        assert (status, problem["title"]) == (422, title) and payment_id in problem["detail"]
    assert (await gw.refund("pay_doesnotexist"))[0] == 404
    assert (await gw.call("GET", "/refunds/re_doesnotexist"))[0] == 404


@fixed()
async def test_refund_failing_by_test_card_and_by_fault_and_window(gw):
    gw.faults({"id": "bounce", "action": {"type": "refund_failed", "params": {"reason": "ACCOUNT_CLOSED"}},
               "match": {"selectors": {"orderId": "bounce"}}, "times": 1})
    by_card = (await gw.pay("pm_card_refund_fails"))["paymentId"]
    by_fault = (await gw.pay(order="bounce"))["paymentId"]
    await gw.stack.advance("1d")
    for p in (by_card, by_fault):
        assert (await gw.refund(p, 1000))[0] == 202
    await gw.stack.advance("1h")
    assert gw.outcomes(by_card)[-1] == ("refundStatus", "FAILED", "CARD_CLOSED")
    assert gw.outcomes(by_fault)[-1] == ("refundStatus", "FAILED", "ACCOUNT_CLOSED")
    view = await gw.get(by_fault)
    assert (view["amountRefunded"]["value"], view["amountRefundable"]["value"]) == (0, 4999)  # released
    assert (await gw.refund(by_fault, 1000))[0] == 202  # the rule was for one refund
    await gw.stack.advance("1h")
    assert gw.outcomes(by_fault)[-1] == ("refundStatus", "SUCCEEDED", None)
    await gw.stack.advance("180d")
    status, problem, _ = await gw.refund(by_fault, 1000)
    assert (status, problem["title"]) == (422, "Refund window expired")


# ------------------------------------------------- stored methods and expiry

async def test_subscription_on_a_stored_card_fails_once_the_card_has_expired(gw):
    status, card, _ = await gw.call("POST", "/payment-methods", {
        "type": "CARD", "customerId": "sub-1", "card": {"number": "5555555555554444", "expMonth": 2, "expYear": 2026}})
    assert status == 201 and card["expired"] is False
    token = card["token"]
    charges = []
    for month_end in ("2026-01-31T23:00:00Z", "2026-02-28T23:00:00Z", "2026-03-31T23:00:00Z"):
        await gw.stack.clock.advance_to(parse_datetime(month_end))
        charges.append(await gw.pay(token, payment_type="SUBSCRIPTION", customer="sub-1", order=f"inv-{month_end[:7]}"))
    assert [(c["status"], c["declineReason"]) for c in charges] == [
        ("AUTHORIZED", None), ("AUTHORIZED", None), ("DECLINED", "EXPIRED_CARD")]
    assert (await gw.call("GET", f"/payment-methods/{token}"))[1]["expired"] is True
    # another customer cannot charge it; storing an expired card is refused
    status, problem, _ = await gw.call("POST", "/payments/initiate", payment(token, customer="someone-else"))
    assert (status, problem["title"]) == (422, "Payment method of another customer")
    status, problem, _ = await gw.call("POST", "/payment-methods", {
        "type": "CARD", "card": {"number": "4242424242424242", "expMonth": 2, "expYear": 2026}})
    assert (status, problem["declineReason"]) == (402, "EXPIRED_CARD")


BAD_METHODS = [
    ({"type": "CARD", "card": {"number": "4242424242424241", "expMonth": 1, "expYear": 2030}}, 422, "Invalid card number"),
    ({"type": "CARD", "card": {"number": "6011111111111117", "expMonth": 1, "expYear": 2030}}, 422,
     "Unsupported card brand"),
    ({"type": "BANK_TRANSFER", "bankAccount": {"iban": "DE89370400440532013001", "holderName": "X"}}, 422,
     "Invalid IBAN"),
    ({"type": "CARD", "bankAccount": {"iban": "DE89370400440532013000", "holderName": "X"}}, 400,
     "Request violates contract"),
    ({"type": "CARD", "card": {"number": "4242 4242 4242 4242", "expMonth": 1, "expYear": 2030}}, 400,
     "Request violates contract"),
]
BAD_PAYMENTS = [
    (payment("pm_nope"), 422, "Unknown payment method"),
    (payment("pm_bank_sepa", method_type="CARD"), 422, "Payment method type mismatch"),
    ({**payment(), "amount": {"value": 19.99, "currency": "EUR"}}, 400, "Request violates contract"),
    ({**payment(), "amount": {"value": 0, "currency": "EUR"}}, 400, "Request violates contract"),
    ({**payment(), "amount": {"value": 1999, "currency": "JPY"}}, 400, "Request violates contract"),
    ({**payment(), "paymentType": "LEASE"}, 400, "Request violates contract"),
]


async def test_bad_requests_get_clear_problems(gw):
    cases = [("/payment-methods", *case) for case in BAD_METHODS] + [("/payments/initiate", *case) for case in BAD_PAYMENTS]
    for path, body, status, title in cases:
        got, problem, _ = await gw.call("POST", path, body)
        assert (got, problem["title"]) == (status, title) and problem.get("detail"), body
    expected_violations = sum(1 for *_, status, _ in cases if status == 400)
    assert len(gw.stack.violations()) == expected_violations  # journaled, each one
    gw.stack.service("payments").journal.clear()
    for path in ("/payments/pay_unknown", "/payment-methods/pm_unknown", "/refunds/re_unknown"):
        assert (await gw.call("GET", path))[0] == 404
    status, problem, headers = await gw.call("GET", "/payments/initiate")  # a concrete path, not a payment id
    assert (status, headers["Allow"], problem["title"]) == (405, "POST", "Method Not Allowed")


# ------------------------------------------------------------------ faults

@fixed()
async def test_domain_faults_decline_and_fail_settlement(gw):
    gw.faults({"id": "fraud", "action": {"type": "authorization_declined", "params": {"reason": "FRAUD_SUSPECTED"}},
               "match": {"selectors": {"customerId": "shady-*"}}},
              {"id": "bank", "action": {"type": "settlement_failed", "params": {"reason": "BANK_REJECTED"}},
               "match": {"selectors": {"paymentType": "SUBSCRIPTION"}}, "times": 1})
    shady = await gw.pay(customer="shady-7")
    assert (shady["status"], shady["declineReason"]) == ("DECLINED", "FRAUD_SUSPECTED")
    first = await gw.pay(payment_type="SUBSCRIPTION", order="inv-1")
    second = await gw.pay(payment_type="SUBSCRIPTION", order="inv-2")
    await gw.stack.advance("1d")
    assert gw.outcomes(first["paymentId"]) == [("paymentSettlement", "FAILED", "BANK_REJECTED")]
    assert gw.outcomes(second["paymentId"]) == [SETTLED]
    applied = [e["ruleId"] for e in gw.stack.service("payments").journal.entries() if e["kind"] == "fault"]
    assert applied == ["fraud", "bank"]
    for params, message in (({"seconds": 60, "days": 1}, "seconds or days"), ({"hours": 1}, "hours")):
        with pytest.raises(FaultError, match=message):
            gw.faults({"action": {"type": "settlement_delayed", "params": params}})
    with pytest.raises(FaultError, match="reason"):
        gw.faults({"action": {"type": "authorization_declined", "params": {"reason": "BORED"}}})


@fixed()
async def test_duplicated_delayed_and_lost_webhooks(gw):
    gw.faults({"action": {"type": "webhook_duplicated", "params": {"copies": 2}}, "match": {"selectors": {"orderId": "dup"}}},
              {"action": {"type": "webhook_delayed", "params": {"seconds": 7200}}, "match": {"selectors": {"orderId": "late"}}},
              {"action": {"type": "webhook_lost"}, "match": {"selectors": {"orderId": "lost", "event": "paymentSettlement"}}})
    dup, late, lost = [(await gw.pay(order=o))["paymentId"] for o in ("dup", "late", "lost")]
    await gw.stack.advance("1d1m")  # the copies follow a second apart
    copies = gw.webhooks(dup, unique=False)
    assert len(copies) == 3 and len({c.webhook_id for c in copies}) == 1 and [c.duplicate for c in copies] == [False, True, True]
    assert gw.webhooks(late) == [] and gw.webhooks(lost) == []
    assert (await gw.get(lost))["status"] == "SETTLED"  # the event happened; only its webhook was lost
    await gw.stack.advance("2h")
    assert [r.payload["status"] for r in gw.webhooks(late)] == ["SETTLED"]
    assert (await gw.refund(lost))[0] == 202  # a refund of the same payment is not lost
    await gw.stack.advance("1h")
    assert gw.outcomes(lost) == [("refundStatus", "SUCCEEDED", None)]


@fixed()
async def test_reordered_webhook_arrives_after_the_next_one_and_sequence_tells(gw):
    gw.faults({"action": {"type": "webhook_reordered"}, "match": {"selectors": {"event": "paymentSettlement"}},
               "times": 1})
    p = (await gw.pay())["paymentId"]
    assert (await gw.refund(p, 1000))[0] == 202  # completes the moment the payment settles
    await gw.stack.advance("1d1m")
    arrived = gw.webhooks(p)
    assert [r.payload["event"] for r in arrived] == ["refundStatus", "paymentSettlement"]
    assert [r.payload["sequence"] for r in arrived] == [5, 4]
    assert arrived[1].at > arrived[0].at


@pytest.mark.parametrize("gw", [{**FIXED, "authorization_latency": "3s"}], indirect=True)
async def test_idempotent_replays_mismatches_and_in_flight_duplicates(gw):
    key = {"Idempotency-Key": "ord-1-service"}
    # The issuer takes 3 s of clock time: send concurrently, advance meanwhile.
    first = asyncio.ensure_future(gw.call("POST", "/payments/initiate", payment(), key))
    await gw.stack.settle()
    [pending] = gw.stack.running["payments"].app[MODEL_KEY].payments.values()
    assert pending.status == "INITIATED"
    status, problem, _ = await gw.call("POST", "/payments/initiate", payment(), key)
    assert (status, problem["title"]) == (409, "Request in progress")
    await gw.stack.advance("3s")
    status, created, headers = await asyncio.wait_for(first, 5)
    assert status == 201 and created["status"] == "AUTHORIZED" and created["timestamp"] == "2026-01-05T08:00:03.000Z"
    replay = asyncio.ensure_future(gw.call("POST", "/payments/initiate", payment(), key))
    status, again, replay_headers = await asyncio.wait_for(replay, 5)  # a replay does not wait for the issuer
    assert status == 201 and again == created and replay_headers["Idempotent-Replayed"] == "true"
    assert replay_headers["Location"] == headers["Location"]
    status, problem, _ = await gw.call("POST", "/payments/initiate", payment(value=5000), key)
    assert (status, problem["title"]) == (422, "Idempotency key reused")
    # refunds: a retried refund is not a second refund
    refund_key = {"Idempotency-Key": "refund-1"}
    results = [await gw.refund(created["paymentId"], 1000, headers=refund_key) for _ in range(2)]
    assert results[0][1] == results[1][1]
    await gw.stack.advance("2d")
    view = await gw.get(created["paymentId"])
    assert len(view["refunds"]) == 1 and view["amountRefunded"]["value"] == 1000
    assert len(gw.stack.sink.payloads("payments")) == 2  # one settlement, one refund


@pytest.mark.parametrize("gw", [{"rate_limit": 3, "rate_limit_window": "1s"}], indirect=True)
async def test_rate_limit_answers_429_with_retry_after_per_client(gw):
    core = {"X-Client-Id": "caas-core"}
    for _ in range(3):
        assert (await gw.call("GET", "/payment-methods/pm_card_visa", headers=core))[0] == 200
    key = {**core, "Idempotency-Key": "limited-1"}
    status, problem, headers = await gw.call("POST", "/payments/initiate", payment(), key)
    assert (status, headers["Retry-After"], problem["title"]) == (429, "1", "Too many requests")
    assert "3 requests per 1 s for client 'caas-core'" in problem["detail"]
    assert (await gw.call("GET", "/payment-methods/pm_card_visa", headers={"X-Client-Id": "backoffice"}))[0] == 200
    await gw.stack.advance("1s")
    status, _, headers = await gw.call("POST", "/payments/initiate", payment(), key)
    assert status == 201 and "Idempotent-Replayed" not in headers  # a 429 is never replayed


@pytest.mark.parametrize("gw", [{"rate_limit": 2, "rate_limit_window": "1m", "rate_limit_scope": "overall"}],
                         indirect=True)
async def test_rate_limit_over_all_clients(gw):
    await gw.stack.advance("10s")
    for client in ("a", "b"):
        assert (await gw.call("GET", "/payment-methods/pm_card_visa", headers={"X-Client-Id": client}))[0] == 200
    status, _, headers = await gw.call("GET", "/payment-methods/pm_card_visa", headers={"X-Client-Id": "c"})
    assert (status, headers["Retry-After"]) == (429, "50")


async def test_gateway_unavailable_answers_503_with_retry_after(gw):
    gw.faults({"id": "down", "action": {"type": "gateway_unavailable", "params": {"retry_after": 45}},
               "match": {"method": "POST", "path": "/payments/initiate", "selectors": {"orderId": "ord-9"}},
               "times": 1})
    key = {"Idempotency-Key": "ord-9"}
    assert (await gw.call("GET", "/payment-methods/pm_card_visa"))[0] == 200  # other routes are up
    status, problem, headers = await gw.call("POST", "/payments/initiate", payment(order="ord-9"), key)
    assert (status, headers["Retry-After"], problem["ruleId"]) == (503, "45", "down")
    status, _, headers = await gw.call("POST", "/payments/initiate", payment(order="ord-9"), key)
    assert status == 201 and "Idempotent-Replayed" not in headers  # a 503 is retried, not replayed


@fixed()
async def test_admin_reset_forgets_payments_methods_and_timers(gw):
    async def calls():
        _, card, _ = await gw.call("POST", "/payment-methods", {
            "type": "CARD", "card": {"number": "4242424242424242", "expMonth": 1, "expYear": 2030}})
        p = (await gw.pay())["paymentId"]
        assert (await gw.refund(p, 100))[0] == 202
        return card["token"], p

    token, p = await calls()
    assert (await gw.call("POST", "/__admin/reset"))[0] == 200
    await gw.stack.advance("3d")
    assert gw.webhooks() == []
    for path in (f"/payments/{p}", f"/payment-methods/{token}"):
        assert (await gw.call("GET", path))[0] == 404
    assert (await gw.call("GET", "/payment-methods/pm_card_visa"))[0] == 200  # test tokens are not state
    assert await calls() == (token, p)  # ids restart: the same calls give the same answers


async def test_same_seed_same_outcomes():
    async def run(seed):
        async with Stack(services=["payments"], seed=seed) as stack, \
                aiohttp.ClientSession(stack.url("payments")) as http:
            gw = Gateway(stack, http)
            ids = [(await gw.pay(token, order=f"o{i}"))["paymentId"] for i, token in enumerate(sorted(TOKENS))]
            for p in ids[:5]:
                await gw.refund(p, 100)
            await stack.advance("12d")
            return ids, [(r.at, r.webhook_id, r.payload) for r in stack.sink.received]

    first = await run(3)
    assert first == await run(3)
    assert first != await run(4)


async def test_the_shipped_fault_profile_loads_and_applies():
    profile = Path(cards.__file__).parent / "profiles" / "bad-bank-week.yaml"
    async with Stack(services=["payments"], seed=5, fault_profiles={"payments": str(profile)}) as stack, \
            aiohttp.ClientSession(stack.url("payments")) as http:
        gw = Gateway(stack, http)

        async def pay(i):
            return await gw.call("POST", "/payments/initiate", payment(order=f"o{i}", customer=f"c{i % 7}"))

        pending = asyncio.gather(*(pay(i) for i in range(120)))  # injected latency waits on the clock
        await stack.advance("1m")
        answers = await asyncio.wait_for(pending, 10)
        assert {status for status, _, _ in answers} <= {201, 503}
        await stack.advance("5d")
        applied = {e["ruleId"] for e in stack.service("payments").journal.entries() if e["kind"] == "fault"}
        assert {"api-slow", "gateway-down", "issuer-declines", "settlement-fails", "settlement-late"} <= applied
        assert stack.violations() == []


# ----------------------------------------------------------- units and drift

def test_contract_enums_match_the_model():
    schemas = contract()["components"]["schemas"]
    assert tuple(schemas["PaymentType"]["enum"]) == pf.PAYMENT_TYPES
    assert tuple(schemas["DeclineReason"]["enum"]) == pf.DECLINE_REASONS
    assert tuple(schemas["SettlementFailureReason"]["enum"]) == (*pf.SETTLEMENT_FAILURES, pf.BANK_REVERSAL)
    assert tuple(schemas["ChargebackReason"]["enum"]) == pf.CHARGEBACK_REASONS
    assert tuple(schemas["RefundReason"]["enum"]) == pf.REFUND_REASONS
    assert tuple(schemas["RefundFailureReason"]["enum"]) == pf.REFUND_FAILURES
    assert set(contract()["webhooks"]) == {pf.WEBHOOK_SETTLEMENT, pf.WEBHOOK_REFUND, pf.WEBHOOK_CHARGEBACK}


def test_contract_examples_are_valid():
    """The documented examples (test tokens included) are what the simulator accepts and sends."""
    doc, compiled = contract(), Contract("payments.yaml")
    checked = 0
    for path, item in doc["paths"].items():
        for op in item.values():
            examples = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("examples", {})
            for name, example in examples.items():
                validator = compiled.operations[op["operationId"]].body
                assert validator.is_valid(example["value"]), (path, name)
                checked += 1
            for status, response in op["responses"].items():
                for name, example in response.get("content", {}).get("application/json", {}).get("examples", {}).items():
                    assert compiled.operations[op["operationId"]].check_response(int(status), example["value"]) == [], name
                    checked += 1
    for name, hook in doc["webhooks"].items():
        for example in hook["post"]["requestBody"]["content"]["application/json"]["examples"].values():
            assert compiled.check_webhook(name, example["value"]) == [], name
            checked += 1
    assert checked >= 15


def test_money_cards_and_rate_limiter_units():
    assert (fmt(1999, "EUR"), fmt(5, "GBP"), fmt(-120000, "USD")) == ("19.99 EUR", "0.05 GBP", "-1200.00 USD")
    assert (fee(0, 140, 25), fee(10, 140, 25), fee(10000, 140, 25), fee(50, 0, 35)) == (0, 10, 165, 35)
    assert all(cards.luhn_valid(n) for n in cards.TEST_CARD_NUMBERS) and not cards.luhn_valid("4242424242424241")
    assert all(cards.iban_valid(i) for i in cards.TEST_IBANS) and not cards.iban_valid("GB00WEST12345698765432")
    assert cards.card_expiry(2, 2028) == parse_datetime("2028-03-01T00:00:00Z")  # leap year
    assert cards.card_expiry(12, 2026) == parse_datetime("2027-01-01T00:00:00Z")
    limiter = RateLimiter(2, 10.0)
    assert [limiter.hit("a", 100.0), limiter.hit("a", 101.0), limiter.hit("a", 103.5)] == [None, None, 7]
    assert limiter.hit("b", 103.5) is None and limiter.hit("a", 110.0) is None


def test_settings_parse_and_refuse_bad_options():
    s = Settings.from_options({"card_settlement_delay": "2h..1d", "refund_delay": ["1m", "5m"],
                               "chargeback_delay": "30d", "rate_limit": 10})
    assert (s.card_settlement_delay, s.refund_delay, s.chargeback_delay, s.rate_limit) == (
        (7200.0, 86400.0), (60.0, 300.0), 30 * DAY, 10)
    for bad, message in (({"settlement_days": 2}, "unknown option"), ({"refund_delay": "2d..1d"}, "above"),
                         ({"rate_limit": -1}, "non-negative"), ({"card_fee_bps": 1.5}, "integer")):
        with pytest.raises(ValueError, match=message):
            Settings.from_options(bad)
    with pytest.raises(ValueError, match="rate_limit_scope"):
        RateLimiter(1, 1.0, "galaxy")


async def test_past_the_payments_kept_the_oldest_finished_are_forgotten_and_a_live_one_is_kept(gw):
    model = gw.stack.running["payments"].app[MODEL_KEY]
    model.retention.keep = 2  # PAYMENTS_KEPT (100,000) in small
    live = await gw.pay("pm_card_visa")  # awaiting settlement: kept however many come after
    settled = await gw.pay("pm_card_declined")
    await gw.pay("pm_card_visa")
    await gw.pay("pm_card_visa")  # forgetting is lazy: a call does it
    status, body, _ = await gw.call("GET", f"/payments/{settled['paymentId']}")
    assert status == 404 and body["type"].endswith("unknown-payment")
    status, _, _ = await gw.call("GET", f"/payments/{live['paymentId']}")
    assert status == 200
    assert len(model.payments) == 3


async def test_past_the_payments_kept_a_settled_payment_awaiting_a_chargeback_or_reversal_is_kept(gw):
    """A settled payment is finished, but one the bank will still reverse or charge back is
    not forgotten before: the move would silently not happen."""
    model = gw.stack.running["payments"].app[MODEL_KEY]
    model.retention.keep = 0
    disputed = await gw.pay("pm_card_chargeback", value=10000)
    reversed_ = await gw.pay("pm_card_settled_then_reversed")
    plain = await gw.pay("pm_card_visa")
    await gw.stack.advance("2d")  # all three settled; the reversal comes 3 days later, the chargeback 7
    for _ in range(10):
        model.prune()
    statuses = [(await gw.call("GET", f"/payments/{p['paymentId']}"))[0] for p in (disputed, reversed_, plain)]
    assert statuses == [200, 200, 404]
    await gw.stack.advance("8d")
    assert gw.outcomes(disputed["paymentId"])[-1] == ("paymentChargeback", "FRAUDULENT", None)
    assert gw.outcomes(reversed_["paymentId"])[-1] == ("paymentSettlement", "FAILED", "BANK_REVERSAL")
    for _ in range(10):
        model.prune()
    assert len(model.payments) == 0 and model._bank_moves == {}  # then forgotten as any finished payment
