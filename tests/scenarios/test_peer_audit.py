"""The peers' audit judges a core it knows nothing of: here the "core" is this test, speaking
HTTP to the payment gateway and the IoT fleet, and doing what a broken core would."""

import aiohttp

from caas_sim.scenarios import peer_audit
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.iot.api import MODEL_KEY as IOT_MODEL


def _payment(status="SETTLED", amount=29900, refunded=0, pending=0, refunds=(), vin="V1", service="heated-seats",
             kind="SERVICE"):
    meta = {"customerId": "c-1", "orderId": "pur_1", "description": None}
    if vin:
        meta |= {"vin": vin, "serviceId": service}
    return {"paymentId": "pay_1", "paymentType": kind, "status": status, "metadata": meta,
            "amount": {"value": amount, "currency": "EUR"}, "amountRefunded": {"value": refunded, "currency": "EUR"},
            "amountRefundPending": {"value": pending, "currency": "EUR"}, "refunds": list(refunds),
            "settlement": {"status": "SETTLED"} if status == "SETTLED" else None}


def _vehicle(*services, vin="V1"):
    return {"vin": vin, "activeServices": [{"serviceId": s, "status": "ACTIVE", "durationType": d} for s, d in services]}


def _names(report):
    return sorted(v["invariant"] for v in report["violations"])


def test_a_delivered_and_paid_service_is_in_step():
    report = peer_audit.judge([_payment()], [_vehicle(("heated-seats", "PERMANENT"))], [], {("V1", "heated-seats")})
    assert report["ok"] and report["settled"] and report["checked"]["payments"] == 1


def test_money_kept_for_a_feature_never_activated():
    assert _names(peer_audit.judge([_payment()], [], [], set())) == ["kept-money-undelivered"]
    refunding = _payment(pending=29900)  # being given back: not kept
    assert peer_audit.judge([refunding], [], [], set())["ok"]


def test_a_feature_on_after_a_full_refund_or_with_no_charge():
    on = [_vehicle(("heated-seats", "PERMANENT"))]
    assert _names(peer_audit.judge([_payment(refunded=29900)], on, [], {("V1", "heated-seats")})) == [
        "active-after-refund"]
    assert _names(peer_audit.judge([], on, [], set())) == ["active-never-charged"]
    assert peer_audit.judge([], [_vehicle(("premium-audio", "SUBSCRIPTION"))], [], set())["ok"]  # post-paid


def test_an_activation_command_with_no_charge_and_a_refund_that_never_completed():
    command = {"vin": "V1", "serviceId": "heated-seats", "at": "2026-01-05T08:00:00.000Z", "requestId": "ota_1",
               "durationType": "PERMANENT"}
    assert _names(peer_audit.judge([], [], [command], set())) == ["ota-without-charge"]
    failed = _payment(refunds=[{"refundId": "re_1", "status": "FAILED", "failureReason": "CARD_CLOSED"}])
    assert "refund-not-completed" in _names(peer_audit.judge([failed], [], [], {("V1", "heated-seats")}))


def test_payments_without_vehicle_references_are_counted_not_tied():
    report = peer_audit.judge([_payment(vin=None)], [], [], set())
    assert report["ok"] and report["checked"]["untiedPayments"] == 1


async def test_over_http_it_catches_what_a_broken_core_did_and_passes_what_a_sound_one_did():
    async with Stack(services=["iot", "payments"], seed=3) as stack, aiohttp.ClientSession() as http:
        fleet = stack.running["iot"].app[IOT_MODEL].fleet
        kept, unpaid = fleet.vin_at(1), fleet.vin_at(2)
        pay, iot = stack.url("payments"), stack.url("iot")
        charge = {"paymentType": "SERVICE", "amount": {"value": 29900, "currency": "EUR"},
                  "paymentMethod": {"type": "CARD", "token": "pm_card_visa"},
                  "metadata": {"customerId": "c-1", "orderId": "pur_kept", "vin": kept, "serviceId": "heated-seats"}}
        async with http.post(pay + "/payments/initiate", json=charge, headers={"Idempotency-Key": "k1"}) as r:
            assert r.status == 201  # charged, and never activated
        activation = {"vin": unpaid, "serviceId": "heated-seats", "duration": {"type": "PERMANENT"},
                      "configuration": {"featureFlags": ["heated_seats"], "parameters": {}}}
        async with http.post(iot + "/ota/activate", json=activation, headers={"Idempotency-Key": "k2"}) as r:
            assert r.status == 202, await r.text()  # activated, and never charged
        await stack.advance("4d")  # settlement, the activation's outcome
        report = await peer_audit.audit(pay, iot, session=http)
    assert _names(report) == ["active-never-charged", "kept-money-undelivered", "ota-without-charge"], report
    assert report["settled"] and report["checked"]["activationCommands"] == 1
