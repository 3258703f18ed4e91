"""API IoT: OTA activation state and its rules, on the service's clock.

An activation is accepted at once (QUEUED), pushed to the vehicle when it is
reachable (IN_PROGRESS), applied after a realistic latency, and its outcome
(ACTIVATED or FAILED with an error code) is sent as the signed ``otaStatus``
callback. A vehicle that stays unreachable for the command TTL (60 s, the
specification's timeout per attempt) fails the request with VEHICLE_OFFLINE:
retrying is the caller's business, as with the real API IoT.

LIMITATIONS (where this knowingly differs from the real API IoT):
- One push per request: the gateway does not retry on its own; the core's
  retry policy (1/5/15/30 min) is what brings an activation through.
- Commands to one vehicle are independent: a later command does not cancel an
  earlier one still in flight, and the last one applied wins.
- Deactivation always succeeds once the vehicle is reachable (no ECU errors).
- A TEMPORARY (or non-renewing SUBSCRIPTION) service expires exactly at its
  expiryDate, even if the vehicle is offline then; the EXPIRED callback is an
  extension of the specification's ACTIVATED/FAILED statuses.
- The proprietary network is not modelled: no queueing in the gateway, no
  bandwidth, no per-region outages beyond fault rules.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import fleet as fl
from ..kit.clock import isoformat, parse_datetime
from ..kit.delivery_faults import delivery_hooks, register_delivery_faults
from ..kit.errors import ProblemError
from ..kit.faults import NoParams
from ..kit.service import Service

CALLBACK_EVENT = "otaStatus"
#: Seconds the gateway waits for a vehicle to be reachable (spec: timeout per attempt 60 s).
COMMAND_TTL = 60.0
#: Diagnostic codes a vehicle keeps, newest last.
MAX_ERROR_CODES = 5


class ErrorCodeParams(NoParams):
    # the OtaErrorCode enum of contracts/iot.yaml
    errorCode: Literal["VEHICLE_OFFLINE", "TIMEOUT", "ECU_ERROR", "CONFIG_REJECTED", "LOW_BATTERY",
                       "FEATURE_NOT_INSTALLED"] = "ECU_ERROR"


DOMAIN_FAULTS = {
    "vehicle_offline": ("The vehicle is unreachable (scope with times for N attempts, or window)", NoParams),
    "activation_failed": ("The vehicle rejects the configuration with errorCode", ErrorCodeParams),
    "connectivity_limited": ("The vehicle has LIMITED connectivity: slow pushes, weak signal", NoParams),
}
#: The API IoT calls its webhooks callbacks.
CALLBACK_FAULTS = {"lost": "callback_lost", "duplicated": "callback_duplicated", "delayed": "callback_delayed"}


@dataclass(slots=True)
class ActiveService:
    service_id: str
    flags: list[str]
    duration_type: str
    expiry: float | None
    status: str  # PENDING | ACTIVE | ERROR
    since: float
    request_id: str


@dataclass(slots=True)
class Vehicle:
    """A vehicle that has been touched: the only per-vehicle memory the simulator keeps."""
    profile: fl.VehicleProfile
    services: dict[str, ActiveService] = field(default_factory=dict)
    error_codes: list[str] = field(default_factory=list)
    commands: int = 0  # commands ever pushed, for deterministic per-attempt behaviour
    callbacks: int = 0


@dataclass(slots=True)
class Request:
    id: str
    kind: str  # ACTIVATION | DEACTIVATION
    vin: str
    service_id: str
    created: float
    correlation_id: str | None
    flags: list[str] = field(default_factory=list)
    duration: dict | None = None
    attempt: int = 1
    status: str = "QUEUED"
    outcome: str | None = None
    error_code: str | None = None
    completed: float | None = None

    def view(self) -> dict:
        return {"requestId": self.id, "kind": self.kind, "vin": self.vin, "serviceId": self.service_id,
                "status": self.status, "outcome": self.outcome, "errorCode": self.error_code,
                "attempts": self.attempt, "createdAt": isoformat(self.created),
                "completedAt": isoformat(self.completed) if self.completed is not None else None,
                "duration": self.duration}

    def accepted(self) -> dict:
        return {"requestId": self.id, "status": self.status, "timestamp": isoformat(self.created)}


class IotModel:
    def __init__(self, service: Service, fleet: fl.Fleet, *, command_ttl: float = COMMAND_TTL):
        self.service = service
        self.fleet = fleet
        self.command_ttl = command_ttl
        self.vehicles: dict[str, Vehicle] = {}
        self.requests: dict[str, Request] = {}
        self._ids = itertools.count(1)
        for name, (description, params) in DOMAIN_FAULTS.items():
            service.faults.register(name, description, params)
        register_delivery_faults(service.faults, CALLBACK_FAULTS, "The outcome callback")
        service.reset_hooks.append(self.reset)

    def reset(self) -> None:
        self.vehicles.clear()
        self.requests.clear()
        self._ids = itertools.count(1)

    # --- reads --------------------------------------------------------
    def profile(self, vin: str) -> fl.VehicleProfile:
        profile = self.fleet.profile(vin)
        if profile is None:
            raise ProblemError(404, "Unknown vehicle", f"{vin} is not a vehicle of this fleet", kind="unknown-vehicle")
        return profile

    def vehicle(self, vin: str) -> Vehicle:
        vehicle = self.vehicles.get(vin)
        if vehicle is None:
            vehicle = self.vehicles[vin] = Vehicle(self.profile(vin))
        return vehicle

    def request(self, request_id: str) -> dict:
        req = self.requests.get(request_id)
        if req is None:
            raise ProblemError(404, "Unknown request", f"no OTA request {request_id}", kind="unknown-request")
        return req.view()

    def status(self, vin: str) -> dict:
        # Reading a vehicle does not materialise it: untouched vehicles are pure functions of the seed.
        vehicle = self.vehicles.get(vin)
        profile = vehicle.profile if vehicle else self.profile(vin)
        now = self.service.clock.now()
        connectivity = self._connectivity(profile, now, consume=False)
        seen = fl.last_seen(profile, now) if connectivity != fl.OFFLINE else min(now, fl.last_seen(profile, now))
        if seen == float("-inf") or (connectivity == fl.OFFLINE and seen >= now):
            seen = self.fleet.epoch - 7 * 86400  # never seen since delivery to the simulator
        signal = fl.signal_strength(profile, now)
        if connectivity == "FORCED_OFFLINE":
            connectivity = fl.OFFLINE
        if connectivity == fl.LIMITED:
            signal = min(signal, 30)
        elif connectivity == fl.OFFLINE:
            signal = 0
        services = vehicle.services.values() if vehicle else ()
        return {
            "vin": vin, "connectivity": connectivity, "lastSeen": isoformat(seen), "model": profile.model,
            "activeServices": [{"serviceId": s.service_id, "activationDate": isoformat(s.since), "status": s.status,
                                "featureFlags": s.flags, "expiryDate": isoformat(s.expiry) if s.expiry else None,
                                "durationType": s.duration_type} for s in services],
            "diagnostics": {"errorCodes": list(vehicle.error_codes) if vehicle else [],
                            "firmwareVersion": profile.firmware_version, "networkSignalStrength": signal,
                            "installedFeatures": list(profile.features)},
        }

    # --- commands -----------------------------------------------------
    def activate(self, vin: str, service_id: str, configuration: dict, duration: dict,
                 correlation_id: str | None = None) -> dict:
        vehicle = self.vehicles.get(vin)
        profile = vehicle.profile if vehicle else self.profile(vin)
        flags = configuration["featureFlags"]
        missing = [f for f in flags if f not in profile.features]
        if missing:
            raise ProblemError(422, "Feature flag not installed on the vehicle",
                               f"feature flag(s) {', '.join(map(repr, missing))} not installed on {vin}; "
                               f"installed: {', '.join(profile.features)}", kind="feature-not-installed")
        expiry = self._check_duration(duration)
        vehicle = vehicle or self.vehicle(vin)
        req = self._new_request("ACTIVATION", vin, service_id, correlation_id, flags=list(flags), duration=duration)
        vehicle.services[service_id] = ActiveService(service_id, list(flags), duration["type"], expiry, "PENDING",
                                                     req.created, req.id)
        self._push(vehicle, req)
        return req.accepted()

    def deactivate(self, vin: str, service_id: str, correlation_id: str | None = None) -> dict:
        profile = self.profile(vin)
        vehicle = self.vehicles.get(vin)
        if vehicle is None or service_id not in vehicle.services:
            raise ProblemError(422, "Service not active on the vehicle",
                               f"service {service_id!r} is not active on {profile.vin}", kind="service-not-active")
        req = self._new_request("DEACTIVATION", vin, service_id, correlation_id)
        self._push(vehicle, req)
        return req.accepted()

    def _check_duration(self, duration: dict) -> float | None:
        kind, now = duration["type"], self.service.clock.now()
        expiry = parse_datetime(duration["expiryDate"]) if duration.get("expiryDate") else None
        if "autoRenewal" in duration and kind != "SUBSCRIPTION":
            raise ProblemError(422, "Invalid duration", "autoRenewal applies to SUBSCRIPTION only",
                               kind="invalid-duration")
        if kind == "TEMPORARY" and expiry is None:
            raise ProblemError(422, "Invalid duration", "a TEMPORARY service needs an expiryDate",
                               kind="invalid-duration")
        if kind == "PERMANENT" and expiry is not None:
            raise ProblemError(422, "Invalid duration", "a PERMANENT service has no expiryDate",
                               kind="invalid-duration")
        if expiry is not None and expiry <= now:
            raise ProblemError(422, "Invalid duration",
                               f"expiryDate {duration['expiryDate']} is not after now ({isoformat(now)})",
                               kind="invalid-duration")
        if kind == "SUBSCRIPTION" and duration.get("autoRenewal", False):
            return None  # renews until deactivated
        return expiry

    def _new_request(self, kind: str, vin: str, service_id: str, correlation_id: str | None, **extra: Any) -> Request:
        digest = hashlib.blake2b(f"{self.service.seed}:ota:{next(self._ids)}".encode(), digest_size=10).hexdigest()
        req = Request("ota_" + digest, kind, vin, service_id, self.service.clock.now(), correlation_id, **extra)
        self.requests[req.id] = req
        duration = extra.get("duration")  # what a peer audit needs to tell a post-paid subscription
        self.service.journal.event("ota.queued", {"vin": vin, "requestId": req.id, "serviceId": service_id},
                                   kind=kind, **({"durationType": duration["type"]} if duration else {}))
        return req

    # --- the vehicle side ----------------------------------------------
    def _connectivity(self, profile: fl.VehicleProfile, now: float, *, consume: bool) -> str:
        """ONLINE | LIMITED | OFFLINE, or FORCED_OFFLINE when a fault rule says so."""
        entities = {"vin": profile.vin}
        probe = self.service.faults.take if consume else self.service.faults.peek
        if probe("vehicle_offline", entities=entities):
            return "FORCED_OFFLINE"
        state = fl.connectivity_at(profile, now)
        if state == fl.ONLINE and probe("connectivity_limited", entities=entities):
            return fl.LIMITED
        return state

    def _push(self, vehicle: Vehicle, req: Request) -> None:
        """Decide now, deterministically, how and when this command ends."""
        profile, now = vehicle.profile, self.service.clock.now()
        vehicle.commands += 1
        req.attempt = vehicle.commands
        entities = {"vin": req.vin, "serviceId": req.service_id, "requestId": req.id}
        state = self._connectivity(profile, now, consume=True)
        magic = profile.magic
        if state == "FORCED_OFFLINE" or (magic == "flaky_twice" and vehicle.commands <= 2):
            return self._later(self.command_ttl, req, "FAILED", "VEHICLE_OFFLINE")
        delay = 0.0
        # A sleeping car is woken by a shoulder tap (wake-up time is in its activation
        # latency); any other unreachable car must come back within the command TTL.
        if state == fl.OFFLINE and profile.connectivity != fl.ConnectivityKind.SLEEPS:
            reachable = fl.next_online(profile, now)
            if reachable - now > self.command_ttl:
                return self._later(self.command_ttl, req, "FAILED", "VEHICLE_OFFLINE")
            delay = reachable - now
        req.status = "IN_PROGRESS"
        latency = fl.activation_latency(profile, now + delay, vehicle.commands)
        if state == fl.LIMITED and profile.connectivity != fl.ConnectivityKind.LIMITED:
            latency = max(latency, 30.0) * 3  # a forced LIMITED link: several times slower
        if req.kind == "ACTIVATION":
            failure = self.service.domain_fault("activation_failed", entities=entities,
                                                correlation_id=req.correlation_id)
            if failure is not None:
                return self._later(delay + latency, req, "FAILED", failure.params["errorCode"])
            if magic == "activation_fails":
                return self._later(delay + latency, req, "FAILED", "ECU_ERROR")
            if fl.flaky_attempt_fails(profile, vehicle.commands):
                return self._later(self.command_ttl, req, "FAILED", "TIMEOUT")
        self._later(delay + latency, req, "ACTIVATED" if req.kind == "ACTIVATION" else "DEACTIVATED", None)

    def _later(self, delay: float, req: Request, outcome: str, error_code: str | None) -> None:
        self.service.later(delay, self._finish, req.id, outcome, error_code)

    def _finish(self, request_id: str, outcome: str, error_code: str | None) -> None:
        req = self.requests.get(request_id)
        vehicle = self.vehicles.get(req.vin) if req else None
        if req is None or vehicle is None:
            return  # reset in between
        now = self.service.clock.now()
        req.status = "FAILED" if outcome == "FAILED" else "COMPLETED"
        req.outcome, req.error_code, req.completed = outcome, error_code, now
        current = vehicle.services.get(req.service_id)
        if outcome == "ACTIVATED" and current is not None and current.request_id == req.id:
            current.status, current.since = "ACTIVE", now
            if current.expiry is not None:
                self.service.at(current.expiry, self._expire, req.vin, req.service_id, req.id)
        elif outcome == "DEACTIVATED":
            vehicle.services.pop(req.service_id, None)
        elif outcome == "FAILED":
            vehicle.error_codes = (vehicle.error_codes + [error_code])[-MAX_ERROR_CODES:]
            if req.kind == "ACTIVATION" and current is not None and current.request_id == req.id:
                current.status = "ERROR"
        self.service.journal.event(f"ota.{outcome.lower()}", {"vin": req.vin, "requestId": req.id,
                                                               "serviceId": req.service_id}, errorCode=error_code)
        self._callback(vehicle, req, outcome, error_code)

    def _expire(self, vin: str, service_id: str, request_id: str) -> None:
        vehicle = self.vehicles.get(vin)
        current = vehicle.services.get(service_id) if vehicle else None
        if current is None or current.request_id != request_id:
            return  # deactivated or replaced meanwhile
        del vehicle.services[service_id]
        self.service.journal.event("ota.expired", {"vin": vin, "serviceId": service_id, "requestId": request_id})
        req = self.requests[request_id]
        self._callback(vehicle, req, "EXPIRED", None)

    def _callback(self, vehicle: Vehicle, req: Request, status: str, error_code: str | None) -> None:
        vehicle.callbacks += 1
        entities = {"vin": req.vin, "serviceId": req.service_id, "requestId": req.id}
        hooks = delivery_hooks(self.service.faults, CALLBACK_FAULTS, entities, req.correlation_id)
        magic = vehicle.profile.magic
        if magic == "callback_lost" and vehicle.callbacks == 1:
            hooks.lost = True
        elif magic == "callback_duplicated":
            hooks.duplicates = max(hooks.duplicates, 1)
        payload = {"requestId": req.id, "vin": req.vin, "serviceId": req.service_id, "status": status,
                   "errorCode": error_code, "timestamp": self.service.clock.now_iso()}
        self.service.webhooks.send(CALLBACK_EVENT, payload, correlation_id=req.correlation_id,
                                   entities=entities, hooks=hooks)
