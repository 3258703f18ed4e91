"""`caas-sim scenario list|run`: the catalogue of customer journeys, in virtual time."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .common import (
    EXIT_USAGE,
    CliError,
    _positive,
    check_url,
    output_file,
    render_table,
    report_folder,
)


def add_parser(commands, fmt) -> None:
    scenario = commands.add_parser("scenario", help="run the scenario catalogue (customer journeys with faults)",
                                   description="Customer journeys with faults, in virtual time: "
                                               "scenarios/catalogue/*.yaml.")
    actions = scenario.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the scenarios and what each proves")
    listing.add_argument("--catalogue", metavar="DIR", help="another folder of scenarios")
    listing.set_defaults(handler=cmd_list)
    keys = actions.add_parser("keys", help="the API keys the scenarios' actors use, as CAAS_API_KEYS JSON",
                              description="The API keys of every actor of the catalogue, as the JSON the core "
                                          "reads from CAAS_API_KEYS: start the core with them to run the "
                                          "catalogue with --target, e.g. "
                                          "`CAAS_API_KEYS=$(caas-sim scenario keys) caas-sim up --ephemeral`.")
    keys.add_argument("--catalogue", metavar="DIR", help="another folder of scenarios")
    keys.set_defaults(handler=cmd_keys)
    run = actions.add_parser("run", formatter_class=fmt, help="run scenarios, print the summary, write reports",
                             description="Run scenarios by name (or file), or --all. In-process by default: "
                                         "each scenario gets its own world (every simulator and the core, one "
                                         "virtual clock, a SQLite file), several at a time. With --target, "
                                         "against services started elsewhere (`caas-sim up`), one at a time.",
                             epilog="examples:\n"
                                    "  caas-sim scenario run --all --report build/scenarios --junit build/junit.xml\n"
                                    "  caas-sim scenario run activation-succeeds-on-the-third-attempt --seed 7\n"
                                    "  caas-sim scenario run --all --target default      # caas-sim up on its "
                                    "default ports\n"
                                    "  caas-sim scenario run --all --target core=http://127.0.0.1:9000,iot=http://"
                                    "127.0.0.1:8103,payments=http://127.0.0.1:8104,vss=http://127.0.0.1:8102 \\\n"
                                    "      --core-command 'node examples/node-core/core.mjs'   # your own core, started "
                                    "afresh for each\n\n"
                                    "A core without the optional admin routes (/__admin/health, clock, reset, audit) "
                                    "runs in the simulators' scaled or real time: docs/bring-your-own-core.md.")
    run.add_argument("names", nargs="*", metavar="NAME", help="scenario names or YAML files")
    run.add_argument("--all", action="store_true", help="every scenario of the catalogue")
    run.add_argument("--catalogue", metavar="DIR", help="another folder of scenarios")
    run.add_argument("--seed", type=int, default=None, help="override every scenario's seed")
    run.add_argument("--report", metavar="DIR", help="write DIR/report.md (Mermaid sequence diagrams)")
    run.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    run.add_argument("--jobs", "-j", type=_positive, default=None, help="scenarios at a time (default: CPU count)")
    run.add_argument("--target", action="append", default=[], metavar="NAME=URL|default",
                     help="run against services started elsewhere: core=URL, iot=URL, ... (repeatable, or "
                          "comma-separated); `default` is every service on its default port on 127.0.0.1")
    run.add_argument("--token", default=None, help="admin token of the --target services")
    run.add_argument("--max-wait", type=float, default=None, metavar="SECONDS",
                     help="with --target and a core that has no /__admin/clock (time then runs by itself, at the "
                          "simulators' rate): skip the scenarios that may wait longer than this in real time "
                          "(default 60)")
    run.add_argument("--core-command", metavar="CMD",
                     help="with --target: a shell command that starts the core at the core= URL; it is started "
                          "before the run and afresh for each scenario (for a core without /__admin/reset), "
                          "and stopped at the end")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    run.set_defaults(handler=cmd_run)


def _folder(args: argparse.Namespace) -> Path:
    """The catalogue's folder: ``--catalogue``, which must be one (a typo read as an empty
    catalogue said "0 scenarios"), else the shipped one."""
    from ..scenario.loader import CATALOGUE

    if args.catalogue is None:
        return Path(CATALOGUE)
    if not Path(args.catalogue).is_dir():
        raise CliError(f"--catalogue {args.catalogue}: no such directory", EXIT_USAGE)
    return Path(args.catalogue)


def _catalogue(args: argparse.Namespace) -> dict[str, Path]:
    from ..scenario.loader import catalogue

    return catalogue(_folder(args))


def _load_catalogue(args: argparse.Namespace) -> list:
    from ..scenario.loader import ScenarioError, load_catalogue

    try:
        return load_catalogue(_folder(args))
    except ScenarioError as exc:
        raise CliError(_problems(exc)) from None


def _problems(exc) -> str:
    """The loader's messages: those of a whole folder already name their file and line."""
    return "\n".join(message if line is None else f"{exc.path}:{line}: {message}" for line, message in exc.problems)


def cmd_list(args: argparse.Namespace) -> int:
    scenarios = _load_catalogue(args)
    print(render_table(["SCENARIO", "TAGS", "PROVES"], [[s.name, ",".join(s.tags), s.proves] for s in scenarios]))
    print(f"\n{len(scenarios)} scenarios")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    import json

    scenarios = _load_catalogue(args)
    keys = {actor.api_key(): {"role": actor.role, "subject": actor.subject}
            for scenario in scenarios for actor in scenario.world.actors.values()}
    print(json.dumps(dict(sorted(keys.items()))))
    return 0


def parse_targets(values: list[str]) -> dict[str, str]:
    from .. import stack as stack_mod
    from .common import CORE_PORT

    urls: dict[str, str] = {}
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            if item == "default":
                urls.update({name: f"http://127.0.0.1:{port}" for name, (_, port) in stack_mod.SERVICES.items()})
                urls["core"] = f"http://127.0.0.1:{CORE_PORT}"
                continue
            name, sep, url = item.partition("=")
            if not sep:
                raise CliError(f"--target {item!r}: expected NAME=URL (e.g. core=http://127.0.0.1:8000) or default",
                               EXIT_USAGE)
            if name != "core" and name not in stack_mod.SERVICES:
                raise CliError(f"--target {name}: unknown service (core, {', '.join(stack_mod.SERVICES)})",
                               EXIT_USAGE)
            if name in urls and urls[name] != url:
                raise CliError(f"--target {name}: given twice ({urls[name]} and {url})", EXIT_USAGE)
            try:
                check_url(url)
            except ValueError as exc:
                raise CliError(f"--target {name}: {exc}", EXIT_USAGE) from None
            urls[name] = url
    if urls and "core" not in urls:
        raise CliError("--target needs the core's URL too (core=http://...)", EXIT_USAGE)
    return urls


def cmd_run(args: argparse.Namespace) -> int:
    from ..scenario.loader import ScenarioError, load
    from ..scenario.suite import print_progress, run_against, run_files, wall_clock

    known = _catalogue(args)
    if args.all and args.names:
        raise CliError("--all or names, not both", EXIT_USAGE)
    if not args.all and not args.names:
        raise CliError("name scenarios or pass --all (`caas-sim scenario list` shows them)", EXIT_USAGE)
    paths = list(known.values()) if args.all else []
    for name in args.names:
        if name in known:
            paths.append(known[name])
        elif Path(name).is_file():
            paths.append(Path(name))
        else:
            raise CliError(f"no scenario {name!r} (`caas-sim scenario list` shows them)", EXIT_USAGE)
    try:
        for path in paths:  # every file valid before anything runs
            load(path)
    except ScenarioError as exc:
        raise CliError(_problems(exc), EXIT_USAGE) from None
    urls = parse_targets(args.target)
    check_outputs(args.report, args.junit)
    if args.max_wait is not None and (not urls or args.max_wait <= 0):
        raise CliError("--max-wait is a positive number of seconds, with --target", EXIT_USAGE)
    if args.core_command is not None and (not urls or not args.core_command.strip()):
        raise CliError("--core-command needs --target (its core= URL is where the core listens)", EXIT_USAGE)
    world = {"max_wait": args.max_wait, "core_command": args.core_command}
    progress = None if args.quiet else print_progress
    started = wall_clock()
    if urls:
        from caas_sim.simulators.client import AdminUnreachable

        from ..scenario.coordinator import CoreCommandError

        try:
            outcomes = asyncio.run(run_against(paths, urls, seed=args.seed, token=args.token, progress=progress,
                                               **{k: v for k, v in world.items() if v is not None}))
        except CoreCommandError as exc:
            raise CliError(str(exc)) from None
        except AdminUnreachable as exc:
            if exc.url != urls["core"].rstrip("/"):
                raise  # a simulator: `caas-sim up` starts it
            raise CliError(f"cannot reach the core at {exc.url} ({exc.reason}): start it first"
                           + ("" if args.core_command else ", or give --core-command to start it for each scenario")
                           ) from None
    else:
        outcomes = run_files(paths, seed=args.seed, jobs=args.jobs, progress=progress)
    wall = wall_clock() - started
    return finish(outcomes, wall, seed=args.seed, report_dir=args.report, junit_file=args.junit)


def check_outputs(report_dir: str | None, junit_file: str | None) -> None:
    """Fail now, not after the whole run, when a report could not be written."""
    if report_dir:
        report_folder(report_dir)
    if junit_file:
        output_file(junit_file, "--junit")


def finish(outcomes, wall: float, *, seed: int | None, report_dir: str | None, junit_file: str | None,
           out=None) -> int:
    """Print failures and the summary, write the reports; exit 1 when anything failed, or when
    every scenario was skipped (nothing was checked)."""
    from ..scenario import report

    out = out or sys.stdout
    for outcome in outcomes:
        if outcome.result != "passed":
            print("\n" + report.failure_text(outcome), file=out)
    print("\n" + report.summary(outcomes, wall), file=out)
    if report_dir:
        folder = Path(report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.md").write_text(report.markdown(outcomes, wall, seed), encoding="utf-8")
        print(f"report: {folder / 'report.md'}", file=out)
    if junit_file:
        report.junit(outcomes, junit_file)
        print(f"junit: {junit_file}", file=out)
    if outcomes and all(o.result == "skipped" for o in outcomes):
        print(f"caas-sim: every scenario was skipped ({len(outcomes)}): nothing was checked (the report says why "
              f"each was)", file=sys.stderr)
        return 1
    return 0 if all(o.passed for o in outcomes) else 1
