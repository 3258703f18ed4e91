"""``caas-sim bench sim``: the simulator kit's cost on its hottest route.

``POST /ota/activate`` on the IoT simulator with the kit on (contract validation in and
out, fault matching with no rule, idempotency, journal, busy accounting) against a bare
aiohttp handler calling the same model; an ``echo`` handler (no model) is the floor. The
load comes from wrk when it is installed, otherwise from ``bench_client``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile

import orjson

from caas_sim.simulators.fleet import Fleet

from .bench_measure import (
    TARGETS,
    Comparison,
    Round,
    Servers,
    compare,
    load_round,
    post_maker,
    print_round,
)


def activation_bodies(count: int = 16) -> list[bytes]:
    fleet = Fleet(0)
    return [orjson.dumps({"vin": fleet.vin_at(i * 7919), "serviceId": "perf-boost",
                          "configuration": {"featureFlags": ["performance_boost"], "parameters": {"power_kw": 30}},
                          "duration": {"type": "PERMANENT"}}) for i in range(count)]


def wrk(url: str, path: str, duration: float, connections: int, bodies: list[bytes]) -> tuple[int, float, int]:
    """``(requests, seconds, errors)`` of wrk POSTing ``bodies`` in turn to ``url`` + ``path``."""
    lua = "bodies = {" + ",".join("[[" + b.decode() + "]]" for b in bodies) + "}\n" + f"""
i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "{path}", {{["Content-Type"] = "application/json"}}, bodies[i])
end
""" + """
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


def bench_sim(duration: float, connections: int, rounds: int) -> Comparison:
    use_wrk = shutil.which("wrk") is not None
    bodies = activation_bodies()
    print(f"sim: POST /ota/activate, kit vs bare vs echo, load from {'wrk' if use_wrk else 'bench_client'}")
    results: dict[str, list[Round]] = {"echo": [], "bare": [], "kit": []}
    for n in range(rounds):
        for kind, rounds_of_kind in results.items():
            with Servers(kind) as servers:
                if use_wrk:
                    wrk(servers.url, "/ota/activate", min(1.0, duration / 3), connections, bodies)
                    cpu0 = servers.cpu()
                    requests, seconds, errors = wrk(servers.url, "/ota/activate", duration, connections, bodies)
                    r = Round(kind, requests, seconds, servers.cpu() - cpu0, errors)
                else:
                    r = load_round(servers, lambda url: post_maker(url, "/ota/activate", bodies), duration,
                                   connections, {202}, kind)
            rounds_of_kind.append(r)
            print_round(n, r)
    comparison = compare("IoT activation", results, "kit", "bare", TARGETS["sim"])
    comparison.notes.append(f"kit/echo (model included): throughput "
                            f"{comparison.subject_rps / statistics.median(r.rps for r in results['echo']):.2f}")
    return comparison
