import dataclasses
import pathlib

import jsonschema_rs
import pytest
import yaml

from caas_core.domain.blocks import Block
from caas_core.domain.catalogue import (
    DAY,
    FEATURE_FLAGS,
    Catalogue,
    CatalogueError,
    DurationNotOffered,
    DurationType,
    Requirement,
    ServiceOffer,
    UnknownService,
    is_expired,
)
from caas_core.domain.money import Money

CONTRACTS = pathlib.Path(__file__).resolve().parents[3] / "contracts"
NOW = 1_767_600_000.0  # 2026-01-05T08:00:00Z


def contract_validator(contract: str, schema: str):
    doc = yaml.safe_load((CONTRACTS / contract).read_text())
    root = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def test_feature_flags_are_the_fleets():
    from caas_sim.simulators.fleet import OPTIONAL_FEATURES
    assert FEATURE_FLAGS == set(OPTIONAL_FEATURES)


def test_blocks_are_the_vss_contracts():
    doc = yaml.safe_load((CONTRACTS / "vss.yaml").read_text())["components"]["schemas"]
    assert doc["BlockCode"]["enum"] == [b.value for b in Block]
    assert doc["BlockName"]["enum"] == [b.display_name for b in Block]
    for b in Block:
        assert Block.parse(b.display_name) is b
        assert Block.parse(b.value.lower()) is b
    assert Block.parse("Suspension and Steering") is Block.SUSPENSION_STEERING
    with pytest.raises(ValueError, match="unknown functional block"):
        Block.parse("Wipers")


def test_default_catalogue():
    cat = Catalogue.default()
    assert 8 <= len(cat) <= 12
    pb = cat.get("performance-boost")
    assert set(pb.requirements) == {Requirement(Block.POWERTRAIN, 80), Requirement(Block.BRAKES, 80)}
    tm = cat.get("track-mode")
    assert {r.block for r in tm.requirements} == {Block.BRAKES, Block.SUSPENSION_STEERING, Block.DRIVETRAIN}
    assert all(r.min_pct == 90 for r in tm.requirements)
    hs = cat.get("heated-seats")
    assert not hs.maintenance_dependent and hs.requirements == ()
    assert any(not o.maintenance_dependent for o in cat) and any(o.maintenance_dependent for o in cat)
    assert {d for o in cat for d in o.durations} == set(DurationType)
    for o in cat:
        assert set(o.feature_flags) <= FEATURE_FLAGS
        assert all(p.is_positive for p in o.prices.values())
    with pytest.raises(UnknownService):
        cat.get("flux-capacitor")
    assert "heated-seats" in cat and "nope" not in cat


def test_price_and_expiry():
    pb = Catalogue.default().get("performance-boost")
    assert pb.price_for(DurationType.PERMANENT) == Money(149_900, "EUR")
    assert pb.price_for("SUBSCRIPTION") == Money(4_900, "EUR")
    assert pb.expiry_for(DurationType.TEMPORARY, NOW) == NOW + 30 * DAY
    assert pb.expiry_for(DurationType.PERMANENT, NOW) is None
    assert pb.expiry_for(DurationType.SUBSCRIPTION, NOW) is None
    audio = Catalogue.default().get("premium-audio")
    with pytest.raises(DurationNotOffered, match="not offered as TEMPORARY"):
        audio.price_for(DurationType.TEMPORARY)
    with pytest.raises(DurationNotOffered):
        audio.expiry_for("TEMPORARY", NOW)
    assert is_expired(NOW, NOW) and not is_expired(NOW, NOW - 1) and not is_expired(None, NOW)


def test_every_offer_makes_an_activation_request_valid_for_the_iot_contract():
    validator = contract_validator("iot.yaml", "ActivationRequest")
    for offer in Catalogue.default():
        for d in offer.durations:
            body = {"vin": "WCAC6SN32SZ999908", "serviceId": offer.service_id,
                    "configuration": offer.ota_configuration(), "duration": offer.ota_duration(d, NOW)}
            errors = list(validator.iter_errors(body))
            assert not errors, (offer.service_id, d, errors[:1])
    hs = Catalogue.default().get("heated-seats")
    assert hs.ota_duration("TEMPORARY", NOW) == {"type": "TEMPORARY", "expiryDate": "2026-02-04T08:00:00.000Z"}
    assert hs.ota_duration("SUBSCRIPTION", NOW) == {"type": "SUBSCRIPTION", "autoRenewal": True}
    assert hs.ota_duration("PERMANENT", NOW) == {"type": "PERMANENT"}


def test_offers_are_immutable():
    pb = Catalogue.default().get("performance-boost")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pb.name = "x"
    with pytest.raises(TypeError):
        pb.prices[DurationType.PERMANENT] = Money(1, "EUR")
    with pytest.raises(TypeError):
        pb.parameters["powerIncreasePct"] = 500


@pytest.mark.parametrize("change, match", [
    ({"feature_flags": ("warp_drive",)}, "unknown feature flags"),
    ({"feature_flags": ()}, "at least one feature flag"),
    ({"service_id": "bad id"}, "invalid service id"),
    ({"prices": {}}, "at least one price"),
    ({"prices": {DurationType.PERMANENT: Money(0, "EUR")}}, "must be positive"),
    ({"prices": {DurationType.PERMANENT: Money(1, "EUR"), DurationType.SUBSCRIPTION: Money(1, "GBP")}}, "one currency"),
    ({"prices": {DurationType.TEMPORARY: Money(1, "EUR")}, "temporary_days": None}, "temporary_days"),
    ({"temporary_days": 3}, "no TEMPORARY price"),
    ({"requirements": ((Block.BRAKES, 101),)}, "0-100"),
    ({"requirements": ((Block.BRAKES, 80), ("Brakes", 90))}, "only once"),
    ({"parameters": {"nested": {"a": 1}}}, "scalar"),
])
def test_invalid_offers_are_refused(change, match):
    base = {"service_id": "x-1", "name": "X", "feature_flags": ("sport_mode",), "parameters": {},
            "prices": {DurationType.PERMANENT: Money(100, "EUR")}}
    base.update(change)
    with pytest.raises(CatalogueError, match=match):
        ServiceOffer(**base)


def test_from_dict_full_definition_and_round_trip():
    cat = Catalogue.from_dict({
        "currency": "GBP",
        "services": [{
            "service_id": "cold-pack", "name": "Cold pack", "feature_flags": ["winter_package"],
            "parameters": {"preheatMinutes": 15}, "prices": {"TEMPORARY": 1500, "PERMANENT": {"value": 9900, "currency": "GBP"}},
            "temporary_days": 60, "requirements": {"Climate Control": 75},
        }],
    })
    offer = cat.get("cold-pack")
    assert offer.price_for("TEMPORARY") == Money(1500, "GBP")
    assert offer.requirements == (Requirement(Block.CLIMATE_CONTROL, 75),)
    assert Catalogue.from_dict(Catalogue.default().to_dict()) == Catalogue.default()


def test_from_dict_overrides_a_base_catalogue():
    base = Catalogue.default()
    cat = Catalogue.from_dict({"services": {
        "performance-boost": {"requirements": {"Powertrain": 85, "BRAKES": 85}},
        "heated-seats": None,
        "premium-audio": {"prices": {"PERMANENT": 19900}},
        "track-mode": {"prices": {"PERMANENT": 100000}},  # drops TEMPORARY, so temporary_days goes
    }}, base=base)
    assert {r.min_pct for r in cat.get("performance-boost").requirements} == {85}
    assert cat.get("performance-boost").prices == base.get("performance-boost").prices
    assert "heated-seats" not in cat and len(cat) == len(base) - 1
    assert cat.get("premium-audio").durations == (DurationType.PERMANENT,)
    assert cat.get("track-mode").temporary_days is None
    assert base.get("performance-boost").requirements[0].min_pct == 80  # base untouched


@pytest.mark.parametrize("data, match", [
    ({"services": [{"service_id": "a", "name": "A", "feature_flags": ["nope"], "prices": {"PERMANENT": 1}}]}, "unknown feature flags"),
    ({"services": [{"service_id": "a", "name": "A", "feature_flags": ["sport_mode"], "prices": {"PERMANENT": 1.5}}]}, "service 'a'"),
    ({"services": [{"service_id": "a", "name": "A", "feature_flags": ["sport_mode"], "prices": {"FOREVER": 1}}]}, "service 'a'"),
    ({"services": [{"service_id": "a", "name": "A", "feature_flags": ["sport_mode"], "prices": {"PERMANENT": 1},
                    "requirements": {"Wipers": 50}}]}, "unknown functional block"),
    ({"services": [{"name": "A"}]}, "service_id"),
    ({"services": {"ghost": None}}, "cannot remove"),
    ({"currency": "JPY", "services": []}, "invalid catalogue"),
    ({"services": [], "colour": "red"}, "invalid catalogue"),
])
def test_from_dict_reports_invalid_settings(data, match):
    with pytest.raises(CatalogueError, match=match):
        Catalogue.from_dict(data, base=Catalogue.default() if "ghost" in str(data) else None)
