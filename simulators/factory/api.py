"""HTTP of the factory simulator: parse, call the model, serialise.

Options (``SimConfig.options``): ``stage_days`` ({stage: [min, max]} days,
see timeline.py), ``delivery`` (the carrier's service levels, see
transport.DeliveryRules), ``vin_pool_size`` (keep it at most the IoT
simulator's ``fleet_size``), ``plant`` ({name, city, country}), ``carrier``
({name, code}), ``placement_seconds`` (clock time every placement takes,
default 0) and ``qc_failure_rate`` (natural QC failures per round, default 0).
"""

from __future__ import annotations

import functools

from aiohttp import web

from ..kit.app import Call, Reply, build_app
from ..kit.config import SimConfig
from ..kit.contract import Contract
from . import catalogue
from .model import FactoryModel
from .shipping import DEFAULT_CARRIER, DEFAULT_PLANT
from .timeline import StageDays
from .transport import DeliveryRules, Transport
from .vins import VinPool

NAME = "factory"
CONTRACT = "factory.yaml"
MODEL_KEY: web.AppKey[FactoryModel] = web.AppKey("factory_model")
TRANSPORT_KEY: web.AppKey[Transport] = web.AppKey("factory_transport")


@functools.cache
def contract() -> Contract:
    """The compiled contract, shared by every app of this process: compiling it (a pure-Python
    YAML parse, mostly) costs more than the rest of the start-up, and it never changes."""
    return Contract(CONTRACT)


def create_app(config: SimConfig) -> web.Application:
    service = config.service(NAME, contract())  # type: ignore[arg-type]  # Service takes a Contract too
    options = config.options
    plant = {**DEFAULT_PLANT, **options.get("plant", {})}
    carrier = {**DEFAULT_CARRIER, **options.get("carrier", {})}
    model = FactoryModel(service, stage_days=StageDays.from_options(options.get("stage_days")),
                         vins=VinPool(config.seed, int(options.get("vin_pool_size", 1_000_000))),
                         plant=plant, carrier=carrier,
                         placement_seconds=float(options.get("placement_seconds", 0.0)),
                         qc_failure_rate=float(options.get("qc_failure_rate", 0.0)))
    transport = Transport(service, model, DeliveryRules.from_options(options.get("delivery")))

    async def get_catalogue(call: Call) -> Reply:
        return Reply(200, catalogue.describe())

    async def place_order(call: Call) -> Reply:
        confirmed = await model.place(call.body, call.correlation_id)
        return Reply(201, confirmed, {"Location": f"/orders/{confirmed['orderId']}"})

    async def find_orders(call: Call) -> Reply:
        return Reply(200, model.find(call.query["reference"]))

    async def get_order(call: Call) -> Reply:
        order_id = call.path["orderId"]
        return Reply(200, {**model.view(order_id), "delivery": transport.view_of(order_id)})

    async def schedule_delivery(call: Call) -> Reply:
        order_id = call.path["orderId"]
        delivery = transport.schedule(order_id, call.body, call.correlation_id)
        return Reply(201, delivery, {"Location": f"/orders/{order_id}/delivery"})

    async def get_delivery(call: Call) -> Reply:
        return Reply(200, transport.current(call.path["orderId"]))

    app = build_app(service, {
        "getCatalogue": get_catalogue, "placeOrder": place_order, "findOrders": find_orders,
        "getOrder": get_order, "scheduleDelivery": schedule_delivery, "getDelivery": get_delivery,
    })
    app[MODEL_KEY] = model
    app[TRANSPORT_KEY] = transport
    config.finish(service)
    return app
