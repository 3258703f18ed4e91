"""examples/node-core: a core we did not write in Python, with none of the admin routes, passes
the catalogue scenarios of its slice against `caas-sim up --core-url` in scaled time.

Each world is `caas-sim up --core-url --clock scaled:N --port-base B` (B picked free, below
the kernel's ephemeral range; the node core listens on B, the core's own offset) with a
webhook secret of our own, which the node core gets from `caas-sim secrets`. The core cannot
be reset (no /__admin/reset): `scenario run --core-command` starts it afresh for each
scenario. Two worlds, two tests (xdist runs them side by side):

- OTA at scaled:200: the retry policy's minutes pass in seconds, and what a scenario orders in
  virtual time (a callback, then the retry a minute later; the simulators' 15 s webhook
  timeout) keeps a tenth of a second or more of real time between, on a loaded machine too;
- payments, keys and the catalogue at scaled:3600, where nothing waits on a vehicle; and
  what a core without admin routes cannot do, said once: without --core-command only the
  first scenario of a run plays on it, the scenarios that need virtual time are skipped
  with the reason (a run of only those exits 1), and `caas-sim load` skips the core's
  audit and runs the peers' audit instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from caas_sim import catalogue
from caas_sim.scenarios.scenario import loader
from tests.worlds import free_port_base

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed: examples/node-core runs on it")

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "examples" / "node-core" / "core.mjs"
HERE = Path(__file__).parent / "scenarios"
CLI = [sys.executable, "-m", "caas_sim.scenarios.cli"]
SERVICES = ("iot", "payments", "vss")
OFFSET = {e.name: e.port - catalogue.CORE_PORT for e in catalogue.SERVICES}
#: The team's own signing secret (not the public development one): the node core must load it.
SECRET = "whsec_" + base64.b64encode(b"node-core-example-secret-0000001").decode()

OTA = ["activation-succeeds-on-the-third-attempt",
       "duplicated-callbacks-are-processed-once",
       "iot-connection-resets-are-retried-like-failures",
       "retried-purchase-with-the-same-idempotency-key-is-the-same-purchase",
       # the catalogue's every-attempt-failing... up to the refund request (the refund itself
       # completes days later, after the settlement: that one needs virtual time)
       str(HERE / "every-attempt-failing-opens-a-ticket-asks-the-refund-and-tells-the-customer.yaml")]
PAYMENTS_AND_KEYS = ["declined-card-refuses-the-purchase-and-activates-nothing",
                     "card-without-funds-refuses-the-purchase-and-activates-nothing",
                     "expired-card-refuses-the-purchase-and-activates-nothing",
                     "customers-reach-only-their-own-purchases",
                     "catalogue-rules-unknown-service-and-duration-not-offered"]
NEED_VIRTUAL_TIME = ["healthy-vehicle-is-activated-at-once-and-told-on-every-channel",
                     "every-attempt-failing-opens-a-ticket-refunds-in-full-and-tells-the-customer"]
OWN_CLOCK = "has neither /__admin/health nor /__admin/clock: it runs on its own clock"


@dataclass
class World:
    """`caas-sim up --core-url` for the node core, and how to start that core."""
    base: int
    clock: str
    folder: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def core(self) -> str:
        return f"http://127.0.0.1:{self.base}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.base + OFFSET[name]}"

    @property
    def target(self) -> str:
        return ",".join([f"core={self.core}", *(f"{name}={self.url(name)}" for name in SERVICES)])

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The CLI, in the environment the node core reads (upstreams, secrets, keys, clock)."""
        env = {**os.environ, **self.env, "CAAS_SIM_STATE": str(self.folder / "up.json")}
        return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, env=env)

    def scenarios(self, *names: str) -> subprocess.CompletedProcess:
        """Run ``names``, the node core started afresh for each by the runner."""
        return self.cli("scenario", "run", *names, "--target", self.target,
                        "--core-command", f"exec {shlex.quote(NODE)} {shlex.quote(str(CORE))}", timeout=110)

    @contextlib.contextmanager
    def node_core(self) -> Iterator[subprocess.Popen]:
        """The node core, started here (for the runs that show what happens without --core-command)."""
        env = {**os.environ, **self.env}
        node = subprocess.Popen([NODE, str(CORE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            ready = node.stdout.readline()  # printed once it listens; EOF if it could not start
            assert ready.startswith("node core on "), ready + node.stdout.read()
            yield node
        finally:
            node.terminate()
            node.wait(timeout=10)


@contextlib.contextmanager
def world(tmp_path: Path, clock: str) -> Iterator[World]:
    for _ in range(3):  # a port of the base taken meanwhile by another test: another base
        here = World(free_port_base([0, *(OFFSET[name] for name in SERVICES)]), clock, tmp_path)
        up = subprocess.Popen([*CLI, "up", "--core-url", here.core, "--clock", clock, "--port-base", str(here.base),
                               "--services", ",".join(SERVICES), "--secret", SECRET,
                               "--state-file", str(tmp_path / "up.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        lines = []
        try:
            for line in up.stdout:  # the service table, then the clock line once everything listens
                lines.append(line)
                if line.startswith("clock "):
                    break
            if up.poll() is not None or not lines or not lines[-1].startswith("clock "):
                continue
            threading.Thread(target=lines.extend, args=(up.stdout,), daemon=True).start()  # keep the pipe drained
            secrets = here.cli("secrets")
            assert secrets.returncode == 0, secrets.stderr
            here.env = dict(line.split("=", 1) for line in secrets.stdout.split())
            assert here.env["CAAS_SIM_IOT_WEBHOOK_SECRET"] == SECRET
            here.env.update({"PORT": str(here.base), "CAAS_CLOCK": clock,
                             "CAAS_UPSTREAMS__IOT": here.url("iot"), "CAAS_UPSTREAMS__PAYMENTS": here.url("payments"),
                             "CAAS_API_KEYS": api_keys(OTA + PAYMENTS_AND_KEYS + NEED_VIRTUAL_TIME)})
            yield here
            return
        finally:
            up.terminate()
            up.wait(timeout=30)
    pytest.fail("caas-sim up did not start:\n" + "".join(lines))


def api_keys(names: list[str]) -> str:
    """The API keys of the scenarios' actors, as CAAS_API_KEYS (what `caas-sim scenario keys`
    prints for the whole catalogue)."""
    known = loader.catalogue()
    keys = {actor.api_key(): {"role": actor.role, "subject": actor.subject}
            for name in names for actor in loader.load(known.get(name) or Path(name)).world.actors.values()}
    return json.dumps(keys)


def assert_clean(run: subprocess.CompletedProcess) -> None:
    """What the runner cannot do with this core, said once, and no noise."""
    assert run.stderr.count(OWN_CLOCK) == 1, run.stderr
    assert "Traceback" not in run.stderr and "Unclosed" not in run.stderr, run.stderr


def test_the_node_core_passes_the_ota_scenarios_of_its_slice(tmp_path):
    with world(tmp_path, "scaled:200") as here:
        run = here.scenarios(*OTA)
    assert run.returncode == 0 and f"{len(OTA)} passed, 0 failed, 0 errors, 0 skipped" in run.stdout, \
        run.stdout + run.stderr
    assert_clean(run)
    assert "/__admin/reset" not in run.stderr  # started afresh for each scenario: never asked


def test_the_node_core_passes_payments_and_keys_and_says_what_it_cannot_do(tmp_path):
    with world(tmp_path, "scaled:3600") as here:
        run = here.scenarios(*PAYMENTS_AND_KEYS)
        assert run.returncode == 0 and f"{len(PAYMENTS_AND_KEYS)} passed, 0 failed" in run.stdout, \
            run.stdout + run.stderr
        assert_clean(run)

        with here.node_core():  # one core for the whole run: it cannot be reset
            shared = here.cli("scenario", "run", *PAYMENTS_AND_KEYS[:2], *NEED_VIRTUAL_TIME, "--target", here.target)
        assert shared.returncode == 0 and "1 passed, 0 failed, 0 errors, 3 skipped" in shared.stdout, \
            shared.stdout + shared.stderr
        assert_clean(shared)
        assert shared.stderr.count("has no /__admin/reset: it keeps what a scenario leaves") == 1, shared.stderr
        assert f"{PAYMENTS_AND_KEYS[1]}: skipped: the core cannot be reset" in shared.stdout
        assert shared.stdout.count("skipped: it needs virtual time: it may wait") == 2, shared.stdout

        with here.node_core():
            skipped = here.cli("scenario", "run", *NEED_VIRTUAL_TIME, "--target", here.target)
        assert skipped.returncode == 1 and "every scenario was skipped" in skipped.stderr, \
            skipped.stdout + skipped.stderr

        with here.node_core():
            load = here.cli("load", "ota", "--target", here.core, "--iot-url", here.url("iot"), "--payments-url",
                            here.url("payments"), "--api-key", "customer-c-1", "--users", "2", "--duration", "2s",
                            "--report", str(tmp_path / "load"), timeout=90)
        assert load.returncode == 0, load.stdout[-3000:] + load.stderr[-3000:]
        assert load.stderr.count("serves no /__admin/audit: its invariant audit was not available; the peers' audit "
                             "(the simulators' side) runs instead") == 1, \
            load.stderr[-3000:]
        assert "the peers' audit (the simulators' side) after the load" in load.stdout
        assert "every invariant holds" in load.stdout
