"""Run many scenarios: in parallel processes in-process (each its own world), or
one after the other against a shared ``--target`` world."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from caas_sim.simulators.client import AdminError, AdminUnreachable

from .coordinator import CoreCommandError, RemoteCoordinator
from .loader import load
from .model import Scenario
from .runner import Outcome, run_in_process, run_remote


def _run_file(path: str, seed: int | None) -> dict:
    """In a worker process: one scenario, its own stack and SQLite file."""
    outcome = asyncio.run(run_in_process(load(path), seed))
    return outcome.to_dict()


def run_files(paths: list[Path], *, seed: int | None = None, jobs: int | None = None,
              progress: Callable[[Outcome, int, int], None] | None = None) -> list[Outcome]:
    """Every scenario in its own world, ``jobs`` at a time; outcomes in the order given."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(paths)))
    results: dict[str, Outcome] = {}
    if jobs == 1:
        for path in paths:
            outcome = Outcome(**_run_file(str(path), seed))
            results[str(path)] = outcome
            if progress:
                progress(outcome, len(results), len(paths))
    else:
        # spawn: a fresh interpreter per worker, no event loop or socket inherited.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(_run_file, str(path), seed): str(path) for path in paths}
            for future in as_completed(futures):
                outcome = Outcome(**future.result())
                results[futures[future]] = outcome
                if progress:
                    progress(outcome, len(results), len(paths))
    return [results[str(p)] for p in paths]


async def run_against(paths: list[Path], urls: dict[str, str], *, seed: int | None = None, token: str | None = None,
                      progress: Callable[[Outcome, int, int], None] | None = None, **world: object) -> list[Outcome]:
    """Against services started elsewhere: one world, so one scenario at a time, reset in between
    (``world``: options of the ``RemoteCoordinator``, e.g. ``max_wait``)."""
    coordinator = await RemoteCoordinator(urls, token=token, **world).start()
    outcomes = []
    broken: str | None = None  # why the world stopped answering between scenarios
    try:
        for path in paths:
            scenario = load(path)
            if broken is None:
                try:
                    outcome = await run_remote(scenario, coordinator, seed)
                except (AdminError, AdminUnreachable, CoreCommandError) as exc:
                    # a service gone or refusing between scenarios: the rest cannot run, but
                    # what ran is still reported (summary, JUnit), and these as errors
                    broken = _why(exc)
                    outcome = _not_run(scenario, seed, f"the world could not be reset: {broken}")
            else:
                outcome = _not_run(scenario, seed, f"not run: {broken}")
            outcomes.append(outcome)
            if progress:
                progress(outcome, len(outcomes), len(paths))
    finally:
        await coordinator.close()
    return outcomes


def _why(exc: Exception) -> str:
    if isinstance(exc, AdminUnreachable):
        return f"cannot reach {exc.url} ({exc.reason})"
    if isinstance(exc, AdminError):
        return f"{exc.url} answered {exc}"
    return str(exc)


def _not_run(scenario: Scenario, seed: int | None, why: str) -> Outcome:
    return Outcome(scenario.name, scenario.proves, "error", failure=why, spec=scenario.spec,
                   seed=scenario.world.seed if seed is None else seed)


def print_progress(outcome: Outcome, done: int, total: int, out=None) -> None:
    out = out or sys.stdout
    mark = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP", "xfail": "XFAIL", "xpass": "XPASS"}[outcome.result]
    print(f"[{done:>{len(str(total))}}/{total}] {mark:<5} {outcome.name} ({outcome.wall_seconds:.2f} s)",
          file=out, flush=True)


def wall_clock() -> float:
    return time.perf_counter()
