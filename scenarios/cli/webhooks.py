"""Where the webhooks of `caas-sim up` go and what signs them: ``--core-url``,
``--webhook-url SERVICE=URL``, ``--secret [SERVICE=]whsec_...``, and `caas-sim secrets`.

Every simulator that sends webhooks (the catalogue's ``WEBHOOK_SENDERS``) signs them per
the Standard Webhooks spec with a ``whsec_`` secret: the development secret (public, the
one the reference core expects by default) unless ``--secret`` brings others. `up` records
them in its state file (owner-only), and `caas-sim secrets` prints them from there for a
core to load; the admin protocol never exposes a secret (only whether one is set).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json

from caas_sim import catalogue
from caas_sim.simulators.kit.webhooks import DEFAULT_SECRET

from . import state
from .common import EXIT_USAGE, UP_HINT, CliError, _url, up_state_path

SECRET_PREFIX = "whsec_"


def env_name(service: str) -> str:
    """``CAAS_SIM_<SERVICE>_WEBHOOK_SECRET``: the variable a core loads a service's secret from."""
    return f"CAAS_SIM_{service.upper().replace('-', '_')}_WEBHOOK_SECRET"


def _sender(value: str) -> str:
    if value not in catalogue.WEBHOOK_SENDERS:
        kind = "sends no webhooks" if value in catalogue.BY_NAME else "is no service"
        raise argparse.ArgumentTypeError(f"{value!r} {kind}; the services that send webhooks: "
                                         f"{', '.join(catalogue.WEBHOOK_SENDERS)}")
    return value


def webhook_target(value: str) -> tuple[str, str]:
    """``SERVICE=URL``: every webhook of SERVICE goes to URL (the whole URL, path included)."""
    name, sep, url = value.partition("=")
    if not sep or not url:
        raise argparse.ArgumentTypeError(f"expected SERVICE=URL, got {value!r}")
    return _sender(name), _url(url)


def check_secret(value: str) -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 (padding optional), not empty."""
    body = value.removeprefix(SECRET_PREFIX)
    try:
        ok = value.startswith(SECRET_PREFIX) and bool(base64.b64decode(body + "=" * (-len(body) % 4), validate=True))
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"not a webhook secret: {_masked(value)} (want whsec_ then base64, "
                                         f"e.g. whsec_$(openssl rand -base64 32))")
    return value


def secret_arg(value: str) -> tuple[str | None, str]:
    """``whsec_...`` (every service) or ``SERVICE=whsec_...`` (one service)."""
    if value.startswith(SECRET_PREFIX):  # base64 may end in "=": never split a bare secret
        return None, check_secret(value)
    name, sep, secret = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected whsec_... or SERVICE=whsec_..., got {_masked(value)}")
    return _sender(name), check_secret(secret)


def _masked(value: str) -> str:
    """A rejected secret, named without repeating it whole (it may be a real one, mistyped)."""
    return repr(value[:10] + "...") if len(value) > 12 else repr(value)


def resolve_secrets(given: list[tuple[str | None, str]], names: list[str]) -> dict[str, str]:
    """The secret of each started service that sends webhooks: its own ``--secret``, else the
    one given for all, else the development secret."""
    everyone = [secret for service, secret in given if service is None]
    if len(everyone) > 1:
        raise CliError("--secret whsec_... (one for every service) given twice", EXIT_USAGE)
    per_service: dict[str, str] = {}
    for service, secret in given:
        if service is None:
            continue
        if service in per_service:
            raise CliError(f"--secret {service}=... given twice", EXIT_USAGE)
        per_service[service] = secret
    check_started("--secret", per_service, names)
    default = everyone[0] if everyone else DEFAULT_SECRET
    return {name: per_service.get(name, default) for name in names if name in catalogue.WEBHOOK_SENDERS}


def resolve_targets(given: list[tuple[str, str]], names: list[str], core_url: str | None) -> dict[str, str]:
    """Where each started sender's webhooks go when not to the reference core or the sink:
    ``--webhook-url`` first, else ``--core-url`` plus the service's receiver path."""
    targets: dict[str, str] = {}
    for service, url in given:
        if service in targets:
            raise CliError(f"--webhook-url {service}=... given twice", EXIT_USAGE)
        targets[service] = url
    check_started("--webhook-url", targets, names)
    if core_url:
        base = core_url.rstrip("/")
        targets = {name: base + path for name, path in catalogue.WEBHOOK_SENDERS.items() if name in names} | targets
    return targets


def check_started(option: str, given: dict[str, str], names: list[str]) -> None:
    stray = [name for name in given if name not in names]
    if stray:
        raise CliError(f"{option} for {', '.join(stray)}, which is not started (--services {','.join(names)})",
                       EXIT_USAGE)


def add_parser(commands: argparse._SubParsersAction, admin_parents: list[argparse.ArgumentParser],
               formatter_class: type[argparse.HelpFormatter]) -> None:
    parser = commands.add_parser(
        "secrets", parents=admin_parents, formatter_class=formatter_class,
        help="the webhook signing secrets of the running `caas-sim up`, as environment lines",
        description="Print the whsec_ secret each simulator of the running `caas-sim up` signs its webhooks "
                    "with (Standard Webhooks), one CAAS_SIM_<SERVICE>_WEBHOOK_SECRET=whsec_... line per "
                    "service that sends webhooks, for a core to load. Read from the state file `up` "
                    "writes (readable by its owner only); the admin protocol never exposes a secret.",
        epilog="examples:\n"
               "  caas-sim secrets > .env.caas-sim               an env file (docker --env-file, dotenv)\n"
               "  set -a; eval \"$(caas-sim secrets)\"; set +a     into this shell's environment\n"
               "  CAAS_WEBHOOK_SECRETS=\"$(caas-sim secrets --format json)\" caas-sim serve core\n"
               "                                                 the reference core's own setting")
    parser.add_argument("--format", choices=["env", "json"], default="env",
                        help="env: NAME=VALUE lines (default); json: {\"service\": \"whsec_...\"}, the value of "
                             "the reference core's CAAS_WEBHOOK_SECRETS")
    parser.set_defaults(handler=cmd_secrets)


def cmd_secrets(args: argparse.Namespace) -> int:
    path = up_state_path(args)
    table = state.webhooks(path)
    if table is None:
        if state.running(path) is not None:
            raise CliError(f"the `caas-sim up` recorded in {path} records no webhook secrets (started by an "
                           f"older caas-sim?): restart it")
        raise CliError(f"no running `caas-sim up` recorded in {path}: {UP_HINT} (or give its --state-file)")
    secrets = {name: entry["secret"] for name, entry in table.items()
               if isinstance(entry, dict) and isinstance(entry.get("secret"), str)}
    if args.format == "json":
        print(json.dumps(secrets, separators=(",", ":")))
    else:
        for name, secret in secrets.items():
            print(f"{env_name(name)}={secret}")
    return 0
