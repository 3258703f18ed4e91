import pytest

from caas_sim.simulators.kit.faults import FaultEngine, FaultError

NOW = [1767600000.0]


def engine(seed=7, journal=None):
    return FaultEngine(seed=seed, now=lambda: NOW[0], record=(lambda *a, **k: journal.append(k)) if journal is not None else None)


def test_times_scope_applies_first_n_matches_only():
    faults = engine()
    faults.add({"id": "r1", "action": {"type": "http_error", "params": {"status": 503}}, "times": 2})
    picks = [faults.take("http_error", method="POST", path="/ota/activate") for _ in range(4)]
    assert [p.id if p else None for p in picks] == ["r1", "r1", None, None]
    assert faults.rules[0].remaining == 0


def test_seeded_probability_gives_the_same_picks_twice_and_a_plausible_rate():
    def picks(seed):
        faults = engine(seed)
        faults.add({"id": "p", "action": {"type": "timeout"}, "probability": 0.3})
        return [faults.take("timeout") is not None for _ in range(2000)]

    first, second, other = picks(1), picks(1), picks(2)
    assert first == second
    assert first != other
    assert 0.25 < sum(first) / len(first) < 0.35


def test_window_scope_in_virtual_time():
    faults = engine()
    faults.add({"action": {"type": "reset"}, "window": {"from": "+1h", "until": "+2h"}})
    assert faults.take("reset") is None
    NOW[0] += 3600
    assert faults.take("reset") is not None
    NOW[0] += 3600
    assert faults.take("reset") is None


def test_match_by_method_path_template_glob_and_entity_selectors():
    faults = engine()
    faults.add({"id": "vin", "match": {"method": "GET", "path": "/vehicles/{vin}/status",
                                      "selectors": {"vin": "WCA*"}}, "action": {"type": "latency", "params": {"ms": 5}}})
    faults.add({"id": "glob", "match": {"path": "/ota/*"}, "action": {"type": "malformed_body"}})
    take = lambda **kw: getattr(faults.take(("latency", "malformed_body"), **kw), "id", None)
    assert take(method="GET", path="/vehicles/WCA1/status", template="/vehicles/{vin}/status", entities={"vin": "WCA1"}) == "vin"
    assert take(method="GET", path="/vehicles/ZZZ1/status", template="/vehicles/{vin}/status", entities={"vin": "ZZZ1"}) is None
    assert take(method="POST", path="/vehicles/WCA1/status", template="/vehicles/{vin}/status", entities={"vin": "WCA1"}) is None
    assert take(method="POST", path="/ota/activate", template="/ota/activate") == "glob"


def test_every_application_is_journaled_with_rule_id():
    journal = []
    faults = engine(journal=journal)
    faults.add({"id": "j1", "action": {"type": "http_error", "params": {"status": 500}}})
    faults.take("http_error", method="POST", path="/x", entities={"vin": "V"})
    assert journal == [{"ruleId": "j1", "method": "POST", "path": "/x", "operation": None, "correlationId": None,
                        "entities": {"vin": "V"}, "detail": {"action": "http_error", "status": 500, "phase": "before"}}]


def test_domain_faults_are_registered_by_the_simulator():
    from pydantic import BaseModel

    class Params(BaseModel):
        errorCode: str = "ECU_ERROR"

    faults = engine()
    with pytest.raises(FaultError, match="unknown fault action 'activation_failed'"):
        faults.add({"action": {"type": "activation_failed"}})
    faults.register("activation_failed", "the vehicle rejects the configuration", Params)
    rule = faults.add({"action": {"type": "activation_failed", "params": {"errorCode": "LOW_BATTERY"}}})
    assert faults.take("activation_failed", entities={"vin": "X"}).params == {"errorCode": "LOW_BATTERY"}
    assert rule.hits == 1


@pytest.mark.parametrize("rule,message", [
    ({"action": {"type": "latency"}}, "ms"),
    ({"action": {"type": "http_error", "params": {"status": 200}}}, "status"),
    ({"action": {"type": "latency", "params": {"ms": 1}}, "probability": 2}, "probability"),
    ({"action": {"type": "reset"}, "window": {"from": "tomorrow"}}, "window.from"),
    ({"action": {"type": "reset"}, "window": {"until": "+99999999w"}}, "window.until"),
    ({"action": {"type": "reset"}, "bogus": 1}, "bogus"),
    ({"action": {"type": "reset"}, "window": {"from": "+3h", "until": "+1h"}}, "until .* is not after from"),
    ({"action": {"type": "reset"}, "window": {"from": "+1h", "until": "+1h"}}, "until .* is not after from"),
    ({"action": {"type": "reset"}, "window": {"until": "2026-01-02T00:00:00Z"}}, "not after the clock's now"),
])
def test_bad_rules_are_refused_with_the_reason(rule, message):
    with pytest.raises(FaultError, match=message):
        engine().add(rule)


def test_a_rejected_batch_adds_nothing(tmp_path):
    faults = engine()
    with pytest.raises(FaultError):
        faults.add_many([{"action": {"type": "reset"}}, {"action": {"type": "nope"}}])
    assert faults.rules == []
    profile = tmp_path / "p.yaml"
    profile.write_text("rules:\n  - id: slow\n    action: {type: latency, params: {ms: 100}}\n    times: 3\n")
    assert [r.id for r in faults.load_profile(profile)] == ["slow"]


def test_take_all_applies_every_matching_rule_once():
    journal = []
    faults = engine(journal=journal)
    faults.add({"id": "a", "action": {"type": "latency", "params": {"ms": 1}}, "times": 1})
    faults.add({"id": "b", "action": {"type": "latency", "params": {"ms": 2}}})
    faults.add({"id": "c", "action": {"type": "reset"}})
    assert [r.id for r in faults.take_all("latency")] == ["a", "b"]
    assert [r.id for r in faults.take_all("latency")] == ["b"]  # a was for one time only
    assert [e["ruleId"] for e in journal] == ["a", "b", "b"]
