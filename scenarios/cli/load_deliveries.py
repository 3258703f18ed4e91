"""What a core did with the IoT simulator's callbacks during ``caas-sim load ota-callbacks``.

Read through the admin protocol only (``GET /__admin/journal``), so it works with any
simulator URL: the journal is paged from the start of the run while the load runs (it is a
bounded ring: read as it fills, nothing is missed unless the reader falls behind, which is
reported), then once more when it ends. From it, per callback and per OTA request:

- ``callback answer time`` (wall clock): how long the core took to answer each delivery
  attempt; an attempt not answered 2xx (or not within the simulator's attempt timeout,
  15 s on its clock: 250 ms of wall time on ``scaled:60``) is a failure;
- ``callback delivery lag`` (simulator clock): from the vehicle's outcome (the moment the
  simulator sends the callback) to the core's first 2xx for it, retries included; a
  callback whose retries were exhausted is a failure;
- counts: activations accepted, outcomes, callbacks delivered, duplicates delivered,
  attempts retried, still undelivered at the end.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import datetime

from caas_sim.simulators.client import AdminClient, AdminError, AdminUnreachable

ANSWER = "callback answer time"
LAG = "callback delivery lag"
_POLL = 0.5  # seconds between two reads of the journal while the load runs


def _seconds(vt: str) -> float:
    return datetime.fromisoformat(vt).timestamp()


@dataclass
class Deliveries:
    accepted: int = 0                                          # ota.queued (activation requests accepted)
    outcomes: dict[str, float] = field(default_factory=dict)  # requestId -> when its outcome was sent
    delivered: dict[str, float] = field(default_factory=dict)  # requestId -> first 2xx of its callback
    answers_ms: list[float] = field(default_factory=list)     # answer time of each attempt answered 2xx
    failed_attempts: int = 0
    duplicates: int = 0
    retried: int = 0
    exhausted: int = 0
    dropped: int = 0                                           # journal entries lost before they were read
    error: str | None = None

    def take(self, entry: dict) -> None:
        ids = entry.get("entities") or {}
        request_id = ids.get("requestId")
        if entry["kind"] == "event":
            if entry.get("event") == "ota.queued":
                self.accepted += 1
            elif entry.get("event") in ("ota.activated", "ota.failed") and request_id:
                self.outcomes.setdefault(request_id, _seconds(entry["vt"]))
            return
        if entry["kind"] != "webhook" or entry.get("direction") != "out":
            return
        detail = entry.get("detail") or {}
        outcome = detail.get("outcome")
        if outcome == "exhausted":
            self.exhausted += 1
            return
        if outcome not in ("delivered", "failed"):
            return
        if detail.get("attempt", 1) > 1:
            self.retried += 1
        if outcome == "failed":
            self.failed_attempts += 1
            return
        self.answers_ms.append(float(entry.get("latencyMs") or 0.0))
        if detail.get("copy"):
            self.duplicates += 1
        elif request_id:
            self.delivered.setdefault(request_id, _seconds(entry["vt"]))

    def lags_ms(self) -> list[float]:
        return [(self.delivered[r] - sent) * 1000 for r, sent in self.outcomes.items() if r in self.delivered]

    @property
    def undelivered(self) -> int:
        return sum(1 for r in self.outcomes if r not in self.delivered)

    def counts(self) -> dict[str, int]:
        return {"activations accepted": self.accepted, "outcomes sent": len(self.outcomes),
                "callbacks delivered": len(self.delivered), "duplicates delivered": self.duplicates,
                "attempts answered non-2xx or not at all": self.failed_attempts, "attempts retried": self.retried,
                "callbacks exhausted": self.exhausted, "outcomes undelivered at the end": self.undelivered,
                "journal entries missed": self.dropped}


class DeliveryWatch:
    """Reads the simulator's journal on a thread of its own while the load runs."""

    def __init__(self, iot_url: str, token: str | None = None) -> None:
        self.url, self.token = iot_url, token
        self.deliveries = Deliveries()
        self._since = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="caas-load-deliveries", daemon=True)

    def start(self) -> DeliveryWatch:
        self._since = asyncio.run(self._head())  # only what this run causes
        self._thread.start()
        return self

    def stop(self) -> Deliveries:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.deliveries

    async def _head(self) -> int:
        async with AdminClient(self.url, token=self.token) as admin:
            # Read from past the end, the journal answers its next seq, which no entry has yet.
            return max(0, (await admin.journal(since=1 << 62, limit=1))["next"] - 1)

    def _run(self) -> None:
        asyncio.run(self._follow())

    async def _follow(self) -> None:
        async with AdminClient(self.url, token=self.token) as admin:
            try:
                while True:
                    stopping = self._stop.is_set()
                    await self._drain(admin)
                    if stopping:
                        return
                    await asyncio.sleep(_POLL)  # polling a journal over HTTP: there is no push
            except (AdminError, AdminUnreachable) as exc:
                self.deliveries.error = str(exc)

    async def _drain(self, admin: AdminClient) -> None:
        while True:
            page = await admin.journal(since=self._since, limit=1000)
            self.deliveries.dropped += page.get("dropped", 0)
            for entry in page["entries"]:
                self.deliveries.take(entry)
            if not page["entries"]:
                return
            self._since = page["next"]
