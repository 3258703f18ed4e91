import pathlib

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_core.domain.money import Money
from caas_core.domain.purchase import UNPAID, transition
from caas_core.domain.purchase import PurchaseState as S
from caas_core.domain.settlement import (
    CollectionKind,
    PaymentStatus,
    SettlementEvent,
    SettlementKind,
    decide,
    parse_instant,
)

CONTRACTS = pathlib.Path(__file__).resolve().parents[3] / "contracts"
WEBHOOKS = yaml.safe_load((CONTRACTS / "payments.yaml").read_text())["webhooks"]
EX_SETTLEMENT = WEBHOOKS["paymentSettlement"]["post"]["requestBody"]["content"]["application/json"]["examples"]
EX_CHARGEBACK = WEBHOOKS["paymentChargeback"]["post"]["requestBody"]["content"]["application/json"]["examples"]
PRICE = Money(4_999, "EUR")
ZERO = Money.zero("EUR")


def ev(kind, seq=3, amount=PRICE, reason=None, fee=None):
    return SettlementEvent(kind, "pay_1", seq, 1_767_700_000.0, amount, reason, fee)


def test_webhook_examples_parse():
    s = SettlementEvent.from_webhook(EX_SETTLEMENT["settled"]["value"])
    assert s.kind is SettlementKind.SETTLED and s.amount == PRICE and s.fee == Money(95, "EUR")
    assert s.at == parse_instant("2026-01-06T14:21:07.000Z") and s.sequence == 3
    f = SettlementEvent.from_webhook(EX_SETTLEMENT["failed"]["value"])
    assert f.kind is SettlementKind.FAILED and f.reason == "INSUFFICIENT_FUNDS"
    c = SettlementEvent.from_webhook(EX_CHARGEBACK["fraudulent"]["value"])
    assert c.kind is SettlementKind.CHARGEBACK and c.reason == "FRAUDULENT" and c.fee == Money(1500, "EUR")
    with pytest.raises(ValueError):
        SettlementEvent.from_webhook({"event": "refundStatus"})


def test_settled_completes_the_payment():
    d = decide(ev(SettlementKind.SETTLED), status=PaymentStatus.PENDING, last_sequence=2, charged=PRICE,
               refunded=ZERO, delivery=S.ACTIVE)
    assert not d.ignored and d.payment_complete and d.status is PaymentStatus.SETTLED and d.last_sequence == 3
    assert d.collection is None and not d.amount_mismatch
    assert transition(S.ACTIVE, d.purchase_event) is S.ACTIVE


def test_failed_settlement_of_a_delivered_service_opens_a_collection_case_and_keeps_it_active():
    d = decide(ev(SettlementKind.FAILED, amount=ZERO, reason="INSUFFICIENT_FUNDS"), status=PaymentStatus.PENDING,
               last_sequence=2, charged=PRICE, refunded=ZERO, delivery=S.ACTIVE)
    assert d.status is PaymentStatus.FAILED and d.keep_service_active
    assert d.collection.kind is CollectionKind.SETTLEMENT_FAILED and d.collection.amount == PRICE
    assert d.collection.reason == "INSUFFICIENT_FUNDS" and not d.collection.on_hold
    assert transition(S.ACTIVE, d.purchase_event) is S.ACTIVE


def test_bank_reversal_after_settlement():
    d = decide(ev(SettlementKind.FAILED, seq=5, amount=ZERO, reason="BANK_REVERSAL"), status=PaymentStatus.SETTLED,
               last_sequence=3, charged=PRICE, refunded=Money(999, "EUR"), delivery=S.EXPIRED)
    assert d.collection.kind is CollectionKind.BANK_REVERSAL and d.collection.amount == Money(4_000, "EUR")


def test_failed_settlement_while_activation_pending_is_on_hold():
    d = decide(ev(SettlementKind.FAILED, amount=ZERO, reason="ACCOUNT_CLOSED"), status=PaymentStatus.PENDING,
               last_sequence=0, charged=PRICE, refunded=ZERO, delivery=S.ACTIVATION_QUEUED)
    assert d.collection.on_hold


@pytest.mark.parametrize("delivery", [S.ACTIVATION_FAILED, S.REFUNDED, S.WITHDRAWN])
def test_failed_settlement_of_an_undelivered_service_owes_nothing(delivery):
    d = decide(ev(SettlementKind.FAILED, amount=ZERO, reason="INSUFFICIENT_FUNDS"), status=PaymentStatus.PENDING,
               last_sequence=0, charged=PRICE, refunded=ZERO, delivery=delivery)
    assert d.collection is None and d.void_pending_refunds and transition(delivery, d.purchase_event) is delivery


def test_chargeback_of_a_delivered_service():
    d = decide(ev(SettlementKind.CHARGEBACK, seq=4, reason="FRAUDULENT", fee=Money(1_500, "EUR")),
               status=PaymentStatus.SETTLED, last_sequence=3, charged=PRICE, refunded=ZERO, delivery=S.ACTIVE)
    assert d.status is PaymentStatus.CHARGED_BACK and d.keep_service_active
    assert d.collection.kind is CollectionKind.CHARGEBACK and d.collection.amount == PRICE
    assert d.loss == Money(1_500, "EUR")


def test_chargeback_after_a_refund_collects_what_was_returned_twice():
    d = decide(ev(SettlementKind.CHARGEBACK, seq=6, reason="PRODUCT_NOT_RECEIVED"), status=PaymentStatus.SETTLED,
               last_sequence=5, charged=PRICE, refunded=PRICE, delivery=S.REFUNDED)
    assert d.collection.kind is CollectionKind.DUPLICATE_REFUND and d.collection.amount == PRICE
    d = decide(ev(SettlementKind.CHARGEBACK, seq=6, reason="PRODUCT_NOT_RECEIVED"), status=PaymentStatus.SETTLED,
               last_sequence=5, charged=PRICE, refunded=ZERO, delivery=S.ACTIVATION_FAILED)
    assert d.collection is None and d.void_pending_refunds


def test_duplicates_and_reordered_events_are_ignored():
    reversal = decide(ev(SettlementKind.FAILED, seq=5, amount=ZERO, reason="BANK_REVERSAL"),
                      status=PaymentStatus.PENDING, last_sequence=0, charged=PRICE, refunded=ZERO, delivery=S.ACTIVE)
    late = decide(ev(SettlementKind.SETTLED, seq=3), status=reversal.status, last_sequence=reversal.last_sequence,
                  charged=PRICE, refunded=ZERO, delivery=S.ACTIVE)
    assert late.ignored and late.status is PaymentStatus.FAILED and late.purchase_event is None
    dup = decide(ev(SettlementKind.FAILED, seq=5), status=PaymentStatus.FAILED, last_sequence=5, charged=PRICE,
                 refunded=ZERO, delivery=S.ACTIVE)
    assert dup.ignored and dup.collection is None


def test_settled_after_failed_closes_the_collection_case():
    d = decide(ev(SettlementKind.SETTLED, seq=7), status=PaymentStatus.FAILED, last_sequence=6, charged=PRICE,
               refunded=ZERO, delivery=S.ACTIVE)
    assert d.close_collection and d.payment_complete


DELIVERY = [s for s in S if s not in (S.REFUSED, *UNPAID)]  # the states a payment exists in


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(SettlementKind)), delivery=st.sampled_from(DELIVERY),
       status=st.sampled_from(list(PaymentStatus)), charged=st.integers(0, 10**7), refunded=st.integers(0, 10**7),
       amount=st.integers(0, 10**7), seq=st.integers(1, 10), last=st.integers(0, 10))
def test_settlement_never_deactivates_and_never_collects_more_than_owed(kind, delivery, status, charged, refunded,
                                                                        amount, seq, last):
    d = decide(ev(kind, seq=seq, amount=Money(amount, "EUR"), reason="X"), status=status, last_sequence=last,
               charged=Money(charged, "EUR"), refunded=Money(refunded, "EUR"), delivery=delivery)
    assert d.keep_service_active
    if d.purchase_event is not None:
        assert transition(delivery, d.purchase_event) is delivery
    if d.collection is not None:
        assert d.collection.amount.is_positive
        if kind is SettlementKind.FAILED:
            assert d.collection.amount.minor <= charged - refunded
    assert d.ignored == (seq <= last)
