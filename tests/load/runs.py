"""Running `caas-sim load` from a test: locust monkey-patches with gevent, so it never runs
in the pytest process; the whole CLI runs as a subprocess."""

import csv
import subprocess
import sys


def run_load(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """Run `caas-sim load ARGS` into tmp_path/report (no error allowed unless ARGS say otherwise);
    its answer and locust's stats CSV by row name."""
    report = tmp_path / "report"
    strict = [] if "--slo-error-ratio" in args else ["--slo-error-ratio", "0"]
    done = subprocess.run([sys.executable, "-m", "caas_sim.scenarios.cli", "load", *args, "--report", str(report),
                           *strict], check=False, capture_output=True, text=True, timeout=80, cwd=tmp_path)
    stats = report / "locust_stats.csv"
    assert stats.exists(), done.stdout[-2000:] + done.stderr[-3000:]
    with stats.open() as f:
        return done, {row["Name"]: row for row in csv.DictReader(f)}
