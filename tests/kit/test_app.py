"""The kit's request pipeline on a real socket, with a small echo contract."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from caas_sim.simulators.kit.app import Reply, build_app
from caas_sim.simulators.kit.clock import Clock
from caas_sim.simulators.kit.entities import (
    ENTITY_SOURCE,
    MAX_DEFERRED_BODY,
    entity_source,
    resolve,
)
from caas_sim.simulators.kit.errors import ProblemError
from caas_sim.simulators.kit.service import Service
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET, RETRY_SCHEDULE

CONTRACT = Path(__file__).with_name("echo.yaml")


def echo_service(clock=None, seed=3, admin=False, unique_webhook_ids=False):
    service = Service("echo", CONTRACT, clock=clock or Clock("virtual"), seed=seed, unique_webhook_ids=unique_webhook_ids)
    things = {}

    async def create(call):
        if call.body.get("delay"):
            await service.clock.sleep(call.body["delay"])
        thing = {"id": len(things) + 1, "name": call.body["name"]}
        things[thing["id"]] = thing
        service.webhooks.send("thingCreated", thing, correlation_id=call.correlation_id)
        return Reply(201, thing, {"Location": f"/things/{thing['id']}"})

    async def get(call):
        if int(call.path["id"]) not in things:
            raise ProblemError(404, "No such thing")
        return Reply(200, things[int(call.path["id"])])

    service.reset_hooks.append(things.clear)
    return service, build_app(service, {"createThing": create, "getThing": get}, admin=admin)


async def serve(app):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def echo():
    service, app = echo_service()
    runner, url = await serve(app)
    async with aiohttp.ClientSession(url) as http:
        yield service, http
    await runner.cleanup()


async def test_contract_violation_gets_400_problem_and_a_journal_entry(echo):
    service, http = echo
    async with http.post("/things", json={"name": "", "extra": 1}) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"
        body = await r.json()
    assert body["title"] == "Request violates contract"
    assert {v["pointer"] for v in body["violations"]} == {"/name", "/"}
    [violation] = service.journal.violations()
    assert violation["direction"] == "in" and "extra" in violation["violation"]


LATENCY = {"type": "latency", "params": {"ms": 10}}


@pytest.mark.parametrize(("rule", "pointer", "says"), [
    ({"action": LATENCY, "probability": 2}, "/rules/0/probability", "greater than the maximum of 1"),
    ({"action": LATENCY, "times": -1}, "/rules/0/times", "less than the minimum of 1"),
    ({}, "/rules/0", '"action" is a required property'),
    ({"action": LATENCY, "bogus": 1}, "/rules/0", "'bogus' was unexpected"),
    ({"action": {"type": "http_error", "params": {"status": 200}}}, "/rules/0/action/params/status",
     "less than the minimum of 400"),
])
async def test_a_bad_rule_in_a_batch_names_its_field_not_the_oneof(rule, pointer, says):
    """A batch {rules: [...]} meets the oneOf of FaultRulesInput (one rule or a batch): the problem
    said only that the body was "not valid under any of the schemas listed in the 'oneOf' keyword"."""
    _, app = echo_service(admin=True)
    runner, url = await serve(app)
    try:
        async with aiohttp.ClientSession(url) as http, http.post("/__admin/faults", json={"rules": [rule]}) as r:
            assert r.status == 400
            body = await r.json()
    finally:
        await runner.cleanup()
    assert [v["pointer"] for v in body["violations"]] == [pointer]
    assert says in body["detail"] and "oneOf" not in body["detail"]


async def test_a_body_matching_several_branches_of_a_oneof_is_still_refused():
    """ClockMove is exactly one of advance or to: with both, every branch matches and none has
    errors of its own to name; the oneOf's own error stands (a closest-branch search took the
    empty branch for a match and let the body through)."""
    _, app = echo_service(admin=True)
    runner, url = await serve(app)
    try:
        async with aiohttp.ClientSession(url) as http, \
                http.post("/__admin/clock", json={"advance": "0ms", "to": "2000-01-01T00:00:00Z"}) as r:
            assert r.status == 400
            assert "oneOf" in (await r.json())["detail"]
    finally:
        await runner.cleanup()


async def test_path_parameter_types_are_enforced(echo):
    _service, http = echo
    async with http.get("/things/abc") as r:
        assert r.status == 400
    async with http.get("/things/7") as r:
        assert r.status == 404 and (await r.json())["title"] == "No such thing"
    async with http.get("/nowhere") as r:
        assert r.status == 404 and r.content_type == "application/problem+json"
    async with http.delete("/things") as r:
        assert r.status == 405 and r.headers["Allow"] == "POST"
    async with http.post("/things", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                         headers={"Content-Type": "application/json"}) as r:
        assert r.status == 413 and (await r.json())["title"] == "Request body too large"


async def test_response_violations_are_journaled():
    service, app = echo_service()

    async def broken(call):
        return Reply(200, {"id": "not-an-int", "name": "x"})

    app.router._resources.clear()  # rebuild with a broken handler
    app = build_app(service, {"createThing": broken, "getThing": broken}, admin=False)
    runner, url = await serve(app)
    async with aiohttp.ClientSession(url) as http, http.get("/things/1") as r:
        assert r.status == 200
    await runner.cleanup()
    [violation] = service.journal.violations()
    assert violation["direction"] == "out" and "not-an-int" in violation["violation"]


async def test_correlation_id_is_propagated(echo):
    service, http = echo
    async with http.post("/things", json={"name": "a"}, headers={"X-Correlation-Id": "corr-1"}) as r:
        assert r.headers["X-Correlation-Id"] == "corr-1"
    assert service.journal.entries()[-1]["correlationId"] == "corr-1"


async def test_idempotency_replays_refuses_other_body_and_in_flight(echo):
    service, http = echo
    key = {"Idempotency-Key": "k1"}
    async with http.post("/things", json={"name": "a"}, headers=key) as r:
        first = (r.status, await r.json())
    async with http.post("/things", json={"name": "a"}, headers=key) as r:
        assert (r.status, await r.json()) == first
        assert r.headers["Idempotent-Replayed"] == "true"
    async with http.post("/things", json={"name": "b"}, headers=key) as r:
        assert r.status == 422
    slow = {"Idempotency-Key": "k2"}
    pending = asyncio.ensure_future(http.post("/things", json={"name": "s", "delay": 10}, headers=slow))
    await service.clock.settle()  # the first is parked on its 10 s delay
    async with http.post("/things", json={"name": "s", "delay": 10}, headers=slow) as r:
        assert r.status == 409
    await service.clock.advance(10)
    async with await pending as r:
        assert r.status == 201
    async with http.get("/things/3") as r:
        assert r.status == 404  # only two things were created


async def test_transport_faults(echo):
    service, http = echo
    faults = service.faults
    faults.add({"id": "e", "match": {"method": "POST"}, "action": {"type": "http_error", "params": {"status": 503, "retry_after": 30}}, "times": 1})
    async with http.post("/things", json={"name": "a"}) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "30"
        assert (await r.json())["ruleId"] == "e"
    faults.add({"id": "m", "action": {"type": "malformed_body"}, "times": 1})
    async with http.post("/things", json={"name": "a"}) as r:
        assert r.status == 201
        with pytest.raises((ValueError, aiohttp.ContentTypeError)):  # orjson/json decode errors are ValueErrors
            await r.json()
    faults.add({"id": "r", "action": {"type": "reset"}, "times": 1})
    with pytest.raises(aiohttp.ClientError):
        async with http.post("/things", json={"name": "a"}) as r:
            await r.read()
    faults.add({"id": "l", "action": {"type": "latency", "params": {"ms": 2000}}, "times": 1})
    pending = asyncio.ensure_future(http.get("/things/1"))
    await service.clock.settle()
    assert not pending.done() and service.clock.next_due() == pytest.approx(service.clock.now() + 2)
    await service.clock.advance(2)
    async with await pending as r:
        assert r.status == 200
    faults.add({"id": "t", "action": {"type": "timeout", "params": {"seconds": 60}}, "times": 1})
    # a POST: aiohttp's client silently retries an idempotent GET on a dropped connection
    pending = asyncio.ensure_future(http.post("/things", json={"name": "t"}))
    await service.clock.settle()
    await service.clock.advance(60)
    with pytest.raises(aiohttp.ClientError):
        async with await pending as r:
            await r.read()
    applied = [e["ruleId"] for e in service.journal.entries() if e["kind"] == "fault"]
    assert applied == ["e", "m", "r", "l", "t"]
    # things created: by the malformed call only (503 before, reset before)
    statuses = [e.get("status") for e in service.journal.entries() if e["kind"] == "request" and e["path"] == "/things"]
    assert statuses == [503, 201, None, None]  # reset and timeout: no answer, journaled all the same


async def test_webhooks_are_signed_and_retried_on_5xx_on_the_clock_schedule():
    clock = Clock("virtual")
    service, app = echo_service(clock)
    received = []

    async def receiver(request):
        body = await request.read()
        Webhook(DEFAULT_SECRET).verify(body, dict(request.headers))  # raises if the signature is wrong
        received.append((clock.now(), request.headers["webhook-id"]))
        return web.Response(status=500 if len(received) < 4 else 204)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver)
    hook_runner, hook_url = await serve(hook_app)
    runner, url = await serve(app)
    service.webhooks.subscribe("thingCreated", hook_url + "/hook")
    async with aiohttp.ClientSession(url) as http, http.post("/things", json={"name": "a"}) as r:
        assert r.status == 201
    start = clock.now()
    await clock.advance(3 * 3600)
    await runner.cleanup()
    await hook_runner.cleanup()
    offsets = [round(t - start) for t, _ in received]
    assert offsets == [0, 5, 305, 2105]  # 0, +5 s, +5 min, +30 min
    assert len({wid for _, wid in received}) == 1
    attempts = [e["detail"]["outcome"] for e in service.journal.entries() if e["kind"] == "webhook"]
    assert attempts == ["failed", "failed", "failed", "delivered"]
    assert RETRY_SCHEDULE[:4] == (0, 5, 300, 1800)


async def _webhook_ids_of_two_runs(**config) -> list[list[str]]:
    """The webhook-ids each of two simulators of one seed sends: three, a reset, one more."""
    runs = []
    for _ in range(2):
        service, _app = echo_service(Clock("virtual"), **config)
        service.webhooks.subscribe("*", "http://127.0.0.1:9/hook")
        ids = [service.webhooks.send("thingCreated", {"id": n, "name": "x"})[0] for n in range(3)]
        await service.reset()
        ids += service.webhooks.send("thingCreated", {"id": 9, "name": "after a reset"})
        await service.reset()  # nothing left to deliver
        await service.webhooks.close()
        runs.append(ids)
    return runs


async def test_a_world_replayed_from_its_seed_sends_the_same_webhook_ids():
    first, second = await _webhook_ids_of_two_runs()
    assert first == second and len(set(first)) == 4  # a reset does not count again


async def test_simulators_asked_for_unique_webhook_ids_never_send_one_twice():
    """A core drops a webhook-id it has seen: `up` restarted with its seed, or a load's own
    simulator beside `up`'s, must not send it ids it had for other messages."""
    first, second = await _webhook_ids_of_two_runs(unique_webhook_ids=True)
    assert len(set(first + second)) == 8


async def test_delivery_hooks_lose_duplicate_delay_and_reorder():
    from caas_sim.simulators.kit.webhooks import DeliveryHooks

    clock = Clock("virtual")
    service, _app = echo_service(clock)
    received = []

    async def receiver(request):
        received.append((clock.now(), (await request.json())["name"], request.headers["webhook-id"]))
        return web.Response(status=204)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver)
    hook_runner, hook_url = await serve(hook_app)
    service.webhooks.subscribe("*", hook_url + "/hook")
    send = lambda name, **hooks: service.webhooks.send("thingCreated", {"id": 1, "name": name},
                                                       hooks=DeliveryHooks(**hooks))
    start = clock.now()
    send("lost", lost=True)
    [back_id] = send("back", lost=True, redeliver_after=90)
    [dup_id] = send("dup", duplicates=2)
    send("late", delay=60)
    send("first", reorder=True)
    send("second")
    await clock.advance(120)
    await hook_runner.cleanup()
    names = [(round(t - start), name) for t, name, _ in received]
    assert names == [(0, "dup"), (0, "second"), (1, "dup"), (1, "first"), (2, "dup"), (60, "late"), (90, "back")]
    assert [wid for _, name, wid in received if name == "back"] == [back_id]
    assert {wid for _, name, wid in received if name == "dup"} == {dup_id}
    lost = [e for e in service.journal.entries() if e["kind"] == "webhook" and e["detail"]["outcome"] == "lost"]
    assert len(lost) == 2


async def test_the_stack_fixture_runs_every_service(running_stack):
    assert set(running_stack.running) >= {"sink", "iot"}
    async with aiohttp.ClientSession() as http, http.get(running_stack.url("iot") + "/__admin/health") as r:
        health = await r.json()
    assert health["service"] == "iot" and health["busy"] == 0 and health["clock"]["mode"] == "virtual"


async def test_a_webhook_sent_now_leaves_without_a_clock_move():
    clock = Clock("virtual")
    service, _app = echo_service(clock)
    got = asyncio.Event()

    async def receiver(request):
        got.set()
        return web.Response(status=204)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver)
    hook_runner, hook_url = await serve(hook_app)
    service.webhooks.subscribe("*", hook_url + "/hook")
    service.webhooks.send("thingCreated", {"id": 1, "name": "now"})
    await asyncio.wait_for(got.wait(), timeout=5)
    await hook_runner.cleanup()


async def test_reset_wakes_a_request_parked_on_the_clock(echo):
    service, http = echo
    service.faults.add({"action": {"type": "latency", "params": {"ms": 60_000}}})
    pending = asyncio.ensure_future(http.get("/things/1"))
    await service.clock.settle()
    await service.reset()
    async with await asyncio.wait_for(pending, timeout=5) as r:
        assert r.status == 404  # the reset dropped the thing and the fault; the request still got its answer


def test_fault_selectors_see_nested_ids():
    from caas_sim.simulators.kit.entities import entities as _entities

    body = {"reference": "R1", "vehicle": {"vin": "V1", "model": "X"}, "owner": {"taxId": "T1", "reference": "no"}}
    assert _entities({"id": "7"}, body) == {"id": "7", "reference": "R1", "vin": "V1", "model": "X", "taxId": "T1"}


@pytest.mark.parametrize("with_rule", [False, True], ids=["worked out when read", "worked out for a fault rule"])
async def test_requests_are_journaled_under_their_entities(echo, with_rule):
    service, http = echo
    if with_rule:  # a transport rule to match: the entities are worked out on the request's path
        service.faults.add({"id": "x", "match": {"operation": "nothing-here"}, "action": {"type": "reset"}})
    vin = "WVWZZZ1JZXW000001"
    async with http.post("/things", json={"name": "bolt", "vin": vin, "delay": 0}) as r:
        assert r.status == 201
    async with http.get("/things/1") as r:
        assert r.status == 200
    entries = [e for e in service.journal.read()["entries"] if e["kind"] == "request"]
    assert [e.get("entities") for e in entries] == [{"name": "bolt", "vin": vin}, {"id": "1"}]
    assert all(list(e)[-3:] == ["entities", "status", "latencyMs"] for e in entries)  # where they always were
    assert not any(ENTITY_SOURCE in e for e in service.journal.entries())


def test_a_large_body_has_its_entities_worked_out_at_once():
    body = {"vin": "V1", "document": "x" * MAX_DEFERRED_BODY}
    raw = orjson.dumps(body)
    kept = entity_source({"id": "7"}, raw, body)
    assert kept == [{"id": "7"}, {"id": "7", "vin": "V1"}]  # not the body: the journal keeps a few bytes
    assert resolve({"path": "/", ENTITY_SOURCE: kept}) == {"path": "/", "entities": {"id": "7", "vin": "V1"}}
    small = entity_source({}, b'{"vin": "V1"}', {"vin": "V1"})
    assert resolve(orjson.loads(orjson.dumps({ENTITY_SOURCE: small}))) == {"entities": {"vin": "V1"}}
    assert resolve({ENTITY_SOURCE: entity_source({}, b"", None), "status": 200}) == {"status": 200}


async def test_reordering_by_entity_waits_for_the_same_entity():
    from caas_sim.simulators.kit.webhooks import DeliveryHooks

    clock = Clock("virtual")
    service, _app = echo_service(clock)
    received = []

    async def receiver(request):
        received.append((await request.json())["name"])
        return web.Response(status=204)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver)
    hook_runner, hook_url = await serve(hook_app)
    service.webhooks.subscribe("*", hook_url + "/hook")
    send = lambda name, order, **hooks: service.webhooks.send(
        "thingCreated", {"id": 1, "name": name}, entities={"orderId": order}, hooks=DeliveryHooks(**hooks))
    send("A1", "A", reorder=True, reorder_by="orderId", reorder_hold=86400)
    send("B1", "B")  # another order: does not release A1
    await clock.advance(3600)
    assert received == ["B1"]
    send("A2", "A")
    await clock.advance(60)
    assert received == ["B1", "A2", "A1"]
    send("A3", "A", reorder=True, reorder_by="orderId", reorder_hold=600)
    await clock.advance(601)  # nothing overtook it: it leaves when its hold ends
    assert received[-1] == "A3"
    await hook_runner.cleanup()


async def test_a_receivers_retry_after_puts_the_next_attempt_at_least_that_far_off():
    """429 or 503 with Retry-After (seconds or an HTTP date): the next attempt of that delivery
    waits that long on the clock instead of the schedule's 5 s; without the header, the schedule."""
    from email.utils import format_datetime

    clock = Clock("virtual")
    service, _app = echo_service(clock)
    received = []
    answers = {"seconds": [(429, {"Retry-After": "120"})], "date": [(503, None)], "plain": [(503, {})]}

    async def receiver(request):
        name = (await request.json())["name"]
        received.append((clock.now(), name))
        status, headers = (answers[name].pop(0) if answers[name] else (204, {}))
        if headers is None:  # an HTTP date 10 minutes of wall time ahead
            headers = {"Retry-After": format_datetime(datetime.now(UTC) + timedelta(minutes=10), usegmt=True)}
        return web.Response(status=status, headers=headers)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver)
    hook_runner, hook_url = await serve(hook_app)
    service.webhooks.subscribe("*", hook_url + "/hook")
    start = clock.now()
    for name in answers:
        service.webhooks.send("thingCreated", {"id": 1, "name": name})
    await clock.advance(3600)
    await hook_runner.cleanup()
    attempts = {name: [round(t - start) for t, n in received if n == name] for name in answers}
    assert attempts["seconds"] == [0, 120]
    assert attempts["date"][0] == 0 and 590 <= attempts["date"][1] <= 600
    assert attempts["plain"] == [0, RETRY_SCHEDULE[1]]
    failed = [e["detail"] for e in service.journal.entries() if e["kind"] == "webhook"
              and e["detail"]["outcome"] == "failed"]
    assert max(d.get("retryAfter", 0) for d in failed) >= 590


def test_retry_after_reads_seconds_and_http_dates():
    from caas_sim.simulators.kit.webhooks import retry_after_seconds

    assert retry_after_seconds("30", 0.0) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 1970 00:02:00 GMT", 60.0) == 60.0
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:00 GMT", 60.0) == 0.0  # in the past: no wait
    assert retry_after_seconds("soon", 0.0) is None and retry_after_seconds(None, 0.0) is None
