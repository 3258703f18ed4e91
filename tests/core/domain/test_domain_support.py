from caas_core.domain.catalogue import Catalogue
from caas_core.domain.money import Money
from caas_core.domain.notifications import CHANNELS, Channel, NoticeKind
from caas_core.domain.ota_policy import ActivationProgress
from caas_core.domain.purchase import PurchaseEvent as E
from caas_core.domain.support import Priority, Resolution, resolve_final_failure

OFFER = Catalogue.default().get("track-mode")
PRICE = OFFER.price_for("TEMPORARY")
ZERO = Money.zero("EUR")
PROGRESS = ActivationProgress(queued_at=0.0, vehicle_attempts=4, last_error="VEHICLE_OFFLINE")


def vehicle(connectivity="OFFLINE", services=(), installed=("track_mode", "launch_control")):
    return {
        "vin": "WCAB4BBU1SZ999901", "connectivity": connectivity, "lastSeen": "2026-01-05T07:00:00.000Z",
        "model": "Aurora GT", "activeServices": list(services),
        "diagnostics": {"errorCodes": ["U0100"], "firmwareVersion": "4.12.3", "networkSignalStrength": 12,
                        "installedFeatures": list(installed)},
    }


def resolve(status, error=None, **kw):
    args = {"purchase_id": "pur_1", "vin": "WCAB4BBU1SZ999901", "offer": OFFER, "progress": PROGRESS,
            "failure_reason": "all 4 attempts failed", "vehicle_status": status, "vehicle_status_error": error,
            "charged": PRICE, "already_refunded": ZERO, "now": 100.0}
    args.update(kw)
    return resolve_final_failure(**args)


def test_undelivered_opens_a_ticket_with_diagnostics_refunds_and_notifies():
    plan = resolve(vehicle())
    assert plan.resolution is Resolution.UNDELIVERED and plan.purchase_event is E.ALL_ATTEMPTS_FAILED
    t = plan.ticket
    assert t.priority is Priority.NORMAL and t.attempts == 4 and t.last_error == "VEHICLE_OFFLINE"
    assert (t.connectivity, t.firmware_version, t.network_signal_strength, t.error_codes) == (
        "OFFLINE", "4.12.3", 12, ("U0100",))
    assert t.diagnostics() == {  # flat, as contracts/core.yaml's OtaFailureDiagnostics
        "connectivity": "OFFLINE", "lastSeen": "2026-01-05T07:00:00.000Z", "firmwareVersion": "4.12.3",
        "networkSignalStrength": 12, "errorCodes": ["U0100"], "serviceStatusOnVehicle": None, "missingFeatures": [],
        "vehicleStatusError": None, "attempts": 4, "lastError": "VEHICLE_OFFLINE", "priority": "NORMAL"}
    assert plan.refund.amount == PRICE and plan.refund.call_gateway
    assert plan.notices == (NoticeKind.ACTIVATION_FAILED_REFUNDED,)
    assert CHANNELS[NoticeKind.ACTIVATION_FAILED_REFUNDED] == (Channel.EMAIL, Channel.PUSH)


def test_vehicle_reporting_the_service_active_means_delivered():
    active = {"serviceId": "track-mode", "activationDate": "2026-01-05T07:00:00.000Z", "status": "ACTIVE",
              "featureFlags": ["track_mode"], "expiryDate": None, "durationType": "TEMPORARY"}
    plan = resolve(vehicle("ONLINE", services=[active]))
    assert plan.resolution is Resolution.DELIVERED and plan.purchase_event is E.ACTIVATED
    assert plan.refund is None and plan.ticket is None


def test_online_vehicle_or_missing_feature_is_high_priority():
    assert resolve(vehicle("ONLINE")).ticket.priority is Priority.HIGH
    t = resolve(vehicle(installed=("track_mode",))).ticket
    assert t.priority is Priority.HIGH and t.missing_features == ("launch_control",)
    assert "launch_control" in t.summary


def test_vehicle_status_unavailable_still_refunds():
    plan = resolve(None, error="IOT_HTTP_503")
    assert plan.ticket.vehicle_status_error == "IOT_HTTP_503" and plan.ticket.connectivity is None
    diagnostics = plan.ticket.diagnostics()
    assert diagnostics["vehicleStatusError"] == "IOT_HTTP_503" and diagnostics["errorCodes"] == []
    assert plan.refund.amount == PRICE


def test_settlement_failed_means_nothing_to_refund():
    plan = resolve(vehicle(), settlement_failed=True)
    assert not plan.refund.call_gateway and plan.refund.close_collection
