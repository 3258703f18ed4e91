"""The domain pieces composed along the service path, as a flow would (pure, no I/O)."""
import copy
import pathlib

import pytest
import yaml

from caas_core.domain.catalogue import Catalogue, DurationType, is_expired
from caas_core.domain.maintenance import RISK_VSS_UNAVAILABLE, VSS_TIMEOUT, assess
from caas_core.domain.money import Money
from caas_core.domain.notifications import NoticeKind
from caas_core.domain.ota_policy import ActivationProgress, RetryPolicy, Step
from caas_core.domain.ota_policy import AttemptOutcome as O
from caas_core.domain.purchase import (
    InvalidTransition,
    needs_deactivation_on_late_activation,
    transition,
)
from caas_core.domain.purchase import (
    PurchaseEvent as E,
)
from caas_core.domain.purchase import (
    PurchaseState as S,
)
from caas_core.domain.refunds import withdrawal
from caas_core.domain.settlement import (
    CollectionKind,
    PaymentStatus,
    SettlementEvent,
    SettlementKind,
    decide,
)
from caas_core.domain.support import resolve_final_failure

CONTRACTS = pathlib.Path(__file__).resolve().parents[3] / "contracts"
STATUS = yaml.safe_load((CONTRACTS / "vss.yaml").read_text())["components"]["schemas"]["MaintenanceStatus"]["examples"][0]
CAT = Catalogue.default()
T0 = 1_767_600_000.0
ZERO = Money.zero("EUR")


def compliant():
    s = copy.deepcopy(STATUS)
    for b in s["blocks"]:
        b["compliancePercent"] = 100
    s["warranty"]["maintenanceRisk"] = False
    return s


def activate(offer, outcomes, policy=None, now=T0):
    """Purchase -> payment -> OTA with the given attempt outcomes; returns (state, decision, now)."""
    policy = policy or RetryPolicy()
    state = transition(S.REQUESTED, E.PAYMENT_INITIATED)
    state = transition(state, E.ACTIVATION_REQUESTED)
    progress = ActivationProgress(now)
    for o in outcomes:
        state = transition(state, E.ACTIVATION_ATTEMPT_STARTED)
        d = policy.decide(progress, o, now)
        progress = d.progress
        if d.step is Step.GIVE_UP:
            return state, d, now
        state = transition(state, d.purchase_event)
        if d.step is Step.ACTIVATED:
            return state, d, now
        now = d.retry_at
    raise AssertionError("outcomes exhausted")


def test_delivered_before_settlement_and_a_failed_settlement_never_deactivates():
    offer = CAT.get("performance-boost")
    assert assess(offer, compliant()).allowed
    state, d, now = activate(offer, [O.failed("VEHICLE_OFFLINE"), O.failed("VEHICLE_OFFLINE"), O.activated()])
    assert state is S.ACTIVE and d.notices == (NoticeKind.SERVICE_ACTIVATED,)
    event = SettlementEvent(SettlementKind.FAILED, "pay_1", 3, now + 86_400, ZERO, "INSUFFICIENT_FUNDS")
    s = decide(event, status=PaymentStatus.PENDING, last_sequence=2, charged=offer.price_for("TEMPORARY"),
               refunded=ZERO, delivery=state)
    assert s.collection.kind is CollectionKind.SETTLEMENT_FAILED and s.collection.amount == Money(9_900, "EUR")
    state = transition(state, s.purchase_event)
    assert state is S.ACTIVE
    expires = offer.expiry_for(DurationType.TEMPORARY, T0)
    assert not is_expired(expires, expires - 1) and is_expired(expires, expires)
    assert transition(state, E.EXPIRED) is S.EXPIRED


def test_undeliverable_service_is_refunded_and_stays_refunded():
    offer = CAT.get("heated-seats")
    state, d, now = activate(offer, [O.failed("VEHICLE_OFFLINE")] * 4)
    assert d.step is Step.GIVE_UP and state is S.ACTIVATING
    plan = resolve_final_failure(
        purchase_id="pur_1", vin="WCAB4BBU1SZ999901", offer=offer, progress=d.progress, failure_reason=d.reason,
        vehicle_status=None, vehicle_status_error="IOT_TIMEOUT", charged=offer.price_for("PERMANENT"),
        already_refunded=ZERO, now=now)
    state = transition(state, plan.purchase_event)
    assert state is S.ACTIVATION_FAILED and plan.refund.amount == Money(29_900, "EUR")
    state = transition(state, E.REFUND_COMPLETED)
    assert state is S.REFUNDED
    with pytest.raises(InvalidTransition):
        transition(state, E.ACTIVATED)  # a very late callback
    assert needs_deactivation_on_late_activation(state)


def test_low_compliance_refuses_and_vss_down_allows_with_risk():
    offer = CAT.get("performance-boost")
    e = assess(offer, STATUS)
    assert e.refused and transition(S.REQUESTED, E.ELIGIBILITY_REFUSED) is S.REFUSED
    e = assess(offer, None, vss_error=VSS_TIMEOUT)
    assert e.allowed and e.risk_decision == RISK_VSS_UNAVAILABLE


def test_withdrawal_within_the_window():
    offer = CAT.get("autopilot-plus")
    state, _, now = activate(offer, [O.activated()])
    w = withdrawal(offer.price_for("PERMANENT"), T0, now + 5 * 86_400, ZERO)
    assert w.refund == Money(750_000, "EUR") and w.deactivate
    assert transition(state, w.purchase_event) is S.WITHDRAWN
