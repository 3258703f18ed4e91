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
- A finished request is readable for ``REQUEST_TTL`` (7 days of clock time), and
  only while it is among the newest ``REQUESTS_KEPT`` (100,000) finished ones; then
  forgotten (404). The vehicle keeps its services.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import marshal
from typing import Literal, NamedTuple

import orjson

from .. import fleet as fl
from ..kit.clock import isoformat, parse_datetime
from ..kit.delivery_faults import delivery_hooks, register_delivery_faults
from ..kit.errors import ProblemError
from ..kit.faults import NoParams
from ..kit.service import Service
from ..kit.untracked import RecordStore

CALLBACK_EVENT = "otaStatus"
#: Seconds the gateway waits for a vehicle to be reachable (spec: timeout per attempt 60 s).
COMMAND_TTL = 60.0
#: Diagnostic codes a vehicle keeps, newest last.
MAX_ERROR_CODES = 5
#: Clock seconds a finished OTA request stays readable (GET /ota/activations/{id}); then 404.
REQUEST_TTL = 7 * 86400.0
#: Finished OTA requests kept at most, whatever their age: a load of 2,500 activations a
#: second in real time would otherwise hold 9 million after an hour (~3 GB).
REQUESTS_KEPT = 100_000
#: Profiles kept at hand: a vehicle is touched several times in a row (command, outcome,
#: callback, status reads), and computing a profile from the seed costs ~10-15 µs.
RECENT_PROFILES = 1024


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
CALLBACK_FAULTS = {"lost": "callback_lost", "duplicated": "callback_duplicated", "delayed": "callback_delayed",
                   "reordered": "callback_reordered"}

# State is kept as bytes (a record's plain values, marshalled), replaced on change: a fleet
# of touched vehicles then costs a few hundred bytes each, and the garbage collector never
# walks it. Tuples of plain values are untracked only once a pass has looked at them, a
# level of nesting per full pass, and a dict they go into is tracked again: under a
# sustained load, full passes walked what was made since the last one (26-44 ms each at
# ~6,000 activations a second). A dict of strings and bytes is not even visited.


class ActiveService(NamedTuple):
    service_id: str
    flags: tuple[str, ...]
    duration_type: str
    expiry: float | None
    status: str  # PENDING | ACTIVE | ERROR
    since: float
    request: int  # number of the request that set it


class Vehicle(NamedTuple):
    """A vehicle that has been touched: the only per-vehicle memory the simulator keeps
    (its profile is the fleet's, computed again when needed)."""
    services: tuple[ActiveService, ...] = ()
    error_codes: tuple[str, ...] = ()
    commands: int = 0  # commands ever pushed, for deterministic per-attempt behaviour
    callbacks: int = 0


UNTOUCHED = Vehicle()


def _load_vehicle(packed: bytes) -> Vehicle:
    services, *rest = marshal.loads(packed)
    return Vehicle(tuple(map(ActiveService._make, services)), *rest)


def _dump_vehicle(vehicle: Vehicle) -> bytes:
    return marshal.dumps((tuple(map(tuple, vehicle.services)), *vehicle[1:]))


class Request(NamedTuple):
    id: str
    number: int
    kind: str  # ACTIVATION | DEACTIVATION
    vin: str
    service_id: str
    created: float
    correlation_id: str | None
    flags: tuple[str, ...] = ()
    duration: bytes | None = None  # the request's duration object, as JSON
    status: str = "QUEUED"
    outcome: str | None = None
    error_code: str | None = None
    completed: float | None = None

    def view(self) -> dict:
        return {"requestId": self.id, "kind": self.kind, "vin": self.vin, "serviceId": self.service_id,
                "status": self.status, "outcome": self.outcome, "errorCode": self.error_code,
                "attempts": 1, "createdAt": isoformat(self.created),  # one push per request (LIMITATIONS)
                "completedAt": isoformat(self.completed) if self.completed is not None else None,
                "duration": orjson.loads(self.duration) if self.duration is not None else None}


class IotModel:
    def __init__(self, service: Service, fleet: fl.Fleet, *, command_ttl: float = COMMAND_TTL,
                 request_ttl: float = REQUEST_TTL, requests_kept: int = REQUESTS_KEPT):
        self.service = service
        self.fleet = fleet
        self.command_ttl = command_ttl
        self.request_ttl = request_ttl
        self.requests_kept = requests_kept
        self.vehicles: RecordStore[Vehicle] = RecordStore(_load_vehicle, _dump_vehicle)
        self.requests: RecordStore[Request] = RecordStore.of(Request)
        self._finished: collections.deque[tuple[float, str]] = collections.deque()  # (completed, id), in order
        self._profiles: dict[str, fl.VehicleProfile] = {}  # bounded, oldest out first
        self._ids = itertools.count(1)
        self._on_finish = self._finish  # one bound method for every timer, not one each
        for name, (description, params) in DOMAIN_FAULTS.items():
            service.faults.register(name, description, params)
        register_delivery_faults(service.faults, CALLBACK_FAULTS, "The outcome callback")
        service.reset_hooks.append(self.reset)

    def reset(self) -> None:
        self.vehicles.clear()
        self.requests.clear()
        self._finished.clear()
        self._profiles.clear()
        self._ids = itertools.count(1)

    def prune(self, now: float | None = None) -> None:
        """Forget the requests finished more than ``request_ttl`` ago, and the oldest finished
        past ``requests_kept`` (lazily, on the next call: no timer, so the clock's next due
        time is the world's alone)."""
        finished = self._finished
        cutoff = (self.service.clock.now() if now is None else now) - self.request_ttl
        if finished and (finished[0][0] <= cutoff or len(finished) > self.requests_kept):
            before = len(self.requests)
            while finished and (finished[0][0] <= cutoff or len(finished) > self.requests_kept):
                self.requests.pop(finished.popleft()[1], None)
            if len(self.requests) < before // 2:
                self.requests.compact()

    # --- reads --------------------------------------------------------
    def profile(self, vin: str) -> fl.VehicleProfile:
        profile = self._profiles.get(vin)
        if profile is not None:
            return profile
        profile = self.fleet.profile(vin)
        if profile is None:
            raise ProblemError(404, "Unknown vehicle", f"{vin} is not a vehicle of this fleet", kind="unknown-vehicle")
        self._profiles[vin] = profile
        if len(self._profiles) > RECENT_PROFILES:
            del self._profiles[next(iter(self._profiles))]
        return profile

    def request(self, request_id: str) -> dict:
        self.prune()
        req = self.requests.get(request_id)
        if req is None:
            raise ProblemError(404, "Unknown request", f"no OTA request {request_id} (a finished request is kept "
                               f"{self.request_ttl / 86400:g} days, the newest {self.requests_kept:,} at most)",
                               kind="unknown-request")
        return req.view()

    def status(self, vin: str) -> dict:
        # Reading a vehicle does not materialise it: untouched vehicles are pure functions of the seed.
        profile = self.profile(vin)
        vehicle = self.vehicles.get(vin, UNTOUCHED)
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
        return {
            "vin": vin, "connectivity": connectivity, "lastSeen": isoformat(seen), "model": profile.model,
            "activeServices": [{"serviceId": s.service_id, "activationDate": isoformat(s.since), "status": s.status,
                                "featureFlags": list(s.flags), "expiryDate": isoformat(s.expiry) if s.expiry else None,
                                "durationType": s.duration_type} for s in vehicle.services],
            "diagnostics": {"errorCodes": list(vehicle.error_codes), "firmwareVersion": profile.firmware_version,
                            "networkSignalStrength": signal, "installedFeatures": list(profile.features)},
        }

    # --- commands -----------------------------------------------------
    # A command reads the clock once: every step of it happens at that instant.
    def activate(self, vin: str, service_id: str, configuration: dict, duration: dict,
                 correlation_id: str | None = None) -> dict:
        profile = self.profile(vin)
        flags = configuration["featureFlags"]
        missing = [f for f in flags if f not in profile.features]
        if missing:
            raise ProblemError(422, "Feature flag not installed on the vehicle",
                               f"feature flag(s) {', '.join(map(repr, missing))} not installed on {vin}; "
                               f"installed: {', '.join(profile.features)}", kind="feature-not-installed")
        now = self.service.clock.now()
        expiry = self._check_duration(duration, now)
        self.prune(now)
        flags, duration_type = tuple(flags), duration["type"]
        number, request_id = self._new_request("ACTIVATION", vin, service_id, duration_type)
        vehicle = self.vehicles.get(vin, UNTOUCHED)
        service = ActiveService(service_id, flags, duration_type, expiry, "PENDING", now, number)
        return self._push(profile, vehicle, _put(vehicle.services, service),
                          Request(request_id, number, "ACTIVATION", vin, service_id, now, correlation_id, flags,
                                  orjson.dumps(duration), "IN_PROGRESS"))

    def deactivate(self, vin: str, service_id: str, correlation_id: str | None = None) -> dict:
        profile = self.profile(vin)
        vehicle = self.vehicles.get(vin)
        if vehicle is None or _find(vehicle.services, service_id) is None:
            raise ProblemError(422, "Service not active on the vehicle",
                               f"service {service_id!r} is not active on {profile.vin}", kind="service-not-active")
        now = self.service.clock.now()
        self.prune(now)
        number, request_id = self._new_request("DEACTIVATION", vin, service_id, None)
        return self._push(profile, vehicle, vehicle.services,
                          Request(request_id, number, "DEACTIVATION", vin, service_id, now, correlation_id, (), None,
                                  "IN_PROGRESS"))

    def _check_duration(self, duration: dict, now: float) -> float | None:
        kind = duration["type"]
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

    def _new_request(self, kind: str, vin: str, service_id: str, duration_type: str | None) -> tuple[int, str]:
        """The next request's number and id, its queueing journaled."""
        number = next(self._ids)
        request_id = "ota_" + hashlib.blake2b(f"{self.service.seed}:ota:{number}".encode(), digest_size=10).hexdigest()
        # what a peer audit needs to tell a post-paid subscription
        detail = {"kind": kind, "durationType": duration_type} if duration_type else {"kind": kind}
        # record(event=..., detail=..., entities=...) without its copy: no value here is None
        self.service.journal.append("event", "internal", {
            "event": "ota.queued", "detail": detail,
            "entities": {"vin": vin, "requestId": request_id, "serviceId": service_id}})
        return number, request_id

    # --- the vehicle side ----------------------------------------------
    def _connectivity(self, profile: fl.VehicleProfile, now: float, *, consume: bool) -> str:
        """ONLINE | LIMITED | OFFLINE, or FORCED_OFFLINE when a fault rule says so."""
        faults = self.service.faults
        if faults.rules:
            entities = {"vin": profile.vin}
            probe = faults.take if consume else faults.peek
            if probe("vehicle_offline", entities=entities):
                return "FORCED_OFFLINE"
            state = fl.connectivity_at(profile, now)
            if state == fl.ONLINE and probe("connectivity_limited", entities=entities):
                return fl.LIMITED
            return state
        return fl.connectivity_at(profile, now)

    def _push(self, profile: fl.VehicleProfile, vehicle: Vehicle, services: tuple[ActiveService, ...],
              req: Request) -> dict:
        """Decide now, deterministically, how and when this command (``req``, as pushed: in
        progress) ends; store the vehicle, with ``services``, and the request as they stand
        then; the request's acceptance (QUEUED, as it stood when accepted)."""
        now, vin = req.created, req.vin
        commands = vehicle.commands + 1
        self.vehicles[vin] = Vehicle(services, vehicle.error_codes, commands, vehicle.callbacks)
        accepted = {"requestId": req.id, "status": "QUEUED", "timestamp": isoformat(now)}
        state = self._connectivity(profile, now, consume=True)
        magic = profile.magic
        if state == "FORCED_OFFLINE" or (magic == "flaky_twice" and commands <= 2):
            self._later(self.command_ttl, Request(*req[:9]), "FAILED", "VEHICLE_OFFLINE")  # never left the queue
            return accepted
        delay = 0.0
        # A sleeping car is woken by a shoulder tap (wake-up time is in its activation
        # latency); any other unreachable car must come back within the command TTL.
        if state == fl.OFFLINE and profile.connectivity != fl.ConnectivityKind.SLEEPS:
            reachable = fl.next_online(profile, now)
            if reachable - now > self.command_ttl:
                self._later(self.command_ttl, Request(*req[:9]), "FAILED", "VEHICLE_OFFLINE")
                return accepted
            delay = reachable - now
        latency = fl.activation_latency(profile, now + delay, commands)
        if state == fl.LIMITED and profile.connectivity != fl.ConnectivityKind.LIMITED:
            latency = max(latency, 30.0) * 3  # a forced LIMITED link: several times slower
        outcome, error_code = "ACTIVATED" if req.kind == "ACTIVATION" else "DEACTIVATED", None
        if req.kind == "ACTIVATION":
            if self.service.faults.rules:
                entities = {"vin": vin, "serviceId": req.service_id, "requestId": req.id}
                failure = self.service.domain_fault("activation_failed", entities=entities,
                                                    correlation_id=req.correlation_id)
                if failure is not None:
                    outcome, error_code = "FAILED", failure.params["errorCode"]
            if error_code is None and magic == "activation_fails":
                outcome, error_code = "FAILED", "ECU_ERROR"
            elif error_code is None and fl.flaky_attempt_fails(profile, commands):
                self._later(self.command_ttl, req, "FAILED", "TIMEOUT")
                return accepted
        self._later(delay + latency, req, outcome, error_code)
        return accepted

    def _later(self, delay: float, req: Request, outcome: str, error_code: str | None) -> None:
        self.requests[req.id] = req
        self.service.at(req.created + delay, self._on_finish, req.id, outcome, error_code)  # the clock read once

    def _finish(self, request_id: str, outcome: str, error_code: str | None) -> None:
        req = self.requests.get(request_id)
        vehicle = self.vehicles.get(req.vin) if req else None
        if req is None or vehicle is None:
            return  # reset in between
        now = self.service.clock.now()
        req = self.requests[request_id] = req._replace(status="FAILED" if outcome == "FAILED" else "COMPLETED",
                                                       outcome=outcome, error_code=error_code, completed=now)
        self._finished.append((now, request_id))
        services = vehicle.services
        current = _find(services, req.service_id)
        mine = current is not None and current.request == req.number
        if outcome == "ACTIVATED" and mine:
            services = _put(services, current._replace(status="ACTIVE", since=now))
            if current.expiry is not None:
                self.service.at(current.expiry, self._expire, req.vin, req.service_id, req.number, req.id,
                                req.correlation_id)
        elif outcome == "DEACTIVATED":
            services = tuple(s for s in services if s.service_id != req.service_id)
        elif outcome == "FAILED":
            vehicle = vehicle._replace(error_codes=(*vehicle.error_codes, error_code)[-MAX_ERROR_CODES:])
            if req.kind == "ACTIVATION" and mine:
                services = _put(services, current._replace(status="ERROR"))
        self.service.journal.event(f"ota.{outcome.lower()}", {"vin": req.vin, "requestId": req.id,
                                                               "serviceId": req.service_id}, errorCode=error_code)
        self._callback(vehicle._replace(services=services), req.vin, req.service_id, req.id, req.correlation_id,
                       outcome, error_code)

    def _expire(self, vin: str, service_id: str, number: int, request_id: str, correlation_id: str | None) -> None:
        vehicle = self.vehicles.get(vin)
        current = _find(vehicle.services, service_id) if vehicle else None
        if current is None or current.request != number:
            return  # deactivated or replaced meanwhile
        self.service.journal.event("ota.expired", {"vin": vin, "serviceId": service_id, "requestId": request_id})
        self._callback(vehicle._replace(services=tuple(s for s in vehicle.services if s.service_id != service_id)),
                       vin, service_id, request_id, correlation_id, "EXPIRED", None)

    def _callback(self, vehicle: Vehicle, vin: str, service_id: str, request_id: str, correlation_id: str | None,
                  status: str, error_code: str | None) -> None:
        """Send the callback and store ``vehicle`` (the vehicle as it now stands) with it counted."""
        callbacks = vehicle.callbacks + 1
        self.vehicles[vin] = vehicle._replace(callbacks=callbacks)
        entities = {"vin": vin, "serviceId": service_id, "requestId": request_id}
        # reordered: the vehicle's next callback overtakes it (an earlier command's outcome then
        # arrives after a later one's)
        hooks = delivery_hooks(self.service.faults, CALLBACK_FAULTS, entities, correlation_id, reorder_by="vin")
        magic = self.profile(vin).magic
        if magic == "callback_lost" and callbacks == 1:
            hooks.lost = True
        elif magic == "callback_duplicated":
            hooks.duplicates = max(hooks.duplicates, 1)
        payload = {"requestId": request_id, "vin": vin, "serviceId": service_id, "status": status,
                   "errorCode": error_code, "timestamp": self.service.clock.now_iso()}
        self.service.webhooks.send(CALLBACK_EVENT, payload, correlation_id=correlation_id,
                                   entities=entities, hooks=hooks)


def _find(services: tuple[ActiveService, ...], service_id: str) -> ActiveService | None:
    return next((s for s in services if s.service_id == service_id), None)


def _put(services: tuple[ActiveService, ...], service: ActiveService) -> tuple[ActiveService, ...]:
    """``services`` with ``service`` in place of the one of its id (in its place), or appended."""
    for i, s in enumerate(services):
        if s.service_id == service.service_id:
            return (*services[:i], service, *services[i + 1:])
    return (*services, service)
