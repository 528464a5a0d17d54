"""The study file's schema: its YAML read safely and its keys checked, every value's shape and
range, the ``search:`` section included, without opening the notebook.

Each problem is reported as ``"<file>: key '<key>': <what was expected>, got <value> (<type>)"``
(:func:`report` puts several together); the checks against the notebook and the simulator are
:mod:`mpimpy.studies.validate`'s, which formats its messages with the same :func:`describe`
and :func:`report`. YAML safety: the text must be UTF-8, no key may be given twice (PyYAML
would silently keep the last) and every value must be one papermill can pass to a notebook.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mpimpy.studies.spec import (
    MAX_POINTS,
    SEED_PARAMETER,
    Constraint,
    Dimension,
    Objective,
    Search,
    Study,
    StudyError,
    same_value,
)

#: Keys a study file may have; anything else is most likely a typo (``gird:``) and is refused.
REQUIRED_KEYS = ("name", "notebook")
OPTIONAL_KEYS = ("description", "experiment", "parameters", "grid", "points", "seeds", "timeout_s",
                 "search")
SAMPLERS = ("nsga2", "tpe", "random", "grid")
DIRECTIONS = ("minimize", "maximize")
SEARCH_KEYS = ("sampler", "n_trials", "seed", "objectives", "constraints", "space",
               "population_size", "cost")
REQUIRED_SEARCH_KEYS = ("n_trials", "objectives", "space")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_METRIC_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ ")


def decode_utf8(path: Path, what: str) -> str:
    """A file's text, or a :class:`StudyError` saying it is not UTF-8 (never its bytes)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StudyError(
            f"{path}: not {what}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None


def describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def report(path: Path, problems: list[str]) -> StudyError:
    """One error for all the problems found: ``"<file>: key 'k': ..."`` per line."""
    if len(problems) == 1:
        return StudyError(f"{path}: {problems[0]}")
    return StudyError(
        f"{path}: {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
    )


def _yaml_duplicates(node, path: str = "") -> list[str]:
    """Keys given twice in a YAML mapping (PyYAML silently keeps the last), with their lines."""
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = (key_node.tag, key_node.value)
            here = f"{path}.{key_node.value}" if path else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key_node.value != "<<":
                problems.append(
                    f"key '{here}': given twice (lines {seen[key]} and {line}); YAML would "
                    "silently keep the last one: remove one"
                )
            seen.setdefault(key, line)
            problems += _yaml_duplicates(value_node, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _yaml_duplicates(item, f"{path}[{i}]")
    return problems


def read_yaml(path: Path):
    """A study file's YAML content; :class:`StudyError` for text that is not UTF-8 or YAML, or
    repeats a key."""
    text = decode_utf8(path, "a study file")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    duplicates = _yaml_duplicates(node)
    if duplicates:
        raise report(path, duplicates)
    return data


def unpassable(value: Any) -> Any | None:
    """The part of ``value`` that cannot be passed to a notebook as a parameter, or ``None``.

    papermill writes parameters as Python literals: ``None``, bools, numbers, strings, lists and
    mappings with string keys. Anything else YAML can make (dates, sets, binary) would arrive as
    its ``str()``.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return None
    if isinstance(value, list):
        return next((bad for bad in map(unpassable, value) if bad is not None), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return key
            bad = unpassable(item)
            if bad is not None:
                return bad
        return None
    return value


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def duplicates(items: list[tuple[str, Any]]) -> list[str]:
    """Messages for items (label, canonical value) that repeat an earlier one."""
    first: dict[str, str] = {}
    problems = []
    for label, value in items:
        key = canonical(value)
        if key in first:
            problems.append(
                f"key '{label}': the same as '{first[key]}' ({value!r}): the point would run "
                "twice; remove one"
            )
        else:
            first[key] = label
    return problems


# --------------------------------------------------------------------------------------------
# The schema as pydantic models: pydantic finds every missing or unknown key and runs every
# field's check, collecting all problems; each check reports ``(key below the field, message)``
# pairs through one custom error, which :func:`_messages` turns into the file's lines.

Problem = tuple[str, str]


def _fail(*problems: Problem) -> PydanticCustomError:
    return PydanticCustomError("study", "{problems}", {"problems": list(problems)})


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise _fail(*problems)


def finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


#: The search's integer keys: (least value, what it counts, whether it may be left out as None)
WHOLE_NUMBERS = {
    "n_trials": (1, " (trials to complete)", False),
    "seed": (0, " (the sampler's seed)", False),
    "population_size": (2, "", True),
}


class _Section(BaseModel):
    """A mapping of the study file: unknown keys refused, every value checked by a function."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _string_keys(cls, data: Any) -> Any:
        return {str(k): v for k, v in data.items()} if isinstance(data, dict) else data


class SearchSection(_Section):
    """The ``search:`` section (keys in the order their problems are reported)."""

    sampler: Any = "nsga2"
    n_trials: Any
    seed: Any = 0
    population_size: Any = None
    objectives: Any
    constraints: Any = []
    space: Any
    cost: Any = None

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, value):
        if value not in SAMPLERS:
            raise _fail(("", f"expected one of {', '.join(SAMPLERS)} (Optuna's samplers), got "
                             f"{describe(value)}"))
        return value

    @field_validator(*WHOLE_NUMBERS)
    @classmethod
    def _whole_number(cls, value, info):
        low, why, optional = WHOLE_NUMBERS[info.field_name]
        if not (optional and value is None) and not _whole(value, low):
            raise _fail(("", f"expected an integer >= {low}{why}, got {describe(value)}"))
        return value

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, raw) -> list[Objective]:
        if not isinstance(raw, list) or not raw:
            raise _fail(("", "expected a non-empty list of {metric: NAME, direction: minimize|"
                             f"maximize}}, got {describe(raw)}"))
        objectives: list[Objective] = []
        problems: list[Problem] = []
        for i, item in enumerate(raw):
            where = f"[{i}]"
            if not isinstance(item, dict) or set(item) != {"metric", "direction"}:
                problems.append((where, "expected {metric: NAME, direction: minimize|maximize}, "
                                        f"got {describe(item)}"))
                continue
            metric, direction = item["metric"], item["direction"]
            if not _metric_name_ok(metric):
                problems.append((f"{where}.metric", f"expected a metric name, got "
                                                    f"{describe(metric)}"))
            elif direction not in DIRECTIONS:
                problems.append((f"{where}.direction", f"expected minimize or maximize, got "
                                                       f"{describe(direction)}"))
            elif any(o.metric == metric for o in objectives):
                problems.append((f"{where}.metric", f"{metric!r} is already an objective"))
            else:
                objectives.append(Objective(metric, direction))
        _raise_if(problems)
        return objectives

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, raw) -> list[Constraint]:
        raw = raw or []
        if not isinstance(raw, list):
            raise _fail(("", f"expected a list of {{metric: NAME, max: X}} or {{metric: NAME, "
                             f"min: X}}, got {describe(raw)}"))
        constraints: list[Constraint] = []
        problems: list[Problem] = []
        for i, item in enumerate(raw):
            where = f"[{i}]"
            if (not isinstance(item, dict) or "metric" not in item
                    or not set(item) - {"metric"} or set(item) - {"metric", "min", "max"}):
                problems.append((where, "expected {metric: NAME, max: X} and/or min: X, got "
                                        f"{describe(item)}"))
                continue
            if not _metric_name_ok(item["metric"]):
                problems.append((f"{where}.metric", f"expected a metric name, got "
                                                    f"{describe(item['metric'])}"))
                continue
            bounds = {k: item.get(k) for k in ("min", "max")}
            wrong = [k for k, v in bounds.items() if k in item and not finite_number(v)]
            if wrong:
                problems.append((f"{where}.{wrong[0]}", f"expected a finite number, got "
                                                        f"{describe(item[wrong[0]])}"))
            elif any(c.metric == item["metric"] for c in constraints):
                problems.append((f"{where}.metric", f"{item['metric']!r} is already "
                                                    "constrained: give min and max in one "
                                                    "constraint"))
            elif None not in bounds.values() and bounds["min"] > bounds["max"]:
                problems.append((where, f"min {bounds['min']} is above max {bounds['max']}: "
                                        "nothing is feasible"))
            else:
                constraints.append(Constraint(item["metric"], bounds["min"], bounds["max"]))
        _raise_if(problems)
        return constraints

    @field_validator("space")
    @classmethod
    def _space(cls, raw) -> dict[str, Dimension]:
        if not isinstance(raw, dict) or not raw:
            raise _fail(("", "expected a non-empty mapping of parameter: {low: A, high: B} or "
                             f"{{choices: [...]}}, got {describe(raw)}"))
        problems: list[Problem] = []
        space = {}
        for name, spec in raw.items():
            dimension = _parse_dimension(str(name), spec,
                                         lambda key, message: problems.append((key, message)))
            if dimension is not None:
                space[str(name)] = dimension
        _raise_if(problems)
        return space

    @model_validator(mode="after")
    def _together(self) -> SearchSection:
        problems: list[Problem] = []
        if self.population_size is not None and self.sampler != "nsga2":
            problems.append(("population_size", "only the nsga2 sampler has a population, not "
                                                f"{self.sampler!r}"))
        metrics = [o.metric for o in self.objectives]
        if self.cost is not None and self.cost not in metrics:
            problems.append(("cost", f"expected one of the objectives' metrics "
                                     f"({', '.join(metrics)}), got {describe(self.cost)}"))
        _raise_if(problems)
        if self.sampler == "grid":
            search = self.search()
            continuous = [d.name for d in self.space.values() if d.values() is None]
            if continuous:
                problems.append((f"space.{continuous[0]}", "the grid sampler needs discrete "
                                 "values: give choices, or a step for a float range"))
            elif self.n_trials > search.grid_size():
                problems.append(("n_trials", f"the grid holds {search.grid_size()} "
                                             f"configurations, fewer than n_trials = "
                                             f"{self.n_trials}"))
        _raise_if(problems)
        return self

    def search(self) -> Search:
        return Search(n_trials=self.n_trials, objectives=self.objectives, space=self.space,
                      sampler=self.sampler, seed=self.seed, constraints=self.constraints,
                      population_size=self.population_size, cost=self.cost)


class StudyFile(_Section):
    """A study file's top level."""

    name: Any
    notebook: Any
    description: Any = ""
    experiment: Any = None
    parameters: Any = None
    grid: Any = None
    points: Any = None
    seeds: Any = [0]
    timeout_s: Any = None
    search: SearchSection | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value):
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise _fail(("", f"expected a name of letters, digits, '_', '-' or '.', got "
                             f"{describe(value)}"))
        return value

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, value):
        if not isinstance(value, str) or not value.endswith(".ipynb"):
            raise _fail(("", f"expected the file name of a .ipynb notebook, got "
                             f"{describe(value)}"))
        return value

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value):
        if not isinstance(value, str) or not value.strip():
            raise _fail(("", f"expected a non-empty string, got {describe(value)}"))
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value):
        value = value or ""
        if not isinstance(value, str):
            raise _fail(("", f"expected a string, got {describe(value)}"))
        return value.strip()

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value):
        value = value or {}
        if not isinstance(value, dict):
            raise _fail(("", f"expected a mapping of parameter: value, got {describe(value)}"))
        return dict(value)

    @field_validator("grid")
    @classmethod
    def _grid(cls, value):
        if not isinstance(value, dict) or not value:
            raise _fail(("", f"expected a non-empty mapping of parameter: [values], got "
                             f"{describe(value)}"))
        _raise_if([(str(key), f"expected a non-empty list of values, got {describe(values)}")
                   for key, values in value.items()
                   if not isinstance(values, list) or not values])
        return {k: list(v) for k, v in value.items()}

    @field_validator("points")
    @classmethod
    def _points(cls, value):
        if not isinstance(value, list) or not value:
            raise _fail(("", f"expected a non-empty list of mappings, got {describe(value)}"))
        _raise_if([(f"[{i}]", f"expected a non-empty mapping, got {describe(point)}")
                   for i, point in enumerate(value) if not isinstance(point, dict) or not point])
        return [dict(p) for p in value]

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value):
        if not isinstance(value, list) or not value:
            raise _fail(("", f"expected a non-empty list of integers, got {describe(value)}"))
        wrong = next((s for s in value if not _whole(s, 0)), None)
        if wrong is not None:
            raise _fail(("", f"expected integers >= 0 (the engine's seed), got "
                             f"{describe(wrong)}"))
        if len(set(value)) != len(value):
            raise _fail(("", f"seeds repeat: {value}"))
        return list(value)

    @field_validator("timeout_s")
    @classmethod
    def _timeout(cls, value):
        if value is not None and (not finite_number(value) or value <= 0):
            raise _fail(("", f"expected a positive number of seconds (finite), got "
                             f"{describe(value)}"))
        return float(value) if value is not None else None

    @field_validator("search", mode="before")
    @classmethod
    def _search(cls, value):
        if not isinstance(value, dict):
            raise _fail(("", f"expected a mapping with keys {', '.join(SEARCH_KEYS)}, got "
                             f"{describe(value)}"))
        return value

    @model_validator(mode="after")
    def _together(self) -> StudyFile:
        """Each parameter set in one place, the seed by ``seeds`` only, a search run once per
        trial, no more points than :data:`MAX_POINTS`, every value one papermill can pass."""
        parameters, grid, points = self.parameters or {}, self.grid or {}, self.points or []
        seeds = self.seeds
        problems: list[Problem] = []
        if self.search is not None and len(seeds) != 1:
            problems.append(("seeds", f"a search runs each trial once: give one seed (the "
                                      f"notebook's), got {seeds}"))
        point_keys = {k for p in points for k in p}
        for key in parameters:
            if key in grid:
                problems.append((f"grid.{key}", "also set under 'parameters'; set it in one "
                                                "place"))
            if key in point_keys:
                problems.append(("points", f"parameter {key!r} is also set under "
                                           "'parameters'; set it in one place"))
        problems += [("points", f"parameter {key!r} is also swept by 'grid'; set it in one "
                                "place") for key in grid if key in point_keys]
        for where, keys in (("parameters", parameters), ("grid", grid), ("points", point_keys)):
            if SEED_PARAMETER in keys:
                problems.append((where, f"'{SEED_PARAMETER}' is set by the top-level key "
                                        "'seeds', not here"))
        count = math.prod(len(v) for v in grid.values()) * max(len(points), 1) * len(seeds)
        if self.search is not None and not grid and not points:
            count = 0
        if count > MAX_POINTS:
            sizes = " x ".join([f"{len(v)} {k}" for k, v in grid.items()]
                               + ([f"{len(points)} points"] if points else [])
                               + [f"{len(seeds)} seeds"])
            problems.append(("grid" if grid else "points",
                             f"the study expands to {count} points ({sizes}), more than the "
                             f"limit of {MAX_POINTS}: split it into several studies"))
        _raise_if(problems)
        values = [(f"parameters.{k}", v) for k, v in parameters.items()]
        values += [(f"grid.{k}[{i}]", v) for k, vs in grid.items() for i, v in enumerate(vs)]
        values += [(f"points[{i}].{k}", v) for i, p in enumerate(points) for k, v in p.items()]
        _raise_if([(where, "cannot be passed to a notebook: expected null, true/false, a "
                           "number, a string, a list or a mapping with string keys, got "
                           f"{describe(unpassable(value))}")
                   for where, value in values if unpassable(value) is not None])
        return self

    def study(self, path: Path) -> Study:
        return Study(
            path=path.resolve(), name=self.name, notebook=Path(self.notebook),
            notebook_name=self.notebook, experiment=self.experiment or self.name,
            description=self.description, parameters=self.parameters or {},
            grid=self.grid or {}, points=self.points or [], seeds=self.seeds,
            timeout_s=self.timeout_s,
            search=self.search.search() if self.search is not None else None)


def _key(loc: tuple) -> str:
    """A pydantic location as the file's key: ``search.objectives[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _messages(error: ValidationError) -> list[str]:
    """The lines of a :class:`StudyError` for every problem pydantic collected."""
    lines = []
    for found in error.errors():
        loc = tuple(found["loc"])
        key = _key(loc)
        if found["type"] == "study":
            for sub, message in found["ctx"]["problems"]:
                below = sub if not key or sub.startswith("[") else f".{sub}" if sub else ""
                lines.append(f"key '{key}{below}': {message}")
        elif found["type"] == "missing":
            required = REQUIRED_SEARCH_KEYS if loc[:-1] == ("search",) else REQUIRED_KEYS
            lines.append(f"key '{key}': missing (required: {', '.join(required)})")
        elif found["type"] == "extra_forbidden":
            allowed = SEARCH_KEYS if loc[:-1] == ("search",) else REQUIRED_KEYS + OPTIONAL_KEYS
            lines.append(f"key '{key}': unknown key; allowed keys are {', '.join(allowed)}")
        else:  # every value is checked by the functions above; pydantic's own words else
            lines.append(f"key '{key}': {found['msg']}")
    return lines


def parse_study(path: Path) -> Study:
    """A study file's content checked for shape (see the module docstring), every problem at
    once; its notebook is named but not looked for yet. Raises :class:`StudyError` naming the
    file and the keys."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise StudyError(
            f"{path}: expected a mapping with keys {REQUIRED_KEYS}, got {describe(data)}"
        )
    try:
        content = StudyFile.model_validate(data)
    except ValidationError as exc:
        raise report(path, _messages(exc)) from None
    return content.study(path)


def _metric_name_ok(name: Any) -> bool:
    return isinstance(name, str) and bool(name.strip()) and set(name) <= _METRIC_CHARS


def _parse_dimension(name: str, spec: Any, bad) -> Dimension | None:
    """One dimension of ``search.space``; its problems go to ``bad(key below space, message)``."""
    where = name
    if name == SEED_PARAMETER:
        bad(where, f"'{SEED_PARAMETER}' is set by the top-level key 'seeds', not searched")
        return None
    if not isinstance(spec, dict):
        bad(where, f"expected {{low: A, high: B}} (optionally step, log) or {{choices: [...]}},"
                   f" got {describe(spec)}")
        return None
    if "choices" in spec:
        if set(spec) != {"choices"}:
            bad(where, f"choices take no other keys, got {sorted(set(spec) - {'choices'})}")
            return None
        choices = spec["choices"]
        if not isinstance(choices, list) or len(choices) < 1:
            bad(f"{where}.choices", f"expected a non-empty list, got {describe(choices)}")
            return None
        for i, choice in enumerate(choices):
            if unpassable(choice) is not None:
                bad(f"{where}.choices[{i}]", "cannot be passed to a notebook: expected null, "
                    "true/false, a number, a string, a list or a mapping with string keys, got "
                    f"{describe(unpassable(choice))}")
                return None
            for j in range(i):
                if same_value(choices[j], choice):
                    bad(f"{where}.choices[{i}]", f"the same as choices[{j}] ({choice!r})")
                    return None
        return Dimension(name, choices=tuple(choices))
    unknown = sorted(set(spec) - {"low", "high", "step", "log"})
    if unknown or not {"low", "high"} <= set(spec):
        bad(where, "expected {low: A, high: B} (optionally step: S, log: true) or "
                   f"{{choices: [...]}}, got keys {sorted(spec)}")
        return None
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for key, value in (("low", low), ("high", high)):
        if not finite_number(value):
            bad(f"{where}.{key}", f"expected a finite number, got {describe(value)}")
            return None
    if not isinstance(log, bool):
        bad(f"{where}.log", f"expected true or false, got {describe(log)}")
        return None
    if not low < high:
        bad(where, f"expected low < high, got low = {low}, high = {high} (a fixed value "
                   "belongs under 'parameters')")
        return None
    if step is not None and (not finite_number(step) or step <= 0):
        bad(f"{where}.step", f"expected a positive number, got {describe(step)}")
        return None
    if log and low <= 0:
        bad(f"{where}.low", f"a log range needs low > 0, got {low}")
        return None
    integer = all(isinstance(v, int) for v in (low, high)) and (step is None
                                                               or isinstance(step, int))
    if step is not None:
        count = (high - low) / step
        if abs(count - round(count)) > 1e-9:
            bad(f"{where}.step", f"high - low = {high - low} is not a multiple of step {step}")
            return None
        if log and not (integer and step == 1):
            bad(f"{where}.log", "a log range takes no step (Optuna: log with step 1 for "
                                "integers only)")
            return None
    return Dimension(name, low=low, high=high, step=step, log=log, integer=integer)


__all__ = [
    "DIRECTIONS",
    "OPTIONAL_KEYS",
    "REQUIRED_KEYS",
    "SAMPLERS",
    "SEARCH_KEYS",
    "canonical",
    "decode_utf8",
    "describe",
    "duplicates",
    "SearchSection",
    "StudyFile",
    "parse_study",
    "read_yaml",
    "report",
    "unpassable",
]
