"""The runner's promises: failures name what broke with the journal around it, the same
seed gives the same per-entity sequences, reports render."""

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from caas_sim.scenarios.cli.scenario import finish
from caas_sim.scenarios.scenario import report, timeline
from caas_sim.scenarios.scenario.loader import catalogue, load
from caas_sim.scenarios.scenario.runner import run_in_process

BAD = Path(__file__).parent / "bad"


async def test_a_wrong_expectation_is_named_with_the_journal_around_it():
    outcome = await run_in_process(load(BAD / "wrong-expectation.yaml"))
    assert outcome.result == "failed"
    assert outcome.failure.startswith("expectation 2 ") and "attempts: expected 2, got 3" in outcome.failure
    assert "expectation 1" not in outcome.failure  # the right one is not blamed
    vin = outcome.journal[0]["entities"]["vin"] if outcome.journal[0].get("entities") else None
    assert any("operation=activateService" in line for line in outcome.context)
    assert vin is None or any(vin in line for line in outcome.context)
    text = report.failure_text(outcome)
    assert "journal around it" in text and "FAILED expectation 2" in text


async def test_a_wrong_step_stops_the_scenario_and_is_named():
    outcome = await run_in_process(load(BAD / "wrong-step.yaml"))
    assert outcome.result == "failed"
    assert outcome.failure.startswith("step 1 (POST /customers/c-1/vehicles/")
    assert "answered 422, expected [201]" in outcome.failure
    assert outcome.virtual_seconds == 0  # the `advance: 1h` after it never ran


async def test_the_same_seed_gives_the_same_per_entity_sequences():
    path = catalogue()["every-attempt-failing-opens-a-ticket-refunds-in-full-and-tells-the-customer"]
    first, second = [await run_in_process(load(path), seed=41) for _ in range(2)]
    assert first.result == second.result == "passed"
    assert timeline.sequences(first.journal) == timeline.sequences(second.journal) != {}
    assert timeline.sequences(first.journal, "requestId") == timeline.sequences(second.journal, "requestId")
    other = await run_in_process(load(path), seed=42)
    # Another seed: other VINs, the same behaviour of the magic vehicle.
    assert list(timeline.sequences(other.journal).values()) == list(timeline.sequences(first.journal).values())
    assert timeline.sequences(other.journal).keys() != timeline.sequences(first.journal).keys()


async def test_reports_render_a_diagram_per_scenario_and_junit(tmp_path, capsys):
    good = await run_in_process(load(catalogue()["activation-succeeds-on-the-third-attempt"]))
    bad = await run_in_process(load(BAD / "wrong-expectation.yaml"))
    code = finish([good, bad], 1.0, seed=None, report_dir=str(tmp_path), junit_file=str(tmp_path / "j.xml"))
    assert code == 1
    out = capsys.readouterr().out
    assert "activation-succeeds-on-the-third-attempt" in out and "1 passed, 1 failed" in out
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.count("```mermaid\nsequenceDiagram") == 2
    assert "core->>iot: activateService → 202" in markdown and "iot-)core: otaStatus → 204" in markdown
    assert "Note over iot: ota.failed VEHICLE_OFFLINE" in markdown
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert suite.find("testcase[@name='wrong-expectation']/failure") is not None


def test_faults_are_marked_in_the_diagram():
    entries = [{"vt": "2026-01-05T08:00:00.000Z", "service": "iot", "kind": "request", "operation": "activateService",
                "status": 503, "ruleId": "iot-down", "correlationId": "cor_1"},
               {"vt": "2026-01-05T08:00:00.000Z", "service": "vss", "kind": "fault", "ruleId": "vss-down"}]
    diagram = report.sequence_diagram(entries)
    assert "core->>iot: activateService → 503 ⚡iot-down" in diagram
    assert "Note over vss: ⚡ fault vss-down applied" in diagram


async def test_what_the_dashboard_asks_meanwhile_is_no_part_of_the_journey(tmp_path):
    """Someone looking at a vehicle on the live dashboard during a run (its calls carry the
    dashboard's correlation id) changed the verdict: a journal count, or a contract violation
    for a mistyped VIN."""
    looks = [{"call": f"GET /vehicles/{vin}/status", "service": "iot", "status": status,
              "headers": {"X-Correlation-Id": f"{timeline.DASHBOARD_PREFIX}{n}"}}
             for n, (vin, status) in enumerate([("${vins.iot.healthy}", 200), ("NOTAVIN", 400)])]
    path = tmp_path / "looked-at.yaml"
    path.write_text(yaml.safe_dump({
        "name": "looked-at", "proves": "the dashboard's looks are not counted", "steps": looks,
        "expect": [{"journal": {"service": "iot", "operation": "getVehicleStatus", "count": 0}}]}))
    outcome = await run_in_process(load(path))
    assert outcome.result == "passed", outcome.failure
