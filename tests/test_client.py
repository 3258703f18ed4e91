"""The admin client against a real IoT simulator on an ephemeral port."""

import socket

import aiohttp
import pytest

from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.client import (
    AdminClient,
    AdminError,
    AdminUnreachable,
    load_fault_profile,
)
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET

START = "2026-01-05T08:00:00.000Z"
LATENCY = {"id": "slow-status", "match": {"method": "GET", "path": "/vehicles/{vin}/status"},
           "action": {"type": "latency", "params": {"ms": 2000, "jitter_ms": 500}}, "times": 3}


@pytest.fixture
async def stack():
    async with Stack(services=["iot"], ports={}) as running:
        yield running


@pytest.fixture
async def admin(stack):
    async with AdminClient(stack.url("iot")) as client:
        yield client


async def test_health_shows_the_service_idle_on_its_clock(admin):
    health = await admin.health()
    assert health["service"] == "iot"
    assert health["busy"] == 0
    assert health["clock"]["mode"] == "virtual"
    assert health["clock"]["now"] == START
    assert await admin.clock() == health["clock"]


async def test_advance_and_set_move_the_clock_forward_only(admin):
    assert (await admin.advance("15m"))["now"] == "2026-01-05T08:15:00.000Z"
    assert (await admin.advance(90))["now"] == "2026-01-05T08:16:30.000Z"
    assert (await admin.advance("30"))["now"] == "2026-01-05T08:17:00.000Z"  # a bare number is seconds
    assert (await admin.set_clock("2026-01-06T00:00:00Z"))["now"] == "2026-01-06T00:00:00.000Z"
    with pytest.raises(AdminError) as backward:
        await admin.set_clock("2026-01-01T00:00:00Z")
    assert backward.value.status == 409
    assert "backward" in str(backward.value)
    with pytest.raises(AdminError) as bad:
        await admin.advance("soon")
    assert bad.value.status == 400


async def test_fault_rules_can_be_added_listed_deleted_and_cleared(admin):
    rule = await admin.add_fault(LATENCY)
    assert rule["id"] == "slow-status" and rule["remaining"] == 3 and rule["hits"] == 0
    batch = await admin.add_faults([{"action": {"type": "vehicle_offline"}, "match": {"selectors": {"vin": "W*"}}},
                                    {"action": {"type": "http_error", "params": {"status": 503}}, "times": 1}])
    assert [r["action"]["type"] for r in batch] == ["vehicle_offline", "http_error"]
    assert await admin.add_faults([]) == []

    listing = await admin.faults()
    assert [r["id"] for r in listing["rules"]] == ["slow-status", batch[0]["id"], batch[1]["id"]]
    assert {"latency", "vehicle_offline"} <= {a["name"] for a in listing["actions"]}

    assert await admin.delete_fault("slow-status") == 1
    with pytest.raises(AdminError) as missing:
        await admin.delete_fault("slow-status")
    assert missing.value.status == 404
    assert await admin.clear_faults() == 2
    assert (await admin.faults())["rules"] == []


async def test_a_bad_rule_is_a_400_that_says_why_and_adds_nothing(admin):
    with pytest.raises(AdminError) as unknown:
        await admin.add_faults([LATENCY, {"action": {"type": "explode"}}])
    assert unknown.value.status == 400
    assert "unknown fault action 'explode'" in str(unknown.value)
    assert unknown.value.title == "Invalid fault rule"
    assert (await admin.faults())["rules"] == []  # all or nothing

    with pytest.raises(AdminError) as schema:  # latency needs params: caught by the contract
        await admin.add_fault({"action": {"type": "latency"}})
    assert schema.value.status == 400
    assert schema.value.problem["violations"]


async def test_journal_pages_with_since_and_clears(stack, admin):
    async with aiohttp.ClientSession(stack.url("iot")) as http:
        for _ in range(5):
            async with http.get("/fleet/magic-vins") as resp:
                assert resp.status == 200
    first = await admin.journal(limit=2)
    assert [e["seq"] for e in first["entries"]] == [1, 2]
    assert first["next"] == 2 and first["dropped"] == 0
    rest = await admin.journal(since=first["next"])
    assert [e["seq"] for e in rest["entries"]] == [3, 4, 5]
    assert all(e["kind"] == "request" and e["path"] == "/fleet/magic-vins" for e in rest["entries"])
    assert (await admin.journal(since=rest["next"]))["entries"] == []

    assert await admin.clear_journal() == 5
    assert (await admin.journal(since=rest["next"]))["entries"] == []


async def test_webhook_subscriptions_are_replaced(stack, admin):
    assert [s["event"] for s in await admin.webhooks()] == ["*"]  # the stack wires everything to its sink
    url = stack.url("sink") + "/webhooks/iot"
    subs = await admin.set_webhooks([{"event": "otaStatus", "url": url, "secret": DEFAULT_SECRET}])
    assert subs == [{"event": "otaStatus", "url": url, "secretSet": True}]
    assert await admin.webhooks() == subs
    with pytest.raises(AdminError) as bad:
        await admin.set_webhooks([{"event": "noSuchEvent", "url": url, "secret": DEFAULT_SECRET}])
    assert bad.value.status == 400 and "noSuchEvent" in str(bad.value)


async def test_reset_drops_rules_and_journal(stack, admin):
    await admin.add_fault(LATENCY)
    async with aiohttp.ClientSession(stack.url("iot")) as http, http.get("/fleet/magic-vins"):
        pass
    assert await admin.reset() == {"reset": True, "service": "iot"}
    assert (await admin.faults())["rules"] == []
    assert (await admin.journal())["entries"] == []


async def test_a_token_is_sent_as_bearer():
    async with Stack(services=["iot"], ports={}, with_sink=False, admin_token="s3cret") as stack:
        async with AdminClient(stack.url("iot")) as anonymous:
            with pytest.raises(AdminError) as refused:
                await anonymous.health()
        assert refused.value.status == 401
        async with AdminClient(stack.url("iot"), token="s3cret") as admin:
            assert (await admin.health())["service"] == "iot"


async def test_a_shared_session_is_left_open(stack):
    async with aiohttp.ClientSession() as session:
        async with AdminClient(stack.url("iot"), session=session) as admin:
            await admin.health()
        assert not session.closed


async def test_nothing_listening_is_unreachable_not_a_traceback_from_aiohttp():
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AdminClient(f"http://127.0.0.1:{port}") as admin:
        with pytest.raises(AdminUnreachable) as exc:
            await admin.health()
    assert f"127.0.0.1:{port}" in str(exc.value) and "refused" in exc.value.reason


async def test_a_non_admin_answer_is_an_admin_error(stack):
    async with AdminClient(stack.url("sink")) as sink:  # the sink speaks no admin protocol
        with pytest.raises(AdminError) as exc:
            await sink.health()
    assert exc.value.status in (404, 405) and "/__admin/health" in str(exc.value)


def test_fault_profiles_are_a_rules_mapping_or_a_bare_list(tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("rules:\n  - action: {type: timeout}\n    times: 1\n")
    bare = tmp_path / "bare.yaml"
    bare.write_text("- action: {type: reset}\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("rule:\n  - action: {type: reset}\n")
    assert load_fault_profile(mapping) == [{"action": {"type": "timeout"}, "times": 1}]
    assert load_fault_profile(bare) == [{"action": {"type": "reset"}}]
    assert load_fault_profile(empty) == []
    with pytest.raises(ValueError, match="rules"):
        load_fault_profile(wrong)
