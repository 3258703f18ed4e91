"""The scenario format: clear errors with line numbers, the JSON Schema, the catalogue."""

import pytest

from caas_sim.scenarios.scenario import schema
from caas_sim.scenarios.scenario.loader import (
    CATALOGUE,
    ScenarioError,
    catalogue,
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
