"""Owner identifiers and VINs against published valid and invalid examples, plus their check rules' properties.

Sources of the examples: python-stdnum's documented examples (es/dni, es/nie,
es/cif, fr/nif, fr/siren, fr/siret, de/idnr, de/vat, gb/vat), the Spanish
Ministry of the Interior's DNI example (12345678Z), kryptografie.de's Steuer-ID
example (12345678995), HMRC's NIM39110 (the QQ 12 34 56 A example "should not
be used"; the unallocated prefixes), the DVLA specimen licence of Sarah
Meredith Morgan, born 11.03.1976 (MORGA753116SM9IJ), and the VIN check digit
example of ISO 3779 / 49 CFR 565 (1M8GDM9AXKP042788).
"""

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_sim.simulators.fleet import (
    has_valid_check_digit,
    is_well_formed_vin,
    vin_check_digit,
)
from caas_sim.simulators.registries import taxids as t

VALID = [
    (t.check_es_dni, "54362315K"), (t.check_es_dni, "12345678Z"), (t.check_es_nie, "X2482300W"),
    (t.check_es_cif, "J99216582"), (t.check_es_cif, "A13585625"),
    (t.check_fr_numero_fiscal, "3023217600053"), (t.check_fr_siren, "732829320"),
    (t.check_fr_siret, "73282932000074"),
    (t.check_de_steuer_id, "36574261809"), (t.check_de_steuer_id, "12345678995"), (t.check_de_vat, "DE136695976"),
    (t.check_uk_vat, "GB980780684"), (t.check_uk_nino, "AB123456C"),
]
INVALID = [
    (t.check_es_dni, "54362315Z", "control letter should be K"),
    (t.check_es_nie, "X2482300A", "control letter should be W"),
    (t.check_es_cif, "J99216583", "should be 2 or B"),
    (t.check_es_cif, "O1234567L", "not an entity type letter"),
    (t.check_fr_numero_fiscal, "3023217600054", "should be 053"),
    (t.check_fr_numero_fiscal, "9701987765432", "the first 0 to 3"),
    (t.check_fr_siret, "73282932000079", "check digit is wrong"),
    (t.check_de_steuer_id, "36574261890", "check digit should be 2"),
    (t.check_de_steuer_id, "36554266806", "exactly one digit"),
    (t.check_de_steuer_id, "02476291358", "the first not 0"),
    (t.check_de_vat, "DE136695978", "check digit should be 6"),
    (t.check_uk_vat, "GB802311781", "check digits are wrong"),
    (t.check_uk_nino, "QQ123456A", "never used in the prefix"),
    (t.check_uk_nino, "AO123456A", "never the second letter"),
    (t.check_uk_nino, "AB123456E", "A to D"),
]


@pytest.mark.parametrize("check,value", VALID, ids=[v for _, v in VALID])
def test_published_valid_examples(check, value):
    assert check(value) is None


@pytest.mark.parametrize("check,value,message", INVALID, ids=[v for _, v, _ in INVALID])
def test_published_invalid_examples(check, value, message):
    assert message in check(value)


@pytest.mark.parametrize("prefix", ["BG", "GB", "KN", "NK", "NT", "TN", "ZZ"])
def test_unallocated_nino_prefixes(prefix):
    assert "is not allocated" in t.check_uk_nino(f"{prefix}123456A")


def test_la_poste_siret_uses_a_digit_sum():
    assert t.check_fr_siret("35600000000001") is None  # digits add up to 15
    assert t.check_fr_siret("35600000000002") is not None


def test_dispatch_by_owner_type():
    assert t.check_es("INDIVIDUAL", "X2482300W") is None and t.check_es("COMPANY", "J99216582") is None
    assert t.check_fr("COMPANY", "732829320") is None and t.check_fr("COMPANY", "73282932000074") is None
    assert t.check_de("COMPANY", "DE136695976") is None and t.check_de("INDIVIDUAL", "36574261809") is None
    assert t.check_uk("COMPANY", "GB980780684") is None and t.check_uk("INDIVIDUAL", "AB123456C") is None
    assert t.check_es("COMPANY", "12345678Z") is not None


def test_dvla_specimen_licence_encodes_the_date_of_birth():
    assert t.check_uk_driving_licence("MORGA753116SM9IJ", date(1976, 3, 11)) is None
    assert t.check_uk_driving_licence("MORGA753116SM9IJ") is None
    assert "not the owner's" in t.check_uk_driving_licence("MORGA753116SM9IJ", date(1976, 3, 12))
    assert "not the owner's" in t.check_uk_driving_licence("MORGA753116SM9IJ", date(1986, 3, 11))
    assert "not a date of birth" in t.check_uk_driving_licence("MORGA713116SM9IJ")
    assert "not a GB driving licence" in t.check_uk_driving_licence("MORGA753116SM9I")


def test_vin_check_digit_examples():
    assert vin_check_digit("1M8GDM9AXKP042788") == "X" and has_valid_check_digit("1M8GDM9AXKP042788")
    assert has_valid_check_digit("11111111111111111")
    assert not has_valid_check_digit("1M8GDM9A1KP042788")
    # A real European VIN: well formed, a filler where North America puts the check digit.
    assert is_well_formed_vin("WVWZZZ1JZ3W386752") and not has_valid_check_digit("WVWZZZ1JZ3W386752")
    assert not is_well_formed_vin("1M8GDM9AXKP04278O")  # O is not a VIN character


# --- properties: numbers built by the rule pass, one changed digit never does ---------

digits = lambda n: st.text("0123456789", min_size=n, max_size=n)


def _one_digit_changed(value: str, data) -> str:
    positions = [i for i, c in enumerate(value) if c.isdigit()]
    i = data.draw(st.sampled_from(positions))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != value[i]]))
    return value[:i] + new + value[i + 1:]


@settings(max_examples=200, deadline=None)
@given(digits(8))
def test_dni_control_letter(number):
    assert t.check_es_dni(number + t.es_control_letter(number)) is None
    wrong = next(c for c in "TRWAGMYFPDXBNJZSQVHLCKE" if c != t.es_control_letter(number))
    assert t.check_es_dni(number + wrong) is not None


@settings(max_examples=200, deadline=None)
@given(st.sampled_from("0123"), digits(9), st.data())
def test_numero_fiscal_key_catches_any_single_digit_error(first, rest, data):
    value = first + rest + t.fr_numero_fiscal_key(first + rest)
    assert t.check_fr_numero_fiscal(value) is None
    changed = _one_digit_changed(value, data)
    if changed[0] in "0123":
        assert t.check_fr_numero_fiscal(changed) is not None


@settings(max_examples=200, deadline=None)
@given(digits(13), st.data())
def test_luhn_catches_any_single_digit_error(payload, data):
    value = payload + str(t._luhn_check_digit(payload))
    assert t.luhn_valid(value)
    assert not t.luhn_valid(_one_digit_changed(value, data))


@settings(max_examples=200, deadline=None)
@given(st.permutations("123456789"), st.integers(0, 8), st.integers(1, 9))
def test_steuer_id_rules(order, repeat, shift):
    # Nine different digits and one repeated: exactly one digit occurs twice, as the BZSt issues them.
    body = "".join(order) + order[repeat]
    value = body + str(t.mod_11_10_check_digit(body))
    assert t.check_de_steuer_id(value) is None
    assert t.check_de_steuer_id(value[:10] + str((int(value[10]) + shift) % 10)) is not None
    # Two different digits repeated: invalid whatever the check digit.
    twice = "".join(order[:8]) + order[0] + order[1]
    assert "exactly one digit" in t.check_de_steuer_id(twice + str(t.mod_11_10_check_digit(twice)))
