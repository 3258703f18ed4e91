import copy
import pathlib

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_core.domain.blocks import Block
from caas_core.domain.catalogue import (
    Catalogue,
    DurationType,
    Requirement,
    ServiceOffer,
)
from caas_core.domain.maintenance import (
    RISK_VSS_UNAVAILABLE,
    RISK_VSS_VEHICLE_UNKNOWN,
    VSS_NOT_FOUND,
    VSS_TIMEOUT,
    VSS_UNAVAILABLE,
    Verdict,
    WarningCode,
    assess,
    needs_vss,
)
from caas_core.domain.money import Money

CONTRACTS = pathlib.Path(__file__).resolve().parents[3] / "contracts"
#: The contract's own example: WCAZ3N9R2TZ999802, Brakes 23%, everything else 100%, maintenanceRisk.
BRAKES_OVERDUE = yaml.safe_load((CONTRACTS / "vss.yaml").read_text())[
    "components"]["schemas"]["MaintenanceStatus"]["examples"][0]
CAT = Catalogue.default()


def status(**pcts: int) -> dict:
    """The contract example with some blocks' compliance replaced and no warranty issue."""
    s = copy.deepcopy(BRAKES_OVERDUE)
    for b in s["blocks"]:
        b["compliancePercent"] = pcts.get(b["code"], 100)
    s["warranty"]["maintenanceRisk"] = False
    return s


def test_contract_example_refuses_performance_boost_for_brakes():
    e = assess(CAT.get("performance-boost"), BRAKES_OVERDUE)
    assert e.verdict is Verdict.REFUSED and e.refused and not e.allowed
    assert [(s.block, s.actual_pct, s.required_pct) for s in e.shortfalls] == [(Block.BRAKES, 23, 80)]
    assert "Brakes" in e.message and "23%" in e.message and "80%" in e.message
    assert "complete the scheduled maintenance" in e.message
    assert e.warning_codes == (WarningCode.MAINTENANCE_RISK,)
    assert e.risk_decision is None
    assert e.compliance[Block.POWERTRAIN] == 100


def test_several_blocks_below_threshold_are_all_named():
    e = assess(CAT.get("track-mode"), status(BRAKES=85, DRIVETRAIN=40))
    assert {s.block for s in e.shortfalls} == {Block.BRAKES, Block.DRIVETRAIN}
    assert "Brakes (compliance 85%, 90% required)" in e.message
    assert "Drivetrain (compliance 40%, 90% required)" in e.message
    assert "Suspension" not in e.message


def test_compliant_vehicle_is_allowed_without_warnings():
    e = assess(CAT.get("track-mode"), status())
    assert e.verdict is Verdict.ALLOWED and e.shortfalls == () and e.warnings == ()


def test_threshold_is_inclusive():
    pb = CAT.get("performance-boost")
    assert assess(pb, status(POWERTRAIN=80, BRAKES=80)).allowed
    assert assess(pb, status(POWERTRAIN=79)).refused


def test_service_without_requirements_needs_no_vss():
    hs = CAT.get("heated-seats")
    assert not needs_vss(hs) and needs_vss(CAT.get("performance-boost"))
    assert assess(hs, None).verdict is Verdict.ALLOWED
    assert assess(hs, None, vss_error=VSS_UNAVAILABLE).verdict is Verdict.ALLOWED
    # when a status is at hand anyway, its warranty warnings are shown
    assert assess(hs, BRAKES_OVERDUE).warning_codes == (WarningCode.MAINTENANCE_RISK,)


@pytest.mark.parametrize("error", [VSS_UNAVAILABLE, VSS_TIMEOUT, "HTTP 503"])
def test_vss_unavailable_allows_and_records_the_risk(error):
    e = assess(CAT.get("performance-boost"), None, vss_error=error)
    assert e.verdict is Verdict.ALLOWED_UNVERIFIED and e.allowed
    assert e.risk_decision == RISK_VSS_UNAVAILABLE and e.risk_reason == error
    assert e.warning_codes == (WarningCode.MAINTENANCE_UNVERIFIED,)


def test_vss_error_wins_over_a_stale_status_and_none_means_unavailable():
    assert assess(CAT.get("performance-boost"), BRAKES_OVERDUE, vss_error=VSS_TIMEOUT).allowed
    assert assess(CAT.get("performance-boost"), None).risk_decision == RISK_VSS_UNAVAILABLE


def test_vehicle_unknown_to_vss_is_allowed_with_its_own_risk_decision():
    e = assess(CAT.get("performance-boost"), None, vss_error=VSS_NOT_FOUND)
    assert e.allowed and e.risk_decision == RISK_VSS_VEHICLE_UNKNOWN


@pytest.mark.parametrize("mangle", [
    lambda s: s.pop("blocks"),
    lambda s: s["blocks"][2].update(compliancePercent="23"),
    lambda s: s["blocks"][2].update(compliancePercent=101),
    lambda s: s["blocks"][2].update(code="WIPERS", name="Wipers"),
    lambda s: s.update(blocks=[b for b in s["blocks"] if b["code"] != "BRAKES"]),
])
def test_unreadable_answer_is_treated_as_unavailable(mangle):
    s = copy.deepcopy(BRAKES_OVERDUE)
    mangle(s)
    e = assess(CAT.get("performance-boost"), s)
    assert e.verdict is Verdict.ALLOWED_UNVERIFIED
    assert e.risk_decision == RISK_VSS_UNAVAILABLE and e.risk_reason.startswith("invalid_response")


def test_warranty_warnings():
    s = status()
    s["warranty"].update(status="EXPIRED", expiredBy="MILEAGE", maintenanceRisk=False)
    e = assess(CAT.get("performance-boost"), s)
    assert e.allowed and e.warning_codes == (WarningCode.WARRANTY_EXPIRED,)
    assert "mileage" in e.warnings[0].message
    s = status(BRAKES=10)
    s["warranty"].update(maintenanceRisk=True)
    e = assess(CAT.get("performance-boost"), s)
    assert e.refused and e.warning_codes == (WarningCode.MAINTENANCE_RISK,)


def test_thresholds_are_per_service_configuration():
    strict = Catalogue.from_dict({"services": {"performance-boost": {"requirements": {"Powertrain": 95}}}},
                                 base=CAT).get("performance-boost")
    assert assess(strict, status(POWERTRAIN=90)).refused
    assert assess(strict, status(BRAKES=0)).allowed  # Brakes is no longer required


blocks = st.sampled_from(list(Block))


@settings(max_examples=150, deadline=None)
@given(
    reqs=st.dictionaries(blocks, st.integers(0, 100), min_size=1, max_size=6),
    actual=st.fixed_dictionaries({b.value: st.integers(0, 100) for b in Block}),
)
def test_refused_exactly_when_a_required_block_is_below_its_threshold(reqs, actual):
    offer = ServiceOffer("x", "X", ("sport_mode",), {}, {DurationType.PERMANENT: Money(100, "EUR")},
                         requirements=tuple(Requirement(b, p) for b, p in reqs.items()))
    e = assess(offer, status(**actual))
    below = {b for b, p in reqs.items() if actual[b.value] < p}
    assert e.refused == bool(below)
    assert {s.block for s in e.shortfalls} == below
    for s in e.shortfalls:
        assert s.actual_pct == actual[s.block.value] and s.required_pct == reqs[s.block]
        assert s.block.display_name in e.message
