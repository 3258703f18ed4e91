"""The same scenarios against services started as separate processes: `caas-sim up`
in one process (the core and every simulator, free ports), the runner in another."""

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from caas_sim.scenarios.scenario import timeline
from caas_sim.scenarios.scenario.coordinator import RemoteCoordinator, StackCoordinator
from caas_sim.scenarios.scenario.loader import catalogue, load
from caas_sim.scenarios.scenario.runner import Play, target_blockers
from caas_sim.simulators.kit.clock import DEFAULT_EPOCH
from tests.worlds import SERVICES, read_start_table

SCENARIOS = ["activation-succeeds-on-the-third-attempt", "iot-api-down-then-recovering-delays-and-then-delivers",
             "maintenance-below-threshold-refuses-the-purchase-and-charges-nothing",
             "withdrawal-within-14-days-refunds-in-full-and-deactivates",
             "factory-down-at-reservation-queues-the-order-and-places-exactly-one",
             "sale-to-delivery-full-journey"]
CLI = [sys.executable, "-m", "caas_sim.scenarios.cli"]
ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def caas_sim_up(tmp_path: Path, seed: int):
    """`caas-sim up --ephemeral` in its own process; the URL of each service."""
    keys = subprocess.run([*CLI, "scenario", "keys"], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    assert json.loads(keys)["dealership-TEST-UNAVAILABLE"] == {"role": "dealership", "subject": "TEST-UNAVAILABLE"}
    env = {**os.environ, "CAAS_API_KEYS": keys, "CAAS_SIM_STATE": str(tmp_path / "up.json")}
    up = subprocess.Popen([*CLI, "up", "--ephemeral", "--seed", str(seed),
                           "--database", f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=ROOT)
    try:
        yield read_start_table(up, "core", among=SERVICES)
    finally:
        up.terminate()
        up.wait(timeout=30)


@pytest.fixture
def services(tmp_path):
    with caas_sim_up(tmp_path, seed=3) as urls:
        yield urls


def test_scenarios_pass_against_separately_started_services(services, tmp_path):
    target = ",".join(f"{name}={url}" for name, url in services.items())
    run = subprocess.run([*CLI, "scenario", "run", *SCENARIOS, "--target", target,
                          "--junit", str(tmp_path / "junit.xml")],
                         check=False, capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("PASS ") >= 2 * len(SCENARIOS)  # progress line and summary row each
    assert f"{len(SCENARIOS)} passed, 0 failed" in run.stdout


# --- one world, in one process or across several: the same dates ---------------------

async def play(scenario, world) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Play ``scenario`` in ``world``; return its timeline (virtual time and what happened,
    polls aside: how often a runner looks is not the world's doing), and the dates of the
    factory's notifications as the factory sent them and as the core's sale file holds them."""
    outcome = await Play(scenario, world, scenario.world.seed).run(time.perf_counter())
    assert outcome.result == "passed", outcome.failure
    shown = {*scenario.world.services, timeline.SCENARIO}
    events = sorted((e["vt"], text) for e in outcome.journal
                    if e["service"] in shown and not e.get("poll") and (text := timeline.label(e)))
    sent = [e["vt"] for e in outcome.journal if e["service"] == "factory" and e["kind"] == "webhook"
            and e.get("event") == "orderStatus"]
    held = []
    sale = next((m.group(1) for e in outcome.journal if (m := re.match(r"/sales/(sale_\w+)/", e.get("path", "")))),
                None)
    if sale:
        actor = scenario.world.actors["lucia"]
        async with aiohttp.ClientSession() as http, \
                http.get(f"{world.url('core')}/sales/{sale}/file",
                         headers={"Authorization": f"Bearer {actor.api_key()}"}) as r:
            history = (await r.json())["history"]
        held = [h["at"] for h in history if h["event"] == "FACTORY_NOTIFICATION"]
    return events, sent, held


@pytest.mark.parametrize("name", ["activation-succeeds-on-the-third-attempt", "sale-to-delivery-full-journey"])
async def test_across_processes_no_service_hears_from_a_later_time_than_its_own(name, tmp_path):
    scenario = load(catalogue()[name])
    keys = {a.api_key(): {"role": a.role, "subject": a.subject} for a in scenario.world.actors.values()}
    (tmp_path / "here").mkdir()
    here = StackCoordinator(services=scenario.world.services, seed=scenario.world.seed, folder=tmp_path / "here",
                            api_keys=keys, core_settings=scenario.world.core, options=scenario.world.options)
    await here.start()
    try:
        in_process = await play(scenario, here)
    finally:
        await here.close()
    with caas_sim_up(tmp_path, seed=scenario.world.seed) as urls:
        there = await RemoteCoordinator(urls).start()
        try:
            across = await play(scenario, there)
        finally:
            await there.close()

    assert across == in_process
    events, sent, held = in_process
    if name.startswith("activation"):
        # Retried 1 and then 5 minutes after each failure the core was told of (a core one
        # step behind retried at once: its 08:00 + 1 minute was the failure's own instant).
        failed = [vt for vt, text in events if text == "iot: ota.failed"]
        tried = [vt for vt, text in events if text == "iot: activateService 202"]
        assert failed == ["2026-01-05T08:01:00.000Z", "2026-01-05T08:03:00.000Z"]
        assert tried == ["2026-01-05T08:00:00.000Z", "2026-01-05T08:02:00.000Z", "2026-01-05T08:08:00.000Z"]
    else:
        # The core files each notification at the date the factory sent it (not a step late).
        assert len(sent) > 10 and held == sent


# --- a world whose clock has moved on: what a --target world shared by earlier runs is ---------

@pytest.mark.parametrize("name", ["subscription-unpaid-after-every-retry-is-cancelled-and-sent-to-collection",
                                  "subscription-declined-month-end-charge-is-retried-and-paid"])
async def test_month_end_billing_scenarios_pass_whenever_the_world_stands(name, tmp_path):
    """They advanced a fixed 27 days to the month end of a purchase made on 5 January: against
    a shared clock standing at 2 December the month end had not come (`expected 'UNPAID', got
    'OPEN'`). They are not marked from_start, so they must pass wherever the clock stands."""
    scenario = load(catalogue()[name])
    assert not scenario.world.from_start
    keys = {a.api_key(): {"role": a.role, "subject": a.subject} for a in scenario.world.actors.values()}
    world = StackCoordinator(services=scenario.world.services, seed=scenario.world.seed, folder=tmp_path,
                             api_keys=keys)
    await world.start()
    try:
        await world.advance_to(world.now() + 331 * 86400)  # 2 December 2026, 08:00: 29.7 days to the month end
        outcome = await Play(scenario, world, scenario.world.seed).run(time.perf_counter())
    finally:
        await world.close()
    assert outcome.result == "passed", outcome.failure


def test_a_from_start_scenario_is_skipped_first_in_a_run_on_a_clock_that_had_moved_on():
    """The skip looked only at the clock's moves during this run: the run's first scenario ran on
    a shared clock months on (the availability month failed, its vehicle's brakes at 8%)."""
    scenario = load(catalogue()["a-month-under-the-specifications-availability-targets"])
    assert scenario.world.from_start

    def world(started: float, now: float) -> SimpleNamespace:
        return SimpleNamespace(urls=dict.fromkeys(["core", *scenario.world.services]), core_lacks=set(),
                               played=0, started=started, now=lambda: now, wait_blocker=lambda seconds: None)

    assert target_blockers(scenario, world(DEFAULT_EPOCH, DEFAULT_EPOCH)) is None  # a fresh world
    moved = DEFAULT_EPOCH + 331 * 86400
    assert "world.from_start" in target_blockers(scenario, world(moved, moved))
    assert "world.from_start" in target_blockers(scenario, world(DEFAULT_EPOCH, DEFAULT_EPOCH + 60))
