"""The built wheel works with no checkout: contracts, scenario catalogue and profiles travel
inside it. Installed (no dependencies: those of this environment serve) into a folder of its
own and run from another, so that nothing of the repository can be found."""

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    # from a copy: an in-tree build would pick up whatever an earlier one left in build/
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", "build", "dist", "*.egg-info", "__pycache__", ".git"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q",
                    "-w", str(work / "dist")], check=True, capture_output=True)
    [wheel] = (work / "dist").glob("caas_sim-*.whl")
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    return site, elsewhere, env


def caas_sim(installed, *args, timeout=60) -> subprocess.CompletedProcess:
    _, cwd, env = installed
    return subprocess.run([sys.executable, "-m", "caas_sim.scenarios.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_the_installed_modules_are_the_wheels_under_two_names(installed):
    site, cwd, env = installed
    modules = sorted(p.name for p in site.iterdir() if p.name != "bin" and not p.name.endswith(".dist-info"))
    assert modules == ["caas_core", "caas_sim"]  # no generic top-level name claimed
    code = ("import caas_sim, caas_sim.scenarios, caas_sim.simulators, caas_core, caas_sim.loadtests;"
            "print(caas_sim.__file__, caas_sim.scenarios.__file__, caas_sim.simulators.__file__, caas_core.__file__)")
    found = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert all(path.startswith(str(site)) for path in found), found


def test_version_and_contracts(installed, tmp_path):
    assert caas_sim(installed, "--version").stdout.startswith("caas-sim ")
    listing = caas_sim(installed, "contracts")
    assert listing.returncode == 0, listing.stderr
    assert "iot " in listing.stdout and "registry-uk" in listing.stdout
    assert caas_sim(installed, "contracts", "payments").stdout.startswith("openapi: 3.1")
    assert caas_sim(installed, "contracts", "--export", str(tmp_path)).returncode == 0
    assert len(list(tmp_path.glob("*.yaml"))) == 11
    assert (tmp_path / "schemathesis.toml").is_file()  # so that `schemathesis run` there needs no flag


def test_a_scenario_of_the_catalogue_runs(installed):
    listed = caas_sim(installed, "scenario", "list")
    assert "healthy-vehicle-is-activated-at-once-and-told-on-every-channel" in listed.stdout, listed.stderr
    run = caas_sim(installed, "scenario", "run", "healthy-vehicle-is-activated-at-once-and-told-on-every-channel")
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_simulator_serves_with_its_contract_and_profiles(installed):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, cwd, env = installed
    server = subprocess.Popen([sys.executable, "-m", "caas_sim.scenarios.cli", "serve", "iot", "--port", str(port),
                               "--faults", "flaky-network"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        header = server.stdout.readline()
        assert "SERVICE" in header, header + server.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/__admin/health", timeout=10) as answer:
            assert json.load(answer)["service"] == "iot"
    finally:
        server.terminate()
        server.wait(timeout=30)
