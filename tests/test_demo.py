"""`make demo`: the catalogue, the summary and the report (each catalogue scenario is
also its own test in tests/scenarios; here a few of them stand for the catalogue)."""

import shutil

from caas_sim.scenarios import demo
from caas_sim.scenarios.scenario.loader import CATALOGUE

SOME = ["healthy-vehicle-is-activated-at-once-and-told-on-every-channel",
        "every-attempt-failing-opens-a-ticket-refunds-in-full-and-tells-the-customer",
        "factory-rejects-the-order-and-the-reservation-is-refunded"]


def test_the_demo_runs_the_catalogue_prints_the_summary_and_writes_the_report(tmp_path, capsys):
    folder = tmp_path / "catalogue"
    folder.mkdir()
    for name in SOME:
        shutil.copy(CATALOGUE / f"{name}.yaml", folder)
    assert demo.main(report_dir=tmp_path / "report", jobs=2, folder=folder) == 0
    out = capsys.readouterr().out
    assert "CaaS demo: 3 customer journeys" in out and "SCENARIO" in out and "VIRTUAL TIME" in out
    assert "3 passed, 0 failed, 0 errors, 0 skipped, 0 known issues (XFAIL)" in out
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.count("```mermaid\nsequenceDiagram") == 3 and (tmp_path / "report" / "junit.xml").is_file()
