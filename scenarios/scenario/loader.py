"""Load scenario YAML files, with errors that name the file and the line.

YAML is composed into nodes first so that every mapping key and sequence item
keeps its line; a pydantic error's location is then walked through those
nodes to the deepest one that exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .model import Scenario

CATALOGUE = Path(__file__).resolve().parent.parent / "catalogue"


class ScenarioError(Exception):
    """A scenario file that cannot be used: ``path:line: message`` per problem."""

    def __init__(self, path: str | Path, problems: list[tuple[int | None, str]]):
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}:{line or '?'}: {message}" for line, message in problems))


def _construct(node: yaml.Node, lines: dict[tuple, int], at: tuple = ()) -> Any:
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            out[key] = _construct(value_node, lines, (*at, key))
            lines.setdefault((*at, key), key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, lines, (*at, i)) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def parse(text: str, path: str | Path = "<scenario>") -> Scenario:
    data, lines = _compose(text, path)
    scenario, problems = _validate(data, lines)
    if problems:
        raise ScenarioError(path, problems)
    return scenario


def _compose(text: str, path: str | Path) -> tuple[dict, dict[tuple, int]]:
    """The document as plain data, and the line of every key and item in it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ScenarioError(path, [(line, f"not valid YAML: {exc.problem}")]) from None
    if root is None:
        raise ScenarioError(path, [(1, "empty file: a scenario needs name, proves and steps")])
    lines: dict[tuple, int] = {}
    data = _construct(root, lines)
    if not isinstance(data, dict):
        raise ScenarioError(path, [(1, "a scenario is a mapping (name, proves, world, steps, expect)")])
    return data, lines


def _validate(data: dict, lines: dict[tuple, int]) -> tuple[Scenario | None, list[tuple[int | None, str]]]:
    try:
        return Scenario.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where, line = _locate(error["loc"], lines)
            problems.append((line, f"{where or 'scenario'}: {error['msg'].removeprefix('Value error, ')}"))
        return None, problems


def _locate(loc: tuple, lines: dict[tuple, int]) -> tuple[str, int | None]:
    """The loc as a readable path, and the line of the deepest node of it that exists."""
    at = _deepest((), tuple(loc), lines)
    named = at
    if loc and (not at or loc[-1] != at[-1]) and isinstance(loc[-1], str) and loc[-1] not in _TAGS:
        named = (*at, loc[-1])  # a missing field: named, on the line of its parent
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in named).lstrip(".")
    return where, lines.get(at)


#: Union tags pydantic puts in a location (a step's or an expectation's kind).
_TAGS = {"call", "advance", "until", "assert", "fault", "workshop", "repeat", "note", "state", "notifications",
         "tickets", "journal", "sequence", "collection_cases", "violations"}


def _deepest(at: tuple, rest: tuple, lines: dict[tuple, int]) -> tuple:
    # A loc part is a key of the document, or a union tag that is not (a step's
    # tag is also its first key, hence trying both ways).
    if not rest:
        return at
    skipped = _deepest(at, rest[1:], lines)
    if (*at, rest[0]) in lines:
        taken = _deepest((*at, rest[0]), rest[1:], lines)
        if len(taken) > len(skipped):
            return taken
    return skipped


def load(path: str | Path) -> Scenario:
    """A scenario file, refused with every problem: the format's, and the file's own (its name, its
    profiles), the same whether it is given by path or found in a catalogue."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(path, [(None, f"cannot read: {exc.strerror or exc}")]) from None
    data, lines = _compose(text, path)
    scenario, problems = _validate(data, lines)
    problems += _file_problems(data, lines, path)
    if problems:
        raise ScenarioError(path, sorted(problems, key=lambda p: p[0] or 0))
    scenario._source = path  # profiles are relative to the file
    return scenario


def _file_problems(data: dict, lines: dict[tuple, int], path: Path) -> list[tuple[int | None, str]]:
    problems = []
    name = data.get("name")
    if isinstance(name, str) and name != path.stem:
        problems.append((lines.get(("name",)), f"name: {name!r} differs from the file name {path.stem!r}"))
    for at, profile in _profiles_named(data):
        if "${" not in profile and not (path.parent / profile).is_file():
            where, line = _locate(at, lines)
            missing = f"no profile file {profile!r} (profiles are relative to the scenario: {path.parent / profile})"
            problems.append((line, f"{where}: {missing}"))
    return problems


def _profiles_named(data: dict) -> list[tuple[tuple, str]]:
    """Every fault profile file the raw document names, with its location: read before the model
    accepts the file, so that a missing profile is reported with the file's other problems."""
    world = data.get("world")
    per_service = world.get("profiles") if isinstance(world, dict) else None
    named = [(("world", "profiles", service, i), profile)
             for service, profiles in (per_service.items() if isinstance(per_service, dict) else ())
             if isinstance(profiles, list)
             for i, profile in enumerate(profiles) if isinstance(profile, str)]
    return named + _profiles_in_steps(data.get("steps"), ("steps",))


def _profiles_in_steps(steps: Any, at: tuple) -> list[tuple[tuple, str]]:
    named = []
    for n, step in enumerate(steps if isinstance(steps, list) else ()):
        if not isinstance(step, dict):
            continue
        if "fault" in step and isinstance(step.get("profile"), str):
            named.append(((*at, n, "profile"), step["profile"]))
        if "repeat" in step:
            named += _profiles_in_steps(step.get("steps"), (*at, n, "steps"))
    return named


def catalogue(folder: str | Path = CATALOGUE) -> dict[str, Path]:
    """Scenario name -> file, for every YAML file of the catalogue (the name is the file's stem)."""
    return {p.stem: p for p in sorted(Path(folder).glob("*.yaml"))}


def load_catalogue(folder: str | Path = CATALOGUE) -> list[Scenario]:
    scenarios, errors = [], []
    for path in catalogue(folder).values():
        try:
            scenario = load(path)
        except ScenarioError as exc:
            errors.extend((f"{exc.path}:{line or '?'}", message) for line, message in exc.problems)
            continue
        scenarios.append(scenario)
    if errors:
        raise ScenarioError(folder, [(None, f"{where}: {message}") for where, message in errors])
    return scenarios
