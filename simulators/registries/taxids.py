"""Owner identifiers of the four registries, checked by their published rules.

Every ``check_*`` returns None when the identifier is valid and otherwise a
sentence saying which rule it breaks (it becomes the 422 detail). Input is the
compact canonical form the contracts ask for: upper case, no spaces or dashes.

Sources of the rules (and of the examples the tests use):
- Spain: DNI/NIE control letter ``TRWAGMYFPDXBNJZSQVHLCKE[n % 23]`` (NIE: X, Y,
  Z stand for 0, 1, 2); CIF: Luhn over the seven digits, check written as the
  digit or as ``JABCDEFGHI[digit]`` (python-stdnum es/dni, es/nie, es/cif).
- France: numéro fiscal (SPI), 13 digits, first 0-3, last three = first ten
  mod 511 (python-stdnum fr/nif, EU TIN portal); SIREN (9) and SIRET (14)
  digits with Luhn, except La Poste establishments (SIREN 356000000) whose
  digits sum to a multiple of 5 (python-stdnum fr/siren, fr/siret).
- Germany: Steuer-IdNr, 11 digits, first not 0, in the first ten exactly one
  digit occurs twice or three times and no other repeats, check digit ISO 7064
  MOD 11,10 (python-stdnum de/idnr; BZSt); USt-IdNr ``DE`` + 9 digits, same
  check digit over the first eight (ZMDV Anlage 3, python-stdnum de/vat).
- United Kingdom: National Insurance number, two prefix letters, six digits,
  suffix A-D; D, F, I, Q, U, V never in the prefix, O never second, BG, GB,
  KN, NK, NT, TN, ZZ never allocated (HMRC manual NIM39110); it has no check
  digit. VAT registration number ``GB`` + 9 digits, weights 8..2, 10, 1 mod 97
  is 0 (or 42 / 55 for numbers from 100 0000 00 on) (python-stdnum gb/vat).
  Driving licence number (GB photocard, 16 characters): surname (5, padded
  with 9), decade digit, month (+50 for women), day, year digit, two initials
  (padded with 9), an arbitrary digit, two check characters (DVLA).
"""

from __future__ import annotations

import re
from datetime import date

__all__ = [
    "check_de",
    "check_de_steuer_id",
    "check_de_vat",
    "check_es",
    "check_es_cif",
    "check_es_dni",
    "check_es_nie",
    "check_fr",
    "check_fr_numero_fiscal",
    "check_fr_siren",
    "check_fr_siret",
    "check_uk",
    "check_uk_driving_licence",
    "check_uk_nino",
    "check_uk_vat",
    "es_control_letter",
    "fr_numero_fiscal_key",
    "luhn_valid",
    "mod_11_10_check_digit",
]

# ------------------------------------------------------------------------ Spain

_ES_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_CIF_FIRST = "ABCDEFGHJNPQRSUVW"


def es_control_letter(number: int | str) -> str:
    return _ES_LETTERS[int(number) % 23]


def check_es_dni(value: str) -> str | None:
    if not re.fullmatch(r"[0-9]{8}[A-Z]", value):
        return f"{value!r} is not a DNI (8 digits and a letter)"
    expected = es_control_letter(value[:8])
    return None if value[8] == expected else f"DNI {value}: the control letter should be {expected}"


def check_es_nie(value: str) -> str | None:
    if not re.fullmatch(r"[XYZ][0-9]{7}[A-Z]", value):
        return f"{value!r} is not a NIE (X, Y or Z, 7 digits and a letter)"
    expected = es_control_letter(str("XYZ".index(value[0])) + value[1:8])
    return None if value[8] == expected else f"NIE {value}: the control letter should be {expected}"


def _luhn_check_digit(digits: str) -> int:
    """The digit that, appended, makes ``digits`` pass Luhn."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # these are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return (10 - total % 10) % 10


def check_es_cif(value: str) -> str | None:
    if not re.fullmatch(r"[A-Z][0-9]{7}[0-9A-Z]", value):
        return f"{value!r} is not a CIF (a letter, 7 digits and a check digit or letter)"
    if value[0] not in _CIF_FIRST:
        return f"CIF {value}: {value[0]!r} is not an entity type letter ({_CIF_FIRST})"
    digit = _luhn_check_digit(value[1:8])
    if value[8] not in (str(digit), "JABCDEFGHI"[digit]):
        return f"CIF {value}: the check character should be {digit} or {'JABCDEFGHI'[digit]}"
    return None


def check_es(owner_type: str, value: str) -> str | None:
    if owner_type == "COMPANY":
        return check_es_cif(value)
    return check_es_nie(value) if value[:1] in "XYZ" else check_es_dni(value)


# ----------------------------------------------------------------------- France

def fr_numero_fiscal_key(first_ten: str) -> str:
    return f"{int(first_ten) % 511:03d}"


def check_fr_numero_fiscal(value: str) -> str | None:
    if not re.fullmatch(r"[0-3][0-9]{12}", value):
        return f"{value!r} is not a numéro fiscal (13 digits, the first 0 to 3)"
    key = fr_numero_fiscal_key(value[:10])
    return None if value[10:] == key else f"numéro fiscal {value}: the key (last three digits) should be {key}"


def luhn_valid(digits: str) -> bool:
    return digits.isdigit() and _luhn_check_digit(digits[:-1]) == int(digits[-1])


def check_fr_siren(value: str) -> str | None:
    if not re.fullmatch(r"[0-9]{9}", value):
        return f"{value!r} is not a SIREN (9 digits)"
    return None if luhn_valid(value) else f"SIREN {value}: the Luhn check digit is wrong"


def check_fr_siret(value: str) -> str | None:
    if not re.fullmatch(r"[0-9]{14}", value):
        return f"{value!r} is not a SIRET (14 digits)"
    if value.startswith("356000000") and value != "35600000000048":
        # La Poste's establishments: the digits add up to a multiple of 5 instead of Luhn.
        ok = sum(map(int, value)) % 5 == 0
    else:
        ok = luhn_valid(value)
    if not ok:
        return f"SIRET {value}: the check digit is wrong"
    return check_fr_siren(value[:9])


def check_fr(owner_type: str, value: str) -> str | None:
    if owner_type == "COMPANY":
        return check_fr_siret(value) if len(value) == 14 else check_fr_siren(value)
    return check_fr_numero_fiscal(value)


# ---------------------------------------------------------------------- Germany

def mod_11_10_check_digit(digits: str) -> int:
    """ISO 7064 MOD 11,10 (the hybrid system): the digit to append."""
    product = 10
    for ch in digits:
        total = (int(ch) + product) % 10 or 10
        product = total * 2 % 11
    return (11 - product) % 10


def check_de_steuer_id(value: str) -> str | None:
    if not re.fullmatch(r"[1-9][0-9]{10}", value):
        return f"{value!r} is not a Steuer-IdNr (11 digits, the first not 0)"
    counts = [value[:10].count(d) for d in set(value[:10])]
    repeated = [c for c in counts if c > 1]
    if len(repeated) != 1 or repeated[0] not in (2, 3):
        return (f"Steuer-IdNr {value}: in the first ten digits exactly one digit must occur twice or three times "
                "and every other at most once")
    digit = mod_11_10_check_digit(value[:10])
    return None if int(value[10]) == digit else f"Steuer-IdNr {value}: the check digit should be {digit}"


def check_de_vat(value: str) -> str | None:
    if not re.fullmatch(r"DE[1-9][0-9]{8}", value):
        return f"{value!r} is not a USt-IdNr (DE and 9 digits, the first not 0)"
    digit = mod_11_10_check_digit(value[2:10])
    return None if int(value[10]) == digit else f"USt-IdNr {value}: the check digit should be {digit}"


def check_de(owner_type: str, value: str) -> str | None:
    return check_de_vat(value) if owner_type == "COMPANY" else check_de_steuer_id(value)


# ---------------------------------------------------------------- United Kingdom

_NINO_NEVER = set("DFIQUV")
_NINO_UNALLOCATED = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def check_uk_nino(value: str) -> str | None:
    if not re.fullmatch(r"[A-Z]{2}[0-9]{6}[A-D]", value):
        return f"{value!r} is not a National Insurance number (2 letters, 6 digits, A to D)"
    first, second = value[0], value[1]
    if first in _NINO_NEVER or second in _NINO_NEVER:
        return f"National Insurance number {value}: D, F, I, Q, U and V are never used in the prefix"
    if second == "O":
        return f"National Insurance number {value}: O is never the second letter of the prefix"
    if value[:2] in _NINO_UNALLOCATED:
        return f"National Insurance number {value}: the prefix {value[:2]} is not allocated"
    return None


def check_uk_vat(value: str) -> str | None:
    if not re.fullmatch(r"GB[0-9]{9}", value):
        return f"{value!r} is not a VAT registration number (GB and 9 digits)"
    digits = value[2:]
    remainder = sum(w * int(d) for w, d in zip((8, 7, 6, 5, 4, 3, 2, 10, 1), digits)) % 97
    # Numbers issued from 100 0000 00 on may use the second (mod 97 - 55) series.
    valid = (0, 42, 55) if int(digits[:3]) >= 100 else (0,)
    return None if remainder in valid else f"VAT number {value}: the check digits are wrong"


_LICENCE = re.compile(r"[A-Z][A-Z9]{4}([0-9])([0156][0-9])([0-3][0-9])([0-9])[A-Z9]{2}[0-9][A-Z0-9]{2}")


def check_uk_driving_licence(value: str, date_of_birth: date | None = None) -> str | None:
    match = _LICENCE.fullmatch(value)
    if match is None:
        return (f"{value!r} is not a GB driving licence number (5 surname characters, 6 date-of-birth digits, "
                "2 initials, a digit and 2 check characters)")
    decade, month, day, year = match.groups()
    month_of_birth = int(month) % 50  # women's months are +50
    if not 1 <= month_of_birth <= 12 or not 1 <= int(day) <= 31:
        return f"driving licence {value}: characters 6-11 are not a date of birth"
    if date_of_birth is not None and (
            (int(decade), int(year)) != divmod(date_of_birth.year % 100, 10)
            or (month_of_birth, int(day)) != (date_of_birth.month, date_of_birth.day)):
        return f"driving licence {value}: the date of birth it encodes is not the owner's ({date_of_birth})"
    return None


def check_uk(owner_type: str, value: str) -> str | None:
    return check_uk_vat(value) if owner_type == "COMPANY" else check_uk_nino(value)
