"""``caas-sim bench sim``: every simulator's main operations against bare aiohttp.

Each operation runs on its simulator as it ships (contract validation in and out, fault
matching with no rule, idempotency, journal, metrics, busy accounting, the model) and is
judged against an ``echo`` handler measured in the same run (parse the body, answer a
fixed 202 JSON: aiohttp itself), target 0.7. The IoT activation is also measured on a
``bare`` handler calling the same model without the kit (the model's own cost, reported),
and on the kit around a model answering one fixed acceptance (the kit's own cost, reported),
and the echo is measured doing only the pieces the target requires of every request (the
activation's contract check in and out, one journal entry: their floor, reported).

Then each operation is loaded at a fixed rate, half its measured capacity, and its
p50/p99 latency printed (target p99 <= 10 ms), on a simulator that first answered
``held`` requests of it (20,000 by default): a simulator whose garbage collector walks
what it keeps, or whose queue stalls, shows it there, not in throughput. ``--memory`` (``bench_memory``) prints
the bytes each touched vehicle costs.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from caas_sim import catalogue
from caas_sim.simulators.fleet import Fleet

from . import bench_client, bench_instructions
from .bench_measure import (
    TARGETS,
    Comparison,
    Round,
    Servers,
    compare,
    load_round,
    print_round,
)
from .bench_paced import paced_blocking
from .bench_wiremock import WARM_UP, WireMock, contract_of, stub

#: p99 at half capacity, milliseconds.
P99_TARGET_MS = 10.0
#: Requests a simulator answers before its latency is measured: what it keeps then grows
#: what a full collection has to walk, if it walks it.
HELD = 20_000


@dataclass(frozen=True)
class Operation:
    name: str  # the summary's line
    service: str  # catalogue name
    method: str
    #: n -> (path, body): the n-th request (distinct VINs where the simulator refuses repeats)
    request: Callable[[int], tuple[str, bytes]]
    expected: frozenset[int]


def activation_bodies(count: int = 16) -> list[bytes]:
    fleet = Fleet(0)
    return [orjson.dumps({"vin": fleet.vin_at(i * 7919), "serviceId": "perf-boost",
                          "configuration": {"featureFlags": ["performance_boost"], "parameters": {"power_kw": 30}},
                          "duration": {"type": "PERMANENT"}}) for i in range(count)]


def _example(service: str, path: str, name: str) -> dict:
    contract = contract_of(service)
    body = contract._resolve(contract.doc["paths"][path]["post"]["requestBody"])
    return body["content"]["application/json"]["examples"][name]["value"]


def _vin_in(value) -> str | None:
    if isinstance(value, dict):
        if isinstance(value.get("vin"), str):
            return value["vin"]
        return next((v for v in map(_vin_in, value.values()) if v), None)
    return None


def operations() -> list[Operation]:
    fleet = Fleet(0)
    vins = [fleet.vin_at(i * 7919) for i in range(16)]
    activations = activation_bodies()
    ops = [
        Operation("iot activate", "iot", "POST", lambda n: ("/ota/activate", activations[n % 16]), frozenset({202})),
        Operation("iot status", "iot", "GET", lambda n: (f"/vehicles/{vins[n % 16]}/status", b""), frozenset({200})),
        Operation("vss history", "vss", "GET",
                  lambda n: (f"/vehicles/{vins[n % 16]}/maintenance-status", b""), frozenset({200})),
    ]
    payment = orjson.dumps(_example("payments", "/payments/initiate", "service"))
    ops.append(Operation("payments initiate", "payments", "POST", lambda n: ("/payments/initiate", payment),
                         frozenset({201})))
    order = orjson.dumps(_example("factory", "/orders", "zephyr"))
    ops.append(Operation("factory order", "factory", "POST", lambda n: ("/orders", order), frozenset({201})))
    for registry in catalogue.REGISTRY_COUNTRIES.values():  # every country's: their contracts share the API
        example = _example(registry.name, "/registrations", "approved")
        template, vin = orjson.dumps(example), _vin_in(example).encode()
        # a registry refuses a second registration of a vehicle: one VIN per request
        ops.append(Operation(f"{registry.name} submit", registry.name, "POST",
                             lambda n, t=template, v=vin: ("/registrations", t.replace(v, fleet.vin_at(n).encode())),
                             frozenset({201, 202})))
    return ops


def _instructions(baselines: dict[str, tuple[str, Operation]], ops: list[Operation]) -> dict[str, float]:
    """Instructions per request of each baseline and operation, by name (one server at a time)."""
    print(f"instructions per request (valgrind's callgrind, user space, {bench_instructions.REQUESTS:,} requests "
          f"after {bench_instructions.WARM_UP} answered; each server some fifty times slower):")
    servers = [(name, kind, (), op, set(op.expected) | {202}) for name, (kind, op) in baselines.items()]
    servers += [(op.name, "kit", ("--sim", op.service), op, set(op.expected)) for op in ops]
    counted = {}
    for name, kind, args, op, expected in servers:
        counted[name] = bench_instructions.per_request(kind, args, _maker(op), expected)
        print(f"  {name:<20}: {counted[name]:10,.0f}", flush=True)
    return counted


def _wiremock(jar: str, ops: list[Operation], connections: int) -> WireMock:
    mock = WireMock(jar, [stub(contract_of(op.service), op.method, op.request(0)[0], op.expected) for op in ops])
    print(f"  wiremock: {len(ops)} stubs from the contracts, warming its JVM up for {WARM_UP:g} s")
    mock.warm_up([_maker(op)(mock.url) for op in ops], connections)
    return mock


def _maker(op: Operation) -> Callable[[str], bench_client.RequestMaker]:
    def make(url: str) -> bench_client.RequestMaker:
        host = url.split("//", 1)[1]
        sent = itertools.count()  # across the warm-up and the load: a VIN is never sent twice

        def request(_: int) -> bytes:
            path, body = op.request(next(sent))
            return bench_client.http_request(op.method, host, path, body)

        return request

    return make


def bench_sim(duration: float, connections: int, rounds: int, only: str | None = None,
              wiremock: str | None = None, held: int = HELD, instructions: bool = False) -> list[Comparison]:
    """``wiremock``: a WireMock standalone jar; each operation is then also answered by
    WireMock from the same contract (``bench_wiremock``), reported under its line.
    ``held``: requests each simulator answers before its latency is measured.
    ``instructions``: each line also counted in instructions per request (``bench_instructions``)."""
    everything = operations()
    ops = [op for op in everything if only is None or only in op.name]
    print(f"sim: {len(ops)} operations, kit vs echo (and the IoT model without the kit)"
          f"{' and vs WireMock' if wiremock else ''}, load from bench_client")
    # The floor of a POST is the echo of the IoT activation's body; of a GET, of its status read.
    activation, status = everything[0], everything[1]
    baselines = {"echo": ("echo", activation), "echo GET": ("echo", status), "bare": ("bare", activation),
                 "kit alone": ("kit-alone", activation), "checked echo": ("checked-echo", activation)}
    results: dict[str, list[Round]] = {**{name: [] for name in baselines}, **{op.name: [] for op in ops}}
    with _wiremock(wiremock, ops, connections) if wiremock else contextlib.nullcontext() as mock:
        for n in range(rounds):
            # alternating: the baselines and every operation in each round, so that the
            # machine's other load falls on all of them alike
            for name, (kind, op) in baselines.items():
                with Servers(kind) as servers:
                    results[name].append(load_round(servers, _maker(op), duration, connections,
                                                    set(op.expected) | {202}, name))
                print_round(n, results[name][-1])
            for op in ops:
                with Servers("kit", "--sim", op.service) as servers:
                    results[op.name].append(load_round(servers, _maker(op), duration, connections,
                                                       set(op.expected), op.name))
                print_round(n, results[op.name][-1])
                if mock is not None:
                    mock.clear_journal()  # its journal has no bound that costs nothing (bench_wiremock)
                    results.setdefault(f"{op.name} wm", []).append(
                        load_round(mock, _maker(op), duration, connections, set(op.expected), "wiremock"))
                    print_round(n, results[f"{op.name} wm"][-1])
    comparisons, against_wiremock = [], {}
    for op in ops:
        echo = "echo GET" if op.method == "GET" else "echo"
        comparison = compare(op.name, {echo: results[echo], op.name: results[op.name]}, op.name, echo,
                             TARGETS["sim"])
        comparison.subject = "kit"
        comparisons.append(comparison)
        if wiremock:  # reported: the issue states its target against the echo
            against_wiremock[op.name] = compare("  vs WireMock", {"wiremock": results[f"{op.name} wm"],
                                                                   "kit": results[op.name]}, "kit", "wiremock", None)
    bare = compare("iot model only", {"echo": results["echo"], "bare": results["bare"]}, "bare", "echo", None)
    # the two halves of a simulator's cost, each alone against the echo
    kit_alone = compare("iot kit only", {"echo": results["echo"], "kit alone": results["kit alone"]}, "kit alone",
                        "echo", None)
    kit_alone.notes.append("the kit's pipeline around a model that answers one fixed acceptance; the line above: "
                           "the model in a bare handler, without the kit")
    floor = compare("iot required pieces", {"echo": results["echo"], "checked echo": results["checked echo"]},
                    "checked echo", "echo", None)
    floor.notes.append("the echo plus only what the target requires of every request: the contract check in and "
                       "out and one journal entry (no model, faults, idempotency or metrics)")
    per_operation = list(comparisons)
    comparisons[1:1] = [bare, kit_alone, floor]
    print(f"latency at a fixed rate, half of each operation's measured capacity, after {held:,} requests "
          "of it answered (what the simulator keeps):")
    for op, comparison in zip(ops, per_operation, strict=True):
        # Capacity: the closed-loop rate, or one CPU's worth of the server's CPU per request when
        # that is lower (on a shared machine the closed loop overstates what the server sustains).
        rounds_of_op = results[op.name]
        capacity = min(statistics.median(r.rps for r in rounds_of_op),
                       1e6 / statistics.median(r.cpu_us_per_request for r in rounds_of_op))
        rate = max(50.0, capacity / 2)
        with Servers("kit", "--sim", op.service) as servers:
            maker = _maker(op)(servers.url)
            bench_client.run_blocking(servers.url, maker, duration=600.0, connections=connections,
                                      total=max(held, 1))
            server_cpu = servers.cpu()
            latencies = paced_blocking(servers.url, maker, rate=rate, duration=duration)
            server_cpu = servers.cpu() - server_cpu
        errors = latencies.errors(set(op.expected))
        met = latencies.p99_ms <= P99_TARGET_MS and not errors
        # CPU per request of each side at this pace: a generator near a whole CPU's worth
        # would be measuring itself
        sent = max(1, len(latencies.samples))
        print(f"  {op.name:<20}: {rate:7.0f} req/s  p50 {latencies.p50_ms:6.2f} ms  p99 {latencies.p99_ms:7.2f} ms  "
              f"errors {errors}  {'ok' if met else 'MISSED'}  (CPU per request: server "
              f"{server_cpu / sent * 1e6:.0f} µs, load generator {latencies.generator_cpu / sent * 1e6:.0f} µs)",
              flush=True)
        comparison.notes.append(f"at {rate:.0f} req/s (half capacity): p50 {latencies.p50_ms:.2f} ms, "
                                f"p99 {latencies.p99_ms:.2f} ms (target <= {P99_TARGET_MS:g} ms)"
                                + ("" if met else ": MISSED"))
        comparison.latency_met = met
    if instructions:
        counted = _instructions(baselines, ops)
        for comparison in comparisons:  # an operation's line is its name; a baseline's, its subject
            name, echo = comparison.name if comparison.subject == "kit" else comparison.subject, comparison.baseline
            comparison.notes.append(f"instructions per request: {counted[name]:,.0f}, "
                                    f"{counted[echo] / counted[name]:.2f} of the {echo}'s {counted[echo]:,.0f}")
    if against_wiremock:  # each under its operation's line
        comparisons = [line for c in comparisons for line in (c, against_wiremock.get(c.name)) if line is not None]
        against_wiremock[ops[0].name].notes.append(
            "the same operation answered by WireMock from the same contract (bench_wiremock: request schema and "
            "path matched, answer templated, journal on; one CPU, warmed up, its journal cleared per operation)")
    return comparisons
