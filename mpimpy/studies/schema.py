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


def parse_study(path: Path) -> Study:
    """A study file's content checked for shape (see the module docstring); its notebook is
    named but not looked for yet. Raises :class:`StudyError` naming the file and the key."""
    path = Path(path)
    data = read_yaml(path)

    def fail(key: str, message: str):
        raise StudyError(f"{path}: key '{key}': {message}")

    if not isinstance(data, dict):
        raise StudyError(
            f"{path}: expected a mapping with keys {REQUIRED_KEYS}, got {describe(data)}"
        )
    for key in REQUIRED_KEYS:
        if key not in data:
            fail(key, "missing (required: " + ", ".join(REQUIRED_KEYS) + ")")
    unknown = sorted(set(map(str, data)) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        fail(
            unknown[0], "unknown key; allowed keys are " + ", ".join(REQUIRED_KEYS + OPTIONAL_KEYS)
        )

    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        fail("name", f"expected a name of letters, digits, '_', '-' or '.', got {describe(name)}")
    notebook_name = data["notebook"]
    if not isinstance(notebook_name, str) or not notebook_name.endswith(".ipynb"):
        fail(
            "notebook",
            f"expected the file name of a .ipynb notebook, got {describe(notebook_name)}",
        )
    experiment = data.get("experiment", name)
    if not isinstance(experiment, str) or not experiment.strip():
        fail("experiment", f"expected a non-empty string, got {describe(experiment)}")
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        fail("description", f"expected a string, got {describe(description)}")

    parameters = data.get("parameters", {}) or {}
    if not isinstance(parameters, dict):
        fail("parameters", f"expected a mapping of parameter: value, got {describe(parameters)}")

    grid = data.get("grid", None)
    if "grid" in data:
        if not isinstance(grid, dict) or not grid:
            fail(
                "grid",
                f"expected a non-empty mapping of parameter: [values], got {describe(grid)}",
            )
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                fail(f"grid.{key}", f"expected a non-empty list of values, got {describe(values)}")
    grid = grid or {}

    points = data.get("points", None)
    if "points" in data:
        if not isinstance(points, list) or not points:
            fail("points", f"expected a non-empty list of mappings, got {describe(points)}")
        for i, point in enumerate(points):
            if not isinstance(point, dict) or not point:
                fail(f"points[{i}]", f"expected a non-empty mapping, got {describe(point)}")
    points = points or []

    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        fail("seeds", f"expected a non-empty list of integers, got {describe(seeds)}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            fail("seeds", f"expected integers >= 0 (the engine's seed), got {describe(seed)}")
    if len(set(seeds)) != len(seeds):
        fail("seeds", f"seeds repeat: {seeds}")
    search = None
    if "search" in data:
        search = parse_search(path, data["search"])
        if len(seeds) != 1:
            fail("seeds", f"a search runs each trial once: give one seed (the notebook's), got "
                          f"{seeds}")

    timeout_s = data.get("timeout_s")
    if timeout_s is not None and (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        fail(
            "timeout_s",
            f"expected a positive number of seconds (finite), got {describe(timeout_s)}",
        )

    # Each parameter is set in one place only.
    point_keys = {k for p in points for k in p}
    for key in parameters:
        if key in grid:
            fail(f"grid.{key}", "also set under 'parameters'; set it in one place")
        if key in point_keys:
            fail("points", f"parameter {key!r} is also set under 'parameters'; set it in one place")
    for key in grid:
        if key in point_keys:
            fail("points", f"parameter {key!r} is also swept by 'grid'; set it in one place")
    for where, keys in (("parameters", parameters), ("grid", grid), ("points", point_keys)):
        if SEED_PARAMETER in keys:
            fail(where, f"'{SEED_PARAMETER}' is set by the top-level key 'seeds', not here")

    count = math.prod(len(v) for v in grid.values()) * max(len(points), 1) * len(seeds)
    if search is not None and not grid and not points:
        count = 0
    if count > MAX_POINTS:
        sizes = " x ".join(
            [f"{len(v)} {k}" for k, v in grid.items()]
            + ([f"{len(points)} points"] if points else [])
            + [f"{len(seeds)} seeds"]
        )
        fail(
            "grid" if grid else "points",
            f"the study expands to {count} points ({sizes}), more than the limit of "
            f"{MAX_POINTS}: split it into several studies",
        )

    problems = []
    values = [(f"parameters.{k}", v) for k, v in parameters.items()]
    values += [(f"grid.{k}[{i}]", v) for k, vs in grid.items() for i, v in enumerate(vs)]
    values += [(f"points[{i}].{k}", v) for i, p in enumerate(points) for k, v in p.items()]
    for where, value in values:
        bad = unpassable(value)
        if bad is not None:
            problems.append(
                f"key '{where}': cannot be passed to a notebook: expected null, true/false, a "
                f"number, a string, a list or a mapping with string keys, got {describe(bad)}"
            )
    if problems:
        raise report(path, problems)

    return Study(
        path=path.resolve(),
        name=name,
        notebook=Path(notebook_name),
        notebook_name=notebook_name,
        experiment=experiment,
        description=description.strip(),
        parameters=dict(parameters),
        grid={k: list(v) for k, v in grid.items()},
        points=[dict(p) for p in points],
        seeds=list(seeds),
        timeout_s=float(timeout_s) if timeout_s is not None else None,
        search=search,
    )


def finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_search(path: Path, data: Any) -> Search:
    """The ``search:`` section's structure, checked without the notebook; raises
    :class:`StudyError` naming the file, the key (``search.space.g_level.low``) and what was
    expected, every problem at once."""
    problems: list[str] = []

    def bad(key: str, message: str) -> None:
        problems.append(f"key 'search{'.' + key if key else ''}': {message}")

    if not isinstance(data, dict):
        raise StudyError(f"{path}: key 'search': expected a mapping with keys "
                         f"{', '.join(SEARCH_KEYS)}, got {describe(data)}")
    for key in REQUIRED_SEARCH_KEYS:
        if key not in data:
            bad(key, "missing (required: " + ", ".join(REQUIRED_SEARCH_KEYS) + ")")
    for key in sorted(set(map(str, data)) - set(SEARCH_KEYS)):
        bad(key, "unknown key; allowed keys are " + ", ".join(SEARCH_KEYS))

    sampler = data.get("sampler", "nsga2")
    if sampler not in SAMPLERS:
        bad("sampler", f"expected one of {', '.join(SAMPLERS)} (Optuna's samplers), got "
                       f"{describe(sampler)}")
    n_trials = data.get("n_trials", 1)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        bad("n_trials", f"expected an integer >= 1 (trials to complete), got "
                        f"{describe(n_trials)}")
        n_trials = 1
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        bad("seed", f"expected an integer >= 0 (the sampler's seed), got {describe(seed)}")
    population = data.get("population_size")
    if population is not None:
        if sampler != "nsga2":
            bad("population_size", f"only the nsga2 sampler has a population, not {sampler!r}")
        elif isinstance(population, bool) or not isinstance(population, int) or population < 2:
            bad("population_size", f"expected an integer >= 2, got {describe(population)}")

    objectives: list[Objective] = []
    raw = data.get("objectives", [])
    if not isinstance(raw, list) or not raw:
        bad("objectives", "expected a non-empty list of {metric: NAME, direction: minimize|"
                          f"maximize}}, got {describe(raw)}")
        raw = []
    for i, item in enumerate(raw):
        where = f"objectives[{i}]"
        if not isinstance(item, dict) or set(item) != {"metric", "direction"}:
            bad(where, "expected {metric: NAME, direction: minimize|maximize}, got "
                       f"{describe(item)}")
            continue
        metric, direction = item["metric"], item["direction"]
        if not _metric_name_ok(metric):
            bad(f"{where}.metric", f"expected a metric name, got {describe(metric)}")
        elif direction not in DIRECTIONS:
            bad(f"{where}.direction", f"expected minimize or maximize, got "
                                      f"{describe(direction)}")
        elif any(o.metric == metric for o in objectives):
            bad(f"{where}.metric", f"{metric!r} is already an objective")
        else:
            objectives.append(Objective(metric, direction))

    constraints: list[Constraint] = []
    raw = data.get("constraints", []) or []
    if not isinstance(raw, list):
        bad("constraints", f"expected a list of {{metric: NAME, max: X}} or {{metric: NAME, "
                           f"min: X}}, got {describe(raw)}")
        raw = []
    for i, item in enumerate(raw):
        where = f"constraints[{i}]"
        if (not isinstance(item, dict) or "metric" not in item
                or not set(item) - {"metric"} or set(item) - {"metric", "min", "max"}):
            bad(where, "expected {metric: NAME, max: X} and/or min: X, got "
                       f"{describe(item)}")
            continue
        if not _metric_name_ok(item["metric"]):
            bad(f"{where}.metric", f"expected a metric name, got {describe(item['metric'])}")
            continue
        bounds = {k: item.get(k) for k in ("min", "max")}
        wrong = [k for k, v in bounds.items() if k in item and not finite_number(v)]
        if wrong:
            bad(f"{where}.{wrong[0]}", f"expected a finite number, got "
                                        f"{describe(item[wrong[0]])}")
        elif any(c.metric == item["metric"] for c in constraints):
            bad(f"{where}.metric", f"{item['metric']!r} is already constrained: give min and "
                                   "max in one constraint")
        elif None not in bounds.values() and bounds["min"] > bounds["max"]:
            bad(where, f"min {bounds['min']} is above max {bounds['max']}: nothing is feasible")
        else:
            constraints.append(Constraint(item["metric"], bounds["min"], bounds["max"]))

    space: dict[str, Dimension] = {}
    raw = data.get("space", {})
    if not isinstance(raw, dict) or not raw:
        bad("space", "expected a non-empty mapping of parameter: {low: A, high: B} or "
                     f"{{choices: [...]}}, got {describe(raw)}")
        raw = {}
    for name, spec in raw.items():
        dimension = _parse_dimension(str(name), spec, bad)
        if dimension is not None:
            space[str(name)] = dimension

    cost = data.get("cost")
    if cost is not None and cost not in [o.metric for o in objectives]:
        bad("cost", f"expected one of the objectives' metrics "
                    f"({', '.join(o.metric for o in objectives)}), got {describe(cost)}")
    search = Search(n_trials=n_trials, objectives=objectives, space=space,
                    sampler=sampler if sampler in SAMPLERS else "nsga2", seed=seed,
                    constraints=constraints, population_size=population, cost=cost)
    if not problems and sampler == "grid":
        continuous = [d.name for d in space.values() if d.values() is None]
        if continuous:
            bad(f"space.{continuous[0]}", "the grid sampler needs discrete values: give "
                                           "choices, or a step for a float range")
        elif n_trials > search.grid_size():
            bad("n_trials", f"the grid holds {search.grid_size()} configurations, fewer than "
                            f"n_trials = {n_trials}")
    if problems:
        raise report(path, problems)
    return search


def _metric_name_ok(name: Any) -> bool:
    return isinstance(name, str) and bool(name.strip()) and set(name) <= _METRIC_CHARS


def _parse_dimension(name: str, spec: Any, bad) -> Dimension | None:
    where = f"space.{name}"
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
    "parse_search",
    "parse_study",
    "read_yaml",
    "report",
    "unpassable",
]
