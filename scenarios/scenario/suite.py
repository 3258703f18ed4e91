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

from .coordinator import RemoteCoordinator
from .loader import load
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
    try:
        for path in paths:
            outcome = await run_remote(load(path), coordinator, seed)
            outcomes.append(outcome)
            if progress:
                progress(outcome, len(outcomes), len(paths))
    finally:
        await coordinator.close()
    return outcomes


def print_progress(outcome: Outcome, done: int, total: int, out=None) -> None:
    out = out or sys.stdout
    mark = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP", "xfail": "XFAIL", "xpass": "XPASS"}[outcome.result]
    print(f"[{done:>{len(str(total))}}/{total}] {mark:<5} {outcome.name} ({outcome.wall_seconds:.2f} s)",
          file=out, flush=True)


def wall_clock() -> float:
    return time.perf_counter()
