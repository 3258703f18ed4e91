"""The dashboard in a real browser: headless Chromium (Debian's `chromium` package) driven by
Playwright, against `caas-sim up --ephemeral` in its own process.

The browser is the system's: Playwright's own browser downloads are not used. Set
``CAAS_CHROMIUM`` to a Chromium or Chrome executable, else ``chromium`` is looked up on the
PATH. Where there is none (and neither Playwright), the test is skipped and says how to
install it; under CI (``CI=true``) it fails instead, since `.ci/run` installs it.

``CAAS_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also saves the page, mid-journey, there
(the README's picture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from caas_sim.scenarios.cli import TOKEN_ENV
from caas_sim.scenarios.cli import state as state_mod
from tests.worlds import read_start_table

ROOT = Path(__file__).resolve().parents[2]
#: Real milliseconds the page may take to show what the world did (it polls every 0.25 s).
WAIT = 20_000
INSTALL = "apt-get install -y chromium (Debian), and the dev extra's playwright (pip install -e '.[dev]')"


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI installs it ({INSTALL})")
    pytest.skip(f"{reason}; to run this test: {INSTALL}")


def chromium_path() -> str | None:
    given = os.environ.get("CAAS_CHROMIUM")
    if given:
        return given
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        _unavailable("no Chromium on this machine (CAAS_CHROMIUM, or `chromium` on the PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def world(tmp_path):
    """`caas-sim up --ephemeral` with the reference core: the URLs of its start table."""
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "CAAS_API_KEYS")}  # development keys
    env[state_mod.STATE_ENV] = str(tmp_path / "up.json")
    proc = subprocess.Popen([sys.executable, "-m", "caas_sim.scenarios.cli", "up", "--ephemeral", "--seed", "5",
                             "--database", f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"],
                            cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        yield read_start_table(proc, "core", "iot", "dashboard")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def http(method: str, url: str, body: dict | None = None, key: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=30) as r:
        return json.loads(r.read())


def test_the_dashboard_moves_the_clock_adds_a_fault_and_draws_the_journey(browser, world, tmp_path):
    from playwright.sync_api import expect

    started = time.monotonic()
    expect.set_options(timeout=WAIT)
    vin = http("GET", world["iot"] + "/fleet/magic-vins")["vins"]["healthy"]
    page = browser.new_page(viewport={"width": 1500, "height": 960})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(world["dashboard"])

    # Every service of the world, healthy and idle; the stream is live.
    expect(page.locator("#live")).to_have_text("live")
    for name in ("core", "iot", "payments", "registry-uk"):
        expect(page.locator(f"#services tr[data-service='{name}'] .state-ok")).to_have_text("ok")
    clock = page.locator("#clock-now")
    expect(clock).to_have_text("2026-01-05 08:00:00Z")

    # +1h: every clock moves, the core's included (as `caas-sim clock advance` moves them).
    page.get_by_role("button", name="+1h").click()
    expect(clock).to_have_text("2026-01-05 09:00:00Z")
    expect(page.locator("#clock-status")).to_have_text("moved +1h")
    expect(page.locator("#services tr[data-service='core'] td").nth(3)).to_contain_text("09:00:00")

    # A fault through the form, built from the actions the IoT simulator lists.
    form = page.locator("#fault-form")
    form.locator("#fault-service").select_option("iot")
    form.locator("#fault-action").select_option("activation_failed")
    form.locator("select[name='param.errorCode']").select_option("ECU_ERROR")
    form.locator("input[name='selectors']").fill(f"vin={vin}")
    form.locator("input[name='times']").fill("1")
    form.locator("input[name='id']").fill("browser-ecu")
    form.get_by_role("button", name="add rule").click()
    expect(page.locator("#fault-result")).to_have_text("added browser-ecu to iot")
    rule = page.locator("#faults tr[data-rule='browser-ecu']")
    expect(rule).to_contain_text("activation_failed errorCode=ECU_ERROR")
    expect(rule).to_contain_text("1/1 left")
    assert [r["id"] for r in http("GET", world["iot"] + "/__admin/faults")["rules"]] == ["browser-ecu"]

    # A purchase through the core's API: its calls appear in the diagram, the fault marked.
    purchase = http("POST", f"{world['core']}/customers/c-1/vehicles/{vin}/purchases",
                    {"serviceId": "heated-seats", "durationType": "PERMANENT",
                     "paymentMethod": {"type": "CARD", "token": "pm_card_visa"}}, key="dev-customer")
    diagram = page.locator("#diagram")
    expect(diagram.locator("g.row[data-kind='request'] text", has_text="initiatePayment → 201")).to_have_count(1)
    expect(diagram.locator("g.row[data-kind='request'] text", has_text="activateService → 202")).to_have_count(1)
    expect(diagram.locator("g.row.mark-fault text", has_text="⚡ fault browser-ecu")).to_have_count(1)
    expect(rule).to_contain_text("0/1 left")

    # The next event: the vehicle answers (the ECU error the rule injected) and the core is told.
    next_due = page.locator("#next-due")
    expect(next_due).to_be_enabled()
    next_due.click()
    expect(diagram.locator("text", has_text="ota.failed ECU_ERROR")).to_have_count(1)
    expect(diagram.locator("g.row.webhook text", has_text="otaStatus → 204")).to_have_count(1)

    # +15m: the core's retry a minute later, and this time the vehicle takes it.
    page.get_by_role("button", name="+15m").click()
    expect(clock).to_have_text("2026-01-05 09:15:02Z")  # from the event, 2 s after 09:00
    expect(diagram.locator("g.row[data-kind='request'] text", has_text="activateService → 202")).to_have_count(2)
    expect(diagram.locator("text", has_text="ota.activated")).to_have_count(1)
    expect(diagram.locator("g.row.webhook text", has_text="otaStatus → 204")).to_have_count(2)

    screenshot = tmp_path / "dashboard.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("CAAS_DASHBOARD_SCREENSHOT"):
        page.screenshot(path=os.environ["CAAS_DASHBOARD_SCREENSHOT"])

    # Filtered by the purchase id: the payment it made is there, the magic-VIN look-up is not.
    page.locator("#filter").fill(purchase["purchaseId"])
    expect(diagram.locator("text", has_text="initiatePayment → 201")).to_have_count(1)
    expect(diagram.locator("text", has_text="getMagicVins")).to_have_count(0)
    page.locator("#filter").fill("")
    expect(diagram.locator("text", has_text="getMagicVins")).to_have_count(1)

    # The rule goes with its button.
    rule.get_by_role("button", name="remove").click()
    expect(rule).to_have_count(0)
    assert http("GET", world["iot"] + "/__admin/faults")["rules"] == []

    # The vehicle page: the IoT simulator's status and the OTA request from its journal.
    page.locator("#vin-input").fill(vin)
    page.locator("#vin-form").get_by_role("button", name="vehicle").click()
    expect(page.locator("#vehicle-vin")).to_have_text(vin)
    expect(page.locator("#vehicle-connectivity")).to_have_text(re.compile(r"ONLINE|ASLEEP|OFFLINE|LIMITED"))
    request = page.locator("#ota-requests tr[data-request]").first
    expect(request).to_contain_text("heated-seats")
    expect(request).to_contain_text("browser-ecu")
    expect(page.locator("#ota-requests tr[data-request]").last).to_contain_text("ota.activated")
    expect(page.locator("#vehicle-diagram text", has_text="activateService → 202")).to_have_count(2)

    assert errors == [], errors
    page.close()
    print(f"browser journey: {time.monotonic() - started:.1f} s")
