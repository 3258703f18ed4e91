"""Where a running `caas-sim up` is: its service table, in a small JSON file.

`up` writes it once everything listens (``{"pid": ..., "services": {name: url}, "webhooks":
{name: {"url": ..., "secret": "whsec_..."}}}``, and ``"coreUrl"`` when it sends them to a core
of your own, `up --core-url`) and removes it when it stops cleanly; `clock`, `fault`, `journal` and `audit` look there
first, so that they reach every service of that world, the core included, on whatever
ports it chose (`--ephemeral`). A file whose process is gone (killed, not stopped) is
ignored. The most recent `up` wins: it replaces the file, and an older one stopping
later leaves it alone. It holds the webhook signing secrets (`caas-sim secrets` prints
them), so it is readable by its owner only (0600, in a 0700 folder when `up` creates it).

Location: ``--state-file``, else ``$CAAS_SIM_STATE``, else
``$XDG_RUNTIME_DIR/caas-sim/up.json`` (per user, gone at logout), else
``~/.cache/caas-sim/up.json``. A file named by the first two that is there but cannot be
read or is no service table is an error (``check``): ignoring it would send the commands to
the default ports, maybe another world's.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

STATE_ENV = "CAAS_SIM_STATE"


class StateError(ValueError):
    """A state file named by the user that is there but is no service table."""


def state_path(given: str | None = None) -> Path:
    if given:
        return Path(given)
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return (Path(runtime) if runtime else Path.home() / ".cache") / "caas-sim" / "up.json"


def named(given: str | None = None) -> bool:
    """Whether the user named the state file (``--state-file`` or ``$CAAS_SIM_STATE``)."""
    return bool(given or os.environ.get(STATE_ENV))


def check(path: Path) -> None:
    """Raise StateError when ``path`` is there but cannot be read or holds no service table.
    Absent is fine: `up` removes it when it stops."""
    if not os.path.lexists(path):
        return
    try:
        state = json.loads(path.read_text())
    except OSError as exc:
        raise StateError(f"state file {path}: cannot read it: {exc.strerror or exc}") from None
    except ValueError:
        raise StateError(f"state file {path}: not JSON") from None
    if not isinstance(state, dict) or not isinstance(state.get("services"), dict):
        raise StateError(f"state file {path}: not the service table of a `caas-sim up`")


def check_writable(path: Path) -> None:
    """Raise OSError unless ``write`` could write ``path``: tried with a file of our own beside
    it, so that `up` fails before it starts anything."""
    _not_a_folder(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    probe = _partial(path)
    probe.unlink(missing_ok=True)
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    probe.unlink()


def _not_a_folder(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a folder, not a file", str(path))


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}")


def write(path: Path, services: dict[str, str], webhooks: dict[str, dict[str, str]] | None = None,
          core_url: str | None = None) -> None:
    """Record ``services`` (name -> base URL) and, for each service that sends webhooks,
    where they go and the secret that signs them (name -> {"url", "secret"}); ``core_url``:
    the core of your own they call (`up --core-url`), not one of ``services``."""
    _not_a_folder(path)  # its "sibling" would be in the folder above: /tmp gave /.tmp.PID
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = _partial(path)
    state = {"pid": os.getpid(), "services": services, **({"webhooks": webhooks} if webhooks is not None else {}),
             **({"coreUrl": core_url} if core_url else {})}
    partial.unlink(missing_ok=True)  # created afresh below: its mode is then ours to set
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(state, indent=2) + "\n")
        partial.replace(path)  # atomic: a reader never sees half a table
    except BaseException:
        partial.unlink(missing_ok=True)  # it holds the webhook secrets
        raise


def remove(path: Path) -> None:
    """Remove ``path`` if it still names this process (a later `up` may have replaced it)."""
    if (_load(path) or {}).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def running(path: Path) -> dict[str, str] | None:
    """The services of the `up` recorded at ``path`` while its process lives, else None."""
    services = _live(path).get("services")
    return services if isinstance(services, dict) else None


def webhooks(path: Path) -> dict[str, dict[str, str]] | None:
    """Where each webhook-sending service of the `up` recorded at ``path`` sends its webhooks
    and with which secret (name -> {"url", "secret"}), while its process lives; else None."""
    table = _live(path).get("webhooks")
    return table if isinstance(table, dict) else None


def core_url(path: Path) -> str | None:
    """The core of your own the `up` recorded at ``path`` calls (`--core-url`), while it lives."""
    url = _live(path).get("coreUrl")
    return url if isinstance(url, str) else None


def _live(path: Path) -> dict:
    state = _load(path)
    return state if state and _alive(state.get("pid")) else {}


def _load(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
