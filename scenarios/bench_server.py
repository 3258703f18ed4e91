"""One server for ``caas-sim bench sim``, alone in its process so the load
generator does not share its core:

- ``kit``: a simulator as it ships (``--sim``, the IoT one by default: contract
  validation in and out, fault matching, idempotency, journal, busy accounting, the model);
- ``bare``: a plain aiohttp handler of the IoT activation's shape: parse the JSON body,
  call the same model, serialise its answer; none of the kit's HTTP pipeline;
- ``kit-alone``: the IoT simulator with a model that answers one fixed acceptance: the
  kit's pipeline and no model;
- ``echo``: a plain handler on every path that only parses the body (if any) and answers
  a fixed 202 JSON (no model): the floor every simulator is judged against;
- ``checked-echo``: the echo doing only what the simulators' target requires of every
  request: the IoT activation's contract check in and out, and one journal entry (no
  model, fault rules, idempotency or metrics): the floor of those pieces on this stack;
- ``post``: the bare aiohttp JSON POST handler (parse the body, answer 204): what the
  core's webhook ingestion and OTA throughput are compared with;
- ``stack``: the core with the IoT, payments and VSS simulators in this process, the
  core on ``--port`` (the other services on ephemeral ports), for end-to-end figures;
- ``core``: the reference core as it ships, on ``--database`` (``--no-jobs``: an
  ingestion-only node that leaves the job queue to other processes).
"""

from __future__ import annotations

import argparse
import itertools
import time

import orjson
from aiohttp import web

from caas_sim.scenarios.bench_client import loop_factory

#: The customer key the bench's stack is configured with, and its customer.
BENCH_KEY = "bench-customer"
BENCH_CUSTOMER = "c-1"


def bare_app() -> web.Application:
    from caas_sim.simulators.iot.api import MODEL_KEY

    model = kit_app()[MODEL_KEY]

    async def activate(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        accepted = model.activate(body["vin"], body["serviceId"], body["configuration"], body["duration"])
        return web.Response(status=202, body=orjson.dumps(accepted), content_type="application/json",
                            headers={"Location": f"/ota/activations/{accepted['requestId']}"})

    app = web.Application()
    app.router.add_post("/ota/activate", activate)
    return app


def kit_alone_app() -> web.Application:
    """The IoT simulator whose model answers every activation with one fixed acceptance:
    the kit's pipeline (contract in and out, faults, journal, metrics) around no model."""
    from caas_sim.scenarios.bench_sim import activation_bodies
    from caas_sim.simulators.iot.api import MODEL_KEY

    app = kit_app()
    model = app[MODEL_KEY]
    body = orjson.loads(activation_bodies(1)[0])
    accepted = model.activate(body["vin"], body["serviceId"], body["configuration"], body["duration"])
    model.activate = lambda *_: accepted
    return app


def echo_app() -> web.Application:
    ids = itertools.count(1)

    async def echo(request: web.Request) -> web.Response:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        request_id = f"ota_{next(ids):020x}"
        payload = {"requestId": request_id, "status": "IN_PROGRESS", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "vin": body.get("vin") if isinstance(body, dict) else None}
        return web.Response(status=202, body=orjson.dumps(payload), content_type="application/json",
                            headers={"Location": f"/ota/activations/{request_id}"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def checked_echo_app() -> web.Application:
    from caas_sim import catalogue
    from caas_sim.simulators.kit.contract import load
    from caas_sim.simulators.kit.journal import Journal

    op = next(o for o in load(catalogue.BY_NAME["iot"].contract).operations.values()
              if (o.method, o.path) == ("POST", "/ota/activate"))
    journal = Journal("iot", time.monotonic)
    ids = itertools.count(1)

    async def echo(request: web.Request) -> web.Response:
        raw = await request.read()
        _, violations = op.check_request(request.match_info, request.query, request.headers, raw,
                                         request.content_type)
        request_id = f"ota_{next(ids):020x}"
        payload = {"requestId": request_id, "status": "IN_PROGRESS", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        violations += op.check_response(202, payload)
        status = 400 if violations else 202  # a refusal voids the bench's line: a measure of error paths is none
        journal.append("request", "in", {"method": request.method, "path": request.path, "operation": op.id,
                                         "status": status})
        return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json",
                            headers={"Location": f"/ota/activations/{request_id}"})

    app = web.Application()
    app.router.add_post("/ota/activate", echo)
    return app


def post_app() -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        orjson.loads(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    return app


def core_app(database: str, run_jobs: bool = True, clock: str = "real") -> web.Application:
    from caas_core.api.app import create_app
    from caas_core.settings import CoreSettings

    # An ingestion-only core's queue is drained by nobody in the bench: no backlog bound there
    # (it measures ingestion, not refusals); a core that runs its jobs keeps the default bound.
    bound = {} if run_jobs else {"webhook_backlog": 0}
    return create_app(CoreSettings(database_url=database, run_jobs=run_jobs, clock=clock, **bound))


def kit_app(sim: str = "iot") -> web.Application:
    import importlib

    from caas_sim import catalogue
    from caas_sim.simulators.kit.config import SimConfig

    return importlib.import_module(catalogue.BY_NAME[sim].module).create_app(SimConfig(seed=0))


async def serve_stack(port: int, database: str, clock: str) -> None:
    import asyncio

    from caas_sim.scenarios.stack import Stack, parse_clock

    stack = Stack(services=["iot", "payments", "vss"], clock=parse_clock(clock), with_sink=False,
                  ports={"core": port},
                  core={"database_url": database, "api_keys": {BENCH_KEY: {"role": "customer", "subject": BENCH_CUSTOMER}}})
    async with stack:
        await asyncio.Event().wait()  # until terminated


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True,
                        choices=["echo", "checked-echo", "bare", "kit-alone", "kit", "post", "core", "stack"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sim", default="iot", help="the simulator of --kind kit (a catalogue name)")
    parser.add_argument("--database", default="sqlite+aiosqlite:///bench-caas.db")
    parser.add_argument("--no-jobs", action="store_true")
    parser.add_argument("--clock", default="real")
    parser.add_argument("--reuse-port", action="store_true", help="several servers on one port (SO_REUSEPORT)")
    args = parser.parse_args()
    factory = loop_factory()
    if args.kind == "stack":
        import asyncio

        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve_stack(args.port, args.database, args.clock))
        return
    makers = {"echo": echo_app, "checked-echo": checked_echo_app, "bare": bare_app, "kit-alone": kit_alone_app,
              "kit": lambda: kit_app(args.sim), "post": post_app,
              "core": lambda: core_app(args.database, run_jobs=not args.no_jobs)}
    web.run_app(makers[args.kind](), host="127.0.0.1", port=args.port, access_log=None, print=None,
                reuse_port=args.reuse_port or None,
                loop=factory() if factory else None)


if __name__ == "__main__":
    main()
