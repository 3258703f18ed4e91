"""HTTP of the payment gateway simulator: parse, call the model, serialise."""

from __future__ import annotations

from aiohttp import web

from ..kit.app import Call, Handler, Reply, build_app
from ..kit.config import SimConfig
from .model import PaymentsModel
from .settings import Settings

NAME = "payments"
CONTRACT = "payments.yaml"
MODEL_KEY: web.AppKey[PaymentsModel] = web.AppKey("payments_model")
CLIENT_HEADER = "X-Client-Id"


def create_app(config: SimConfig) -> web.Application:
    settings = Settings.from_options(config.options)
    service = config.service(NAME, CONTRACT)
    model = PaymentsModel(service, settings)

    async def initiate(call: Call) -> Reply:
        body = call.body
        accepted = await model.initiate(body["paymentType"], body["amount"], body["paymentMethod"], body["metadata"],
                                        call.correlation_id)
        return Reply(201, accepted, {"Location": f"/payments/{accepted['paymentId']}"})

    async def get_payment(call: Call) -> Reply:
        return Reply(200, model.payment(call.path["paymentId"]))

    async def list_payments(call: Call) -> Reply:
        return Reply(200, {"payments": model.payments_of_order(call.query["orderId"], call.query.get("paymentType"))})

    async def refund(call: Call) -> Reply:
        body = call.body
        accepted = model.refund(call.path["paymentId"], body.get("amount"), body["reason"], body.get("description"),
                                call.correlation_id)
        return Reply(202, accepted, {"Location": f"/refunds/{accepted['refundId']}"})

    async def get_refund(call: Call) -> Reply:
        return Reply(200, model.refund_view(call.path["refundId"]))

    async def store_method(call: Call) -> Reply:
        stored = model.store_method(call.body)
        return Reply(201, stored, {"Location": f"/payment-methods/{stored['token']}"})

    async def get_method(call: Call) -> Reply:
        return Reply(200, model.method(call.path["token"]))

    def gated(op_id: str, handler: Handler) -> Handler:
        op = service.contract.operations[op_id]
        method, template, faults = op.method, op.path, service.faults

        async def run(call: Call) -> Reply:
            # the entities only for a rule to match: worked out, they cost a request 3.5 % more instructions
            model.admit(operation=op_id, method=method, path=template.format(**call.path), template=template,
                        client=call.headers.get(CLIENT_HEADER), entities=call.entities if faults.rules else {},
                        correlation_id=call.correlation_id)
            return await handler(call)
        return run

    app = build_app(service, {op: gated(op, h) for op, h in {
        "initiatePayment": initiate, "listPayments": list_payments, "getPayment": get_payment, "refundPayment": refund, "getRefund": get_refund,
        "storePaymentMethod": store_method, "getPaymentMethod": get_method,
    }.items()})
    app[MODEL_KEY] = model
    config.finish(service)
    return app
