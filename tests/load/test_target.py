"""The target description of the load tests: the reference core's values by default, a file's
on top, the options' on top of that; and never a secret in what a report shows."""

import pytest

from caas_sim import catalogue
from caas_sim.loadtests.target import (
    DEVELOPMENT_SECRET,
    LoadTarget,
    TargetError,
    fill,
    load,
)

OWN = "whsec_b3duLXNlY3JldC1mb3ItdGhlLXRlc3QtMDAwMDA="


def test_the_defaults_are_the_reference_cores():
    target = load(None)
    assert {name: r.path for name, r in target.receivers.items()} == {
        name: catalogue.WEBHOOK_SENDERS[name] for name in ("iot", "payments", "factory")}
    assert {r.secret for r in target.receivers.values()} == {DEVELOPMENT_SECRET}
    assert target.keys.customer == "dev-customer" and target.purchase.active == ("ACTIVE",)


def test_a_file_names_what_differs_and_the_options_win(tmp_path):
    path = tmp_path / "core.toml"
    path.write_text(f'[receivers.iot]\npath = "/hooks/iot"\nsecret = "{OWN}"\n[keys]\ncustomer = "k1"\n')
    target = load(path)
    assert target.receivers["iot"].path == "/hooks/iot" and target.receivers["iot"].secret == OWN
    assert target.receivers["payments"].path == catalogue.WEBHOOK_SENDERS["payments"]  # the others kept
    both = target.with_overrides(receivers={"factory": "/f"}, secrets={None: OWN, "iot": DEVELOPMENT_SECRET},
                                 keys={"customer": None, "customer_id": "c-9"}, vehicles=(5, 100))
    assert both.receivers["factory"].path == "/f"
    assert both.receivers["payments"].secret == OWN and both.receivers["iot"].secret == DEVELOPMENT_SECRET
    assert both.keys.customer == "k1" and both.keys.customer_id == "c-9"  # None: the file's stays
    assert (both.vehicles.first, both.vehicles.count) == (5, 100)


def test_what_a_report_shows_holds_no_secret():
    shown = str(LoadTarget().with_overrides(secrets={"payments": OWN}, keys={"customer": "s3cret-key"}).public())
    assert OWN not in shown and "s3cret-key" not in shown and "own (not shown)" in shown


@pytest.mark.parametrize(("text", "said"), [
    ('[receivers.sms]\npath = "/x"\n', "unknown webhook sender(s) ['sms']"),
    ('[receivers.iot]\nsecret = "hunter2"\n', "receivers.iot.secret"),
    ("[vehicles]\ncount = 3\n", "vehicles.count"),
    ("[purchase]\nbodyy = {}\n", "purchase.bodyy"),
    ("[keys\n", "not valid TOML"),
    ('senders = ["iot", "sms"]\n', "senders: Value error, unknown sender(s) ['sms']"),
    ('[purchase]\npath = "/x/{nope}"\n', "purchase.path: Value error, unknown placeholder(s) {nope}"),
    ('[purchase]\nbody = {card = "{token}"}\n', "purchase.body: Value error, unknown placeholder(s) {token}"),
    ('[purchase]\nstatus_path = "/p/{id}"\n', "status_path: unknown placeholder(s) {id}"),
])
def test_a_bad_description_is_one_line_naming_the_field(tmp_path, text, said):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TargetError, match="bad.toml") as caught:
        load(path)
    assert said in str(caught.value) and "\n" not in str(caught.value).strip()


def test_a_body_template_is_filled_in_depth():
    template = {"product": "{serviceId}", "for": ["{vin}", {"who": "{customerId}"}], "n": 1}
    assert fill(template, {"serviceId": "s", "vin": "V", "customerId": "c"}) == {
        "product": "s", "for": ["V", {"who": "c"}], "n": 1}
