"""``make demo``: the whole scenario catalogue, in virtual time, with its report.

Every scenario of ``scenarios/catalogue/`` runs in a world of its own (the
reference core and the simulators in one process on one virtual clock, a
throwaway SQLite file), several at a time; the demo prints a line per
scenario as it ends, then the failures with the journal around them, the
summary table (virtual time covered, wall time) and where the Markdown report
(a Mermaid sequence diagram per journey) and the JUnit XML were written.
"""

from __future__ import annotations

import time
from pathlib import Path

from .cli.scenario import check_outputs, finish
from .scenario.loader import CATALOGUE, catalogue, load_catalogue
from .scenario.suite import print_progress, run_files

REPORT_DIR = Path("build/scenarios")


def main(seed: int | None = None, report_dir: str | Path = REPORT_DIR, jobs: int | None = None,
         folder: str | Path = CATALOGUE) -> int:
    scenarios = load_catalogue(folder)  # every file valid before anything runs
    check_outputs(str(report_dir), str(Path(report_dir) / "junit.xml"))  # writable before anything runs
    print(f"CaaS demo: {len(scenarios)} customer journeys from {folder}, each in its own world, "
          f"in virtual time{f' (seed {seed})' if seed is not None else ''}\n", flush=True)
    started = time.perf_counter()
    outcomes = run_files(list(catalogue(folder).values()), seed=seed, jobs=jobs, progress=print_progress)
    wall = time.perf_counter() - started
    return finish(outcomes, wall, seed=seed, report_dir=str(report_dir),
                  junit_file=str(Path(report_dir) / "junit.xml"))


if __name__ == "__main__":
    raise SystemExit(main())
