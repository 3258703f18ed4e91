import pathlib
from itertools import pairwise

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_core.domain.notifications import CHANNELS, Channel, NoticeKind
from caas_core.domain.ota_policy import (
    OTA_ERROR_CODES,
    ActivationProgress,
    RetryPolicy,
    Step,
    Verdict,
)
from caas_core.domain.ota_policy import (
    AttemptOutcome as O,
)
from caas_core.domain.purchase import PurchaseEvent as E
from caas_core.domain.purchase import PurchaseState as S
from caas_core.domain.purchase import transition

CONTRACTS = pathlib.Path(__file__).resolve().parents[3] / "contracts"
T0 = 1_767_600_000.0


def test_error_codes_are_the_iot_contracts():
    doc = yaml.safe_load((CONTRACTS / "iot.yaml").read_text())
    assert set(doc["components"]["schemas"]["OtaErrorCode"]["enum"]) == OTA_ERROR_CODES


def test_defaults_follow_the_specification():
    p = RetryPolicy()
    assert p.attempts == 4 and p.attempt_timeout == 60 and p.deadline == 24 * 3600
    assert p.backoff == (60, 300, 900, 1800)
    assert p.schedule() == (60, 300, 900)
    assert RetryPolicy(attempts=5).schedule() == (60, 300, 900, 1800)
    assert RetryPolicy(attempts=3).schedule() == (60, 300)
    assert p.attempt_deadline(T0) == T0 + 60


@pytest.mark.parametrize("kwargs", [
    {"attempts": 2}, {"attempts": 6}, {"attempts": 4.0}, {"backoff": ()}, {"backoff": (60, 30)},
    {"backoff": (0, 60)}, {"attempt_timeout": 0}, {"deadline": 10},
])
def test_invalid_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_from_dict():
    p = RetryPolicy.from_dict({"attempts": 5, "backoff": [30, 60], "terminal_error_codes": ["ECU_ERROR"]})
    assert p.schedule() == (30, 60, 60, 60) and p.terminal_error_codes == {"ECU_ERROR"}
    with pytest.raises(ValueError, match="unknown"):
        RetryPolicy.from_dict({"retries": 3})


def test_next_attempt_at():
    p = RetryPolicy()
    assert p.next_attempt_at(1, T0) == T0 + 60
    assert p.next_attempt_at(2, T0) == T0 + 300
    assert p.next_attempt_at(3, T0) == T0 + 900
    assert p.next_attempt_at(4, T0) is None
    assert RetryPolicy(attempts=5).next_attempt_at(4, T0) == T0 + 1800
    assert RetryPolicy(attempts=5).next_attempt_at(5, T0) is None
    with pytest.raises(ValueError):
        p.next_attempt_at(0, T0)


@pytest.mark.parametrize("outcome, verdict, counts, retry, code", [
    (O.activated(), Verdict.ACTIVATED, True, False, None),
    (O.failed("VEHICLE_OFFLINE"), Verdict.FAILED, True, True, "VEHICLE_OFFLINE"),
    (O.failed("ECU_ERROR"), Verdict.FAILED, True, True, "ECU_ERROR"),
    (O.failed("LOW_BATTERY"), Verdict.FAILED, True, True, "LOW_BATTERY"),
    (O.failed("TIMEOUT"), Verdict.FAILED, True, True, "TIMEOUT"),
    (O.failed("FEATURE_NOT_INSTALLED"), Verdict.FAILED, True, False, "FEATURE_NOT_INSTALLED"),
    (O.failed("CONFIG_REJECTED"), Verdict.FAILED, True, False, "CONFIG_REJECTED"),
    (O.failed(None), Verdict.FAILED, True, True, "UNKNOWN"),
    (O.no_callback(), Verdict.FAILED, True, True, "TIMEOUT"),
    (O.http(500), Verdict.API_UNAVAILABLE, False, True, "IOT_HTTP_500"),
    (O.http(503, retry_after=120), Verdict.API_UNAVAILABLE, False, True, "IOT_HTTP_503"),
    (O.http(429), Verdict.API_UNAVAILABLE, False, True, "IOT_HTTP_429"),
    (O.http(409), Verdict.API_UNAVAILABLE, False, True, "IOT_HTTP_409"),
    (O.timeout(), Verdict.API_UNAVAILABLE, False, True, "IOT_TIMEOUT"),
    (O.connection_error(), Verdict.API_UNAVAILABLE, False, True, "IOT_CONNECTION_ERROR"),
    (O.malformed(), Verdict.API_UNAVAILABLE, False, True, "IOT_MALFORMED_RESPONSE"),
    (O.http(404), Verdict.REJECTED, False, False, "IOT_HTTP_404"),
    (O.http(422), Verdict.REJECTED, False, False, "IOT_HTTP_422"),
    (O.http(400), Verdict.REJECTED, False, False, "IOT_HTTP_400"),
])
def test_classify(outcome, verdict, counts, retry, code):
    c = RetryPolicy().classify(outcome)
    assert (c.verdict, c.counts_as_attempt, c.retryable, c.error_code) == (verdict, counts, retry, code)


def test_a_2xx_is_not_an_outcome():
    with pytest.raises(ValueError):
        RetryPolicy().classify(O.http(202))


def play(policy, outcomes, start=T0, latency=0.0):
    """Run outcomes through decide, each happening at the scheduled retry time; return decisions."""
    progress, now, out = ActivationProgress(start), start, []
    state = S.ACTIVATION_QUEUED
    for o in outcomes:
        state = transition(state, E.ACTIVATION_ATTEMPT_STARTED)
        now += latency
        d = policy.decide(progress, o, now)
        out.append(d)
        progress = d.progress
        if d.step is Step.RETRY:
            assert d.retry_at is not None and d.retry_at > now
            state = transition(state, d.purchase_event)
            now = d.retry_at
        elif d.step is Step.ACTIVATED:
            assert transition(state, d.purchase_event) is S.ACTIVE
            break
        else:
            assert d.purchase_event is None
            break
    return out


def test_flaky_vehicle_activates_on_the_third_attempt():
    ds = play(RetryPolicy(), [O.failed("VEHICLE_OFFLINE"), O.failed("VEHICLE_OFFLINE"), O.activated()])
    assert [d.step for d in ds] == [Step.RETRY, Step.RETRY, Step.ACTIVATED]
    assert [d.retry_at for d in ds[:2]] == [T0 + 60, T0 + 60 + 300]
    assert ds[-1].progress.vehicle_attempts == 3
    assert ds[-1].notices == (NoticeKind.SERVICE_ACTIVATED,)
    assert CHANNELS[NoticeKind.SERVICE_ACTIVATED] == (Channel.EMAIL, Channel.PUSH, Channel.IN_VEHICLE)
    assert not any(d.notify_delayed for d in ds)


@pytest.mark.parametrize("attempts", [3, 4, 5])
def test_always_offline_gives_up_after_the_configured_attempts(attempts):
    ds = play(RetryPolicy(attempts=attempts), [O.failed("VEHICLE_OFFLINE")] * 10)
    assert len(ds) == attempts and ds[-1].step is Step.GIVE_UP
    assert ds[-1].progress.vehicle_attempts == attempts
    assert f"all {attempts} attempts failed" in ds[-1].reason


def test_terminal_error_gives_up_at_once_and_rejection_too():
    ds = play(RetryPolicy(), [O.failed("FEATURE_NOT_INSTALLED")])
    assert [d.step for d in ds] == [Step.GIVE_UP] and "cannot be fixed" in ds[0].reason
    ds = play(RetryPolicy(), [O.http(404)])
    assert [d.step for d in ds] == [Step.GIVE_UP] and "rejected" in ds[0].reason


def test_api_down_does_not_consume_attempts_and_notifies_the_delay_once():
    ds = play(RetryPolicy(), [O.http(503)] * 6 + [O.failed("VEHICLE_OFFLINE"), O.timeout(), O.activated()])
    assert ds[-1].step is Step.ACTIVATED
    assert ds[-1].progress.vehicle_attempts == 2
    assert [d.notify_delayed for d in ds].count(True) == 1 and ds[0].notify_delayed
    assert CHANNELS[NoticeKind.ACTIVATION_DELAYED] == (Channel.EMAIL, Channel.PUSH)
    gaps = [d.retry_at - (ds[i - 1].retry_at if i else T0) for i, d in enumerate(ds[:6])]
    assert gaps == [60, 300, 900, 1800, 1800, 1800]


def test_retry_after_is_honoured_when_longer():
    d = RetryPolicy().decide(ActivationProgress(T0), O.http(503, retry_after=3600), T0)
    assert d.retry_at == T0 + 3600
    d = RetryPolicy().decide(ActivationProgress(T0), O.http(503, retry_after=5), T0)
    assert d.retry_at == T0 + 60


def test_api_down_past_the_deadline_is_the_final_failure():
    p = RetryPolicy(deadline=4 * 3600)
    ds = play(p, [O.connection_error()] * 100)
    assert ds[-1].step is Step.GIVE_UP and "deadline" in ds[-1].reason
    assert all(d.retry_at <= T0 + 4 * 3600 for d in ds[:-1])
    assert ds[-2].retry_at == T0 + 4 * 3600  # the last retry happens at the deadline, not after


def test_vehicle_failure_notifies_the_delay_when_configured():
    ds = play(RetryPolicy(notify_delay_on_vehicle_failure=True), [O.failed("LOW_BATTERY")] * 3 + [O.activated()])
    assert [d.notify_delayed for d in ds] == [True, False, False, False]


outcomes = st.one_of(
    st.just(O.activated()),
    st.sampled_from(sorted(OTA_ERROR_CODES)).map(O.failed),
    st.just(O.no_callback()),
    st.sampled_from([500, 502, 503, 504, 429, 409, 408, 400, 404, 422]).map(O.http),
    st.just(O.timeout()), st.just(O.connection_error()),
)


@settings(max_examples=300, deadline=None)
@given(
    attempts=st.integers(3, 5),
    backoff=st.lists(st.floats(1, 7200), min_size=1, max_size=6).map(lambda b: tuple(sorted(b))),
    deadline=st.floats(60, 3 * 86400),
    seq=st.lists(outcomes, min_size=1, max_size=60),
    latency=st.floats(0, 120),
)
def test_retry_invariants(attempts, backoff, deadline, seq, latency):
    policy = RetryPolicy(attempts=attempts, backoff=backoff, deadline=deadline)
    ds = play(policy, seq, latency=latency)
    for d in ds:
        assert d.progress.vehicle_attempts <= attempts
        if d.step is Step.RETRY:
            assert d.retry_at <= T0 + deadline
    assert sum(d.notify_delayed for d in ds) <= 1
    # it stops at the first ACTIVATED or GIVE_UP and never before
    assert all(d.step is Step.RETRY for d in ds[:-1])
    if len(ds) < len(seq):
        assert ds[-1].step is not Step.RETRY


@settings(max_examples=100, deadline=None)
@given(attempts=st.integers(3, 5),
       backoff=st.lists(st.floats(1, 7200), min_size=1, max_size=6).map(lambda b: tuple(sorted(b))))
def test_backoff_schedule_is_monotonic_capped_and_ends(attempts, backoff):
    p = RetryPolicy(attempts=attempts, backoff=backoff)
    sched = p.schedule()
    assert len(sched) == attempts - 1
    assert all(a <= b for a, b in pairwise(sched))
    assert all(d <= max(backoff) for d in sched)
    assert p.next_attempt_at(attempts, T0) is None
    assert all(p.next_attempt_at(n, T0) == T0 + sched[n - 1] for n in range(1, attempts))
