"""`caas-sim load` against a core we did not write (tests/load/standin.py): its own receiver
paths and secrets, no purchase API, no audit; unreachable, or answering only errors; the
report's files and `load compare`."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from caas_sim.scenarios.cli.state import STATE_ENV
from caas_sim.simulators.fleet import Fleet
from tests.load.runs import run_load
from tests.load.standin import CUSTOMER_KEY, RECEIVERS, SECRETS, Running, StandIn

pytestmark = pytest.mark.timeout(120)
REPORT_FILES = ("report.html", "figures.csv", "summary.md", "summary.json")


def _config(tmp_path) -> str:
    """The stand-in's description: two senders from the file, the third from the options."""
    path = tmp_path / "standin.toml"
    path.write_text("\n".join(f'[receivers.{sender}]\npath = "{RECEIVERS[sender]}"\nsecret = "{SECRETS[sender]}"\n'
                              for sender in ("iot", "payments")))
    return str(path)


def _cli(tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, STATE_ENV: str(tmp_path / "up.json")}  # no `caas-sim up` this test did not start
    return subprocess.run([sys.executable, "-m", "caas_sim.scenarios.cli", "load", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=tmp_path, check=False, env=env)


def test_webhook_load_at_a_core_with_its_own_paths_and_secrets(tmp_path):
    with Running(StandIn()) as standin:
        done, rows = run_load(tmp_path, "webhooks", "--target", standin.url, "--config", _config(tmp_path),
                              "--receiver", f"factory={RECEIVERS['factory']}", "--secret",
                              f"factory={SECRETS['factory']}", "--users", "2", "--duration", "3s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert set(standin.verified) == {"iot", "payments", "factory"} and not standin.rejected, (standin.verified,
                                                                                           standin.rejected)
    counted = sum(int(row["Request Count"]) for name, row in rows.items() if name.startswith("webhook "))
    assert counted <= sum(standin.verified.values()) <= counted + 10  # + a few the stop cut before locust counted them
    # no audit on that core: one line, and the run still passes on its figures
    assert done.stderr.count("serves no /__admin/audit: its invariant audit was not available") == 1, done.stderr
    report = tmp_path / "report"
    assert all((report / name).exists() for name in REPORT_FILES)
    written = "".join((report / name).read_text() for name in REPORT_FILES if name != "report.html")
    assert not any(secret in written for secret in SECRETS.values())  # a report is shared: no secret in it
    summary = json.loads((report / "summary.json").read_text())
    assert summary["passed"] and summary["target"]["receivers"]["factory"] == {
        "path": RECEIVERS["factory"], "secret": "own (not shown)"}


def test_webhook_load_leaves_out_a_sender_the_core_does_not_receive(tmp_path):
    with Running(StandIn()) as standin:
        done, _ = run_load(tmp_path, "webhooks", "--target", standin.url, "--config", _config(tmp_path),
                           "--senders", "iot,payments", "--users", "2", "--duration", "2s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert set(standin.verified) == {"iot", "payments"}, standin.verified


def test_ota_callbacks_from_the_simulator_reach_a_core_without_a_purchase_api(tmp_path):
    with Running(StandIn()) as standin:
        done, rows = run_load(tmp_path, "ota-callbacks", "--target", standin.url, "--receiver",
                              f"iot={RECEIVERS['iot']}", "--secret", f"iot={SECRETS['iot']}", "--users", "4",
                              "--duration", "4s", "--duplicate-share", "0.3",
                              # an attempt not answered within 15 s of the simulator's clock (250 ms of wall
                              # time at scaled:60) is retried: a loaded machine may see some
                              "--slo-error-ratio", "0.5")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    counts, metrics = summary["counts"], {m["name"]: m for m in summary["metrics"]}
    accepted = int(rows["activate (IoT simulator)"]["Request Count"])
    assert 0 < accepted <= counts["activations accepted"] <= accepted + 10  # + a few the stop cut before they counted
    # the simulator's own callbacks, signed with the stand-in's secret, at its path: every one verified
    # (the stand-in may have seen a few more: the simulator keeps calling back until it is stopped)
    assert standin.verified["iot"] >= counts["callbacks delivered"] + counts["duplicates delivered"] > 0
    assert not standin.rejected
    assert counts["duplicates delivered"] > 0  # the simulator's callback_duplicated fault at 0.3
    assert {status for _, status in standin.events} <= {"ACTIVATED", "FAILED"}
    assert metrics["callback delivery lag"]["clock"] == "simulator clock"
    assert metrics["callback delivery lag"]["requests"] == counts["callbacks delivered"]
    answers = metrics["callback answer time"]
    assert answers["failures"] == counts["attempts answered non-2xx or not at all"]
    assert answers["requests"] - answers["failures"] <= standin.verified["iot"]
    assert "business metrics (each on its clock)" in done.stdout


PURCHASE = """
[keys]
customer = "standin-customer"
[purchase]
path = "/v2/vehicles/{vin}/orders"
body = {product = "{serviceId}", card = "tok_visa"}
services = ["seat-heating"]
created_status = 202
id_field = "orderId"
status_path = "/v2/orders/{orderId}"
status_field = "state"
active = ["ON"]
created_field = "opened"
delivered_field = "finished"
"""


def test_ota_purchases_of_another_shape(tmp_path):
    (tmp_path / "orders.toml").write_text(PURCHASE)
    with Running(StandIn()) as standin:
        done, rows = run_load(tmp_path, "ota", "--target", standin.url, "--config", "orders.toml", "--users", "2",
                              "--duration", "3s", "--vehicles", "20000:20400", "--seed", "3")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert int(rows["purchase"]["Request Count"]) == len(standin.orders) > 0
    assert {o["product"] for o in standin.orders.values()} == {"seat-heating"}
    fleet = Fleet(3)
    assert all(20_000 <= fleet.index_of(o["vin"]) < 20_400 for o in standin.orders.values())
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    metrics = {m["name"]: m for m in summary["metrics"]}
    assert metrics["activation (core clock)"]["p50_ms"] == 42_000  # "finished" - "opened", on the core's clock
    assert metrics["activation (observed)"]["clock"] == "wall"
    assert summary["target"]["keys"]["customer"] == "own (not shown)" and CUSTOMER_KEY not in done.stdout


def test_ota_against_a_core_that_activates_nothing_is_not_a_pass(tmp_path):
    (tmp_path / "orders.toml").write_text(PURCHASE)
    with Running(StandIn(never_on=True)) as standin:
        done, _ = run_load(tmp_path, "ota", "--target", standin.url, "--config", "orders.toml", "--users", "2",
                              "--duration", "1s", "--vehicles", "20000:20400")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(standin.orders) == 2  # each user's purchase accepted, then awaited until the run ended
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["counts"] == {"activation (observed): still awaited at the end": 2}
    [slo] = [s for s in summary["slos"] if s["name"] == "activation (observed) measured"]
    assert not slo["met"] and slo["measured"] == "0 (2 still awaited at the end)"
    assert "SLO missed: activation (observed) measured" in done.stderr


def test_an_unreachable_target_stops_the_run_before_it_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    started = time.monotonic()
    done = _cli(tmp_path, "webhooks", "--target", f"http://127.0.0.1:{port}", "--duration", "5m", timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the target http://127.0.0.1:{port} is unreachable" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert time.monotonic() - started < 30


def test_a_target_that_answers_no_http_is_one_line_saying_so(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer_garbage() -> None:  # a port that speaks something else: a line, not HTTP
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")

        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        done = _cli(tmp_path, "webhooks", "--target", f"http://127.0.0.1:{port}", "--duration", "5m", timeout=30)
        thread.join(timeout=10)
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"the target http://127.0.0.1:{port} does not answer HTTP" in done.stderr, done.stderr


def test_a_target_answering_only_errors_is_given_up_within_seconds(tmp_path):
    with Running(StandIn(failing=True)) as standin:
        done = _cli(tmp_path, "webhooks", "--target", standin.url, "--config", _config(tmp_path), "--duration", "5m",
                    "--fail-fast", "2s", "--users", "2", "--report", str(tmp_path / "report"), timeout=90)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "failed in the first 2 s" in done.stderr and "the run was stopped" in done.stderr, done.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["aborted"] and not summary["passed"] and summary["seconds"] < 60


@pytest.mark.parametrize(("args", "said"), [
    (("--duration", "forever"), "not a duration: 'forever'"),
    (("--fault-rate", "2"), "not a share: '2'"),
    (("--users", "0"), "not a positive integer: '0'"),
    (("--receiver", "nope=/x"), "expected SENDER=/path"),
    (("--secret", "iot=hunter2"), "not a webhook secret"),
    (("--config", "missing.toml", "--target", "http://127.0.0.1:9"), "cannot read the target description"),
    (("--reorder-share", "0.1"), "--reorder-share is for webhooks and day"),
    (("--senders", "iot,sms"), "expected senders among iot, payments, factory"),
    (("--target", "http://127.0.0.1:9", "--peers"), "--peers audits the simulators the target calls"),
    (("--clock", "fast"), "unknown clock mode 'fast'"),
    (("--report", "/proc/caas-sim-report"), "--report /proc/caas-sim-report: cannot create it"),  # it ran first
])
def test_bad_option_values_get_one_line(tmp_path, args, said):
    done = _cli(tmp_path, "ota", *args, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


#: The CLI with Ctrl-C delivered as a terminal delivers it. A child inherits an ignored or
#: blocked SIGINT from its parent (here a test worker, as the tests before left it): then
#: the Ctrl-C never reached the CLI, and locust ran its 5 minutes.
AS_FROM_A_TERMINAL = ("import runpy, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                      "signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv[0] = 'caas-sim'; "
                      "runpy.run_module('caas_sim.scenarios.cli', run_name='__main__', alter_sys=True)")


def test_ctrl_c_keeps_the_partial_report_and_exits_130(tmp_path):
    """It exited 0 with every SLO met, as if the whole run had passed."""
    worker = (f"this worker's SIGINT: {signal.getsignal(signal.SIGINT)}, "
              f"blocked: {signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])}")
    with Running(StandIn()) as standin:
        env = {**os.environ, STATE_ENV: str(tmp_path / "up.json")}
        proc = subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, "load", "webhooks", "--target",
                                 standin.url, "--config", _config(tmp_path), "--duration", "5m", "--users", "2",
                                 "--report", str(tmp_path / "report")], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while not proc.stdout.readline().startswith("locust:"):
                assert proc.poll() is None, proc.stderr.read()
            time.sleep(4)  # some load
            proc.send_signal(signal.SIGINT)  # to caas-sim alone: it stops locust
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"caas-sim load went on 60 s after Ctrl-C ({worker})")
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:] + worker
    assert "interrupted (Ctrl-C)" in err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert "interrupted" in summary["aborted"] and not summary["passed"]


LINGERING = """
import signal, sys, time
for name in sys.argv[1:]:
    signal.signal(getattr(signal, name), signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(("ignored", "ended_by"), [(["SIGINT"], signal.SIGTERM),
                                                   (["SIGINT", "SIGTERM"], signal.SIGKILL)])
def test_a_locust_that_lingers_after_ctrl_c_is_terminated_then_killed(monkeypatch, ignored, ended_by):
    """Locust once took more than 30 s to stop after the SIGINT a Ctrl-C sends it: the run
    ended in a traceback, exit 1, no report. Here a stand-in ignores the signals it is sent."""
    from caas_sim.scenarios.cli import load_locust

    monkeypatch.setattr(load_locust, "STOP_WAITS", (0.3, 0.3))
    lingering = subprocess.Popen([sys.executable, "-c", LINGERING, *ignored], stdout=subprocess.PIPE, text=True)
    try:
        assert lingering.stdout.readline() == "ready\n"  # its handlers are set
        assert load_locust.stop(lingering) == -ended_by
    finally:
        lingering.kill()
        lingering.wait()


def test_a_bad_target_description_names_the_field(tmp_path):
    (tmp_path / "bad.toml").write_text('[receivers.iot]\npath = "hooks"\n[purchase]\nservices = "one"\n')
    done = _cli(tmp_path, "webhooks", "--target", "http://127.0.0.1:9", "--config", "bad.toml", timeout=30)
    assert done.returncode == 2 and "bad.toml: receivers.iot.path" in done.stderr, done.stderr


def test_compare_shows_what_got_worse(tmp_path):
    with Running(StandIn()) as standin:
        done, _ = run_load(tmp_path, "webhooks", "--target", standin.url, "--config", _config(tmp_path), "--receiver",
                           f"factory={RECEIVERS['factory']}", "--secret", f"factory={SECRETS['factory']}",
                           "--users", "1", "--duration", "2s")
    assert done.returncode == 0, done.stderr[-2000:]
    a = tmp_path / "report"
    b = tmp_path / "slower"
    b.mkdir()
    summary = json.loads((a / "summary.json").read_text())
    total = summary["httpTotal"]
    summary["httpTotal"] = {**total, "p95_ms": total["p95_ms"] * 3 + 10, "rps": total["rps"] / 2}
    (b / "summary.json").write_text(json.dumps(summary))

    same = _cli(tmp_path, "compare", str(a), str(a), "--fail-on-regression")
    assert same.returncode == 0 and "no figure worse" in same.stdout, same.stdout + same.stderr
    worse = _cli(tmp_path, "compare", str(a), str(b), "--fail-on-regression")
    assert worse.returncode == 1, worse.stdout + worse.stderr
    lines = {line.split("  ")[0]: line for line in worse.stdout.splitlines()}
    assert "WORSE" in lines["all HTTP requests p95"] and "WORSE" in lines["all HTTP requests rps"], worse.stdout
    assert "-50.0%" in lines["all HTTP requests rps"]
    assert _cli(tmp_path, "compare", str(a), str(b)).returncode == 0  # a report, not a gate, unless asked
    missing = _cli(tmp_path, "compare", str(a), str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no load report at" in missing.stderr
