"""What the registries keep to answer cheaply (a registration's short strings, a calendar's
last local time and instants) says what a fresh computation says."""

from datetime import date, datetime, time, timedelta

from caas_sim.simulators.registries import de, es
from caas_sim.simulators.registries.business_days import Calendar
from caas_sim.simulators.registries.records import Registration, apply_values
from caas_sim.simulators.registries.validation import _tax_id_problem

SUBMISSION = {"reference": "ORD-1", "vehicle": {"vin": "WVWZZZ1JZXW000001"},
              "owner": {"type": "INDIVIDUAL", "name": "Ana Ruiz", "taxId": "12345678Z"},
              "purchase": {"dealership": "D-1"}}


def kept(reg: Registration) -> dict:
    return {"vin": reg.vin, "taxId": reg.tax_id, "type": reg.owner_type, "name": reg.owner_name,
            "dealership": reg.dealership, "reference": reg.reference}


def read(request: dict) -> dict:
    owner = request["owner"]
    return {"vin": request["vehicle"]["vin"], "taxId": owner["taxId"], "type": owner["type"], "name": owner["name"],
            "dealership": request["purchase"]["dealership"], "reference": request.get("reference")}


def test_a_registration_keeps_the_strings_of_its_submission_as_it_changes():
    reg = Registration("reg_1", SUBMISSION, None, 0.0)
    assert reg.request == SUBMISSION and kept(reg) == read(SUBMISSION)
    assert reg.entities() == {"registrationId": "reg_1", "vin": "WVWZZZ1JZXW000001", "taxId": "12345678Z",
                              "dealership": "D-1", "reference": "ORD-1"}
    reg.keep(apply_values(reg.request, {"owner.name": "Ana Ruiz Gil", "owner.taxId": "87654321X"}))
    assert kept(reg) == read(reg.request) and reg.owner_name == "Ana Ruiz Gil"
    reg.keep({**reg.request, "reference": ""})
    assert "reference" not in reg.entities() and reg.reference == ""


def test_a_calendar_answers_as_datetime_does_across_the_clock_changes():
    calendar = Calendar("Europe/Berlin", de.national_holidays)
    start = datetime(2026, 3, 28, 22, 30).timestamp()  # over the spring change, then back and forth
    for ts in [start + k * 1800 for k in range(12)] + [start, start, start + 86400 * 210]:
        assert calendar.local(ts) == datetime.fromtimestamp(ts, calendar.tz)
    day = date(2026, 10, 24)
    for offset in range(3):
        for when in (time(1, 30), time(2, 30), time(9), time(16, 59)):
            on = day + timedelta(days=offset)
            assert calendar.at(on, when) == datetime.combine(on, when, calendar.tz).timestamp()


def test_tax_ids_are_judged_alike_when_they_come_again():
    check = es.COUNTRY.check_tax_id
    for owner, tax_id in [("INDIVIDUAL", "12345678Z"), ("INDIVIDUAL", "12345678A"), ("COMPANY", "B12345609"),
                          ("COMPANY", "12345678Z")] * 2:
        assert _tax_id_problem(check, owner, tax_id) == check(owner, tax_id)
