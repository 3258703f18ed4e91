"""The locustfiles cannot rot: each runs for a few seconds through `caas-sim load`.

Locust monkey-patches with gevent, so it never runs in the pytest process: the CLI runs
it as a subprocess (here, the whole CLI is one). The webhooks run is distributed
(a locust master and a worker), as the distributed run of docs/load-testing.md is.
"""

import socket
import subprocess
import sys

import pytest

from caas_sim.scenarios.listening import wait_listening
from tests.load.runs import run_load

pytestmark = pytest.mark.timeout(90)


def test_webhooks_distributed(tmp_path):
    done, rows = run_load(tmp_path, "webhooks", "--users", "3", "--duration", "3s", "--processes", "2",
                       "--duplicate-share", "0.3", "--reorder-share", "0.3")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "master + 1 workers" in done.stdout
    for sender in ("iot", "payments", "factory"):
        assert int(rows[f"webhook {sender}"]["Request Count"]) > 0
    assert any("(duplicate)" in name for name in rows) and any("(reordered)" in name for name in rows)
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert (tmp_path / "report" / "report.html").exists()


def test_missed_slo_fails(tmp_path):
    done, _ = run_load(tmp_path, "webhooks", "--users", "1", "--duration", "4s", "--slo-p95-ms", "0.001")
    assert done.returncode == 1
    assert "SLO missed: p95 of webhook" in done.stderr


def test_the_audit_after_a_load_needs_the_targets_admin_token(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    core = subprocess.Popen([sys.executable, "-m", "caas_sim.scenarios.cli", "serve", "core", "--clock", "real", "--port",
                             str(port), "--admin-token", "t0ken", "--database",
                             f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"], cwd=tmp_path)
    try:
        wait_listening([core], port, what="core")
        target = ("--target", f"http://127.0.0.1:{port}", "--users", "2", "--duration", "2s")
        done, _ = run_load(tmp_path, "webhooks", *target)
        assert done.returncode == 1 and "audit could not run" in done.stderr, done.stderr[-2000:]
        done, _ = run_load(tmp_path, "webhooks", *target, "--admin-token", "t0ken")
        assert done.returncode == 0 and "every invariant holds" in done.stdout, done.stdout[-2000:]
    finally:
        core.terminate()
        core.wait(timeout=20)
