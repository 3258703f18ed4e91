"""HTTP of the API IoT simulator: parse, call the model, serialise."""

from __future__ import annotations

from aiohttp import web

from ..fleet import Fleet
from ..kit.app import Call, Reply, build_app
from ..kit.config import SimConfig
from .model import REQUEST_TTL, REQUESTS_KEPT, IotModel

NAME = "iot"
CONTRACT = "iot.yaml"
MODEL_KEY: web.AppKey[IotModel] = web.AppKey("iot_model")


def create_app(config: SimConfig) -> web.Application:
    service = config.service(NAME, CONTRACT)
    fleet = Fleet(config.seed, int(config.options.get("fleet_size", 1_000_000)), epoch=service.clock.now())
    model = IotModel(service, fleet, command_ttl=float(config.options.get("command_ttl", 60.0)),
                     request_ttl=float(config.options.get("request_ttl", REQUEST_TTL)),
                     requests_kept=int(config.options.get("requests_kept", REQUESTS_KEPT)))

    async def activate(call: Call) -> Reply:
        body = call.body
        accepted = model.activate(body["vin"], body["serviceId"], body["configuration"], body["duration"],
                                  call.correlation_id)
        return Reply(202, accepted, {"Location": f"/ota/activations/{accepted['requestId']}"})

    async def deactivate(call: Call) -> Reply:
        accepted = model.deactivate(call.body["vin"], call.body["serviceId"], call.correlation_id)
        return Reply(202, accepted, {"Location": f"/ota/activations/{accepted['requestId']}"})

    async def get_activation(call: Call) -> Reply:
        return Reply(200, model.request(call.path["requestId"]))

    async def vehicle_status(call: Call) -> Reply:
        return Reply(200, model.status(call.path["vin"]))

    async def magic_vins(call: Call) -> Reply:
        return Reply(200, {"vins": fleet.magic_vins()})

    app = build_app(service, {
        "activateService": activate, "deactivateService": deactivate, "getActivation": get_activation,
        "getVehicleStatus": vehicle_status, "getMagicVins": magic_vins,
    })
    app[MODEL_KEY] = model
    config.finish(service)
    return app
