"""WireMock beside the simulators in ``caas-sim bench sim --wiremock JAR``.

The simulators' target (0.7 of a bare echo) came from WireMock answering a fixed stub. A
simulator does more per request than that: it checks the request against its contract,
builds its answer from the request, journals the exchange. So each operation is also
answered by a WireMock standalone server (``java -jar JAR``, 3.x) doing what WireMock can
of that work, from the same contract:

- the request matched on its method and path template, each path parameter on its
  schema's pattern, and a JSON body on the operation's request schema (``matchesJsonSchema``);
- the answer the contract's example for the operation's status, through WireMock's
  response templating, with a fresh id and the time in its headers;
- the request journal on, as WireMock ships. It has no bound that costs nothing (its own,
  ``--max-request-journal-entries 10000``, took over ten times the CPU per request here),
  and unbounded it slows every later request down, so it is cleared before each round.

What it leaves out of the simulator's work: the answer's own contract check, fault rules,
idempotency and a model. One JVM serves every operation for the whole run, on one CPU as
a simulator is one Python thread, warmed up first (its JIT compiles under load).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Self

from caas_sim import catalogue
from caas_sim.simulators.kit.contract import Contract
from caas_sim.simulators.kit.contract import load as load_contract

from . import bench_client
from .bench_measure import cpu_seconds, free_port
from .listening import wait_listening

#: Seconds of load before a JVM's figures hold still: its JIT compiles under load for minutes
#: (the iot activation took 295, 212, then 197 µs per request in three rounds after 180 s).
WARM_UP = 120.0
#: Headers WireMock renders per answer, as a simulator sets an id and a date per answer.
_TEMPLATED_HEADERS = {"X-Request-Id": "{{randomValue length=20 type='ALPHANUMERIC'}}",
                      "Date": "{{now format='EEE, dd MMM yyyy HH:mm:ss z' timezone='GMT'}}"}


def stub(contract: Contract, method: str, path: str, statuses: set[int] | frozenset[int]) -> dict:
    """The WireMock mapping answering ``method path`` (a concrete path) as ``contract``'s
    operation would be checked (path template, path parameters, JSON body schema), with the
    first of ``statuses`` that the operation declares."""
    template, spec, shared = _operation(contract, method, path)
    request: dict = {"method": method, "urlPathTemplate": template}
    patterns = {}
    for raw in [*shared, *spec.get("parameters", [])]:
        param = contract._resolve(raw)
        pattern = contract._deref(param.get("schema", {})).get("pattern")
        if param["in"] == "path" and pattern:
            patterns[param["name"]] = {"matches": pattern}
    if patterns:
        request["pathParameters"] = patterns
    body = contract._resolve(spec["requestBody"])["content"]["application/json"] if "requestBody" in spec else None
    if body is not None:
        request["headers"] = {"Content-Type": {"equalTo": "application/json"}}
        request["bodyPatterns"] = [{"matchesJsonSchema": json.dumps(contract._deref(body["schema"])),
                                    "schemaVersion": "V202012"}]
    status = min(s for s in statuses if str(s) in spec["responses"])
    answer = contract._resolve(spec["responses"][str(status)])
    return {"request": request,
            "response": {"status": status, "transformers": ["response-template"],
                         "headers": {"Content-Type": "application/json", **_TEMPLATED_HEADERS},
                         "body": json.dumps(_example(contract, answer))}}


def _operation(contract: Contract, method: str, path: str) -> tuple[str, dict, list]:
    for template, item in contract.doc["paths"].items():
        if method.lower() in item and re.fullmatch(re.sub(r"\{[^}/]+\}", "[^/]+", template), path):
            return template, item[method.lower()], item.get("parameters", [])
    raise ValueError(f"{contract.name}: no operation answers {method} {path}")


def _example(contract: Contract, answer: dict):
    media = (answer.get("content") or {}).get("application/json", {})
    if "example" in media:
        return media["example"]
    examples = media.get("examples") or {}
    if examples:
        return contract._resolve(next(iter(examples.values())))["value"]
    return _instance(contract._deref(media.get("schema", {})))


def _instance(schema: dict):
    """A value of ``schema`` built from its examples (every property), for an answer the
    contract gives no example of."""
    if "examples" in schema:
        return schema["examples"][0]
    if "const" in schema or "enum" in schema:
        return schema.get("const", (schema.get("enum") or [None])[0])
    for combined in ("oneOf", "anyOf", "allOf"):
        if schema.get(combined) and "type" not in schema:
            return _instance(schema[combined][0])
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        return {name: _instance(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_instance(schema.get("items") or {})]
    return {"string": "x", "integer": 0, "number": 0, "boolean": False}.get(kind)


def _one_cpu() -> list[str]:
    """``taskset`` putting the JVM on one CPU, as every simulator is one Python thread: its
    collector and compiler threads then share that CPU instead of adding another's to its
    figures (nothing where taskset is missing)."""
    return ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if shutil.which("taskset") else []


class WireMock:
    """One WireMock standalone server answering ``mappings``: the bench's ``Servers``
    interface (``url``, ``cpu()``, a context manager)."""

    def __init__(self, jar: str, mappings: list[dict]) -> None:
        if shutil.which("java") is None:
            raise SystemExit("bench sim --wiremock: no java on PATH (WireMock runs on a JVM, 11 or newer)")
        if not Path(jar).is_file():
            raise SystemExit(f"bench sim --wiremock: {jar} is not a file (wiremock-standalone-3.x.jar)")
        self.root = Path(tempfile.mkdtemp(prefix="caas-bench-wiremock-"))
        (self.root / "mappings").mkdir()
        for n, mapping in enumerate(mappings):
            (self.root / "mappings" / f"{n:02d}.json").write_text(json.dumps(mapping))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs = [subprocess.Popen([*_one_cpu(), "java", "-jar", jar, "--port", str(self.port), "--root-dir", str(self.root),
                                        "--disable-banner", "--use-chunked-encoding", "never"],
                                       stdout=subprocess.DEVNULL,
                                       stderr=(self.root / "wiremock.log").open("wb"))]
        try:
            wait_listening(self.procs, self.port, what="wiremock", timeout=60)
        except RuntimeError as exc:
            log = (self.root / "wiremock.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise SystemExit(f"bench sim --wiremock: {exc}\n{log}") from None
        except BaseException:
            self.stop()
            raise

    def cpu(self) -> float:
        return cpu_seconds(self.procs[0].pid)

    def warm_up(self, makers: list[bench_client.RequestMaker], connections: int, seconds: float = WARM_UP) -> None:
        """Load the operations in turn, twice over ``seconds`` in all, until the JIT has
        compiled what they run."""
        each = max(1.0, seconds / (2 * len(makers)))
        for _ in range(2):
            for make in makers:
                bench_client.run_blocking(self.url, make, duration=each, connections=connections)

    def clear_journal(self) -> None:
        """Forget the requests journaled so far (WireMock's admin API): a journal that only
        grows slows every later request down (its collector walks it)."""
        request = urllib.request.Request(f"{self.url}/__admin/requests", method="DELETE")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def contract_of(service: str) -> Contract:
    return load_contract(catalogue.BY_NAME[service].contract)

