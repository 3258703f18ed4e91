"""caas_core/domain/sale.py: the sale's status order, the factory's notifications (by
sequence, never backwards, the QC rework loop aside), ``require`` and the customer notices."""

import pathlib

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from caas_core.domain.sale import (
    CANCELLABLE,
    FINAL,
    FOLLOWS_FACTORY,
    MANUFACTURING,
    MANUFACTURING_NOTICES,
    SaleConflict,
    SaleStatus,
    StatusDecision,
    manufacturing_update,
    require,
)

S = SaleStatus
CONTRACTS = pathlib.Path(__file__).resolve().parents[3] / "contracts"
FACTORY = yaml.safe_load((CONTRACTS / "factory.yaml").read_text())["components"]["schemas"]
KINDS = ("STATUS_CHANGED", "MILESTONE_REACHED", "ESTIMATE_UPDATED", "TRACKING_UPDATED")
#: Every status of the sale after the factory's part: CaaS's own, the factory no longer moves it.
CAAS_OWN = [s for s in S if s not in FOLLOWS_FACTORY]


def note(status, sequence, notification="STATUS_CHANGED", previous=None):
    return {"sequence": sequence, "notification": notification, "status": S(status).value,
            "previousStatus": S(previous).value if previous else None}


def rank(status):
    return MANUFACTURING.index(status)


def is_rework(current, decision, notification):
    return (current is S.QUALITY_CONTROL and decision.status is S.PRODUCTION_IN_PROGRESS
            and notification["notification"] == "STATUS_CHANGED" and notification["previousStatus"] == "QUALITY_CONTROL")


# --- the status order -------------------------------------------------------------------

def test_the_manufacturing_order_is_the_factorys():
    assert [s.value for s in MANUFACTURING] == FACTORY["OrderStatus"]["enum"]
    assert FACTORY["NotificationKind"]["enum"] == list(KINDS)


def test_which_statuses_follow_the_factory_end_the_sale_or_may_be_cancelled():
    assert FOLLOWS_FACTORY == {S.ORDER_QUEUED, *MANUFACTURING}
    assert FINAL == {S.ORDER_REJECTED, S.RETURNED_TO_STOCK, S.DELIVERED, S.CANCELLED}
    assert CANCELLABLE == {S.ORDER_QUEUED, S.REGISTRATION}
    assert not FINAL & FOLLOWS_FACTORY and not FINAL & CANCELLABLE


# --- by sequence: duplicates and late ones change nothing -------------------------------

@pytest.mark.parametrize("sequence, reason", [(5, "duplicate"), (4, "stale"), (1, "stale")])
def test_a_notification_not_newer_than_the_last_applied_is_ignored(sequence, reason):
    decision = manufacturing_update("PRODUCTION_SCHEDULED", 5, note("IN_TRANSIT", sequence))
    assert decision == StatusDecision(False, None, reason)


def test_a_notification_without_a_sequence_counts_as_sequence_0():
    assert manufacturing_update("ORDER_PLACED", 0, {"status": "PRODUCTION_SCHEDULED"}) == \
        StatusDecision(False, None, "duplicate")
    assert manufacturing_update("ORDER_PLACED", 3, {"status": "PRODUCTION_SCHEDULED", "sequence": None}) == \
        StatusDecision(False, None, "stale")


@given(current=st.sampled_from(list(S)), new=st.sampled_from(MANUFACTURING), last=st.integers(1, 1000),
       back=st.integers(0, 1000), kind=st.sampled_from(KINDS))
def test_whatever_the_statuses_an_old_sequence_changes_nothing(current, new, last, back, kind):
    sequence = max(0, last - back)
    decision = manufacturing_update(current.value, last, note(new, sequence, kind, current if current in
                                                              MANUFACTURING else None))
    assert not decision.apply and decision.status is None
    assert decision.reason == ("duplicate" if sequence == last else "stale")


# --- forwards, never backwards ----------------------------------------------------------

@pytest.mark.parametrize("current, new", [(a, b) for i, a in enumerate(MANUFACTURING[:-1])
                                          for b in MANUFACTURING[i + 1:-1]])
def test_a_newer_notification_of_a_later_status_moves_the_sale_forward(current, new):
    decision = manufacturing_update(current.value, 4, note(new, 5, previous=current))
    assert decision == StatusDecision(True, new, "applied")


@pytest.mark.parametrize("current", MANUFACTURING[:-1])
def test_arrival_at_the_dealership_asks_for_the_final_payment(current):
    decision = manufacturing_update(current.value, 4, note(S.ARRIVED_AT_DEALERSHIP, 5, "MILESTONE_REACHED"))
    assert decision == StatusDecision(True, S.AWAITING_FINAL_PAYMENT, "applied")


def test_an_in_transit_sale_does_not_go_back_to_quality_control_on_a_newer_sequence():
    """Issue 22: QUALITY_CONTROL with sequence 6 after 5 applied, to a sale IN_TRANSIT."""
    decision = manufacturing_update("IN_TRANSIT", 5, note("QUALITY_CONTROL", 6, previous="IN_TRANSIT"))
    assert decision == StatusDecision(True, None, "no regression from IN_TRANSIT to QUALITY_CONTROL")


@pytest.mark.parametrize("current, new", [(a, b) for i, a in enumerate(MANUFACTURING) for b in MANUFACTURING[:i]
                                          if (a, b) != (S.QUALITY_CONTROL, S.PRODUCTION_IN_PROGRESS)])
@pytest.mark.parametrize("kind", KINDS)
def test_an_earlier_status_never_moves_the_sale_back_even_with_a_newer_sequence(current, new, kind):
    decision = manufacturing_update(current.value, 5, note(new, 6, kind, previous=current))
    # applied: the sequence is consumed (older ones become stale), the status stays
    assert decision == StatusDecision(True, None, f"no regression from {current.value} to {new.value}")


@pytest.mark.parametrize("current", MANUFACTURING)
def test_the_same_status_again_is_recorded_and_moves_nothing(current):
    for kind in KINDS:
        assert manufacturing_update(current.value, 2, note(current, 3, kind, current)) == \
            StatusDecision(True, None, "recorded")


@pytest.mark.parametrize("new", MANUFACTURING)
def test_a_queued_order_takes_whatever_status_the_factory_reports(new):
    decision = manufacturing_update("ORDER_QUEUED", 0, note(new, 1))
    assert decision.apply and decision.reason == "applied"
    assert decision.status is (S.AWAITING_FINAL_PAYMENT if new is S.ARRIVED_AT_DEALERSHIP else new)


@pytest.mark.parametrize("current", CAAS_OWN)
@pytest.mark.parametrize("new", [S.QUALITY_CONTROL, S.IN_TRANSIT, S.ARRIVED_AT_DEALERSHIP])
def test_once_the_sale_is_caas_own_notifications_are_recorded_only(current, new):
    decision = manufacturing_update(current.value, 9, note(new, 10))
    assert decision == StatusDecision(True, None, f"recorded (sale is {current.value})")


# --- the QC rework loop -----------------------------------------------------------------

def test_a_failed_quality_control_sends_the_vehicle_back_to_production_and_then_to_qc_again():
    back = manufacturing_update("QUALITY_CONTROL", 9, note("PRODUCTION_IN_PROGRESS", 10, previous="QUALITY_CONTROL"))
    assert back == StatusDecision(True, S.PRODUCTION_IN_PROGRESS, "applied")
    again = manufacturing_update("PRODUCTION_IN_PROGRESS", 10, note("QUALITY_CONTROL", 11,
                                                                    previous="PRODUCTION_IN_PROGRESS"))
    assert again == StatusDecision(True, S.QUALITY_CONTROL, "applied")


@pytest.mark.parametrize("kind, previous", [
    ("MILESTONE_REACHED", "QUALITY_CONTROL"),   # only a status change is a rework
    ("TRACKING_UPDATED", "QUALITY_CONTROL"),
    ("ESTIMATE_UPDATED", "PRODUCTION_IN_PROGRESS"),
    ("STATUS_CHANGED", "PRODUCTION_IN_PROGRESS"),  # not from QC: a late status change
    ("STATUS_CHANGED", None),
])
def test_anything_else_from_quality_control_back_to_production_is_a_regression(kind, previous):
    decision = manufacturing_update("QUALITY_CONTROL", 9, note("PRODUCTION_IN_PROGRESS", 10, kind, previous))
    assert decision == StatusDecision(True, None, "no regression from QUALITY_CONTROL to PRODUCTION_IN_PROGRESS")


@pytest.mark.parametrize("current", [S.READY_FOR_SHIPMENT, S.IN_TRANSIT, S.ARRIVED_AT_DEALERSHIP])
def test_the_rework_loop_never_takes_a_sale_that_left_quality_control_back(current):
    decision = manufacturing_update(current.value, 9, note("PRODUCTION_IN_PROGRESS", 10, previous="QUALITY_CONTROL"))
    assert decision.apply and decision.status is None


# --- properties over any notifications, in any order ----------------------------------

notifications = st.builds(
    lambda status, sequence, kind, previous: note(status, sequence, kind, previous),
    st.sampled_from(MANUFACTURING), st.integers(0, 40), st.sampled_from(KINDS),
    st.one_of(st.none(), st.sampled_from(MANUFACTURING)))


def fold(status, deliveries):
    """Apply deliveries as manufacturing.py does; the statuses the sale goes through."""
    last, seen = 0, [status]
    for n in deliveries:
        decision = manufacturing_update(status, last, n)
        if decision.apply:
            assert n["sequence"] > last
            last = n["sequence"]
            if decision.status is not None:
                status = decision.status
        seen.append(status)
    return seen


@given(start=st.sampled_from(MANUFACTURING[:-1]), deliveries=st.lists(notifications, max_size=30))
def test_no_notification_ever_moves_a_sale_backwards_but_the_qc_rework(start, deliveries):
    status, last = start, 0
    for n in deliveries:
        decision = manufacturing_update(status.value, last, n)
        if decision.apply:
            last = n["sequence"]
        if decision.status is not None:
            moved = S.ARRIVED_AT_DEALERSHIP if decision.status is S.AWAITING_FINAL_PAYMENT else decision.status
            assert rank(moved) > rank(status) or is_rework(status, decision, n), (status, n, decision)
            assert decision.status is S(n["status"]) or decision.status is S.AWAITING_FINAL_PAYMENT
            status = decision.status
        if status is S.AWAITING_FINAL_PAYMENT:
            break


FLOW = [note(S.PRODUCTION_SCHEDULED, 1, previous=S.ORDER_PLACED),
        note(S.PRODUCTION_IN_PROGRESS, 2, previous=S.PRODUCTION_SCHEDULED),
        note(S.PRODUCTION_IN_PROGRESS, 3, "MILESTONE_REACHED", S.PRODUCTION_IN_PROGRESS),
        note(S.QUALITY_CONTROL, 4, previous=S.PRODUCTION_IN_PROGRESS),
        note(S.PRODUCTION_IN_PROGRESS, 5, previous=S.QUALITY_CONTROL),  # QC failed: rework
        note(S.QUALITY_CONTROL, 6, previous=S.PRODUCTION_IN_PROGRESS),
        note(S.READY_FOR_SHIPMENT, 7, previous=S.QUALITY_CONTROL),
        note(S.IN_TRANSIT, 8, previous=S.READY_FOR_SHIPMENT),
        note(S.IN_TRANSIT, 9, "TRACKING_UPDATED", S.IN_TRANSIT),
        note(S.ARRIVED_AT_DEALERSHIP, 10, previous=S.IN_TRANSIT)]


def test_in_order_the_sale_follows_the_whole_flow_rework_included():
    assert fold(S.ORDER_PLACED, FLOW) == [S.ORDER_PLACED, S.PRODUCTION_SCHEDULED, S.PRODUCTION_IN_PROGRESS,
                                          S.PRODUCTION_IN_PROGRESS, S.QUALITY_CONTROL, S.PRODUCTION_IN_PROGRESS,
                                          S.QUALITY_CONTROL, S.READY_FOR_SHIPMENT, S.IN_TRANSIT, S.IN_TRANSIT,
                                          S.AWAITING_FINAL_PAYMENT]


@given(order=st.permutations(range(len(FLOW))), again=st.lists(st.integers(0, len(FLOW) - 1), max_size=10),
       start=st.sampled_from([S.ORDER_QUEUED, S.ORDER_PLACED]))
def test_reordered_and_duplicated_deliveries_end_where_the_factory_is(order, again, start):
    deliveries = [FLOW[i] for i in order]
    for i, j in enumerate(again):  # redeliveries, anywhere
        deliveries.insert(min(len(deliveries), i * 2), FLOW[j])
    seen = fold(start, deliveries)
    assert seen[-1] is S.AWAITING_FINAL_PAYMENT
    # whatever the order, past IN_TRANSIT the sale never returns to an earlier status
    shipped = next((i for i, s in enumerate(seen) if s is S.IN_TRANSIT), len(seen))
    assert all(s in (S.IN_TRANSIT, S.AWAITING_FINAL_PAYMENT) for s in seen[shipped:])


# --- require and SaleConflict -----------------------------------------------------------

def test_require_passes_in_an_allowed_status():
    assert require("REGISTRATION", "cancel", *CANCELLABLE) is None
    assert require("AWAITING_FINAL_PAYMENT", "pay", S.AWAITING_FINAL_PAYMENT) is None


def test_require_raises_a_conflict_naming_the_status_the_operation_and_what_is_allowed():
    with pytest.raises(SaleConflict) as raised:
        require("IN_TRANSIT", "cancel", S.REGISTRATION, S.ORDER_QUEUED)
    assert raised.value.status == "IN_TRANSIT"
    assert str(raised.value) == "cannot cancel a sale in status IN_TRANSIT; only in ORDER_QUEUED, REGISTRATION"


@given(status=st.sampled_from(list(S)), allowed=st.sets(st.sampled_from(list(S))))
def test_require_allows_exactly_the_statuses_given(status, allowed):
    if status in allowed:
        require(status.value, "act", *allowed)
    else:
        with pytest.raises(SaleConflict, match=f"status {status.value};"):
            require(status.value, "act", *allowed)


def test_require_refuses_a_status_that_does_not_exist():
    with pytest.raises(ValueError):
        require("SHIPPED", "pay", S.AWAITING_FINAL_PAYMENT)


# --- the customer notices (Transport Coordination table) -------------------------------

def test_the_customer_notice_of_each_manufacturing_status():
    assert MANUFACTURING_NOTICES == {
        S.PRODUCTION_SCHEDULED: "MANUFACTURING_UPDATE",
        S.PRODUCTION_IN_PROGRESS: "MANUFACTURING_UPDATE",
        S.QUALITY_CONTROL: "MANUFACTURING_UPDATE",
        S.READY_FOR_SHIPMENT: "VEHICLE_READY_FOR_SHIPMENT",
        S.IN_TRANSIT: "VEHICLE_SHIPPED",
        S.AWAITING_FINAL_PAYMENT: "VEHICLE_AVAILABLE_FINAL_PAYMENT_REQUESTED",
    }


def test_every_status_a_notification_moves_the_sale_to_has_a_notice_but_the_order_itself():
    reached = {manufacturing_update("ORDER_QUEUED", 0, note(new, 1)).status for new in MANUFACTURING}
    # ORDER_PLACED is told by the order's placement (ORDER_CONFIRMED), not by the factory's notification
    assert set(MANUFACTURING_NOTICES) == reached - {S.ORDER_PLACED}
    assert S.ARRIVED_AT_DEALERSHIP not in MANUFACTURING_NOTICES  # the sale goes to AWAITING_FINAL_PAYMENT
