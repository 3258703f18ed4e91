"""What an initiation answers and keeps, pinned (seed 42): a cheaper path must not change it."""

import gc

from caas_sim.simulators.kit.config import SimConfig
from caas_sim.simulators.payments import cards
from caas_sim.simulators.payments.api import MODEL_KEY, create_app

T0 = 1767600000.0  # the virtual clock's default start


async def initiate(model, token, payment_type):
    method_type = "BANK_TRANSFER" if token.startswith("pm_bank") else "CARD"
    return await model.initiate(payment_type, {"value": 4999, "currency": "EUR"}, {"type": method_type, "token": token},
                                {"customerId": "c-1", "orderId": "o-1"}, "cid")


async def test_initiations_answer_and_record_the_pinned_outcomes():
    model = create_app(SimConfig(seed=42))[MODEL_KEY]
    card = await initiate(model, "pm_card_visa", "SERVICE")
    bank = await initiate(model, "pm_bank_sepa", "FINAL")
    declined = await initiate(model, "pm_card_declined", "SUBSCRIPTION")
    assert card == {"paymentId": "pay_80f46eea489a278a65683516", "status": "AUTHORIZED",
                    "timestamp": "2026-01-05T08:00:00.000Z", "declineReason": None,
                    "expectedSettlementDate": "2026-01-06T03:19:11.000Z"}
    assert (bank["paymentId"], bank["status"], bank["expectedSettlementDate"]) == (
        "pay_3889e74b1dc1d3d0221eaa49", "CAPTURED", "2026-01-06T08:02:56.000Z")
    assert (declined["status"], declined["declineReason"], declined["expectedSettlementDate"]) == (
        "DECLINED", "GENERIC_DECLINE", None)
    events = model.payments[declined["paymentId"]].events
    assert list(events) == [(1, "INITIATED", T0, 4999, None, None),
                            (2, "DECLINED", T0, None, "GENERIC_DECLINE", None)]
    gc.collect()
    assert all(type(e) is tuple and not gc.is_tracked(e) for e in events)  # see kit/untracked.py


async def test_no_payment_is_walked_by_the_garbage_collector_whatever_happened_to_it():
    """A payment is kept as bytes (records.py): no collection walks any of them, settled,
    refunded or charged back, so the gateway's tail does not grow with what it keeps."""
    from caas_sim.simulators.payments.records import (
        ORDER_ID,
        REFUND_IDS,
        STATUS,
        Payment,
        finished,
        of_order,
        values,
    )

    model = create_app(SimConfig(seed=42))[MODEL_KEY]
    paid = [await initiate(model, token, "FINAL") for token in ("pm_card_visa", "pm_bank_sepa", "pm_card_chargeback")]
    await model.service.clock.advance(3 * 86400)  # settled, and the chargeback's card disputed
    model.refund(paid[0]["paymentId"], {"value": 1000, "currency": "EUR"}, "REQUESTED_BY_CUSTOMER")
    await model.service.clock.advance(7 * 86400)
    views = [model.payment(p["paymentId"]) for p in paid]
    assert [v["status"] for v in views] == ["SETTLED", "SETTLED", "CHARGED_BACK"]
    assert views[0]["amountRefunded"]["value"] == 1000 and views[0]["refunds"][0]["status"] == "SUCCEEDED"
    # what forgetting and the merchant's search read without unpacking
    packed = model.payments.raw(paid[0]["paymentId"])
    fields = values(packed)
    assert (fields[ORDER_ID], fields[STATUS], fields[REFUND_IDS]) == ("o-1", "SETTLED",
                                                                      (views[0]["refunds"][0]["refundId"],))
    assert finished(fields, model.refunds) and of_order(packed, "o-1") and not of_order(packed, "o-")
    assert model.payments_of_order("o-1", "FINAL") == views
    del views, packed, fields
    gc.collect()
    assert len(model.payments) == 3
    assert all(type(packed) is bytes for packed in model.payments.raw_values())  # never tracked
    assert not any(isinstance(o, Payment) for o in gc.get_objects())


def test_card_expiry_is_the_start_of_the_next_month():
    assert cards.card_expiry(12, 2034) == 2051222400.0  # 2035-01-01T00:00:00Z
    assert cards.card_expiry(2, 2028) == 1835481600.0   # a leap February: 2028-03-01
