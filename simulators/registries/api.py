"""HTTP of the four national registries: parse, call the model, serialise.

Each country's module (``es``, ``fr``, ``de``, ``uk``) serves its ``Country``
through ``create_registry_app``.
"""

from __future__ import annotations

from aiohttp import web

from ..kit.app import Call, Reply, build_app
from ..kit.config import SimConfig
from .model import Registry
from .vocabulary import Country, Method

MODEL_KEY: web.AppKey[Registry] = web.AppKey("registry_model")


def create_registry_app(config: SimConfig, country: Country, contract: str) -> web.Application:
    service = config.service(country.service, contract)
    model = Registry(service, country, config.options)
    # A synchronous registry answers with the outcome (201, 200); the others accept (202).
    sync = country.method is Method.SYNCHRONOUS
    created, updated = (201, 200) if sync else (202, 202)

    def location(view: dict) -> dict[str, str]:
        return {"Location": f"/registrations/{view['registrationId']}"}

    async def create(call: Call) -> Reply:
        view = model.create(call.body, call.correlation_id)
        return Reply(created, view, location(view))

    async def get(call: Call) -> Reply:
        return Reply(200, model.get(call.path["registrationId"]))

    async def provide_info(call: Call) -> Reply:
        view = model.provide_info(call.path["registrationId"], call.body, call.correlation_id)
        return Reply(updated, view, location(view))

    async def availability(call: Call) -> Reply:
        return Reply(200, model.availability())

    app = build_app(service, {"createRegistration": create, "getRegistration": get,
                              "provideAdditionalInfo": provide_info, "getAvailability": availability})
    app[MODEL_KEY] = model
    config.finish(service)
    return app
