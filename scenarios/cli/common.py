"""What every caas-sim command shares: errors, constants, argument types, tables."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
import yarl

from caas_sim import catalogue
from caas_sim.simulators.client import load_fault_profile
from caas_sim.simulators.kit.durations import parse_duration

from .. import stack as stack_mod
from . import state

EXIT_FAILURE, EXIT_USAGE = 1, 2
CORE_PORT = catalogue.CORE_PORT
TOKEN_ENV = "CAAS_SIM_ADMIN_TOKEN"
LOCALHOST = "127.0.0.1"
UP_HINT = "start the simulators with `caas-sim up`"
STATE_DEFAULT = f"${state.STATE_ENV}, $XDG_RUNTIME_DIR/caas-sim/up.json or ~/.cache/caas-sim/up.json"


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse would print the whole usage block; one line says enough.
        raise CliError(f"{message} (see `{self.prog} --help`)", EXIT_USAGE)


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"caas-sim: error: {message}", file=sys.stderr)
    return code


def _checked(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type: the value as given, once ``check`` (a ValueError says why not) passed."""
    def parse(value: str) -> str:
        try:
            check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value
    return parse


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value!r} (0-65535; 0 picks a free one)")
    return int(value)


def check_url(value: str) -> None:
    """Raise ValueError unless ``value`` is an http(s) base URL with a host and a TCP port (and
    no query or fragment: paths are added to it, and every request would carry them)."""
    try:
        url = yarl.URL(value)
        ok = url.scheme in ("http", "https") and bool(url.host) and 0 <= (url.port or 0) <= 65535 \
            and not url.query_string and not url.fragment and "?" not in value and "#" not in value
    except ValueError:  # yarl: a port out of range, a bracket left open
        ok = False
    if not ok:
        raise ValueError(f"not a base URL: {value!r} (e.g. http://127.0.0.1:8103)")


_clock_spec = _checked(stack_mod.parse_clock)
_duration = _checked(parse_duration)
_url = _checked(check_url)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
    return int(value)


def report_folder(value: str, option: str = "--report") -> Path:
    """The folder ``value``, created now: a run that cannot write its report fails before
    it starts, not after."""
    folder = Path(value)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CliError(f"{option} {value}: not a folder", EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"{option} {value}: cannot create it: {exc.strerror or exc}", EXIT_USAGE) from None
    if not os.access(folder, os.W_OK):
        raise CliError(f"{option} {value}: not writable", EXIT_USAGE)
    return folder


def output_file(value: str, option: str) -> Path:
    """The file ``value``, checked before a run that writes it at the end: not a folder, in a
    folder that exists and is writable."""
    path = Path(value)
    parent = path.parent
    if path.is_dir():
        raise CliError(f"{option} {value}: a folder, not a file", EXIT_USAGE)
    if not parent.is_dir():
        raise CliError(f"{option} {value}: no such folder {parent}", EXIT_USAGE)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"{option} {value}: not writable", EXIT_USAGE)
    return path


def _simulator(value: str) -> str:
    if value not in stack_mod.SERVICES:
        raise argparse.ArgumentTypeError(f"unknown service {value!r}; available: {', '.join(stack_mod.SERVICES)}")
    return value


def _service_list(value: str) -> list[str]:
    return [_simulator(name.strip()) for name in value.split(",") if name.strip()]


def _profile_arg(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected SERVICE=PROFILE.yaml, got {value!r}")
    return _simulator(name), path


def _named(value: str) -> str:
    if value != "core":
        _simulator(value)
    return value


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = [headers, *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """(label, base URL) of the one service a command is about."""
    if args.service == "core":  # it would answer 404: the admin protocol gives these to simulators only
        kept = "journal" if args.command == "journal" else "fault rules"
        raise CliError(f"the core keeps no {kept}: `caas-sim {args.command}` is for a simulator "
                       f"({', '.join(stack_mod.SERVICES)})", EXIT_USAGE)
    if args.url:
        return args.service or args.url, args.url
    if not args.service:
        raise CliError("give a SERVICE name or --url", EXIT_USAGE)
    if args.service not in stack_mod.SERVICES:  # the core is not one to name here (above)
        raise CliError(f"unknown service {args.service!r}; known: {', '.join(stack_mod.SERVICES)} (or give --url)",
                       EXIT_USAGE)
    return args.service, service_url(args.service, running_up(args))


def running_up(args: argparse.Namespace) -> dict[str, str] | None:
    """The services of a running `caas-sim up` (its state file), if one runs."""
    return state.running(up_state_path(args))


def up_state_path(args: argparse.Namespace) -> Path:
    """Where a running `up` records its services; a file the user named must be one."""
    given = getattr(args, "state_file", None)
    path = state.state_path(given)
    if state.named(given):
        try:
            state.check(path)
        except state.StateError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    return path


def core_of_up(args: argparse.Namespace, up: dict[str, str] | None) -> str | None:
    """The core of the running `caas-sim up`: the reference core it runs, or the core of your
    own its simulators call (`up --core-url`); None when no `up` runs."""
    if up and "core" in up:
        return up["core"]
    return state.core_url(up_state_path(args))


def service_url(name: str, up: dict[str, str] | None) -> str:
    """Where ``name`` is: in the running `up`, else on its default port."""
    return up[name] if up and name in up else default_url(name)


def default_url(name: str) -> str:
    if name in stack_mod.SERVICES:
        return f"http://{LOCALHOST}:{stack_mod.SERVICES[name][1]}"
    if name == "core":
        return f"http://{LOCALHOST}:{CORE_PORT}"
    raise CliError(f"unknown service {name!r}; known: {', '.join([*stack_mod.SERVICES, 'core'])} "
                   f"(or give --url)", EXIT_USAGE)


def shipped_profile(service: str, value: str) -> str:
    """A fault profile's path: ``value`` itself when it names a file, else the profile of that
    name the service ships with (``caas-sim serve iot --faults flaky-network``), which an
    installed package carries too. A bare name that is neither is refused with the list of
    those the service ships."""
    if Path(value).exists() or service not in stack_mod.SERVICES:
        return value
    folder = _profiles_folder(service)
    name = value if value.endswith(".yaml") else f"{value}.yaml"
    if folder is not None and (folder / name).is_file():
        return str(folder / name)
    if "/" in value or os.sep in value:
        return value  # a path: _check_profile says it is missing
    shipped = sorted(p.stem for p in folder.glob("*.yaml")) if folder is not None and folder.is_dir() else []
    raise CliError(f"no fault profile {value!r}: no such file, nor a profile {service} ships "
                   f"({'it ships: ' + ', '.join(shipped) if shipped else 'it ships none'})", EXIT_USAGE)


def _profiles_folder(service: str) -> Path | None:
    module = stack_mod.SERVICES[service][0]
    spec = importlib.util.find_spec(module.rsplit(".", 1)[0])
    return Path(next(iter(spec.submodule_search_locations))) / "profiles" if spec else None


def _check_profile(path: str) -> None:
    try:
        load_fault_profile(path)
    except OSError as exc:
        raise CliError(f"cannot read fault profile {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except UnicodeDecodeError as exc:  # a ValueError: without this, the codec's words and no file name
        raise CliError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", EXIT_USAGE) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CliError(f"{path}: not valid YAML{where}: {reason}", EXIT_USAGE) from None
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
