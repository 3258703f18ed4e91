"""``caas-sim bench sim``: what the kit costs on the hot path.

Measures ``POST /ota/activate`` on the IoT simulator with the kit on (contract
validation in and out, fault matching with no rule, idempotency, journal, busy
accounting) against a bare aiohttp handler of the same shape calling the same
model, in the same run, alternating rounds, and prints medians and the ratio.
An ``echo`` handler (parse and answer, no model) is measured too, as the floor. Each server runs alone in a process; the load
comes from wrk when it is installed, from an aiohttp client otherwise.

Two figures per variant: requests/s under load, and server CPU per request
(read from /proc). The CPU figure is the robust one: it does not depend on
whether the load generator or the server saturates first on a shared machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import orjson

from simulators.iot.fleet import Fleet

TARGET_RATIO = 0.7


@dataclass
class Round:
    kind: str
    requests: int
    seconds: float
    cpu_seconds: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / max(1, self.requests) * 1e6


def _bodies(count: int = 16) -> list[bytes]:
    fleet = Fleet(0)
    return [orjson.dumps({"vin": fleet.vin_at(i * 7919), "serviceId": "perf-boost",
                          "configuration": {"featureFlags": ["performance_boost"], "parameters": {"power_kw": 30}},
                          "duration": {"type": "PERMANENT"}}) for i in range(count)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(kind: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "scenarios.bench_server", "--kind", kind, "--port", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start on port {port}")


def _wrk(url: str, duration: float, connections: int, bodies: list[bytes]) -> tuple[int, float, int]:
    lua = "bodies = {" + ",".join("[[" + b.decode() + "]]" for b in bodies) + "}\n" + """
i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/ota/activate", {["Content-Type"] = "application/json"}, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %d\\n", summary.requests, summary.duration / 1e6,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", f.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    requests, seconds, errors = line.split()[1:]
    return int(requests), float(seconds), int(errors)


async def _aiohttp_load(url: str, duration: float, connections: int, bodies: list[bytes]) -> tuple[int, float, int]:
    import aiohttp

    done = errors = 0
    stop = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal done, errors
        i = offset
        while time.perf_counter() < stop:
            async with session.post(url + "/ota/activate", data=bodies[i % len(bodies)],
                                    headers={"Content-Type": "application/json"}) as r:
                await r.read()
                done += 1
                errors += r.status != 202
            i += 1

    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        await asyncio.gather(*(worker(session, n) for n in range(connections)))
    return done, time.perf_counter() - start, errors


def _round(kind: str, duration: float, connections: int, bodies: list[bytes], use_wrk: bool) -> Round:
    proc, url = _start(kind)
    try:
        load = (lambda d: _wrk(url, d, connections, bodies)) if use_wrk else \
            (lambda d: asyncio.run(_aiohttp_load(url, d, connections, bodies)))
        load(min(1.0, duration / 3))  # warm-up: imports, caches, connection set-up
        cpu0 = _cpu_seconds(proc.pid)
        requests, seconds, errors = load(duration)
        cpu = _cpu_seconds(proc.pid) - cpu0
        return Round(kind, requests, seconds, cpu, errors)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(duration: float = 5.0, connections: int = 32, rounds: int = 3) -> int:
    use_wrk = shutil.which("wrk") is not None
    bodies = _bodies()
    print(f"bench sim: POST /ota/activate, {rounds} alternating rounds of {duration:g} s, {connections} connections, "
          f"load from {'wrk' if use_wrk else 'aiohttp client (install wrk for a load generator that is not the bottleneck)'}")
    results: dict[str, list[Round]] = {"echo": [], "bare": [], "kit": []}
    for n in range(rounds):
        for kind, rounds_of_kind in results.items():
            r = _round(kind, duration, connections, bodies, use_wrk)
            rounds_of_kind.append(r)
            print(f"  round {n + 1} {kind:5}: {r.rps:9.0f} req/s  {r.cpu_us_per_request:7.1f} µs CPU/req  "
                  f"errors {r.errors}", flush=True)
    if any(r.errors for rs in results.values() for r in rs):
        print("FAILED: some requests did not get 202; the figures are not comparable", file=sys.stderr)
        return 1
    rps = {k: statistics.median(r.rps for r in rs) for k, rs in results.items()}
    cpu = {k: statistics.median(r.cpu_us_per_request for r in rs) for k, rs in results.items()}
    throughput_ratio = rps["kit"] / rps["bare"]
    capacity_ratio = cpu["bare"] / cpu["kit"]
    print()
    print(f"{'variant':<8}{'median req/s':>14}{'median µs CPU/req':>20}")
    for kind in results:
        print(f"{kind:<8}{rps[kind]:>14.0f}{cpu[kind]:>20.1f}")
    print()
    print(f"throughput ratio kit/bare: {throughput_ratio:.2f}")
    print(f"capacity ratio kit/bare (server CPU per request): {capacity_ratio:.2f}  (target >= {TARGET_RATIO})")
    print(f"for reference, kit/echo (model included): throughput {rps['kit'] / rps['echo']:.2f}, "
          f"capacity {cpu['echo'] / cpu['kit']:.2f}")
    return 0 if min(throughput_ratio, capacity_ratio) >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
