"""Delivery chaos over the pure state machines (caas_core.domain): webhooks duplicated and
reordered fold to the same final state as the same webhooks delivered once, in order.
Seeded and small in `make test`; CAAS_CHAOS_EXAMPLES=2000 for the long form."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from caas_core.domain.money import Money
from caas_core.domain.purchase import PurchaseEvent as E
from caas_core.domain.purchase import PurchaseState as S
from caas_core.domain.purchase import run
from caas_core.domain.settlement import (
    PaymentStatus,
    SettlementEvent,
    SettlementKind,
    decide,
)

EXAMPLES = int(os.environ.get("CAAS_CHAOS_EXAMPLES", "150"))
CHAOS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None)
EUR = lambda minor: Money(minor, "EUR")

#: What a gateway may say about one payment, in its order (sequence 1, 2, ...).
HISTORIES = [[SettlementKind.SETTLED], [SettlementKind.FAILED], [SettlementKind.SETTLED, SettlementKind.FAILED],
             [SettlementKind.SETTLED, SettlementKind.CHARGEBACK]]


def deliveries(events):
    """Any order, any number of copies (at least one of each: delivery is at least once)."""
    return st.lists(st.sampled_from(events), max_size=3 * len(events)).flatmap(
        lambda extra: st.permutations([*events, *extra]))


def history_events(kinds):
    return [SettlementEvent(kind, "pay_1", seq, 1_767_600_000.0 + seq, EUR(0 if kind is SettlementKind.FAILED else 999),
                            "BANK_REVERSAL" if (kind is SettlementKind.FAILED and seq > 1) else "INSUFFICIENT_FUNDS",
                            EUR(30)) for seq, kind in enumerate(kinds, start=1)]


def fold(events, delivery: S):
    status, last, open_cases = PaymentStatus.PENDING, 0, []
    for event in events:
        d = decide(event, status=status, last_sequence=last, charged=EUR(999), refunded=EUR(0), delivery=delivery)
        if d.ignored:
            continue
        status, last = d.status, d.last_sequence
        if d.close_collection:
            open_cases = []
        if d.collection:
            open_cases.append(d.collection.kind)
    return status, last, sorted(open_cases)


@CHAOS
@given(data=st.data(), kinds=st.sampled_from(HISTORIES), delivery=st.sampled_from([S.ACTIVE, S.REFUNDED, S.EXPIRED]))
def test_settlement_webhooks_in_any_order_and_number_settle_the_same(data, kinds, delivery):
    events = history_events(kinds)
    chaotic = data.draw(deliveries(events))
    in_order = fold(events, delivery)
    assert fold(chaotic, delivery)[:2] == in_order[:2]  # the payment ends as the gateway's last word says
    assert in_order[0] is not PaymentStatus.PENDING


#: Delivery paths, in order, as the flows drive them; the webhook-driven events in each may
#: arrive again (at least once), and settlement events at any point after payment.
PATHS = {
    S.ACTIVE: [E.PAYMENT_INITIATED, E.ACTIVATION_REQUESTED, E.ACTIVATION_ATTEMPT_STARTED, E.ACTIVATED],
    S.REFUNDED: [E.PAYMENT_INITIATED, E.ACTIVATION_REQUESTED, E.ACTIVATION_ATTEMPT_STARTED,
                 E.ACTIVATION_ATTEMPT_FAILED, E.ALL_ATTEMPTS_FAILED, E.REFUND_COMPLETED],
    S.WITHDRAWN: [E.PAYMENT_INITIATED, E.ACTIVATION_REQUESTED, E.ACTIVATION_ATTEMPT_STARTED, E.ACTIVATED,
                  E.WITHDRAWN, E.REFUND_COMPLETED],
    S.EXPIRED: [E.PAYMENT_INITIATED, E.ACTIVATION_REQUESTED, E.ACTIVATION_ATTEMPT_STARTED, E.ACTIVATED, E.EXPIRED],
}
#: Events that come from webhooks (or timers that may fire twice) and must be idempotent. A
#: withdrawal is the customer's request, refused the second time (409: no second refund or notice).
REPEATABLE = {E.ACTIVATED, E.REFUND_COMPLETED, E.EXPIRED}
SETTLEMENT = [E.SETTLED, E.SETTLEMENT_FAILED, E.CHARGEBACK]


@st.composite
def chaotic_path(draw, final):
    path = list(PATHS[final])
    out: list[E] = []
    for event in path:
        out.append(event)
        if event in REPEATABLE:
            out += [event] * draw(st.integers(0, 2))
    settlement = draw(st.lists(st.sampled_from(SETTLEMENT), max_size=4))
    for event in settlement:  # anywhere once a payment exists
        out.insert(draw(st.integers(1, len(out))), event)
    return out


@CHAOS
@given(data=st.data(), final=st.sampled_from(list(PATHS)))
def test_duplicated_webhooks_and_settlement_at_any_time_keep_the_delivery_state(data, final):
    assert run(S.REQUESTED, PATHS[final]) is final
    assert run(S.REQUESTED, data.draw(chaotic_path(final))) is final
