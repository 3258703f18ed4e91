"""One server for ``caas-sim bench sim``, alone in its process so the load
generator does not share its core:

- ``kit``: the IoT simulator as it ships (contract validation in and out,
  fault matching, idempotency, journal, busy accounting, the model);
- ``bare``: a plain aiohttp handler of the same shape: parse the JSON body, call
  the same model, serialise its answer; none of the kit's HTTP pipeline;
- ``echo``: a plain handler that only parses and answers (no model): the floor.
"""

from __future__ import annotations

import argparse
import itertools
import time

import orjson
from aiohttp import web


def bare_app() -> web.Application:
    from simulators.iot.api import MODEL_KEY

    model = kit_app()[MODEL_KEY]

    async def activate(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        accepted = model.activate(body["vin"], body["serviceId"], body["configuration"], body["duration"])
        return web.Response(status=202, body=orjson.dumps(accepted), content_type="application/json",
                            headers={"Location": f"/ota/activations/{accepted['requestId']}"})

    app = web.Application()
    app.router.add_post("/ota/activate", activate)
    return app


def echo_app() -> web.Application:
    ids = itertools.count(1)

    async def activate(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        request_id = f"ota_{next(ids):020x}"
        payload = {"requestId": request_id, "status": "IN_PROGRESS", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "vin": body["vin"]}
        return web.Response(status=202, body=orjson.dumps(payload), content_type="application/json",
                            headers={"Location": f"/ota/activations/{request_id}"})

    app = web.Application()
    app.router.add_post("/ota/activate", activate)
    return app


def kit_app() -> web.Application:
    from simulators.iot.api import create_app
    from simulators.kit.config import SimConfig

    return create_app(SimConfig(seed=0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["echo", "bare", "kit"], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None
    app = {"echo": echo_app, "bare": bare_app, "kit": kit_app}[args.kind]()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None,
                loop=uvloop.new_event_loop() if uvloop else None)


if __name__ == "__main__":
    main()
