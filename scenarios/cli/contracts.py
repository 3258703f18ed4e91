"""`caas-sim contracts`: the OpenAPI contracts this installation carries, to list, print or
export (a team feeds them to its own OpenAPI tools, or fuzzes its core with them)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

from caas_sim import catalogue

from .common import CliError, render_table

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def add_parser(commands) -> None:
    contracts = commands.add_parser(
        "contracts", help="list, print or export the OpenAPI contracts",
        description="Without NAME: every contract, its title and version and which services serve it. "
                    "With NAME (e.g. iot or iot.yaml): that contract's YAML on stdout. --export DIR: every "
                    "contract into DIR, with the schemathesis configuration.")
    contracts.add_argument("name", nargs="?", metavar="NAME", help="print this contract")
    contracts.add_argument("--export", metavar="DIR", type=Path, help="copy every contract into DIR (created)")
    contracts.set_defaults(handler=cmd_contracts)


def cmd_contracts(args: argparse.Namespace) -> int:
    files = sorted(catalogue.CONTRACTS_DIR.glob("*.yaml"))
    if not files:
        raise CliError(f"no contract found in {catalogue.CONTRACTS_DIR}: the installation is incomplete")
    if args.export is not None:
        return _export(files, args.export)
    if args.name:
        wanted = args.name if args.name.endswith(".yaml") else f"{args.name}.yaml"
        path = catalogue.CONTRACTS_DIR / wanted
        if not path.is_file():
            raise CliError(f"no contract {args.name!r}; known: {', '.join(f.stem for f in files)}")
        sys.stdout.write(path.read_text())
        return 0
    rows = []
    for path in files:
        info = yaml.load(path.read_text(), Loader=_Loader).get("info", {})
        rows.append([path.stem, str(info.get("title", "")), str(info.get("version", "")), _served_by(path.name)])
    print(render_table(["NAME", "TITLE", "VERSION", "SERVED BY"], rows))
    print(f"\nfiles: {catalogue.CONTRACTS_DIR}")
    return 0


def _served_by(file: str) -> str:
    if file == catalogue.CORE_CONTRACT:
        return "a CaaS core"
    if file == catalogue.ADMIN_CONTRACT:
        return "every service (admin protocol)"
    return ", ".join(e.name for e in catalogue.SERVICES if file in e.contracts)


def _export(files: list[Path], folder: Path) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, folder / path.name)
        if catalogue.SCHEMATHESIS_CONFIG.is_file():  # so that `schemathesis run` there needs no flag
            shutil.copyfile(catalogue.SCHEMATHESIS_CONFIG, folder / catalogue.SCHEMATHESIS_CONFIG.name)
    except OSError as exc:
        raise CliError(f"cannot export to {folder}: {exc.strerror or exc}") from None
    print(f"{len(files)} contracts written to {folder}")
    return 0
