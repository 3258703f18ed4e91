"""The scenario format: clear errors with line numbers, the JSON Schema, the catalogue."""

import pytest

from caas_sim.scenarios.scenario import schema
from caas_sim.scenarios.scenario.loader import (
    CATALOGUE,
    ScenarioError,
    catalogue,
    load,
    load_catalogue,
    parse,
)
from caas_sim.scenarios.scenario.values import mismatches, resolve


def errors(text):
    with pytest.raises(ScenarioError) as info:
        parse(text, "s.yaml")
    return str(info.value)


def test_a_malformed_scenario_names_each_problem_with_its_line():
    text = ("name: x\nproves: y\nsteps:\n  - advance: 3d\n  - call: POST /a\n    bogus: 1\n  - wat: 2\n"
            "expect:\n  - tickets: {as: ops, count: many}\n")
    message = errors(text)
    assert "s.yaml:6: steps[1].bogus: Extra inputs are not permitted" in message
    assert "s.yaml:7: steps[2]: a step is one of call, advance, until, assert" in message
    assert "s.yaml:9: expect[0].tickets.count: Input should be a valid integer" in message


def test_broken_yaml_and_missing_fields():
    assert errors("name: x\nsteps: [\n").startswith("s.yaml:3: not valid YAML")
    assert "s.yaml:1: proves: Field required" in errors("name: x\nsteps: []\n")
    assert "name: String should match pattern" in errors("name: Not Kebab\nproves: y\nsteps: []\n")


def test_the_committed_json_schema_is_generated_from_the_models():
    assert schema.SCHEMA_FILE.read_text() == schema.generate(), "run python -m caas_sim.scenarios.scenario.schema"


def test_the_catalogue_is_valid_and_points_to_the_schema():
    scenarios = load_catalogue()
    assert len(scenarios) >= 30
    for path in catalogue().values():
        assert path.read_text().startswith("# yaml-language-server: $schema=../scenario/scenario.schema.json\n")
    assert any("month" in s.tags for s in scenarios)
    assert (CATALOGUE / "profiles").is_dir()


def test_values_and_matching():
    values = {"vins": {"iot": {"healthy": "VIN1"}}, "n": 3}
    assert resolve({"p": "/v/${vins.iot.healthy}", "n": "${n}"}, values) == {"p": "/v/VIN1", "n": 3}
    body = {"status": "ACTIVE", "items": [{"a": 1}, {"a": 2}], "s": "last: ECU_ERROR"}
    assert mismatches(body, {"status": "ACTIVE", "items": {"$len": 2}}) == []
    assert mismatches(body, {"items": {"$contains": {"a": 2}}, "s": {"$matches": "ECU"}}) == []
    assert mismatches(body, {"items": {"$every": {"a": {"$gte": 1}}}, "missing": {"$exists": False}}) == []
    assert mismatches(body, {"items": [{"a": 1}]}) != []  # a list matches item by item, same length
    assert mismatches(body, {"status": {"$in": ["EXPIRED"]}}) == ["status: expected $in ['EXPIRED'], got 'ACTIVE'"]


def test_mistakes_that_failed_only_at_run_time_are_refused_with_their_lines():
    """Durations, actors, fault steps, methods, statuses and counts were accepted, and the
    scenario failed only once its world had started."""
    text = ("name: x\nproves: y\nworld:\n  actors: {alice: {role: customer, subject: c-1}}\nsteps:\n"
            "  - advance: forever\n  - advance: -5m\n  - until: {get: /a, as: alice}\n    within: soon\n"
            "  - call: POST /a\n    as: bob\n  - fault: remove\n    service: iot\n"
            "  - call: FETCH /x\n    status: 999\n  - repeat: 2\n    steps:\n      - assert: {get: /b, as: dave}\n"
            "  - advance: ${later}\nexpect:\n  - tickets: {as: alice, count: -1}\n")
    message = errors(text)
    assert "s.yaml:6: steps[0].advance: not a duration: 'forever'" in message
    assert "s.yaml:7: steps[1].advance: not a duration: '-5m'" in message
    assert "s.yaml:9: steps[2].within: not a duration: 'soon'" in message
    assert "s.yaml:12: steps[4].fault: fault remove needs the rule's id" in message
    assert "s.yaml:14: steps[5].call: 'FETCH' is not an HTTP method" in message
    assert "s.yaml:15: steps[5].status: 999 is not an HTTP status (100-599)" in message
    assert "s.yaml:21: expect[0].tickets.count: Input should be greater than or equal to 0" in message
    assert "advance: ${later}" not in message and "steps[7]" not in message  # known only at run time
    # actors are checked across the file once every field is right: every one is named
    fields_right = text.replace("forever", "1d").replace("-5m", "5m").replace("soon", "1h").replace(
        "    service: iot\n", "    service: iot\n    id: r-1\n").replace("FETCH", "GET").replace("999", "404").replace(
        "count: -1", "count: 1")
    assert errors(fields_right).splitlines() == [
        "s.yaml:11: steps[3].as: no actor 'bob' in world.actors (alice)",
        "s.yaml:19: steps[6].steps[0].assert.as: no actor 'dave' in world.actors (alice)"]


def test_a_file_names_itself_and_its_profiles_exist_whether_run_by_path_or_catalogue(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: theirs\nproves: y\nworld:\n  profiles: {iot: [profiles/missing.yaml]}\nsteps:\n"
                    "  - fault: add\n    service: iot\n    profile: gone.yaml\n")
    with pytest.raises(ScenarioError) as by_path:
        load(path)
    assert str(by_path.value).splitlines() == [
        f"{path}:1: name: 'theirs' differs from the file name 'mine'",
        (f"{path}:4: world.profiles.iot[0]: no profile file 'profiles/missing.yaml' (profiles are relative to "
         f"the scenario: {tmp_path / 'profiles/missing.yaml'})"),
        (f"{path}:8: steps[0].profile: no profile file 'gone.yaml' (profiles are relative to the scenario: "
         f"{tmp_path / 'gone.yaml'})")]
    with pytest.raises(ScenarioError) as by_catalogue:
        load_catalogue(tmp_path)
    assert "differs from the file name 'mine'" in str(by_catalogue.value)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/missing.yaml").write_text("[]\n")
    (tmp_path / "gone.yaml").write_text("[]\n")
    path.write_text(path.read_text().replace("theirs", "mine"))
    assert load(path).name == "mine"
