"""HTTP of the VSS simulator: parse, call the model, serialise.

Two contracts on one server: the core's read-only query API (``contracts/vss.yaml``)
and the workshops' API (``contracts/vss-workshop.yaml``, under ``/workshop/``), both
served by ``build_app``: validated, fault-injected, idempotent and journaled alike.
Writes on the core's paths are refused by a guard route (405, read-only).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from aiohttp import web

from ..fleet import Fleet
from ..kit.app import Call, Reply, allowed_methods, build_app, correlation_id
from ..kit.config import SimConfig
from ..kit.contract import Contract
from ..kit.errors import ProblemError
from ..kit.journal import CORRELATION_HEADER
from ..kit.problems import problem
from ..kit.service import Service
from .model import VssModel, options_policy
from .workshops import workshops_from

NAME = "vss"
CONTRACT = "vss.yaml"
WORKSHOP_CONTRACT = "vss-workshop.yaml"
MODEL_KEY: web.AppKey[VssModel] = web.AppKey("vss_model")

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CORE_PREFIX = "/vehicles"


@lru_cache(maxsize=1)
def workshop_contract() -> Contract:
    return Contract(WORKSHOP_CONTRACT)


def create_app(config: SimConfig) -> web.Application:
    service = config.service(NAME, CONTRACT)
    options = config.options
    fleet = Fleet(config.seed, int(options.get("fleet_size", 1_000_000)), epoch=service.clock.now())
    routes = {op_id: (op.method, op.path) for contract in (service.contract, workshop_contract())
              for op_id, op in contract.operations.items()}
    model = VssModel(service, fleet, policy=options_policy(options),
                     warranty_years=int(options.get("warranty_years", 3)),
                     warranty_km=int(options.get("warranty_km", 100_000)), workshops=workshops_from(options),
                     routes=routes)

    # --- the core's API (read-only) ---
    async def maintenance_status(call: Call) -> Reply:
        return Reply(200, model.maintenance_status(call.path["vin"], call.operation, call.correlation_id))

    async def magic_vins(call: Call) -> Reply:
        return Reply(200, {"vins": model.magic_vins()})

    # --- the workshops' API ---
    async def list_workshops(call: Call) -> Reply:
        return Reply(200, model.list_workshops(call.operation, call.correlation_id))

    async def record_service(call: Call) -> Reply:
        body, vin = call.body, call.path["vin"]
        record = model.record_service(vin, body["workshopId"], body["block"], body["serviceType"],
                                      _instant(body["performedAt"], "performedAt"), body.get("mileageKm"),
                                      body.get("notes"), call.operation, call.correlation_id)
        return Reply(201, record, {"Location": f"/workshop/vehicles/{vin}/services/{record['recordId']}"})

    async def list_records(call: Call) -> Reply:
        return Reply(200, model.service_records(call.path["vin"], call.operation, call.correlation_id))

    async def get_record(call: Call) -> Reply:
        return Reply(200, model.service_record(call.path["vin"], call.path["recordId"], call.operation,
                                               call.correlation_id))

    workshop_api = {"listWorkshops": list_workshops, "recordService": record_service,
                    "listServiceRecords": list_records, "getServiceRecord": get_record}
    app = build_app(service, {"getMaintenanceStatus": maintenance_status, "getMagicVins": magic_vins},
                    also=[(workshop_contract(), workshop_api)],
                    extra_routes=lambda app: _guard_core_paths(app, service))
    app[MODEL_KEY] = model
    config.finish(service)
    return app


def _guard_core_paths(app: web.Application, service: Service) -> None:
    """CaaS has read-only access to VSS: every write under /vehicles is refused clearly.

    Routes of its own under /vehicles (added before the kit's fallback), not a
    middleware that every request would pay for. They take every method, so they
    also answer what the fallback would have (404, or 405 with Allow) for reads."""

    async def guard(request: web.Request) -> web.Response:
        allowed = await allowed_methods(request)
        if request.method not in _WRITES:
            if allowed:
                return problem(405, "Method Not Allowed", f"{request.method} is not allowed on {request.path}",
                               headers={"Allow": ", ".join(allowed)})
            return problem(404, "Not Found", f"no operation at {request.path}")
        cid = correlation_id(request, service.correlation_ids, service.name)
        detail = (f"{request.method} {request.path} refused: CaaS has read-only access to the Vehicle Service "
                  "System. Maintenance records are written only by official and approved workshops "
                  "(workshop API, POST /workshop/vehicles/{vin}/services).")
        # A core that tries to write breaks the contract: journaled so that its scenario fails.
        service.journal.record("violation", "in", method=request.method, path=request.path, correlationId=cid,
                               violation=f"write refused, VSS is read-only for CaaS: {request.method} {request.path}")
        service.journal.record("request", "in", method=request.method, path=request.path, status=405,
                               correlationId=cid)
        return problem(405, "VSS is read-only", detail, kind="read-only",
                       headers={"Allow": ", ".join(allowed), CORRELATION_HEADER: cid})

    for path in (_CORE_PREFIX, _CORE_PREFIX + "/{tail:.*}"):
        app.router.add_route("*", path, guard)


def _instant(value: str, name: str) -> float:
    """An RFC 3339 date-time the schema accepted; Python may still refuse some (leap seconds)."""
    try:
        return datetime.fromisoformat(value.upper()).timestamp()
    except (ValueError, OverflowError) as exc:
        raise ProblemError(422, "Invalid date-time", f"{name} {value!r} cannot be used: {exc}",
                           kind="invalid-date-time") from None
