import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_core.domain.purchase import (
    SETTLEMENT_EVENTS,
    TERMINAL,
    TRANSITIONS,
    UNPAID,
    InvalidTransition,
    Liability,
    allowed_events,
    can,
    is_active,
    is_terminal,
    liability,
    needs_deactivation_on_late_activation,
    run,
    transition,
)
from caas_core.domain.purchase import (
    PurchaseEvent as E,
)
from caas_core.domain.purchase import (
    PurchaseState as S,
)


def test_one_time_happy_path():
    assert run(S.REQUESTED, [E.PAYMENT_INITIATED, E.ACTIVATION_REQUESTED, E.ACTIVATION_ATTEMPT_STARTED,
                             E.ACTIVATED, E.SETTLED, E.EXPIRED]) is S.EXPIRED


def test_subscription_is_post_paid():
    assert run(S.REQUESTED, [E.BILLING_ARRANGED, E.ACTIVATION_REQUESTED, E.ACTIVATION_ATTEMPT_STARTED,
                             E.ACTIVATED, E.SETTLED, E.SUBSCRIPTION_CANCELLED]) is S.CANCELLED


def test_retries_then_failure_then_refund():
    s = run(S.REQUESTED, [E.PAYMENT_INITIATED, E.ACTIVATION_REQUESTED])
    for _ in range(3):
        s = run(s, [E.ACTIVATION_ATTEMPT_STARTED, E.ACTIVATION_ATTEMPT_FAILED])
    assert s is S.ACTIVATION_QUEUED
    s = run(s, [E.ACTIVATION_ATTEMPT_STARTED, E.ACTIVATION_DEFERRED, E.ACTIVATION_DEFERRED,
                E.ACTIVATION_ATTEMPT_STARTED, E.ALL_ATTEMPTS_FAILED])
    assert s is S.ACTIVATION_FAILED
    assert run(s, [E.REFUND_FAILED, E.REFUND_COMPLETED, E.REFUND_COMPLETED]) is S.REFUNDED


def test_refusals():
    assert transition(S.REQUESTED, E.ELIGIBILITY_REFUSED) is S.REFUSED
    assert transition(S.REQUESTED, E.PAYMENT_DECLINED) is S.REFUSED
    assert allowed_events(S.REFUSED) == frozenset()


def test_late_callback_during_backoff_activates():
    assert transition(S.ACTIVATION_QUEUED, E.ACTIVATED) is S.ACTIVE
    assert transition(S.ACTIVE, E.ACTIVATED) is S.ACTIVE  # duplicate callback


def test_withdrawal_before_and_after_delivery():
    for s in (S.PAYMENT_INITIATED, S.ACTIVATION_QUEUED, S.ACTIVATING, S.ACTIVE):
        assert transition(s, E.WITHDRAWN) is S.WITHDRAWN
    assert run(S.WITHDRAWN, [E.REFUND_COMPLETED, E.SETTLEMENT_FAILED]) is S.WITHDRAWN
    assert not can(S.EXPIRED, E.WITHDRAWN)


@pytest.mark.parametrize("state, event", [
    (S.REQUESTED, E.ACTIVATED),
    (S.REQUESTED, E.SETTLED),
    (S.REFUSED, E.PAYMENT_INITIATED),
    (S.PAYMENT_INITIATED, E.ACTIVATED),
    (S.ACTIVE, E.ALL_ATTEMPTS_FAILED),
    (S.ACTIVE, E.REFUND_COMPLETED),
    (S.ACTIVATION_FAILED, E.ACTIVATED),
    (S.REFUNDED, E.ACTIVATED),
    (S.WITHDRAWN, E.ACTIVATED),
    (S.EXPIRED, E.ACTIVATED),
    (S.CANCELLED, E.ACTIVATION_REQUESTED),
    (S.ACTIVATING, E.ACTIVATION_ATTEMPT_STARTED),
])
def test_invalid_transitions_raise_clearly(state, event):
    with pytest.raises(InvalidTransition) as info:
        transition(state, event)
    assert info.value.state is state and info.value.event is event
    assert f"event {event.value} is not allowed in state {state.value}" in str(info.value)
    assert not can(state, event)


def test_strings_are_accepted_and_unknown_names_refused():
    assert transition("REQUESTED", "PAYMENT_INITIATED") is S.PAYMENT_INITIATED
    with pytest.raises(ValueError):
        transition("REQUESTED", "TELEPORTED")


def test_liability_and_helpers():
    assert liability(S.ACTIVE) is Liability.LIABLE
    assert liability(S.EXPIRED) is Liability.LIABLE
    assert liability(S.ACTIVATING) is Liability.PENDING
    assert liability(S.ACTIVATION_FAILED) is Liability.NOT_LIABLE
    assert liability(S.WITHDRAWN) is Liability.NOT_LIABLE
    assert is_active(S.ACTIVE) and not is_active(S.EXPIRED)
    assert is_terminal(S.REFUNDED) and not is_terminal(S.ACTIVATION_FAILED)
    assert needs_deactivation_on_late_activation(S.REFUNDED)
    assert not needs_deactivation_on_late_activation(S.ACTIVATION_QUEUED)


def test_every_state_has_a_row_and_terminal_states_only_loop():
    assert set(TRANSITIONS) == set(S)
    for s in TERMINAL:
        assert all(nxt is s for nxt in TRANSITIONS[s].values())


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(S)), st.sampled_from(sorted(SETTLEMENT_EVENTS)))
def test_settlement_events_never_change_the_delivery_state(state, event):
    if state is S.REFUSED or state in UNPAID:  # no payment exists yet
        with pytest.raises(InvalidTransition):
            transition(state, event)
    else:
        assert transition(state, event) is state


def walk(start, events):
    """Apply the events that are allowed, skipping the others; yield every state reached."""
    s = start
    for e in events:
        if can(s, e):
            s = transition(s, e)
        yield s


GIVEN_UP = [S.REFUSED, S.ACTIVATION_FAILED, S.REFUNDED, S.WITHDRAWN, S.EXPIRED, S.CANCELLED]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(GIVEN_UP), st.lists(st.sampled_from(list(E)), max_size=40))
def test_nothing_makes_a_given_up_purchase_active_again(start, events):
    for s in walk(start, events):
        assert s not in (S.ACTIVE, S.ACTIVATING, S.ACTIVATION_QUEUED, S.PAYMENT_INITIATED)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(E)), max_size=40))
def test_once_refunded_always_refunded(events):
    s = run(S.REQUESTED, [E.PAYMENT_INITIATED, E.ACTIVATION_REQUESTED, E.ALL_ATTEMPTS_FAILED, E.REFUND_COMPLETED])
    assert all(x is S.REFUNDED for x in walk(s, events))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(SETTLEMENT_EVENTS) + [E.ACTIVATED]), max_size=30))
def test_an_active_service_stays_active_whatever_the_money_does(events):
    assert all(x is S.ACTIVE for x in walk(S.ACTIVE, events))


def test_a_deferred_payment_goes_on_to_activation_once_charged_or_to_manual_processing():
    assert run(S.REQUESTED, [E.PAYMENT_POSTPONED, E.PAYMENT_POSTPONED, E.PAYMENT_INITIATED,
                             E.ACTIVATION_REQUESTED]) is S.ACTIVATION_QUEUED
    assert run(S.REQUESTED, [E.PAYMENT_POSTPONED, E.MANUAL_PAYMENT_REQUIRED]) is S.MANUAL_PAYMENT
    assert run(S.REQUESTED, [E.PAYMENT_POSTPONED, E.WITHDRAWN]) is S.WITHDRAWN
    for unpaid in (S.PAYMENT_DEFERRED, S.MANUAL_PAYMENT):  # nothing is activated unpaid
        assert not can(unpaid, E.ACTIVATION_ATTEMPT_STARTED) and not can(unpaid, E.ACTIVATED)
        assert liability(unpaid) is Liability.PENDING
