"""Licence plates in each country's real format, never issued twice in a run.

- Spain (since 2000): ``0000 BBB``, four digits and three consonants without
  vowels, Ñ or Q, issued nationally in sequence: the number runs fastest, then
  the letters from the right (9999 BBB is followed by 0000 BBC).
- France (SIV, since 2009): ``AA-123-AA``, issued nationally in sequence: the
  number 001-999 runs fastest, then the right pair, then the left pair. I, O
  and U are never used; SS is never used; WW on the left is kept for
  temporary registrations.
- Germany: district code (Unterscheidungszeichen, 1-3 letters, umlauts
  allowed) from the owner's city or postcode, then the Erkennungsnummer: 1-2
  letters (A-Z, no umlauts) and a number 1-9999, at most 8 characters in all
  (FZV Anlage 2); an electric vehicle's ``E`` counts toward the 8. Letter
  pairs recalling Nazi organisations (HJ, KZ, NS, SA, SD, SS) and AH/HH with
  18 or 88 are never issued. Numbers are not sequential in Germany: they are
  picked (here deterministically from the seed) among the free ones.
- United Kingdom (since 2001): ``AB12 CDE``: a memory tag (region letter from
  the owner's postcode area, then a local office letter; I, Q and Z never
  used, MN kept for the Isle of Man), the age identifier of the registration
  date (March-August: the year's last two digits; September-February: +50,
  January and February belonging to the previous September), and three
  letters without I or Q picked among the free ones.

An issuer keeps every plate it issued (a set of short strings per registered
vehicle) and resets with the simulator.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

__all__ = [
    "DE_DISTRICTS",
    "DE_PATTERN",
    "ES_PATTERN",
    "FR_PATTERN",
    "UK_PATTERN",
    "FrancePlates",
    "GermanPlates",
    "PlateIssuer",
    "PlateRequest",
    "PlateUnavailable",
    "SpainPlates",
    "UkPlates",
    "de_district",
    "de_plate_length",
    "uk_age_identifier",
    "uk_region",
]

ES_PATTERN = re.compile(r"^[0-9]{4} [BCDFGHJKLMNPRSTVWXYZ]{3}$")
FR_PATTERN = re.compile(r"^[A-HJ-NP-TV-Z]{2}-[0-9]{3}-[A-HJ-NP-TV-Z]{2}$")
DE_PATTERN = re.compile(r"^[A-ZÄÖÜ]{1,3}-[A-Z]{1,2} [1-9][0-9]{0,3}E?$")
UK_PATTERN = re.compile(r"^[A-HJ-PR-Y]{2}[0-9]{2} [A-HJ-PR-Z]{3}$")


@dataclass(frozen=True, slots=True)
class PlateRequest:
    """What the issuer may look at: the registration date (local) and the owner's address."""
    on: date
    city: str = ""
    postal_code: str = ""
    electric: bool = False


class PlateUnavailable(Exception):
    """The owner's address does not allow a plate here, or a series is exhausted."""


class PlateIssuer(ABC):
    pattern: re.Pattern

    def __init__(self) -> None:
        self.issued: set[str] = set()

    def issue(self, request: PlateRequest) -> str:
        plate = self._next(request)
        if plate in self.issued or not self.pattern.match(plate):  # a bug, never a caller's fault
            raise AssertionError(f"{type(self).__name__} produced {plate!r} twice or out of format")
        self.issued.add(plate)
        return plate

    def check(self, request: PlateRequest) -> None:
        """Raise PlateUnavailable now if this address can never get a plate (before any decision)."""

    def reset(self) -> None:
        self.issued.clear()

    @abstractmethod
    def _next(self, request: PlateRequest) -> str: ...


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def _probe(size: int, seed: int, *key: object) -> tuple[int, int]:
    """A start and a step coprime with size: start + i*step visits every index once."""
    start = _digest(seed, *key, "start") % size
    step = _digest(seed, *key, "step") % size or 1
    while math.gcd(step, size) != 1:
        step += 1
    return start, step


# ------------------------------------------------------------------------ Spain

_ES_LETTERS = "BCDFGHJKLMNPRSTVWXYZ"


class SpainPlates(PlateIssuer):
    pattern = ES_PATTERN

    def __init__(self, start: str = "0000 NDB"):
        super().__init__()
        if not ES_PATTERN.match(start):
            raise ValueError(f"plate_start {start!r} is not a Spanish plate (0000 BBB)")
        letters = sum(_ES_LETTERS.index(c) * 20 ** (2 - i) for i, c in enumerate(start[5:]))
        self.start = letters * 10_000 + int(start[:4])
        self.position = self.start

    def reset(self) -> None:
        super().reset()
        self.position = self.start

    def _next(self, request: PlateRequest) -> str:
        if self.position >= 20 ** 3 * 10_000:
            raise PlateUnavailable("the Spanish series is exhausted (past 9999 ZZZ)")
        letters, number = divmod(self.position, 10_000)
        self.position += 1
        a, rest = divmod(letters, 400)
        b, c = divmod(rest, 20)
        return f"{number:04d} {_ES_LETTERS[a]}{_ES_LETTERS[b]}{_ES_LETTERS[c]}"


# ----------------------------------------------------------------------- France

_FR_LETTERS = "ABCDEFGHJKLMNPQRSTVWXYZ"  # no I, O, U
_FR_PAIRS = [a + b for a in _FR_LETTERS for b in _FR_LETTERS]


class FrancePlates(PlateIssuer):
    pattern = FR_PATTERN

    def __init__(self, start: str = "HA-001-AA"):
        super().__init__()
        if not FR_PATTERN.match(start) or start[3:6] == "000" or not self._allowed(start[:2], start[7:]):
            raise ValueError(f"plate_start {start!r} is not a French SIV plate (AA-001-AA)")
        self.start = (_FR_PAIRS.index(start[:2]) * len(_FR_PAIRS) + _FR_PAIRS.index(start[7:])) * 999 \
            + int(start[3:6]) - 1
        self.position = self.start

    @staticmethod
    def _allowed(left: str, right: str) -> bool:
        return left not in ("SS", "WW") and right != "SS"

    def reset(self) -> None:
        super().reset()
        self.position = self.start

    def _next(self, request: PlateRequest) -> str:
        while self.position < len(_FR_PAIRS) ** 2 * 999:
            pairs, number = divmod(self.position, 999)
            left, right = divmod(pairs, len(_FR_PAIRS))
            self.position += 1
            if self._allowed(_FR_PAIRS[left], _FR_PAIRS[right]):
                return f"{_FR_PAIRS[left]}-{number + 1:03d}-{_FR_PAIRS[right]}"
            self.position = (pairs + 1) * 999  # skip the whole excluded pair
        raise PlateUnavailable("the SIV series is exhausted (past ZZ-999-ZZ)")


# ---------------------------------------------------------------------- Germany

# Unterscheidungszeichen of large cities (normalised name -> code).
DE_DISTRICTS: dict[str, str] = {
    "berlin": "B", "hamburg": "HH", "munchen": "M", "munich": "M", "koln": "K", "cologne": "K",
    "frankfurt am main": "F", "frankfurt": "F", "frankfurt (oder)": "FF", "stuttgart": "S", "dusseldorf": "D",
    "dortmund": "DO", "essen": "E", "leipzig": "L", "bremen": "HB", "dresden": "DD", "hannover": "H",
    "nurnberg": "N", "nuremberg": "N", "duisburg": "DU", "bochum": "BO", "wuppertal": "W", "bielefeld": "BI",
    "bonn": "BN", "munster": "MS", "karlsruhe": "KA", "mannheim": "MA", "augsburg": "A", "wiesbaden": "WI",
    "gelsenkirchen": "GE", "monchengladbach": "MG", "braunschweig": "BS", "kiel": "KI", "chemnitz": "C",
    "aachen": "AC", "halle": "HAL", "magdeburg": "MD", "freiburg": "FR", "krefeld": "KR", "lubeck": "HL",
    "mainz": "MZ", "erfurt": "EF", "oberhausen": "OB", "rostock": "HRO", "kassel": "KS", "hagen": "HA",
    "potsdam": "P", "saarbrucken": "SB", "hamm": "HAM", "ludwigshafen": "LU", "oldenburg": "OL",
    "osnabruck": "OS", "leverkusen": "LEV", "heidelberg": "HD", "darmstadt": "DA", "solingen": "SG",
    "regensburg": "R", "ingolstadt": "IN", "wurzburg": "WÜ", "wolfsburg": "WOB", "ulm": "UL",
    "gottingen": "GÖ", "schwerin": "SN", "tubingen": "TÜ",
}
# Leitzone (first postcode digit) -> the district of its largest city, for cities not in the table.
_DE_ZONES = ("DD", "B", "HH", "H", "D", "K", "F", "S", "M", "N")
_DE_FORBIDDEN_LETTERS = {"HJ", "KZ", "NS", "SA", "SD", "SS"}
_DE_FORBIDDEN = {("AH", 18), ("AH", 88), ("HH", 18), ("HH", 88)}
_AZ = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DE_LETTERS = list(_AZ) + [a + b for a in _AZ for b in _AZ]


def _fold(text: str) -> str:
    """casefold, ß -> ss, ae/oe/ue and umlauts -> a/o/u, accents dropped."""
    text = text.casefold().strip().replace("ß", "ss")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"(?<=[a-z])(ae|oe|ue)", lambda m: m.group(0)[0], text)


@lru_cache(maxsize=1024)  # owners' towns recur; folding a name costs more than the rest of the check
def de_district(city: str, postal_code: str) -> str:
    name = " ".join(_fold(city).split())
    for key in (name, re.split(r"[ (/,-]", name)[0]):
        if key in DE_DISTRICTS:
            return DE_DISTRICTS[key]
    if postal_code[:1].isdigit():
        return _DE_ZONES[int(postal_code[0])]
    raise PlateUnavailable(f"no registration district for {city!r} {postal_code!r}")


def de_plate_length(plate: str) -> int:
    """Characters that count toward the legal maximum of 8 (separators excluded)."""
    return sum(c.isalnum() for c in plate)


class GermanPlates(PlateIssuer):
    pattern = DE_PATTERN

    def __init__(self, seed: int = 0, e_plates: bool = True):
        super().__init__()
        self.seed = seed
        self.e_plates = e_plates
        self._counters: dict[str, int] = {}

    def reset(self) -> None:
        super().reset()
        self._counters.clear()

    def check(self, request: PlateRequest) -> None:
        de_district(request.city, request.postal_code)

    def _next(self, request: PlateRequest) -> str:
        district = de_district(request.city, request.postal_code)
        suffix = "E" if request.electric and self.e_plates else ""
        room = 8 - len(district) - len(suffix)
        size = len(_DE_LETTERS) * 9999
        n = self._counters[district] = self._counters.get(district, 0) + 1
        start, step = _probe(size, self.seed, "de", district, n)
        for i in range(size):
            letters_index, number = divmod((start + i * step) % size, 9999)
            letters, number = _DE_LETTERS[letters_index], number + 1
            if len(letters) + len(str(number)) > room or letters in _DE_FORBIDDEN_LETTERS \
                    or (letters, number) in _DE_FORBIDDEN:
                continue
            plate = f"{district}-{letters} {number}{suffix}"
            if plate not in self.issued:
                return plate
        raise PlateUnavailable(f"district {district} has no free plate left")


# ---------------------------------------------------------------- United Kingdom

_UK_REGIONS: dict[str, str] = {}
for _letter, _areas in {
    "A": "CB IP NR PE", "B": "B CV DY WS WV", "C": "CF LD NP SA", "D": "CH CW LL ST SY TF",
    "E": "CM CO SS", "F": "DE LE LN NG", "G": "BN CT ME RH TN", "H": "BH DT PO SO SP",
    "K": "AL HP LU MK NN SG WD", "L": "BR CR DA E EC EN HA IG KT N NW RM SE SM SW TW UB W WC",
    "M": "BL L M OL SK WA WN", "N": "CA DH DL NE SR TS", "O": "OX", "P": "BB FY LA PR", "R": "GU RG SL",
    "S": "AB DD DG EH FK G HS IV KA KW KY ML PA PH TD ZE", "V": "GL HR WR",
    "W": "BA BS EX PL TA TQ TR", "Y": "BD DN HD HG HU HX LS S WF YO",
}.items():
    for _area in _areas.split():
        _UK_REGIONS[_area] = _letter
# Not DVLA's (Crown dependencies), or a different mark format (Northern Ireland).
_UK_ELSEWHERE = {"GY": "Guernsey", "JE": "Jersey", "IM": "the Isle of Man", "BT": "Northern Ireland"}
_UK_OFFICE = "ABCDEFGHJKLMNOPRSTUVWXY"  # second memory-tag letter: no I, Q, Z
_UK_RANDOM = "ABCDEFGHJKLMNOPRSTUVWXYZ"  # no I, Q
_UK_OFFENSIVE = {"ASS", "BUM", "FAT", "FUK", "GAY", "GOD", "KKK", "NAZ", "POO", "SEX", "SOD", "TWT", "WOG"}


def uk_region(postal_code: str) -> str:
    area = re.match(r"[A-Z]{1,2}", postal_code.upper())
    code = area.group(0) if area else ""
    if code in _UK_ELSEWHERE:
        raise PlateUnavailable(f"postcode area {code} ({_UK_ELSEWHERE[code]}) is not registered with GB marks")
    if code not in _UK_REGIONS:
        raise PlateUnavailable(f"{postal_code!r} is not in a known GB postcode area")
    return _UK_REGIONS[code]


def uk_age_identifier(on: date) -> str:
    if on.month >= 9:
        return f"{on.year % 100 + 50:02d}"
    if on.month >= 3:
        return f"{on.year % 100:02d}"
    return f"{(on.year - 1) % 100 + 50:02d}"  # January, February: the previous September's


class UkPlates(PlateIssuer):
    pattern = UK_PATTERN

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed
        self._counters: dict[str, int] = {}

    def reset(self) -> None:
        super().reset()
        self._counters.clear()

    def check(self, request: PlateRequest) -> None:
        uk_region(request.postal_code)

    def _next(self, request: PlateRequest) -> str:
        region, age = uk_region(request.postal_code), uk_age_identifier(request.on)
        area = re.match(r"[A-Z]{1,2}", request.postal_code.upper()).group(0)  # type: ignore[union-attr]
        offices = [o for o in _UK_OFFICE if region + o != "MN"]
        # An area keeps its office letter; the next ones serve once its series is full.
        first = _digest(self.seed, "uk-office", area) % len(offices)
        size = len(_UK_RANDOM) ** 3
        for shift in range(len(offices)):
            tag = region + offices[(first + shift) % len(offices)]
            n = self._counters[tag + age] = self._counters.get(tag + age, 0) + 1
            start, step = _probe(size, self.seed, "uk", tag, age, n)
            for i in range(size):
                k = (start + i * step) % size
                letters = _UK_RANDOM[k // 576] + _UK_RANDOM[k // 24 % 24] + _UK_RANDOM[k % 24]
                plate = f"{tag}{age} {letters}"
                if letters not in _UK_OFFENSIVE and plate not in self.issued:
                    return plate
        raise PlateUnavailable(f"no free mark left in region {region} for age identifier {age}")

