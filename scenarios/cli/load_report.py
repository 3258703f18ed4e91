"""The figures of a ``caas-sim load`` run: tables, SLO verdicts, the report files, and
``caas-sim load compare``.

HTTP request latencies (wall clock, measured by locust) and business metrics (each on its
own clock: the core's, the simulator's, the wall) are kept apart, each with its unit. The
report folder gets, beside locust's own HTML report and CSVs:

- ``summary.json``: everything below, what ``load compare`` reads;
- ``figures.csv``: one figure per line (section, name, statistic, value, unit, clock);
- ``summary.md``: throughput, latencies, SLO verdicts, the audit, the machine and the
  command, to attach to a ticket.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import CliError, render_table

#: The statistics compared run to run, and which way is better.
_BETTER = {"rps": "higher", "error_ratio": "lower", "p50_ms": "lower", "p95_ms": "lower", "p99_ms": "lower"}
_SUMMARY = "summary.json"


@dataclass
class Slo:
    name: str
    target: str
    measured: str
    met: bool


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (0 of nothing)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def metric_row(name: str, clock: str, values_ms: list[float], failures: int) -> dict[str, Any]:
    """A business metric computed here (not by locust), in the shape of locust's rows."""
    return {"name": name, "clock": clock, "requests": len(values_ms) + failures, "failures": failures,
            "p50_ms": percentile(values_ms, 0.5), "p95_ms": percentile(values_ms, 0.95),
            "p99_ms": percentile(values_ms, 0.99), "max_ms": max(values_ms, default=0.0)}


def error_ratio(row: dict) -> float:
    return row["failures"] / row["requests"] if row["requests"] else 0.0


def judge(summary: dict, *, p95_ms: float | None, error_ratio_max: float,
          metric_p95: dict[str, float]) -> list[Slo]:
    """One verdict per SLO: the HTTP error ratio and p95 of every request, each business
    metric's failure ratio, and the p95 bounds given per metric (milliseconds)."""
    total = summary["httpTotal"]
    slos = []
    if total["requests"]:
        slos.append(Slo("HTTP error ratio", f"<= {error_ratio_max:g}", f"{error_ratio(total):.4f}",
                        error_ratio(total) <= error_ratio_max))
    else:
        slos.append(Slo("HTTP requests made", "> 0", "0", False))
    if p95_ms is not None:
        slos += [Slo(f"p95 of {row['name']}", f"<= {p95_ms:g} ms", f"{row['p95_ms']:.0f} ms", row["p95_ms"] <= p95_ms)
                 for row in summary["http"] if row["requests"]]
    for row in summary["metrics"]:
        if row["requests"]:
            slos.append(Slo(f"failure ratio of {row['name']}", f"<= {error_ratio_max:g}", f"{error_ratio(row):.4f}",
                            error_ratio(row) <= error_ratio_max))
    for name, cut in summary.get("unfinished", {}).items():  # awaited, never measured: not a pass
        if not any(r["name"] == name and r["requests"] for r in summary["metrics"]):
            slos.append(Slo(f"{name} measured", "> 0", f"0 ({cut} still awaited at the end)", False))
    for name, bound in metric_p95.items():
        row = next((r for r in summary["metrics"] if r["name"] == name and r["requests"] > r["failures"]), None)
        measured = row["p95_ms"] if row else None
        slos.append(Slo(f"p95 of {name}", f"<= {_duration(bound)}",
                        "not measured" if measured is None else _duration(measured),
                        measured is not None and measured <= bound))
    return slos


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _http(summary: dict) -> tuple[list[str], list[list[str]]]:
    rows = [[r["method"], r["name"], str(r["requests"]), str(r["failures"]), f"{r['rps']:.1f}",
             f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}"]
            for r in [*summary["http"], {**summary["httpTotal"], "method": ""}]]
    return ["METHOD", "NAME", "REQUESTS", "FAILURES", "REQ/S", "P50 ms", "P95 ms", "P99 ms"], rows


def _metrics(summary: dict) -> tuple[list[str], list[list[str]]]:
    rows = [[r["name"], r["clock"], str(r["requests"]), str(r["failures"]), _duration(r["p50_ms"]),
             _duration(r["p95_ms"]), _duration(r["p99_ms"])] for r in summary["metrics"]]
    return ["METRIC", "CLOCK", "COUNT", "FAILED", "P50", "P95", "P99"], rows


def _slos(slos: list[Slo]) -> tuple[list[str], list[list[str]]]:
    return ["SLO", "TARGET", "MEASURED", "VERDICT"], [[s.name, s.target, s.measured, "met" if s.met else "MISSED"]
                                                      for s in slos]


def http_table(summary: dict) -> str:
    return render_table(*_http(summary))


def metrics_table(summary: dict) -> str:
    return render_table(*_metrics(summary))


def slo_table(slos: list[Slo]) -> str:
    return render_table(*_slos(slos))


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"host": platform.node(), "system": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "loadAverage": [round(x, 2) for x in load],
            "at": datetime.now(UTC).isoformat(timespec="seconds")}


def figures(summary: dict) -> list[dict[str, Any]]:
    """Every figure of a summary, one per line: what figures.csv holds and compare joins on."""
    out = []
    for section, rows in (("http", [*summary["http"], summary["httpTotal"]]), ("metric", summary["metrics"])):
        for row in rows:
            clock = row.get("clock", "wall")
            out.append({"section": section, "name": row["name"], "stat": "error_ratio",
                        "value": round(error_ratio(row), 6), "unit": "", "clock": clock})
            if section == "http":
                out.append({"section": section, "name": row["name"], "stat": "rps", "value": row["rps"],
                            "unit": "1/s", "clock": "wall"})
            out += [{"section": section, "name": row["name"], "stat": stat, "value": row[stat], "unit": "ms",
                     "clock": clock} for stat in ("p50_ms", "p95_ms", "p99_ms")]
    out += [{"section": "count", "name": name, "stat": "count", "value": value, "unit": "", "clock": ""}
            for name, value in summary.get("counts", {}).items()]
    return out


def write(report: Path, summary: dict) -> None:
    (report / _SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    with (report / "figures.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["section", "name", "stat", "value", "unit", "clock"])
        writer.writeheader()
        writer.writerows(figures(summary))
    (report / "summary.md").write_text(markdown(summary))


def markdown(summary: dict) -> str:
    run, box = summary["run"], summary["machine"]
    lines = [f"# caas-sim load {run['kind']}: {'passed' if summary['passed'] else 'FAILED'}", "",
             f"- target: {run['target']}" + (f" (started here: {run['started']})" if run.get("started") else ""),
             (f"- {run['users']} users, {run['seconds']:g} s asked, {summary.get('seconds') or 0:g} s run, "
             f"{run['processes']} locust process(es)"),
             (f"- machine: {box['host']}, {box['cpus']} CPUs, {box['system']}, Python {box['python']}, "
             f"load average {' '.join(str(x) for x in box['loadAverage'])}, {box['at']}"),
             f"- command: `{run['command']}`", ""]
    if summary.get("aborted"):
        lines += [f"**Stopped early:** {summary['aborted']}", ""]
    lines += ["## HTTP requests (wall clock)", "", _md(*_http(summary)), ""]
    if summary["metrics"]:
        lines += ["## Business metrics (each on its clock)", "", _md(*_metrics(summary)), ""]
    if summary.get("counts"):
        lines += ["## Counts", "", *(f"- {name}: {value}" for name, value in summary["counts"].items()), ""]
    lines += ["## SLOs", "", _md(*_slos([Slo(**s) for s in summary["slos"]])), ""]
    lines += ["## Audit", "", *(f"{note}." for note in summary.get("notes", [])), *(["```", summary["auditText"], "```"] if summary.get("auditText") else ["not run"]), ""]
    if summary.get("errors"):
        lines += ["## Most frequent errors", "", *(f"- {e['count']} x {e['error']}" for e in summary["errors"]), ""]
    if summary.get("target"):
        lines += ["## Target description (secrets not shown)", "", "```json",
                  json.dumps(summary["target"], indent=2), "```", ""]
    return "\n".join(lines)


def _md(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
                      *("| " + " | ".join(row) + " |" for row in rows)])


# --- compare ---------------------------------------------------------------------------
def read(path: str) -> dict:
    p = Path(path)
    p = p / _SUMMARY if p.is_dir() else p
    try:
        return json.loads(p.read_text())
    except OSError as exc:
        raise CliError(f"no load report at {path}: {exc.strerror} (a folder `caas-sim load --report` wrote, "
                       f"or its {_SUMMARY})") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{p} is not a load report: {exc}") from None


def compare(a: dict, b: dict, threshold: float) -> tuple[str, list[str]]:
    """The table of differences from run A to run B, and the figures worse by more than
    ``threshold`` (a fraction)."""
    before = {(f["section"], f["name"], f["stat"]): f for f in figures(a)}
    rows, worse = [], []
    for figure in figures(b):
        key = (figure["section"], figure["name"], figure["stat"])
        old = before.get(key)
        better = _BETTER.get(figure["stat"])
        if old is None or better is None:
            continue
        x, y = float(old["value"]), float(figure["value"])
        change = (y - x) / x if x else (0.0 if y == x else float("inf"))
        gain = -change if better == "lower" else change
        regressed, improved = gain < -threshold, gain > threshold
        if figure["stat"] == "error_ratio":  # ratios of almost nothing: judge the absolute change
            regressed, improved = y - x > max(threshold * x, 0.001), x - y > max(threshold * x, 0.001)
        label = f"{figure['name']} {figure['stat'].removesuffix('_ms')}" + (
            f" ({figure['clock']})" if figure["section"] == "metric" else "")
        verdict = "WORSE" if regressed else ("better" if improved else "")
        if regressed:
            worse.append(label)
        rows.append([label, _value(x, figure), _value(y, figure), _change(change), verdict])
    table = render_table(["FIGURE", "A", "B", "CHANGE", ""], rows)
    return table, worse


def _value(value: float, figure: dict) -> str:
    if figure["stat"] == "error_ratio":
        return f"{value:.4f}"
    return f"{value:.1f}" if figure["unit"] == "1/s" else _duration(value)


def _change(change: float) -> str:
    return "new" if change == float("inf") else f"{change:+.1%}"
