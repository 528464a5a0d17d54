"""Design-space search: a study whose points are asked from an Optuna study, one trial each.

A study file with a ``search:`` section (``docs/studies.md``) names objectives (metrics the
notebook logs, each to minimize or maximize), optional constraints on metrics, and a space of
notebook parameters. The runner (:func:`mpimpy.studies.run_study`, the same one as for grids)
asks trials from an Optuna study kept in an RDB storage next to the tracking store
(``mlruns/optuna.db``, or ``--storage URL``), runs each trial as a point through the same
workers, papermill kernels and leases, and tells Optuna the objective values the notebook
logged to the trial's MLflow run.

Trials, runs and leases: one to one
    Every trial has exactly one MLflow run, created by the runner that asked the trial and
    tagged ``search`` (the study's name) and ``trial`` (its number); the trial keeps the run's
    id as its user attribute ``mpimpy.run_id``. The run carries the runner's lease
    (:class:`mpimpy.studies.runner.Lease`), renewed while it runs, and the worker's guard stops
    the kernel when the runner is gone, as for every point. A trial's state follows its run:

    - run FINISHED with every objective logged: trial COMPLETE with those values, the
      constraints' violations as ``mpimpy.constraints`` (Optuna's ``constraints_func``), the run
      tagged ``objective.<metric>`` and ``feasible``;
    - run FINISHED but an objective not logged (or NaN): the run is set FAILED saying which,
      and the trial FAIL;
    - run FAILED (the notebook raised, its worker died): trial FAIL, not retried (the sampler
      moves on);
    - run KILLED (Ctrl-C, a runner killed, a lease gone stale): trial FAIL and a *retry*, a new
      trial with the same parameters enqueued by whoever failed the trial (user attribute
      ``mpimpy.retry_of``); so no asked configuration is lost.

    The runner that ends a run settles its trial; a runner that starts settles every RUNNING
    trial it finds whose run has ended, or whose run's lease is stale (that run is marked
    KILLED first, as for points), or that has no run at all (its runner died between asking it
    and creating the run). Trials asked with the same parameters as a COMPLETE trial are not
    run again: their run copies the earlier run's metrics (tag ``duplicate_of``) and they
    count as trials, as Optuna's own guidance does.

    On a local SQLite storage every change to the Optuna study (count, ask and create the run;
    settle and retry) happens under a file lock beside the database, so runners started
    together never ask more than ``n_trials`` and never retry a trial twice; a database server
    (``--storage postgresql://...``) is for one runner per search (Dask spreads its trials).

Counting
    A search is done when ``n_trials`` trials are COMPLETE. Failed trials do not count;
    a run stops asking after as many failed trials of its own as ``n_trials`` (a broken notebook
    must not loop forever). ``grid``/``points`` beside ``search`` are reference configurations,
    enqueued as the first trials once, when the Optuna study is created.

Importing this module does not import Optuna (``mpimpy study validate`` stays fast).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mpimpy.studies.runner import _StudyRun
from mpimpy.studies.spec import (
    SEED_PARAMETER,
    NotebookParameter,
    Point,
    Study,
    StudyError,
    _coerce,
    _describe,
    _type_ok,
    params_hash,
    unpassable,
)

SAMPLERS = ("nsga2", "tpe", "random", "grid")
DIRECTIONS = ("minimize", "maximize")
SEARCH_KEYS = ("sampler", "n_trials", "seed", "objectives", "constraints", "space",
               "population_size", "cost")
REQUIRED_SEARCH_KEYS = ("n_trials", "objectives", "space")
#: Run tags of a search's trials.
SEARCH_TAG = "search"
TRIAL_TAG = "trial"
FEASIBLE_TAG = "feasible"
OBJECTIVE_TAG = "objective."
DUPLICATE_TAG = "duplicate_of"
REFERENCE_TAG = "reference"
#: Optuna user attributes of a trial.
RUN_ATTR = "mpimpy.run_id"
HASH_ATTR = "mpimpy.params_hash"
RETRY_ATTR = "mpimpy.retry_of"
CONSTRAINTS_ATTR = "mpimpy.constraints"
FEASIBLE_ATTR = "mpimpy.feasible"
ERROR_ATTR = "mpimpy.error"
REFERENCE_ATTR = "mpimpy.reference"
#: Optuna user attribute of the study: the search's definition (everything but ``n_trials``).
DEFINITION_ATTR = "mpimpy.definition"
STORE_ATTR = "mpimpy.tracking_store"
#: Environment variable naming the Optuna storage (default: beside the tracking store).
ENV_STORAGE = "MPIMPY_OPTUNA_STORAGE"
#: Most combinations of the space's values the validation tries (beyond: a seeded sample).
MAX_PROBES = 512
_METRIC_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ ")


# --------------------------------------------------------------------------------------------
# The search section


@dataclass(frozen=True)
class Objective:
    """A metric the notebook logs, to ``"minimize"`` or ``"maximize"``."""

    metric: str
    direction: str


@dataclass(frozen=True)
class Constraint:
    """A metric that must lie within ``[min, max]`` (either bound may be ``None``)."""

    metric: str
    min: float | None = None
    max: float | None = None

    def violation(self, value: float) -> float:
        """How far ``value`` is outside the bounds (<= 0: satisfied), in the metric's unit."""
        worst = -math.inf
        if self.max is not None:
            worst = max(worst, value - self.max)
        if self.min is not None:
            worst = max(worst, self.min - value)
        return worst

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:g} <= {self.metric} <= {self.max:g}"
        if self.max is not None:
            return f"{self.metric} <= {self.max:g}"
        return f"{self.metric} >= {self.min:g}"


@dataclass(frozen=True)
class Dimension:
    """One notebook parameter of the space: ``choices`` or a ``low``..``high`` range
    (``integer`` for an int parameter, with ``step``, optionally ``log``-uniform)."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def encoded(self) -> bool:
        """Whether the choices go to Optuna as JSON strings (lists and mappings: Optuna's
        categorical choices are None, bools, numbers and strings only)."""
        return self.choices is not None and any(
            isinstance(c, list | dict) for c in self.choices)

    def values(self) -> list | None:
        """Every value of a discrete dimension (choices, or a range with a step), else None."""
        if self.choices is not None:
            return list(self.choices)
        if self.integer:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is not None:
            count = round((self.high - self.low) / self.step)
            return [self.low + i * self.step for i in range(count + 1)]
        return None

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return any(_same(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is not None:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return True

    def probes(self) -> list:
        """Values the validation tries: every choice, else both ends of the range."""
        return list(self.choices) if self.choices is not None else [
            int(self.low) if self.integer else self.low,
            int(self.high) if self.integer else self.high]

    def distribution(self):
        """The Optuna distribution of this dimension."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.choices is not None:
            return CategoricalDistribution(
                [json.dumps(c) for c in self.choices] if self.encoded else list(self.choices))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log,
                                   step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=self.step)

    def encode(self, value: Any) -> Any:
        """A notebook value as Optuna stores it."""
        return json.dumps(value) if self.encoded else value

    def decode(self, value: Any) -> Any:
        """Optuna's value as the notebook gets it."""
        if self.encoded:
            return json.loads(value)
        if self.integer:
            return int(value)
        if self.choices is None:
            return float(value)
        return value


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) and (
        type(a) is type(b) or (isinstance(a, int | float) and isinstance(b, int | float)
                               and not isinstance(a, bool) and not isinstance(b, bool)))


@dataclass
class Search:
    """A validated ``search:`` section."""

    n_trials: int
    objectives: list[Objective]
    space: dict[str, Dimension]
    sampler: str = "nsga2"
    seed: int = 0
    constraints: list[Constraint] = field(default_factory=list)
    population_size: int | None = None
    cost: str | None = None
    #: Share of the space's value combinations the simulator refuses (see validation).
    invalid_share: float = 0.0

    @property
    def cost_objective(self) -> Objective:
        """The objective that "cheapest" refers to: ``cost``, else the last one minimized,
        else the last one."""
        if self.cost is not None:
            return next(o for o in self.objectives if o.metric == self.cost)
        minimized = [o for o in self.objectives if o.direction == "minimize"]
        return (minimized or self.objectives)[-1]

    @property
    def directions(self) -> dict[str, str]:
        return {o.metric: o.direction for o in self.objectives}

    @property
    def metrics(self) -> list[str]:
        """Every metric the search reads: objectives, then constraints."""
        names = [o.metric for o in self.objectives]
        return names + [c.metric for c in self.constraints if c.metric not in names]

    def nsga2_population(self) -> int:
        """NSGA-II's population: ``population_size``, else a fifth of ``n_trials`` within
        [4, 50] (at least five generations in a short search)."""
        return self.population_size or max(4, min(50, self.n_trials // 5))

    def grid_size(self) -> int | None:
        sizes = [d.values() for d in self.space.values()]
        return None if any(s is None for s in sizes) else math.prod(len(s) for s in sizes)

    def definition(self, study: Study) -> dict[str, Any]:
        """What identifies a search: resuming with another definition is refused (all but
        ``n_trials``, which may grow)."""
        return {
            "notebook": study.notebook_name,
            "parameters": {k: study.parameters[k] for k in sorted(study.parameters)},
            "seed": study.seeds[0],
            "sampler": self.sampler,
            "sampler_seed": self.seed,
            "population_size": self.nsga2_population() if self.sampler == "nsga2" else None,
            "objectives": [asdict(o) for o in self.objectives],
            "constraints": [asdict(c) for c in self.constraints],
            "space": {k: {f: v for f, v in asdict(d).items() if f != "name"}
                      for k, d in sorted(self.space.items())},
        }


def _number(value: Any) -> bool:
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
                         f"{', '.join(SEARCH_KEYS)}, got {_describe(data)}")
    for key in REQUIRED_SEARCH_KEYS:
        if key not in data:
            bad(key, "missing (required: " + ", ".join(REQUIRED_SEARCH_KEYS) + ")")
    for key in sorted(set(map(str, data)) - set(SEARCH_KEYS)):
        bad(key, "unknown key; allowed keys are " + ", ".join(SEARCH_KEYS))

    sampler = data.get("sampler", "nsga2")
    if sampler not in SAMPLERS:
        bad("sampler", f"expected one of {', '.join(SAMPLERS)} (Optuna's samplers), got "
                       f"{_describe(sampler)}")
    n_trials = data.get("n_trials", 1)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        bad("n_trials", f"expected an integer >= 1 (trials to complete), got "
                        f"{_describe(n_trials)}")
        n_trials = 1
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        bad("seed", f"expected an integer >= 0 (the sampler's seed), got {_describe(seed)}")
    population = data.get("population_size")
    if population is not None:
        if sampler != "nsga2":
            bad("population_size", f"only the nsga2 sampler has a population, not {sampler!r}")
        elif isinstance(population, bool) or not isinstance(population, int) or population < 2:
            bad("population_size", f"expected an integer >= 2, got {_describe(population)}")

    objectives: list[Objective] = []
    raw = data.get("objectives", [])
    if not isinstance(raw, list) or not raw:
        bad("objectives", "expected a non-empty list of {metric: NAME, direction: minimize|"
                          f"maximize}}, got {_describe(raw)}")
        raw = []
    for i, item in enumerate(raw):
        where = f"objectives[{i}]"
        if not isinstance(item, dict) or set(item) != {"metric", "direction"}:
            bad(where, "expected {metric: NAME, direction: minimize|maximize}, got "
                       f"{_describe(item)}")
            continue
        metric, direction = item["metric"], item["direction"]
        if not _metric_name_ok(metric):
            bad(f"{where}.metric", f"expected a metric name, got {_describe(metric)}")
        elif direction not in DIRECTIONS:
            bad(f"{where}.direction", f"expected minimize or maximize, got "
                                      f"{_describe(direction)}")
        elif any(o.metric == metric for o in objectives):
            bad(f"{where}.metric", f"{metric!r} is already an objective")
        else:
            objectives.append(Objective(metric, direction))

    constraints: list[Constraint] = []
    raw = data.get("constraints", []) or []
    if not isinstance(raw, list):
        bad("constraints", f"expected a list of {{metric: NAME, max: X}} or {{metric: NAME, "
                           f"min: X}}, got {_describe(raw)}")
        raw = []
    for i, item in enumerate(raw):
        where = f"constraints[{i}]"
        if (not isinstance(item, dict) or "metric" not in item
                or not set(item) - {"metric"} or set(item) - {"metric", "min", "max"}):
            bad(where, "expected {metric: NAME, max: X} and/or min: X, got "
                       f"{_describe(item)}")
            continue
        if not _metric_name_ok(item["metric"]):
            bad(f"{where}.metric", f"expected a metric name, got {_describe(item['metric'])}")
            continue
        bounds = {k: item.get(k) for k in ("min", "max")}
        wrong = [k for k, v in bounds.items() if k in item and not _number(v)]
        if wrong:
            bad(f"{where}.{wrong[0]}", f"expected a finite number, got "
                                        f"{_describe(item[wrong[0]])}")
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
                     f"{{choices: [...]}}, got {_describe(raw)}")
        raw = {}
    for name, spec in raw.items():
        dimension = _parse_dimension(str(name), spec, bad)
        if dimension is not None:
            space[str(name)] = dimension

    cost = data.get("cost")
    if cost is not None and cost not in [o.metric for o in objectives]:
        bad("cost", f"expected one of the objectives' metrics "
                    f"({', '.join(o.metric for o in objectives)}), got {_describe(cost)}")
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
        from mpimpy.studies.spec import _report

        raise _report(path, problems)
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
                   f" got {_describe(spec)}")
        return None
    if "choices" in spec:
        if set(spec) != {"choices"}:
            bad(where, f"choices take no other keys, got {sorted(set(spec) - {'choices'})}")
            return None
        choices = spec["choices"]
        if not isinstance(choices, list) or len(choices) < 1:
            bad(f"{where}.choices", f"expected a non-empty list, got {_describe(choices)}")
            return None
        for i, choice in enumerate(choices):
            if unpassable(choice) is not None:
                bad(f"{where}.choices[{i}]", "cannot be passed to a notebook: expected null, "
                    "true/false, a number, a string, a list or a mapping with string keys, got "
                    f"{_describe(unpassable(choice))}")
                return None
            for j in range(i):
                if _same(choices[j], choice):
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
        if not _number(value):
            bad(f"{where}.{key}", f"expected a finite number, got {_describe(value)}")
            return None
    if not isinstance(log, bool):
        bad(f"{where}.log", f"expected true or false, got {_describe(log)}")
        return None
    if not low < high:
        bad(where, f"expected low < high, got low = {low}, high = {high} (a fixed value "
                   "belongs under 'parameters')")
        return None
    if step is not None and (not _number(step) or step <= 0):
        bad(f"{where}.step", f"expected a positive number, got {_describe(step)}")
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


# --------------------------------------------------------------------------------------------
# Validation against the notebook


def check_search(study: Study, declared: dict[str, NotebookParameter],
                 metrics: list[str] | None) -> list[str]:
    """Problems of a study's search against its notebook: the metrics it declares it logs,
    its parameters' types, the reference points (``grid``/``points``) and the settings the
    space's values give the simulator. Returns the lines of the message (empty: valid)."""
    search = study.search
    problems = []
    name = study.notebook.name
    if metrics is None:
        problems.append(
            f"key 'search.objectives': notebook {name} declares no metrics; add a line "
            "'# logs metrics: NAME, NAME, ...' to its parameters cell naming what it logs")
    else:
        for i, objective in enumerate(search.objectives):
            if objective.metric not in metrics:
                problems.append(
                    f"key 'search.objectives[{i}].metric': {objective.metric!r} is not a metric "
                    f"notebook {name} logs (it declares: {', '.join(metrics)})")
        for i, constraint in enumerate(search.constraints):
            if constraint.metric not in metrics:
                problems.append(
                    f"key 'search.constraints[{i}].metric': {constraint.metric!r} is not a "
                    f"metric notebook {name} logs (it declares: {', '.join(metrics)})")
    known = ", ".join(sorted(declared))
    for key, dimension in search.space.items():
        where = f"key 'search.space.{key}'"
        choice_key = f"key 'search.space.{key}.choices"
        spec = declared.get(key)
        if spec is None:
            problems.append(f"{where}: {key!r} is not a parameter of notebook {name} (its "
                            f"parameters cell declares: {known})")
            continue
        if key in study.parameters:
            problems.append(f"{where}: also set under 'parameters'; set it in one place")
        if spec.types is None:
            continue
        expected = " or ".join(sorted(t if t != "NoneType" else "None" for t in spec.types))
        if dimension.choices is not None:
            for i, choice in enumerate(dimension.choices):
                if not _type_ok(choice, spec.types):
                    problems.append(f"{choice_key}[{i}]': expected {expected} like the "
                                    f"notebook's default {key} = {spec.source}, got "
                                    f"{_describe(choice)}")
                    break
        elif "int" in spec.types and "float" not in spec.types and not dimension.integer:
            problems.append(f"{where}: the notebook's {key} = {spec.source} is an int: "
                            f"low, high and step must be integers, got {dimension.low}, "
                            f"{dimension.high}, {dimension.step}")
        elif not {"int", "float"} & spec.types:
            problems.append(f"{where}: a range needs a number parameter, but the notebook's "
                            f"{key} = {spec.source} is {expected}; give choices instead")
    if problems:
        return problems
    # a float parameter searched over an int-looking range is a float range
    for key, dimension in list(search.space.items()):
        types = declared[key].types
        if dimension.integer and types is not None and "float" in types and "int" not in types:
            search.space[key] = Dimension(key, low=float(dimension.low),
                                          high=float(dimension.high), log=dimension.log,
                                          step=None if dimension.step is None
                                          else float(dimension.step))
        elif dimension.choices is not None:
            search.space[key] = Dimension(
                key, choices=tuple(_coerce(c, declared[key]) for c in dimension.choices))
    problems += _check_references(study)
    if not problems:
        problems += _check_space_settings(study, declared)
    return problems


def _check_references(study: Study) -> list[str]:
    """``grid``/``points`` beside a search: values of the space's parameters, inside it."""
    space = study.search.space
    problems = []
    values = [(f"grid.{k}", k, v) for k, vs in study.grid.items() for v in vs]
    values += [(f"points[{i}].{k}", k, v) for i, p in enumerate(study.points) for k, v in p.items()]
    for where, key, value in values:
        if key not in space:
            problems.append(f"key '{where}': with a search, grid and points give reference "
                            f"configurations of the space's parameters ({', '.join(space)}); "
                            f"set {key} under 'parameters'")
        elif not space[key].contains(value):
            problems.append(f"key '{where}': {value!r} is outside the search space of {key} "
                            f"({_describe_dimension(space[key])})")
    references = reference_points(study) if not problems else []
    if references:
        from mpimpy.studies.settings import point_problems

        for i, values in enumerate(references):
            point = trial_point(study, i, values)
            for _, message in point_problems(point, study.notebook_parameters or {}):
                problems.append(f"key '{'grid' if study.grid else 'points'}': the reference "
                                f"configuration {point.run_name.split(': ', 1)[1]}: {message}")
    count = len(references)
    if count > study.search.n_trials:
        problems.append(f"key 'search.n_trials': {study.search.n_trials} trials cannot hold "
                        f"the {count} reference configurations of grid/points")
    return problems


def _describe_dimension(d: Dimension) -> str:
    if d.choices is not None:
        return "choices " + ", ".join(map(repr, d.choices))
    text = f"{d.low} .. {d.high}"
    return text + (f" step {d.step}" if d.step else "") + (" log" if d.log else "")


def _check_space_settings(study: Study, declared: dict[str, NotebookParameter]) -> list[str]:
    """Try the space's values on the simulator's own validation (:mod:`.settings`): every
    combination of the choices and range ends (at most :data:`MAX_PROBES`, else a seeded
    sample holding every value). A value no combination makes valid is refused; the share of
    combinations refused is kept as ``invalid_share`` (such trials fail at once, unrun)."""
    from mpimpy.studies.settings import point_problems

    search = study.search
    names = list(search.space)
    probes = [search.space[n].probes() for n in names]
    total = math.prod(len(p) for p in probes)
    if total <= MAX_PROBES:
        combos = list(itertools.product(*probes))
    else:
        rng = random.Random(0)
        combos = [tuple(rng.choice(p) for p in probes) for _ in range(MAX_PROBES)]
        for i, values in enumerate(probes):
            for value in values:
                combo = list(rng.choice(combos))
                combo[i] = value
                combos.append(tuple(combo))
    ok: dict[tuple[str, str], bool] = {}
    first_problem: dict[tuple[str, str], str] = {}
    invalid = 0
    for combo in combos:
        point = trial_point(study, 0, dict(zip(names, combo, strict=True)))
        found = point_problems(point, declared)
        invalid += bool(found)
        for name, value in zip(names, combo, strict=True):
            key = (name, json.dumps(value))
            ok[key] = ok.get(key, False) or not found
            if found:
                first_problem.setdefault(key, found[0][1])
    search.invalid_share = invalid / len(combos)
    problems = []
    for (name, value), valid in ok.items():
        if not valid:
            problems.append(f"key 'search.space.{name}': {value} is refused by the simulator "
                            f"with every other value of the space: {first_problem[(name, value)]}")
    return problems


def notebook_metrics(notebook: Path) -> list[str] | None:
    """The metrics a notebook declares it logs: the lines ``# logs metrics: A, B`` of its
    parameters cell (all such lines together), or ``None`` when it declares none."""
    from mpimpy.studies.spec import read_notebook

    nb = read_notebook(Path(notebook))
    for cell in nb["cells"]:
        if "parameters" in ((cell.get("metadata") or {}).get("tags") or []):
            names: list[str] = []
            for line in cell["source"].splitlines():
                text = line.strip()
                if text.startswith("#") and text[1:].strip().startswith("logs metrics:"):
                    listed = text[1:].strip()[len("logs metrics:"):]
                    names += [n.strip() for n in listed.split(",") if n.strip()]
            return names or None
    return None


def reference_points(study: Study) -> list[dict[str, Any]]:
    """The ``grid`` x ``points`` combinations beside a search, as dicts of space values."""
    if not study.grid and not study.points:
        return []
    combos = [dict(zip(study.grid, values, strict=True))
              for values in itertools.product(*study.grid.values())]
    return [{**combo, **bundle} for combo in combos for bundle in (study.points or [{}])]


# --------------------------------------------------------------------------------------------
# Points of trials


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_point(study: Study, number: int, values: dict[str, Any]) -> Point:
    """The point a trial runs: the study's fixed parameters, the trial's values and the seed.

    Its ``point_id`` (the executed notebook's name) starts with the trial number, so two
    trials of the same configuration never share a file; ``params_hash`` is the computation's
    (equal for equal configurations).
    """
    declared = study.notebook_parameters or {}
    varying = {k: _coerce(v, declared.get(k)) for k, v in values.items()}
    merged = {**study.parameters, **varying, SEED_PARAMETER: study.seeds[0]}
    merged = {k: _coerce(v, declared.get(k)) for k, v in merged.items()}
    digest = params_hash(study.notebook_name, merged)
    run_name = f"trial {number}: " + ",".join(f"{k}={_short(v)}" for k, v in varying.items())
    return Point(
        index=number,
        point_id=f"trial-{number:04d}-{digest[:8]}",
        run_name=run_name[:250],
        parameters=merged,
        varying=varying,
        params_hash=digest,
        sources={**{k: f"parameters.{k}" for k in study.parameters},
                 **{k: f"search.space.{k}" for k in varying}, SEED_PARAMETER: "seeds"},
    )


# --------------------------------------------------------------------------------------------
# The Optuna study


def default_storage(uri: str | None = None) -> str:
    """The Optuna storage of a tracking store: ``$MPIMPY_OPTUNA_STORAGE``, else the SQLite
    file ``optuna.db`` beside a local store's database, else in the local store folder."""
    import os

    from mpimpy import tracking

    if os.environ.get(ENV_STORAGE):
        return os.environ[ENV_STORAGE]
    db = tracking.sqlite_path(uri or tracking.tracking_uri())
    folder = db.parent if db is not None else tracking.store_dir()
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def storage_summary(storage: str) -> str:
    """A storage URL without its password, for messages and tags."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", storage)


def _sqlite_file(storage: str) -> Path | None:
    if storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///"):])
    return None


class StorageLock:
    """Mutual exclusion of the runners of a search on a local SQLite storage: an exclusive
    file lock beside the database, re-entrant within a process (a no-op on a database
    server, whose row locks Optuna uses)."""

    def __init__(self, storage: str):
        db = _sqlite_file(storage)
        self.path = db.with_name(db.name + ".lock") if db is not None else None
        self._depth = 0
        self._handle = None
        self._thread_lock = threading.RLock()

    def __enter__(self):
        self._thread_lock.acquire()
        if self.path is not None and self._depth == 0:
            import fcntl

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a")  # noqa: SIM115 - held until __exit__
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0 and self._handle is not None:
            import fcntl

            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        self._thread_lock.release()

    @property
    def exclusive(self) -> bool:
        """Whether holding the lock excludes every other runner of the search."""
        return self.path is not None


def _quiet_optuna():
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def make_sampler(search: Search, n_existing: int):
    """The search's Optuna sampler, seeded with ``seed`` and the number of trials the study
    holds (so that a resumed search does not draw its first trials' values again)."""
    optuna = _quiet_optuna()
    seed = (search.seed * 1_000_003 + n_existing) % 2**32
    # constraints reach the samplers as the trials' constraint values (Trial.set_constraint)
    if search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=search.nsga2_population(),
                                             seed=seed)
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    grid = {name: [d.encode(v) for v in d.values()] for name, d in search.space.items()}
    return optuna.samplers.GridSampler(grid, seed=seed)


def _storage_problem(exc: BaseException, storage: str) -> str:
    from mpimpy.studies.runner import _problem

    return f"cannot use the Optuna storage {storage_summary(storage)}: {_problem(exc)}"


def open_search(study: Study, storage: str, lock: StorageLock, *, store: str,
                create: bool = True):
    """The Optuna study of a search (created, with its reference trials enqueued, if it is not
    there and ``create``), or ``None``; refuses one made with another definition or for
    another tracking store (:class:`StudyError`)."""
    optuna = _quiet_optuna()
    search = study.search
    definition = json.dumps(search.definition(study), sort_keys=True)
    with lock:
        db = _sqlite_file(storage)
        if not create and db is not None and not db.is_file():
            return None
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        rdb = optuna.storages.RDBStorage(storage)
        names = {s.study_name for s in optuna.get_all_study_summaries(rdb)}
        if study.name not in names:
            if not create:
                return None
            created = optuna.create_study(
                storage=rdb, study_name=study.name,
                directions=[o.direction for o in search.objectives])
            created.set_user_attr(DEFINITION_ATTR, definition)
            created.set_user_attr(STORE_ATTR, store)
            for values in reference_points(study):
                created.enqueue_trial(
                    {k: search.space[k].encode(v) for k, v in values.items()},
                    user_attrs={REFERENCE_ATTR: True})
        n_existing = len(rdb.get_all_trials(
            rdb.get_study_id_from_name(study.name), deepcopy=False))
        loaded = optuna.load_study(study_name=study.name, storage=rdb,
                                   sampler=make_sampler(search, n_existing))
    _check_definition(study, storage, loaded, definition, store)
    return loaded


def _check_definition(study: Study, storage: str, loaded, definition: str, store: str) -> None:
    old = loaded.user_attrs.get(DEFINITION_ATTR)
    where = f"the Optuna study {study.name!r} in {storage_summary(storage)}"
    if old is not None and old != definition:
        before, now = json.loads(old), json.loads(definition)
        changed = [k for k in now if before.get(k) != now.get(k)]
        raise StudyError(
            f"{study.path}: key 'search': {where} was started with another definition "
            f"(changed: {', '.join(changed)}); only n_trials may change when a search resumes. "
            "Give the study another name to start a new search.")
    old_store = loaded.user_attrs.get(STORE_ATTR)
    if old_store is not None and old_store != store:
        raise StudyError(
            f"{study.path}: key 'search': {where} holds the trials of the runs in {old_store}, "
            f"not of {store}; run it on that store, or give another --storage")


def _experiment_store(uri: str) -> str:
    from mpimpy import tracking

    db = tracking.sqlite_path(uri)
    return str(db.resolve()) if db is not None else uri


# --------------------------------------------------------------------------------------------
# Settling trials from their runs


def trial_values(search: Search, metrics: dict[str, float]):
    """``(values, violations, error)`` of a run's metrics: the objectives' values and the
    constraints' violations, or the error naming a metric the run lacks."""
    missing = [m for m in search.metrics if m not in metrics]
    if missing:
        return None, None, (f"the notebook did not log the search's metric {missing[0]!r} "
                            "(or logged NaN/inf: see the tag nonfinite." + missing[0] + ")")
    values = [float(metrics[o.metric]) for o in search.objectives]
    violations = [c.violation(float(metrics[c.metric])) for c in search.constraints]
    return values, violations, None


def _tell(optuna_study, trial_id: int, *, values=None, state=None, attrs=None,
          constraints=None) -> bool:
    """Finish a RUNNING trial (False when it was finished already: by another runner), with
    its user attributes and constraint values (<= 0: satisfied) set first."""
    from optuna.trial import Trial, TrialState

    storage = optuna_study._storage
    if storage.get_trial(trial_id).state.is_finished():
        return False
    for key, value in (attrs or {}).items():
        storage.set_trial_user_attr(trial_id, key, value)
    if constraints:
        trial = Trial(optuna_study, trial_id)
        for key, value in constraints.items():
            trial.set_constraint(key, value)
    number = storage.get_trial_number_from_id(trial_id)
    try:
        optuna_study.tell(number, values, state=state or (
            TrialState.COMPLETE if values is not None else TrialState.FAIL))
    except ValueError:  # finished meanwhile (a database server, without our lock)
        return False
    except RuntimeError:
        # the grid sampler calls Study.stop() once the grid is exhausted, which Optuna allows
        # only inside Study.optimize; the trial was stored before that
        if not storage.get_trial(trial_id).state.is_finished():
            raise
    return True


def settle(optuna_study, lock: StorageLock, search: Search, client, trial_id: int,
           run) -> str:
    """Finish a trial from its ended run (see the module docstring); returns its state
    (``"COMPLETE"``, ``"FAIL"``, ``"RETRIED"``, or ``"SETTLED"`` if another runner did it)."""
    from mpimpy.studies.runner import _record_failure

    status = run.info.status
    with lock:
        trial = optuna_study._storage.get_trial(trial_id)
        if trial.state.is_finished():
            return "SETTLED"
        if status == "FINISHED":
            values, violations, error = trial_values(search, run.data.metrics)
            if error is None:
                feasible = all(v <= 0 for v in violations)
                tags = {f"{OBJECTIVE_TAG}{o.metric}": f"{v:.10g}"
                        for o, v in zip(search.objectives, values, strict=True)}
                tags[FEASIBLE_TAG] = str(feasible).lower()
                for key, value in tags.items():
                    client.set_tag(run.info.run_id, key, value)
                done = _tell(optuna_study, trial_id, values=values,
                             attrs={CONSTRAINTS_ATTR: violations, FEASIBLE_ATTR: feasible},
                             constraints={c.metric: v for c, v in zip(
                                 search.constraints, violations, strict=True)})
                return "COMPLETE" if done else "SETTLED"
            _record_failure(client, run.info.run_id, error, None)
            done = _tell(optuna_study, trial_id, attrs={ERROR_ATTR: error})
            return "FAIL" if done else "SETTLED"
        error = run.data.tags.get("mpimpy.error", status.lower())
        if status == "KILLED":
            return _fail_and_retry(optuna_study, trial, error)
        done = _tell(optuna_study, trial_id, attrs={ERROR_ATTR: error[:2000]})
        return "FAIL" if done else "SETTLED"


def _fail_and_retry(optuna_study, trial, why: str) -> str:
    """Fail an interrupted trial and enqueue a new one with its parameters (the caller holds
    the lock); ``"SETTLED"`` if it was finished already."""
    if not _tell(optuna_study, trial._trial_id, attrs={ERROR_ATTR: f"interrupted: {why}"[:2000]}):
        return "SETTLED"
    attrs = {RETRY_ATTR: trial.number}
    if trial.user_attrs.get(REFERENCE_ATTR):
        attrs[REFERENCE_ATTR] = True
    optuna_study.enqueue_trial(dict(trial.params), user_attrs=attrs)
    return "RETRIED"


def find_trial_run(client, experiment_id: str, study_name: str, trial) -> Any | None:
    """The (not deleted) run of a trial: by its user attribute, else by the run's tags."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    if run_id:
        with contextlib.suppress(Exception):
            run = client.get_run(run_id)
            if run.info.lifecycle_stage != "deleted":
                return run
    from mpimpy.studies.runner import _search_all

    found = _search_all(client, experiment_id,
                        f"tags.{SEARCH_TAG} = '{study_name}' and tags.{TRIAL_TAG} = "
                        f"'{trial.number}'")
    return found[0] if found else None


# --------------------------------------------------------------------------------------------
# Running a search: the study runner's loop, asking trials instead of popping points


def search_counts(optuna_study) -> dict[str, int]:
    """Trials of an Optuna study by state (``COMPLETE``, ``RUNNING``, ``FAIL``, ``WAITING``)."""
    from collections import Counter

    trials = optuna_study._storage.get_all_trials(optuna_study._study_id, deepcopy=False)
    return dict(Counter(t.state.name for t in trials))


class SearchRun(_StudyRun):
    """:class:`mpimpy.studies.runner._StudyRun` for a search: instead of a list of points,
    trials asked from the Optuna study while fewer than ``n_trials`` are complete or running,
    each settled from its run when it ends (see the module docstring)."""

    def __init__(self, *args, optuna_study, storage: str, lock: StorageLock, **kwargs):
        super().__init__(*args, **kwargs)
        self.optuna, self.storage, self.lock = optuna_study, storage, lock
        self.search: Search = self.study.search
        self.distributions = {k: d.distribution() for k, d in self.search.space.items()}
        self.trial_of: dict[str, int] = {}  # run id -> trial id, for the trials in flight here
        self.foreign: dict[int, str | None] = {}  # trial id -> run id, held by other runners
        self.failures = 0
        self.gave_up = False

    # -- results --------------------------------------------------------------------------
    def add(self, point, status, run_id=None, error=None, output_path=None, wall_s=None):
        from mpimpy.studies.runner import PointResult

        self.result.results.append(PointResult(point, status, run_id, error, output_path, wall_s))
        if status in ("FAILED", "KILLED", "INVALID"):
            self.failures += status != "KILLED"
            self.bar.write(f"{status} {point.point_id}: {error}")
        if status in ("FINISHED", "DUPLICATE"):
            self.bar.update(1)

    def _fail_last(self, run_id: str, error: str) -> None:
        for result in reversed(self.result.results):
            if result.run_id == run_id:
                if result.status == "FINISHED":
                    result.status, result.error = "FAILED", error
                    self.failures += 1
                    self.bar.write(f"FAILED {result.point.point_id}: {error}")
                return

    # -- asking ---------------------------------------------------------------------------
    def start_points(self) -> None:
        from optuna.trial import TrialState

        while (len(self.inflight) < self.backend.capacity and self.result.store_error is None
               and not self.gave_up):
            try:
                with self.lock:
                    trials = self.optuna._storage.get_all_trials(self.optuna._study_id,
                                                                 deepcopy=False)
                    complete = sum(t.state == TrialState.COMPLETE for t in trials)
                    running = sum(t.state == TrialState.RUNNING for t in trials)
                    if complete + running >= self.search.n_trials:
                        if running > len(self.inflight) and not self.foreign:
                            self.reconcile()  # another runner's trials: wait for them
                        return
                    if self.failures >= self.search.n_trials:
                        self.gave_up = True
                        self.bar.write(f"Stopping: {self.failures} trials failed in this run "
                                       "(as many as n_trials); see their runs' errors")
                        return
                    self.launch(self.optuna.ask(self.distributions), trials)
            except Exception as exc:
                from mpimpy.studies.runner import _problem

                self.stop_starting(f"cannot run the search's next trial (Optuna storage "
                                   f"{storage_summary(self.storage)}, "
                                   f"experiment store {self.uri}): {_problem(exc)}")
                return

    def _tags(self, trial) -> dict[str, str]:
        tags = {SEARCH_TAG: self.study.name, TRIAL_TAG: str(trial.number),
                "mpimpy.optuna_storage": storage_summary(self.storage)}
        if trial.user_attrs.get(REFERENCE_ATTR):
            tags[REFERENCE_TAG] = "true"
        if RETRY_ATTR in trial.user_attrs:
            tags["retry_of"] = str(trial.user_attrs[RETRY_ATTR])
        return tags

    def launch(self, trial, trials) -> None:
        """Run an asked trial (the caller holds the lock): its run, then a worker; or, for
        settings the simulator refuses, a FAILED run; or, for a configuration that completed
        before, a copy of that run."""
        from optuna.trial import TrialState

        from mpimpy import tracking
        from mpimpy.studies.runner import _create_run, _record_failure
        from mpimpy.studies.settings import point_problems

        values = {k: self.search.space[k].decode(v) for k, v in trial.params.items()}
        point = trial_point(self.study, trial.number, values)
        storage, client = self.optuna._storage, self.client
        tags = self._tags(trial)
        problems = point_problems(point, self.study.notebook_parameters or {})
        earlier = next((t for t in trials if t.state == TrialState.COMPLETE
                        and t.user_attrs.get(HASH_ATTR) == point.params_hash
                        and t.user_attrs.get(RUN_ATTR)), None)
        if earlier is not None:
            tags.update({DUPLICATE_TAG: earlier.user_attrs[RUN_ATTR],
                         f"{DUPLICATE_TAG}_trial": str(earlier.number)})
        run_id = _create_run(client, self.experiment_id, self.study, point, self.lease,
                             extra_tags=tags)
        storage.set_trial_user_attr(trial._trial_id, RUN_ATTR, run_id)
        storage.set_trial_user_attr(trial._trial_id, HASH_ATTR, point.params_hash)
        tracked = tracking.TrackedRun(run_id, client=client, managed=True)
        if problems:
            error = "invalid settings, not run: " + "; ".join(m for _, m in problems)
            tracking.log_point_params(tracked, point.parameters)
            _record_failure(client, run_id, error, None)
            _tell(self.optuna, trial._trial_id, attrs={ERROR_ATTR: error[:2000]})
            self.add(point, "INVALID", run_id, error)
        elif earlier is not None:
            source = client.get_run(earlier.user_attrs[RUN_ATTR])
            tracked.log_params(source.data.params)
            tracked.log_metrics(source.data.metrics)
            client.set_terminated(run_id, "FINISHED")
            settle(self.optuna, self.lock, self.search, client, trial._trial_id,
                   client.get_run(run_id))
            self.add(point, "DUPLICATE", run_id)
        else:
            self.trial_of[run_id] = trial._trial_id
            self.inflight[self.backend.submit(self.task(point, run_id))] = (point, run_id)

    # -- settling ---------------------------------------------------------------------------
    def collect(self, handle) -> None:
        _, run_id = self.inflight[handle]
        super().collect(handle)
        self.settle_run(run_id)

    def settle_run(self, run_id: str) -> None:
        trial_id = self.trial_of.pop(run_id, None)
        if trial_id is None:
            return
        try:
            run = self.client.get_run(run_id)
            state = settle(self.optuna, self.lock, self.search, self.client, trial_id, run)
        except Exception as exc:  # the next run settles it from the run
            from mpimpy.studies.runner import _problem

            self.stop_starting(f"cannot tell the Optuna storage {storage_summary(self.storage)}"
                               f" the outcome of run {run_id}: {_problem(exc)}")
            return
        if state == "FAIL" and run.info.status == "FINISHED":
            self._fail_last(run_id, trial_values(self.search, run.data.metrics)[2])

    def reconcile(self) -> None:
        """Settle the RUNNING trials this runner does not run: ended runs are told, stale
        leases (and trials left without a run) are failed and retried, live ones waited for."""
        from optuna.trial import TrialState

        from mpimpy.studies.runner import _expire, lease_state

        ours = set(self.trial_of.values())
        still = {}
        with self.lock:
            running = self.optuna._storage.get_all_trials(
                self.optuna._study_id, deepcopy=False, states=(TrialState.RUNNING,))
            for trial in running:
                if trial._trial_id in ours:
                    continue
                run = find_trial_run(self.client, self.experiment_id, self.study.name, trial)
                if run is None:
                    age = time.time() - trial.datetime_start.timestamp()
                    if self.lock.exclusive or age > self.lease.ttl_s:
                        if _fail_and_retry(self.optuna, trial, "its runner stopped before it "
                                           "created the trial's run") == "RETRIED":
                            self.bar.write(f"trial {trial.number}: left without a run; retried")
                    else:
                        still[trial._trial_id] = None
                    continue
                if run.info.status == "RUNNING":
                    live, why = lease_state(run)
                    if live:
                        if trial._trial_id not in self.foreign:
                            self.bar.write(f"waiting for trial {trial.number}: {why}")
                        still[trial._trial_id] = run.info.run_id
                        continue
                    _expire(self.client, run, why)
                    run = self.client.get_run(run.info.run_id)
                state = settle(self.optuna, self.lock, self.search, self.client,
                               trial._trial_id, run)
                if state == "RETRIED":
                    self.bar.write(f"trial {trial.number}: its run {run.info.run_id} was "
                                   f"{run.info.status}; retried as a new trial")
                elif state in ("COMPLETE", "FAIL"):
                    self.bar.write(f"trial {trial.number}: its run ended while no runner "
                                   f"watched it; told {state}")
        self.foreign = still

    # -- the loop -----------------------------------------------------------------------------
    def run(self, points=None) -> None:
        import random as _random

        from mpimpy.studies.runner import _problem

        try:
            self.reconcile()
        except Exception as exc:
            self.stop_starting(f"cannot read the search's trials: {_problem(exc)}")
            return
        now = time.monotonic()
        next_renew, next_poll = now + self.renew_s, now + self.poll_s
        while True:
            self.start_points()
            if not self.inflight and not self.foreign:
                break
            wake = min(next_renew, next_poll) if self.foreign else next_renew
            timeout = max(0.0, wake - time.monotonic())
            if self.inflight:
                for handle in self.backend.wait(list(self.inflight), timeout):
                    self.collect(handle)
            else:
                time.sleep(timeout)
            now = time.monotonic()
            if now >= next_renew:
                self.renew()
                next_renew = now + self.renew_s
            if self.foreign and now >= next_poll:
                try:
                    self.reconcile()
                except Exception as exc:
                    self.stop_starting(f"cannot read the search's trials: {_problem(exc)}")
                    self.foreign = {}
                next_poll = now + self.poll_s * _random.uniform(0.5, 1.5)

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: the runs in flight are KILLED (as for points) and their trials
        failed and retried, so that the next run runs them again."""
        in_flight = [run_id for _, run_id in self.inflight.values()]
        super().interrupt()
        for run_id in in_flight:
            with contextlib.suppress(Exception):
                self.settle_run(run_id)


# --------------------------------------------------------------------------------------------
# Results: the trials, the front, the knee and the cheapest feasible trial


@dataclass
class SearchResults:
    """A search's trials as logged to MLflow, and what they found.

    ``trials``: one row per trial run (``trial``, ``status``, ``run_id``, every metric and
    parameter under its own name, ``complete``: FINISHED with every objective, ``feasible``:
    complete and within every constraint, ``reference``, ``duplicate_of``). ``front``: the
    Pareto front of the feasible, distinct configurations (:func:`mpimpy.studies.pareto
    .front_table`, with its ``knee`` column), sorted by the first objective. ``knee`` and
    ``cheapest`` (the feasible trial best on :attr:`Search.cost_objective`): rows, or ``None``.
    """

    study: Study
    trials: Any
    front: Any
    knee: Any = None
    cheapest: Any = None

    @property
    def search(self) -> Search:
        return self.study.search

    @property
    def columns(self) -> list[str]:
        """The columns worth showing: trial, objectives, constraint metrics, space."""
        names = ["trial", *self.search.metrics, *self.search.space]
        return [c for c in dict.fromkeys(names) if c in self.trials]

    def front_text(self) -> str:
        """The front as a table for the terminal, the knee and the cheapest marked."""
        if self.front.empty:
            return "No feasible complete trial yet: no front."
        table = self.front[self.columns].copy()
        marks = []
        for _, row in self.front.iterrows():
            mark = ("knee " if row["knee"] else "") + (
                "cheapest" if self.cheapest is not None
                and row["trial"] == self.cheapest["trial"] else "")
            marks.append(mark.strip())
        table.insert(0, "", marks)
        return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")

    def describe(self, row) -> str:
        """``trial 12: x_slice=[1, 3, 4], ..., accuracy=0.981, energy_per_inference_J=2e-06``."""
        values = [f"{k}={row[k]}" for k in self.search.space if k in row]
        values += [f"{m}={row[m]:.4g}" for m in self.search.metrics if m in row]
        return f"trial {int(row['trial'])}: " + ", ".join(values)


def load_search(study: str | Path) -> Study:
    """A search study by file, or by the name of a shipped one (``codesign_mnist``: the
    project's ``studies/codesign_mnist.yaml``); its notebook is not opened (results only)."""
    from mpimpy.studies.spec import load_study
    from mpimpy.tracking import project_root

    path = Path(study)
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        path = project_root() / "studies" / f"{study}.yaml"
    loaded = load_study(path, check_notebook=False)
    if loaded.search is None:
        raise StudyError(f"{path}: key 'search': missing: not a search study")
    return loaded


def _is_true(value: Any) -> bool:
    return str(value).lower() == "true"


def search_results(study: Study, tracking_uri: str | None = None) -> SearchResults:
    """Read a search's trial runs from the tracking store and find its front (see
    :class:`SearchResults`); the trials are those the runs tag ``search`` with the study's
    name, in the study's experiment."""
    import numpy as np
    import pandas as pd

    from mpimpy.studies.compare import load_runs, parse_number, tidy_runs
    from mpimpy.studies.pareto import front_table

    search = study.search
    runs = load_runs(study.experiment, tracking_uri, status=None)
    if not runs.empty and f"tags.{SEARCH_TAG}" in runs:
        runs = runs[runs[f"tags.{SEARCH_TAG}"] == study.name]
    trials = tidy_runs(runs.reset_index(drop=True)) if not runs.empty else pd.DataFrame()
    if trials.empty:
        empty = pd.DataFrame(columns=["trial", *search.metrics, *search.space, "knee"])
        return SearchResults(study, empty, empty)
    trials["trial"] = pd.to_numeric(trials[TRIAL_TAG], errors="coerce").astype("Int64")
    for name in search.metrics:
        trials[name] = pd.to_numeric(trials[name], errors="coerce") if name in trials \
            else np.nan
    for name, dimension in search.space.items():
        if name in trials:
            trials[name] = trials[name].map(parse_number)
            whole = dimension.integer or dimension.choices is not None and all(
                isinstance(c, int) and not isinstance(c, bool) for c in dimension.choices)
            if whole:  # a NaN (a run without it) would make the column float
                trials[name] = pd.to_numeric(trials[name], errors="coerce").astype("Int64")
    complete = (trials["status"] == "FINISHED") & trials[
        [o.metric for o in search.objectives]].notna().all(axis=1)
    feasible = complete.copy()
    for constraint in search.constraints:
        values = trials[constraint.metric]
        feasible &= values.notna() & values.map(
            lambda v, c=constraint: c.violation(v) <= 0 if v == v else False)
    trials["complete"], trials["feasible"] = complete, feasible
    trials["reference"] = trials.get(REFERENCE_TAG, pd.Series(index=trials.index)).map(_is_true)
    if DUPLICATE_TAG not in trials:
        trials[DUPLICATE_TAG] = None
    trials = trials.sort_values("trial").reset_index(drop=True)
    distinct = trials["feasible"] & trials[DUPLICATE_TAG].isna()
    front = front_table(trials[distinct], search.directions)
    knee = front[front["knee"]].iloc[0] if not front.empty else None
    cheapest = None
    if distinct.any():
        cost = search.cost_objective
        ranked = trials[distinct].sort_values(
            [cost.metric] + [o.metric for o in search.objectives if o != cost],
            ascending=[cost.direction == "minimize"] + [
                o.direction == "minimize" for o in search.objectives if o != cost])
        cheapest = ranked.iloc[0]
    return SearchResults(study, trials, front, knee, cheapest)


#: Axis labels with units of the metrics searches read (others: the metric's name).
METRIC_LABELS = {
    "energy_per_inference_J": "energy per inference (J)",
    "energy_per_mac_pJ": "energy per MAC (pJ)",
    "energy_J": "energy (J)",
    "latency_s": "latency (s)",
    "area_mm2": "area (mm²)",
    "tops_per_w": "TOPS/W",
    "accuracy": "test accuracy (1)",
    "accuracy_drop": "accuracy drop vs software (1)",
    "SNR_dB": "SNR (dB)",
    "RE": "relative error (1)",
}


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def plot_front(results: SearchResults):
    """Objective against objective (the cost on x, each other objective on y): every complete
    trial, feasible ones highlighted, reference configurations and failures noted, the
    front of that pair as a step line, the knee and the cheapest feasible trial marked.
    Returns the matplotlib figure (one panel per other objective)."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    from mpimpy.studies.pareto import pareto_mask

    search = results.search
    cost = search.cost_objective
    others = [o for o in search.objectives if o != cost] or [cost]
    figure, axes = plt.subplots(1, len(others), figsize=(6.4 * len(others), 4.8), squeeze=False)
    trials = results.trials[results.trials["complete"]].copy()
    trials["trial kind"] = np.where(trials["feasible"], "feasible", "infeasible")
    for ax, other in zip(axes[0], others, strict=True):
        if not trials.empty:
            sns.scatterplot(data=trials, x=cost.metric, y=other.metric, hue="trial kind",
                            hue_order=["feasible", "infeasible"],
                            palette={"feasible": "tab:blue", "infeasible": "lightgray"},
                            s=40, ax=ax, zorder=2)
        feasible = trials[trials["feasible"] & trials["duplicate_of"].isna()]
        if len(feasible):
            values = feasible[[cost.metric, other.metric]].to_numpy(dtype=float)
            front = feasible[pareto_mask(values, [cost.direction, other.direction])]
            front = front.sort_values(cost.metric, ascending=cost.direction == "minimize")
            ax.step(front[cost.metric], front[other.metric], where="post", color="tab:blue",
                    linewidth=1.5, zorder=1, label="Pareto front (feasible)")
        references = trials[trials["reference"]]
        if len(references):
            ax.scatter(references[cost.metric], references[other.metric], marker="s", s=90,
                       facecolors="none", edgecolors="black", zorder=3, label="reference")
        for row, label, marker, colour in ((results.knee, "knee", "D", "tab:orange"),
                                           (results.cheapest, "cheapest feasible", "*",
                                            "tab:red")):
            if row is not None:
                ax.scatter([row[cost.metric]], [row[other.metric]], marker=marker, s=160,
                           color=colour, zorder=4,
                           label=f"{label} (trial {int(row['trial'])})")
        values = trials[cost.metric].to_numpy(dtype=float)
        if len(values) and values.min() > 0 and values.max() / values.min() > 20:
            ax.set_xscale("log")
        ax.set(xlabel=f"{metric_label(cost.metric)}, {cost.direction}",
               ylabel=f"{metric_label(other.metric)}, {other.direction}",
               title=f"{results.study.name}: {int(results.trials['complete'].sum())} complete "
                     f"trials, {int(results.trials['feasible'].sum())} feasible")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def summary_metrics(results: SearchResults) -> dict[str, float]:
    """Counts and the cheapest feasible trial's metrics (``cheapest.<metric>``), and its cost
    relative to each reference configuration (``cost_ratio_to_trial_<n>``)."""
    trials = results.trials
    metrics = {"n_trials": float(len(trials)), "n_complete": float(trials["complete"].sum()),
               "n_feasible": float(trials["feasible"].sum()),
               "n_front": float(len(results.front))}
    if results.cheapest is not None:
        cost = results.search.cost_objective.metric
        metrics.update({f"cheapest.{m}": float(results.cheapest[m])
                        for m in results.search.metrics})
        for _, reference in trials[trials["reference"] & trials["complete"]].iterrows():
            metrics[f"cost_ratio_to_trial_{int(reference['trial'])}"] = float(
                results.cheapest[cost] / reference[cost])
    return metrics


def log_search_summary(results: SearchResults, figure, *, tracking_uri: str | None = None,
                       gallery_dir: str = "", enabled: bool = True) -> str | None:
    """Log the front figure, the trials and the front as one summary run of the search's
    experiment (params: the cheapest feasible and knee trials and the cheapest's settings);
    save the figure as ``<gallery_dir>/<study>_front.png`` when ``gallery_dir`` is set.
    Returns the summary run's id (``None`` when not ``enabled`` or nothing completed)."""
    from mpimpy.studies.compare import log_summary

    if gallery_dir:
        folder = Path(gallery_dir)
        folder.mkdir(parents=True, exist_ok=True)
        figure.savefig(folder / f"{results.study.name}_front.png", dpi=100,
                       bbox_inches="tight")
    if not enabled or results.cheapest is None:
        print("summary not logged" + ("" if enabled else " (log=False)"))
        return None
    params = {"cheapest_trial": int(results.cheapest["trial"]),
              "knee_trial": int(results.knee["trial"]),
              "cost": results.search.cost_objective.metric}
    params.update({f"cheapest.{k}": results.cheapest[k] for k in results.search.space
                   if k in results.cheapest})
    keep = [c for c in (*results.columns, "status", "feasible", "run_id") if c in results.trials]
    run_id = log_summary(results.study.experiment, {"pareto_front": figure},
                         tables={"trials": results.trials[keep],
                                 "front": results.front[[*results.columns, "knee"]]},
                         params=params, metrics=summary_metrics(results),
                         tracking_uri=tracking_uri,
                         run_name=f"summary of search {results.study.name}")
    print(f"summary run {run_id}")
    return run_id


__all__ = [
    "Constraint",
    "Dimension",
    "Objective",
    "SAMPLERS",
    "Search",
    "SearchResults",
    "load_search",
    "log_search_summary",
    "plot_front",
    "summary_metrics",
    "SearchRun",
    "StorageLock",
    "check_search",
    "default_storage",
    "make_sampler",
    "notebook_metrics",
    "open_search",
    "parse_search",
    "reference_points",
    "search_results",
    "settle",
    "trial_point",
    "trial_values",
]
