"""Plate issuers: every plate in its country's format, never issued twice (hypothesis properties)."""

import re
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caas_sim.simulators.registries.plates import (
    DE_DISTRICTS,
    DE_PATTERN,
    ES_PATTERN,
    FR_PATTERN,
    UK_PATTERN,
    FrancePlates,
    GermanPlates,
    PlateRequest,
    PlateUnavailable,
    SpainPlates,
    UkPlates,
    de_district,
    de_plate_length,
    uk_age_identifier,
    uk_region,
)

dates = st.dates(date(2025, 1, 1), date(2030, 12, 31))
PROPS = settings(max_examples=25, deadline=None)


def issue_all(issuer, requests):
    plates = [issuer.issue(r) for r in requests]
    assert len(set(plates)) == len(plates), "a plate was issued twice"
    return plates


@PROPS
@given(st.lists(dates, min_size=50, max_size=300))
def test_spain_in_format_in_sequence_and_unique(days):
    plates = issue_all(SpainPlates("9990 BBZ"), [PlateRequest(d) for d in days])
    assert all(ES_PATTERN.match(p) for p in plates)
    assert not any(c in "AEIOUÑQ" for p in plates for c in p[5:])
    # In sequence: the number runs fastest, then the letters from the right.
    assert plates[:12] == [f"999{i} BBZ" for i in range(10)] + ["0000 BCB", "0001 BCB"]


@PROPS
@given(st.lists(dates, min_size=50, max_size=300),
       st.sampled_from(["HA-001-AA", "RZ-990-ZZ", "SR-995-ZZ", "WV-999-ZZ"]))
def test_france_in_format_in_sequence_and_unique(days, start):
    plates = issue_all(FrancePlates(start), [PlateRequest(d) for d in days])
    assert plates[0] == start
    for plate in plates:
        assert FR_PATTERN.match(plate) and plate[3:6] != "000"
        assert not set("IOU") & set(plate)
        assert plate[:2] not in ("SS", "WW") and plate[7:] != "SS"
    # Sequence order: (left pair, right pair, number) never goes back.
    keys = [(p[:2], p[7:], p[3:6]) for p in plates]
    assert keys == sorted(keys)


german_addresses = st.one_of(
    st.sampled_from(sorted(DE_DISTRICTS)).map(lambda city: (city.title(), "10115")),
    st.tuples(st.text("abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=12),
              st.from_regex(r"(0[1-9]|[1-9][0-9])[0-9]{3}", fullmatch=True)),
)


@PROPS
@given(st.lists(st.tuples(german_addresses, st.booleans()), min_size=50, max_size=150), st.integers(0, 3))
def test_germany_in_format_at_most_8_characters_and_unique(requests, seed):
    issuer = GermanPlates(seed)
    plates = issue_all(issuer, [PlateRequest(date(2026, 1, 5), city, postcode, electric)
                                for (city, postcode), electric in requests])
    for plate, ((city, postcode), electric) in zip(plates, requests):
        assert DE_PATTERN.match(plate) and de_plate_length(plate) <= 8
        district, rest = plate.split("-")
        letters, _number = rest.rstrip("E").split(" ")
        assert district == de_district(city, postcode)
        assert plate.endswith("E") == electric
        assert letters not in ("HJ", "KZ", "NS", "SA", "SD", "SS")


def test_germany_three_letter_districts_leave_room_for_less():
    issuer = GermanPlates(1)
    plates = [issuer.issue(PlateRequest(date(2026, 1, 5), "Halle (Saale)", "06108", True)) for _ in range(300)]
    assert all(p.startswith("HAL-") and de_plate_length(p) <= 8 for p in plates)
    assert any(len(p.split(" ")[1]) == 3 for p in plates)  # HAL-A 12E: one letter leaves two digits and the E


uk_postcodes = st.sampled_from(["SW1A 1AA", "NW1 6XE", "M1 1AE", "B33 8TH", "EH1 1YZ", "CF10 1AA", "LS1 4AP",
                                "OX1 2JD", "CB2 1TN", "BS1 5TR", "NE1 7RU", "G1 1XQ", "PO1 2EG", "RG1 1AA"])


@PROPS
@given(st.lists(st.tuples(dates, uk_postcodes), min_size=50, max_size=300), st.integers(0, 3))
def test_uk_in_format_with_the_age_identifier_and_unique(requests, seed):
    plates = issue_all(UkPlates(seed), [PlateRequest(d, "", p) for d, p in requests])
    for plate, (day, postcode) in zip(plates, requests):
        assert UK_PATTERN.match(plate)
        assert plate[0] == uk_region(postcode) and plate[:2] != "MN"
        assert plate[2:4] == uk_age_identifier(day)
        assert not set("IQZ") & set(plate[:2]) and not set("IQ") & set(plate[5:])


@pytest.mark.parametrize("day,identifier", [
    (date(2026, 3, 1), "26"), (date(2026, 8, 31), "26"), (date(2026, 9, 1), "76"), (date(2027, 2, 28), "76"),
    (date(2026, 1, 5), "75"), (date(2049, 12, 31), "99"), (date(2050, 2, 28), "99"),
])
def test_uk_age_identifier(day, identifier):
    assert uk_age_identifier(day) == identifier


def test_uk_refuses_marks_for_other_jurisdictions():
    for postcode in ("BT1 1AA", "GY1 1AA", "JE2 3AB", "IM1 1AA", "QQ1 1AA"):
        with pytest.raises(PlateUnavailable):
            UkPlates().check(PlateRequest(date(2026, 1, 5), "", postcode))


def test_reset_restarts_a_series_and_forgets_issued_plates():
    es = SpainPlates("0000 NDB")
    first = [es.issue(PlateRequest(date(2026, 1, 5))) for _ in range(3)]
    es.reset()
    assert [es.issue(PlateRequest(date(2026, 1, 5))) for _ in range(3)] == first


@pytest.mark.parametrize("cls,start", [(SpainPlates, "0000 NAB"), (SpainPlates, "000 NDB"), (FrancePlates, "SS-001-AA"),
                                       (FrancePlates, "WW-001-AA"), (FrancePlates, "HA-000-AA"),
                                       (FrancePlates, "HI-001-AA")])
def test_a_start_outside_the_series_is_refused(cls, start):
    with pytest.raises(ValueError, match=re.escape(start)):
        cls(start)
