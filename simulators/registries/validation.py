"""What the authority checks in a submission and in additional information, beyond what
the contract's schema says (dates against the clock, engine and power consistency, the
owner's identifiers, the country's own rules). Every error is collected, then answered
at once (422)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import lru_cache

from ..fleet import has_valid_check_digit, vin_check_digit
from ..kit.errors import ProblemError
from .plates import PlateIssuer, PlateRequest, PlateUnavailable
from .records import Registration, apply_values
from .vocabulary import _METRIC_HP_PER_KW, Country

Errors = list[tuple[str, str]]  # (field, message)


def check_submission(body: dict, country: Country, plates: PlateIssuer, today: date, registration_day: date,
                     enforce_check_digit: bool) -> Errors:
    """The errors of a new registration (local date ``today``; registered on ``registration_day``)."""
    vehicle, owner, purchase, insurance = body["vehicle"], body["owner"], body["purchase"], body["insurance"]
    errors: Errors = []
    if enforce_check_digit and not has_valid_check_digit(vehicle["vin"]):
        errors.append(("vehicle.vin", f"check digit (position 9) should be {vin_check_digit(vehicle['vin'])}"))
    if vehicle["year"] > today.year + 1:
        errors.append(("vehicle.year", f"model year {vehicle['year']} is after {today.year + 1}"))
    electric = vehicle["engineType"] == "ELECTRIC"
    if electric and vehicle["emissions"] != 0:
        errors.append(("vehicle.emissions", "an ELECTRIC vehicle emits 0 g/km of CO2"))
    elif not electric and vehicle["emissions"] == 0:
        errors.append(("vehicle.emissions", f"a {vehicle['engineType']} vehicle cannot emit 0 g/km of CO2"))
    kw, hp = vehicle["power"]["kw"], vehicle["power"]["hp"]
    expected_hp = kw * _METRIC_HP_PER_KW
    if abs(hp - expected_hp) > max(2.0, 0.03 * expected_hp):  # 3% admits imperial bhp (1.341 per kW)
        errors.append(("vehicle.power.hp", f"{hp} hp does not match {kw} kW (about {round(expected_hp)} hp)"))
    if owner["type"] == "INDIVIDUAL" and date.fromisoformat(owner["dateOfBirth"]) >= today:
        errors.append(("owner.dateOfBirth", "the date of birth is not in the past"))
    if (problem := _tax_id_problem(country.check_tax_id, owner["type"], owner["taxId"])) is not None:
        errors.append(("owner.taxId", problem))
    if date.fromisoformat(purchase["date"]) > today:
        errors.append(("purchase.date", f"the purchase date is after today ({today})"))
    if date.fromisoformat(insurance["validFrom"]) > registration_day:
        errors.append(("insurance.validFrom", (f"the insurance must be in force on the registration date "
                                              f"({registration_day})")))
    errors.extend(_duplicated_documents(body))
    errors.extend(country.check_owner(body))
    try:
        plates.check(plate_request(body, registration_day))
    except PlateUnavailable as exc:
        errors.append(("owner.address.postalCode", str(exc)))
    return errors


def check_info(reg: Registration, body: dict, country: Country, today: date) -> Errors:
    """The errors of additional information supplied to ``reg`` (local date ``today``)."""
    errors: Errors = []
    given = {f"documents.{d['type']}" for d in body.get("documents", [])} | set(body.get("values", {}))
    for name in reg.required_info["fields"] if reg.required_info else []:
        if name["field"] not in given:
            errors.append((name["field"], "asked for and not supplied"))
    errors.extend(_duplicated_documents(body))
    values = body.get("values", {})
    updated = apply_values(reg.request, values)  # (a fresh copy) values are checked against each other too
    for name, value in values.items():
        if name == "owner.dateOfBirth" and date.fromisoformat(value) >= today:
            errors.append((name, "the date of birth is not in the past"))
        elif (problem := country.check_value(name, value, updated)) is not None:
            errors.append((name, problem))
    return errors


@lru_cache(maxsize=1024)
def _tax_id_problem(check: Callable[[str, str], str | None], owner_type: str, tax_id: str) -> str | None:
    """Owners recur (a company registering its fleet, a returning customer): checked once."""
    return check(owner_type, tax_id)


def _duplicated_documents(body: dict) -> Errors:
    types = [d["type"] for d in body.get("documents", [])]
    if len(set(types)) == len(types):  # the usual case, without counting each
        return []
    return [("documents", f"{duplicated} is given more than once")
            for duplicated in sorted({t for t in types if types.count(t) > 1})]


def plate_request(body: dict, on: date) -> PlateRequest:
    address = body["owner"]["address"]
    return PlateRequest(on, address["city"], address["postalCode"], body["vehicle"]["engineType"] == "ELECTRIC")


def invalid(errors: Errors) -> ProblemError:
    return ProblemError(422, "Invalid registration data", "; ".join(f"{f}: {m}" for f, m in errors),
                        kind="invalid-data", errors=[{"field": f, "message": m} for f, m in errors])
