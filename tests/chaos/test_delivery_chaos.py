"""Delivery chaos over the running stack: the simulators duplicate, delay, reorder and lose
(then redeliver) their webhooks as hypothesis draws it, and the core ends every purchase
in the same state, with the same money, as when each webhook arrives once and in order.
Small and seeded in `make test`; CAAS_CHAOS_STACK_EXAMPLES=50 for the long form."""

import asyncio
import collections
import os

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from caas_core.api.app import CORE_KEY
from caas_core.store.schema import (
    collection_cases,
    notifications,
    payments,
    purchases,
    refunds,
)
from caas_sim.scenarios import peer_audit
from caas_sim.scenarios.stack import Stack
from caas_sim.simulators.iot.api import MODEL_KEY

#: Its tests share a module-wide world: one worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("tests.chaos.test_delivery_chaos")

EXAMPLES = int(os.environ.get("CAAS_CHAOS_STACK_EXAMPLES", "4"))
#: CAAS_CHAOS_SEEDS=1 also draws the stack's seed (which webhooks each probabilistic rule hits).
#: Finding (40 drawn examples): a paymentSettlement SETTLED delivered late (reordered, or delayed
#: 4 days) after the bank reversal's FAILED overwrote it; fixed: settlements are ordered by the
#: gateway's sequence (domain.settlement). The earlier flaky report (payments webhook_duplicated
#: p=0.6 copies=2, seed 1) ends as orderly delivery in 23 isolated runs, with and without the
#: refund-outcome wait (flows.webhooks): not reproduced.
SEEDS = st.integers(0, 10_000) if os.environ.get("CAAS_CHAOS_SEEDS") else st.just(3)
KEYS = {"k": {"role": "customer", "subject": "c-1"}}
#: (IoT magic vehicle, card): delivered and settled; delivered and settlement fails; delivered,
#: settled then reversed by the bank; given up and refunded; a lost first callback.
JOURNEYS = [("healthy", "pm_card_visa"), ("flaky_twice", "pm_card_settlement_fails"),
            ("healthy", "pm_card_settled_then_reversed"), ("always_offline", "pm_card_visa"),
            ("callback_lost", "pm_card_mastercard")]
SERVICES = ["heated-seats", "premium-audio", "matrix-headlights", "heated-seats", "premium-audio"]


def chaos_rules():
    """Fault rules for every webhook kind the core receives (IoT callbacks, payment events)."""
    prob = st.sampled_from([0.3, 0.6, 1.0])
    iot = st.fixed_dictionaries({}, optional={
        "callback_duplicated": st.tuples(prob, st.integers(1, 3).map(lambda n: {"copies": n})),
        "callback_delayed": st.tuples(prob, st.sampled_from([5, 40, 600]).map(lambda s: {"seconds": s})),
    })
    pay = st.fixed_dictionaries({}, optional={
        "webhook_duplicated": st.tuples(prob, st.integers(1, 3).map(lambda n: {"copies": n})),
        "webhook_delayed": st.tuples(prob, st.sampled_from([60, 7200, 4 * 86400]).map(lambda s: {"seconds": s})),
        "webhook_reordered": st.tuples(prob, st.just({})),
        "webhook_lost": st.tuples(prob, st.sampled_from([30, 3600]).map(lambda s: {"redeliver_after": s})),
    })
    return st.fixed_dictionaries({"iot": iot, "payments": pay})


async def journey(tmp_path, rules: dict, seed: int = 3) -> tuple[dict, dict]:
    db = tmp_path / f"chaos-{abs(hash(repr(rules)))}.db"
    db.unlink(missing_ok=True)
    stack = Stack(services=["iot", "vss", "payments"], seed=seed, with_sink=False,
                  core={"database_url": f"sqlite+aiosqlite:///{db}", "api_keys": KEYS})
    async with stack, aiohttp.ClientSession(stack.url("core"), headers={"Authorization": "Bearer k"}) as http:
        for service, faults in rules.items():
            for action, (probability, params) in faults.items():
                stack.service(service).faults.add({"probability": probability,
                                                   "action": {"type": action, "params": params}})
        magic = stack.running["iot"].app[MODEL_KEY].fleet.magic_vins()
        for i, (vehicle, card) in enumerate(JOURNEYS):
            async with http.post(f"/customers/c-1/vehicles/{magic[vehicle]}/purchases",
                                 headers={"Idempotency-Key": f"chaos-{i}"},
                                 json={"serviceId": SERVICES[i], "durationType": "PERMANENT",
                                       "paymentMethod": {"type": "CARD", "token": card}}) as r:
                assert r.status == 201, await r.text()
        await stack.advance("13d")  # settlement (days), the bank reversal (3 days after), webhook retries
        async with http.get("/__admin/audit") as r:
            report = await r.json()
        peers = await peer_audit.audit(stack.url("payments"), stack.url("iot"))  # the simulators' side
        assert peers["ok"], peers["violations"]
        state = await snapshot(stack.running["core"].app[CORE_KEY].db)
        assert stack.violations() == []
        if rules:
            TALLY["examples"] += 1
            journal = stack.journal()
            TALLY.update(e["detail"]["action"] for e in journal if e["kind"] == "fault")
            TALLY["webhook deliveries"] += sum(e["kind"] == "webhook" for e in journal)
    return state, report


#: What the chaotic examples did, printed at the end (pytest -s): the long form's figures.
TALLY: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_tally():
    yield
    if TALLY:
        print("\ndelivery chaos:", ", ".join(f"{what} {n}" for what, n in sorted(TALLY.items())))


async def snapshot(db) -> dict:
    """Per purchase (ids derive from the Idempotency-Key): what the customer and the books see."""
    async with db.transaction(readonly=True) as conn:
        rows = (await conn.execute(
            select(purchases.c.id, purchases.c.status, purchases.c.refunded_minor, payments.c.status,
                   select(func.count()).select_from(collection_cases)
                   .where(collection_cases.c.payment_id == payments.c.id).scalar_subquery(),
                   select(func.coalesce(func.sum(refunds.c.amount_minor), 0)).select_from(refunds)
                   .where(refunds.c.payment_id == payments.c.id, refunds.c.status == "SUCCEEDED").scalar_subquery())
            .select_from(purchases.join(payments, payments.c.purchase_id == purchases.c.id)))).all()
        told = (await conn.execute(select(notifications.c.template, func.count())
                                   .group_by(notifications.c.template))).all()
    return {"purchases": sorted(tuple(r) for r in rows), "notifications": dict(told)}


_baseline: dict = {}


def baseline(tmp_path):
    if not _baseline:
        _baseline["state"], _baseline["report"] = asyncio.run(journey(tmp_path, {}))
    return _baseline["state"]


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(rules=chaos_rules(), seed=SEEDS)
def test_chaotic_delivery_ends_where_orderly_delivery_does(rules, seed, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chaos")
    expected = baseline(tmp)
    assert _baseline["report"]["ok"] and _baseline["report"]["settled"], _baseline["report"]
    state, report = asyncio.run(journey(tmp, rules, seed))
    assert report["violations"] == [] and report["settled"], report
    assert state == expected
