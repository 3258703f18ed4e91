"""The peers' audit: money and vehicles in step, judged only from what the simulators saw.

A core's own audit (``GET /__admin/audit``) can only report what that core knows; this one
needs nothing from the core. It reads the payment gateway's and the IoT fleet's journals
and state through their public and admin APIs (``contracts/payments.yaml``,
``contracts/iot.yaml``, ``contracts/admin.yaml``) and ties a payment to a vehicle's feature
by the references the payments contract carries (``metadata.vin`` and ``metadata.serviceId``),
so it judges a core written by anyone. Invariants:

- ``kept-money-undelivered``: a service payment settled, not refunded (nor being refunded),
  for a feature never activated on that vehicle;
- ``active-after-refund``: a feature on while its payment was refunded in full;
- ``active-never-charged``: a one-time feature on with no charge for it at the gateway;
- ``ota-without-charge``: an activation command (not a post-paid subscription's) sent with no
  charge for that vehicle and service before it;
- ``refund-not-completed``: a refund of money that did settle failed, and none completed since.

Payments without ``vin``/``serviceId`` metadata cannot be tied to a feature: they are counted
under ``untied`` and judged by the refund rule only. Pending refunds and payments still
awaiting settlement are reported in ``inFlight`` (settle the clocks for a final verdict).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp

from caas_sim.simulators.client import AdminClient

INVARIANTS = ("kept-money-undelivered", "active-after-refund", "active-never-charged", "ota-without-charge",
              "refund-not-completed")
#: Payment statuses in which the money has not settled either way yet.
_AWAITING = frozenset({"INITIATED", "AUTHORIZED", "PROCESSING", "CAPTURED"})
_NOT_CHARGED = frozenset({"DECLINED"})
_CONCURRENT_READS = 16


@dataclass
class _Seen:
    """What the journals say happened, in order."""
    payments: dict[str, float] = field(default_factory=dict)          # paymentId -> first seen (virtual ms)
    activations: list[dict] = field(default_factory=list)              # ota.queued of activations
    activated: set[tuple[str, str]] = field(default_factory=set)       # (vin, serviceId) ever activated
    vins: set[str] = field(default_factory=set)
    dropped: int = 0


async def _journal(admin: AdminClient) -> tuple[list[dict], int]:
    entries, since, dropped = [], 0, 0
    while True:
        page = await admin.journal(since=since, limit=1000)
        entries += page["entries"]
        dropped += page.get("dropped", 0)
        if not page["entries"]:
            return entries, dropped
        since = page["next"]


async def _seen(payments: AdminClient, iot: AdminClient) -> _Seen:
    seen = _Seen()
    (pay_log, pay_dropped), (iot_log, iot_dropped) = await asyncio.gather(_journal(payments), _journal(iot))
    seen.dropped = pay_dropped + iot_dropped
    for entry in pay_log:
        ids = entry.get("entities") or {}
        if entry.get("kind") == "event" and ids.get("paymentId") and entry.get("event", "").startswith("payment."):
            seen.payments.setdefault(ids["paymentId"], entry["seq"])
    for entry in iot_log:
        ids = entry.get("entities") or {}
        if entry.get("kind") != "event" or not ids.get("vin"):
            continue
        seen.vins.add(ids["vin"])
        detail = entry.get("detail") or {}
        if entry["event"] == "ota.queued" and detail.get("kind") == "ACTIVATION":
            seen.activations.append({"vin": ids["vin"], "serviceId": ids["serviceId"], "at": entry["vt"],
                                     "requestId": ids["requestId"], "durationType": detail.get("durationType")})
        elif entry["event"] == "ota.activated":
            seen.activated.add((ids["vin"], ids["serviceId"]))
    return seen


async def _read_all(session: aiohttp.ClientSession, base: str, paths: list[str]) -> dict[str, dict]:
    gate = asyncio.Semaphore(_CONCURRENT_READS)

    async def read(path: str) -> tuple[str, dict]:
        async with gate, session.get(base.rstrip("/") + path) as r:
            r.raise_for_status()
            return path, await r.json()

    return dict(await asyncio.gather(*(read(p) for p in paths)))


class WrongService(ValueError):
    """A URL given as one simulator answers as another service (or names none)."""


async def _check_identity(admin: AdminClient, expected: str) -> None:
    # Another simulator's journal reads as an empty one: a false verdict, or a 404 halfway.
    service = (await admin.health()).get("service")
    if service != expected:
        raise WrongService(f"{admin.base_url} is {service or 'no service of the admin protocol'}, "
                           f"not the {expected} simulator")


async def audit(payments_url: str, iot_url: str, *, token: str | None = None,
                session: aiohttp.ClientSession | None = None) -> dict:
    """The report: ``{"ok", "settled", "invariants", "violations", "checked", "inFlight", "warnings"}``.
    Raises WrongService when a URL answers as another service than the one it stands for."""
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with AdminClient(payments_url, token=token, session=session) as pay_admin, \
                AdminClient(iot_url, token=token, session=session) as iot_admin:
            await asyncio.gather(_check_identity(pay_admin, "payments"), _check_identity(iot_admin, "iot"))
            seen = await _seen(pay_admin, iot_admin)
        paid = await _read_all(session, payments_url, [f"/payments/{pid}" for pid in seen.payments])
        vehicles = await _read_all(session, iot_url, [f"/vehicles/{vin}/status" for vin in sorted(seen.vins)])
    finally:
        if own:
            await session.close()
    return judge(list(paid.values()), [v for v in vehicles.values()], seen.activations, seen.activated, seen.dropped)


def judge(payments: list[dict], vehicles: list[dict], activations: list[dict], activated: set[tuple[str, str]],
          dropped: int = 0) -> dict:
    """The verdict from the peers' state (pure: the tests feed it directly)."""
    violations: list[dict] = []
    in_flight = {"paymentsAwaitingSettlement": 0, "refundsPending": 0}
    charges: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (vin, serviceId) -> its service charges
    untied = 0

    def violate(name: str, detail: str, **entities: str) -> None:
        violations.append({"invariant": name, "entities": entities, "detail": detail})

    for p in payments:
        meta, amount = p["metadata"], p["amount"]["value"]
        if p["status"] in _AWAITING:
            in_flight["paymentsAwaitingSettlement"] += 1
        in_flight["refundsPending"] += sum(1 for r in p["refunds"] if r["status"] == "PENDING")
        failed = [r for r in p["refunds"] if r["status"] == "FAILED"]
        if failed and p["settlement"] and p["settlement"]["status"] == "SETTLED" \
                and p["amountRefunded"]["value"] + p["amountRefundPending"]["value"] < amount \
                and not any(r["status"] == "SUCCEEDED" for r in p["refunds"]):
            violate("refund-not-completed", f"refund {failed[-1]['refundId']} failed "
                    f"({failed[-1].get('failureReason')}) and no refund completed since", paymentId=p["paymentId"],
                    orderId=meta["orderId"])
        if p["paymentType"] != "SERVICE" or p["status"] in _NOT_CHARGED:
            continue
        if not meta.get("vin") or not meta.get("serviceId"):
            untied += 1
            continue
        charges[(meta["vin"], meta["serviceId"])].append(p)
        refunded = p["amountRefunded"]["value"] + p["amountRefundPending"]["value"]
        if p["status"] == "SETTLED" and refunded < amount and (meta["vin"], meta["serviceId"]) not in activated:
            violate("kept-money-undelivered", f"{amount - refunded} {p['amount']['currency']} settled and kept for "
                    f"{meta['serviceId']}, never activated on the vehicle", paymentId=p["paymentId"],
                    orderId=meta["orderId"], vin=meta["vin"])
    for vehicle in vehicles:
        for service in vehicle["activeServices"]:
            if service["status"] != "ACTIVE":
                continue
            key = (vehicle["vin"], service["serviceId"])
            paid = charges.get(key, [])
            if not paid and service.get("durationType") != "SUBSCRIPTION":
                violate("active-never-charged", f"{service['serviceId']} is on with no charge for it at the gateway",
                        vin=vehicle["vin"])
            elif paid and all(p["amountRefunded"]["value"] + p["amountRefundPending"]["value"] >= p["amount"]["value"]
                              for p in paid):
                violate("active-after-refund", f"{service['serviceId']} is on though every payment for it was "
                        "refunded (or is being refunded) in full", vin=vehicle["vin"], paymentId=paid[-1]["paymentId"])
    for command in activations:
        if command["durationType"] == "SUBSCRIPTION":
            continue  # post-paid: charged at month end
        if not charges.get((command["vin"], command["serviceId"])):
            violate("ota-without-charge", f"activation of {command['serviceId']} sent at {command['at']} with no "
                    "charge for it at the gateway", vin=command["vin"], requestId=command["requestId"])
    warnings = [(f"{dropped} journal entries were dropped (the ring buffer is full): the verdict may miss "
                 "what they held")] if dropped else []
    return {"ok": not violations, "settled": not any(in_flight.values()), "invariants": list(INVARIANTS),
            "violations": violations, "inFlight": in_flight, "warnings": warnings,
            "checked": {"payments": len(payments), "untiedPayments": untied, "vehicles": len(vehicles),
                        "activationCommands": len(activations)}}
