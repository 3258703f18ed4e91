"""Latency at a fixed request rate (open loop), for ``caas-sim bench sim``.

A closed-loop load (``bench_client.run``) measures capacity: every answer sends the next
request, so a stalled server just receives less and its stall hardly shows. Here request
``i`` is due at ``start + i / rate`` whatever happened before, and its latency counts from
that instant: a server that stalls (a garbage collector's full pass, say) delays every
request due meanwhile, and the tail shows it.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .bench_client import RequestMaker, _Connection, loop_factory

#: Seconds a request may go out before it is due (the event loop's timer resolution).
EARLY = 0.001


@dataclass
class Latencies:
    rate: float  # requests per second asked
    seconds: float
    samples: list[float] = field(default_factory=list)  # seconds, every request
    statuses: dict[int, int] = field(default_factory=dict)
    generator_cpu: float = 0.0  # seconds of CPU the load generator (this process) spent sending them

    def percentile(self, p: float) -> float:
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.samples) * 1000 if self.samples else float("nan")

    @property
    def p99_ms(self) -> float:
        return self.percentile(99) * 1000

    def errors(self, expected: set[int]) -> int:
        return sum(n for status, n in self.statuses.items() if status not in expected)


async def paced(url: str, make: RequestMaker, *, rate: float, duration: float, connections: int = 64) -> Latencies:
    """Send ``rate`` requests per second for ``duration`` seconds over up to ``connections``
    connections (a request waits for a free one: that wait counts in its latency).

    Each connection takes the next request in order, waits for its due instant if that is
    still ahead, sends it and waits for the answer: no task or queue per request, so the
    generator costs a fraction of the server it measures (a task per request took a whole
    CPU at 4,000 requests a second, and its own delays counted as the server's tail). The
    event loop's timers tick in milliseconds: a request goes out up to ``EARLY`` before it is
    due rather than up to as much after, which would count as the server's latency."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    result = Latencies(rate, duration)
    total = int(rate * duration)
    numbers = iter(range(total))
    samples, statuses, clock, sleep = result.samples, result.statuses, time.perf_counter, asyncio.sleep
    opened: list[_Connection] = []

    async def connection(conn: _Connection, start: float) -> None:
        for n in numbers:
            due = start + n / rate
            ahead = due - clock()
            if ahead > EARLY:
                await sleep(ahead - EARLY)
            sent = clock()
            status = await conn.exchange(make(n))
            samples.append(clock() - min(due, sent))  # late: from when it was due; early: from when sent
            statuses[status] = statuses.get(status, 0) + 1

    try:
        for _ in range(connections):
            _, conn = await loop.create_connection(_Connection, parts.hostname, parts.port)
            opened.append(conn)
        start = clock()
        await asyncio.gather(*(connection(conn, start) for conn in opened))
    finally:
        for conn in opened:
            if conn.transport is not None:
                conn.transport.close()
    return result


def paced_blocking(url: str, make: RequestMaker, *, rate: float, duration: float, connections: int = 64) -> Latencies:
    # The load generator's heap is frozen while it measures, as the servers freeze theirs: a
    # full collection of this process (the bench's imports and results: 23-54 ms a pass)
    # delayed every request due meanwhile, and the delay counted as the server's p99.
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            started = time.process_time()
            result = runner.run(paced(url, make, rate=rate, duration=duration, connections=connections))
            result.generator_cpu = time.process_time() - started
            return result
    finally:
        gc.unfreeze()
