"""A load generator for ``caas-sim bench`` that is not the bottleneck when wrk is absent.

aiohttp's client spends ~200 µs of CPU per request, so on a small machine it, not the
server, sets the pace. This one writes pre-built HTTP/1.1 requests on keep-alive
connections (one request in flight per connection, as wrk does) and parses only the
status line and Content-Length of each answer: a few µs per request. Requests come from
a function of the request number, so each one can differ (a fresh, validly signed
webhook-id each time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: (request number) -> the raw request bytes.
RequestMaker = Callable[[int], bytes]


def http_request(method: str, host: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    requests: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds, a sample

    def errors(self, expected: set[int]) -> int:
        return sum(n for status, n in self.statuses.items() if status not in expected)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._deliver()

    def connection_lost(self, exc) -> None:
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("server closed the connection"))

    def _deliver(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        length, at = 0, head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[:end + 4 + length]
        self.waiter.set_result(status)

    async def exchange(self, request: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def run(url: str, make: RequestMaker, *, duration: float, connections: int, total: int | None = None,
              sample_every: int = 50) -> Result:
    """Send requests from ``make`` over ``connections`` connections for ``duration`` seconds
    (or until ``total`` requests were sent)."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    result = Result()
    counter = iter(range(1 << 62))
    stop = time.perf_counter() + duration

    async def worker() -> None:
        _, conn = await loop.create_connection(_Connection, parts.hostname, parts.port)
        try:
            while time.perf_counter() < stop:
                n = next(counter)
                if total is not None and n >= total:
                    break
                request = make(n)
                started = time.perf_counter()
                status = await conn.exchange(request)
                if n % sample_every == 0:
                    result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.requests += 1
        finally:
            conn.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


def loop_factory():
    """uvloop's event loop when installed (as the servers under test run), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_blocking(url: str, make: RequestMaker, *, duration: float, connections: int,
                 total: int | None = None) -> Result:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(run(url, make, duration=duration, connections=connections, total=total))
