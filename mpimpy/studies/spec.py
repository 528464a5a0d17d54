"""A study file's content as dataclasses, and its expansion into points (no I/O here).

A study is a YAML file that names a parameterised notebook and the parameter values to run it
with (see ``docs/studies.md``)::

    name: quickstart
    notebook: quickstart.ipynb        # relative to the YAML's folder, then to notebooks/
    experiment: quickstart            # MLflow experiment (default: the study name)
    parameters: {m: 128, k: 128}      # fixed for every point
    grid: {fmt: [INT, FP], var: [0.0, 0.05]}   # cartesian product
    points: [{x_slice: [1, 1, 2, 4]}, {x_slice: [1, 2, 4]}]  # bundles of values, x grid
    seeds: [0, 1]                     # every point is run once per seed
    search: {...}                     # instead of listing points: ask them from Optuna

Here: :class:`Study` (with its ``search:`` section as :class:`Search`, :class:`Objective`,
:class:`Constraint` and :class:`Dimension`), :class:`Point` (one notebook execution),
:class:`NotebookParameter` (a parameter the notebook declares, with the types it accepts),
and the functions that turn a study into points: :func:`expand_points` (a grid's points),
:func:`reference_points` and :func:`trial_point` (a search's). Reading and checking a file is
:mod:`mpimpy.studies.validate`'s job.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mpimpy import tracking

#: The notebook parameter that receives each point's seed.
SEED_PARAMETER = "seed"

#: Most points a study may expand to: a larger grid is almost surely a mistake (10**8 points
#: would exhaust memory while being listed) and is refused before it is expanded.
MAX_POINTS = 100_000


class StudyError(ValueError):
    """A study file that cannot be run; the message names the file, the key and the problem."""


@dataclass(frozen=True)
class NotebookParameter:
    """One variable of a notebook's ``parameters`` cell.

    ``types`` is the set of accepted type names (``{"int"}``, ``{"str", "float"}``) or ``None``
    when nothing is known (a default that is not a literal, such as ``np.pi``, or ``Any``).
    """

    name: str
    default: Any
    types: frozenset[str] | None
    source: str  # the default as written, for messages
    known: bool = True  # the default is a literal (``np.pi`` is not): ``default`` holds it

    @property
    def expected(self) -> str:
        """The accepted types for messages: ``"int or None"``."""
        return " or ".join(sorted(t if t != "NoneType" else "None" for t in self.types or ()))

    def accepts(self, value: Any) -> bool:
        """Whether a YAML value fits the accepted types (an int is a valid float; anything
        fits a parameter of unknown type)."""
        if self.types is None:
            return True
        types = self.types
        if value is None:
            return "NoneType" in types
        if isinstance(value, bool):
            return "bool" in types
        if isinstance(value, int):
            return "int" in types or "float" in types
        if isinstance(value, float):
            return "float" in types
        if isinstance(value, str):
            return "str" in types
        if isinstance(value, list | tuple):
            return "list" in types
        if isinstance(value, dict):
            return "dict" in types
        return False


def coerce(value: Any, spec: NotebookParameter | None) -> Any:
    """Turn a YAML int into a float where the notebook expects a float, so that ``var: 0`` and
    ``var: 0.0`` are the same point (same hash, same value in the notebook)."""
    if (
        spec is not None
        and spec.types is not None
        and isinstance(value, int)
        and not isinstance(value, bool)
        and "float" in spec.types
        and "int" not in spec.types
    ):
        return float(value)
    return value


@dataclass(frozen=True)
class Point:
    """One notebook execution: a parameter set and the seed it runs with.

    ``params_hash`` identifies the computation (notebook name + every parameter incl. the seed);
    the runner stores it as a tag and uses it to skip points that already finished.
    ``sources`` names the study-file key each parameter comes from (``"grid.var"``,
    ``"points[1].x_slice"``, ``"seeds"``), for messages.
    """

    index: int
    point_id: str
    run_name: str
    parameters: dict[str, Any]
    varying: dict[str, Any]
    params_hash: str
    sources: dict[str, str] = field(default_factory=dict)


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
            return any(same_value(value, c) for c in self.choices)
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


def same_value(a: Any, b: Any) -> bool:
    """Whether two YAML values are the same setting (``1`` and ``1.0`` are; ``1`` and ``True``
    and ``[1]`` are not)."""
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


@dataclass
class Study:
    """A validated study file."""

    path: Path
    name: str
    notebook: Path
    notebook_name: str
    experiment: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    timeout_s: float | None = None
    notebook_parameters: dict[str, NotebookParameter] | None = None
    #: The ``search:`` section, or ``None`` for a study of listed points.
    search: Search | None = None
    #: The metrics the notebook declares it logs (``# logs metrics: ...``), when checked.
    notebook_metrics: list[str] | None = None

    def expand(self) -> list[Point]:
        """All points of the study, in a stable order: grid x points x seeds. A search has no
        points of its own: its trials are asked as it runs (``grid``/``points`` beside it are
        its reference trials, :func:`reference_points`)."""
        if self.search is not None:
            return []
        return expand_points(self)


# --------------------------------------------------------------------------------------------
# Points


def params_hash(notebook_name: str, parameters: dict[str, Any]) -> str:
    """A stable hash of one computation: the notebook's name and all its parameter values."""
    blob = json.dumps(
        {"notebook": notebook_name, "parameters": parameters}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def slug(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")
    return slug[:limit].rstrip("_") or "point"


def expand_points(study: Study) -> list[Point]:
    """Expand a study into its points: every grid combination x every listed point x every seed.

    Fixed parameters are merged under each point. A study with neither grid nor points has
    one point per seed. The order is stable (grid keys in file order, seeds innermost).
    """
    declared = study.notebook_parameters or {}
    grid_keys = list(study.grid)
    combos = [
        dict(zip(grid_keys, values, strict=True))
        for values in itertools.product(*study.grid.values())
    ]
    bundles = study.points or [{}]
    fixed_sources = {k: f"parameters.{k}" for k in study.parameters}
    result: list[Point] = []
    seen: dict[str, Point] = {}
    for combo in combos:
        for b, bundle in enumerate(bundles):
            sources = {
                **fixed_sources,
                **{k: f"grid.{k}" for k in combo},
                **{k: f"points[{b}].{k}" for k in bundle},
                SEED_PARAMETER: "seeds",
            }
            for seed in study.seeds:
                varying = {**combo, **bundle, SEED_PARAMETER: seed}
                merged = {**study.parameters, **varying}
                merged = {k: coerce(v, declared.get(k)) for k, v in merged.items()}
                varying = {k: merged[k] for k in varying}
                digest = params_hash(study.notebook_name, merged)
                run_name = tracking.run_name(varying)
                if digest in seen:  # load_study refuses repeated values; a Study made by hand
                    raise StudyError(
                        f"{study.path}: points {seen[digest].run_name} and {run_name} are the "
                        "same computation: each would run twice"
                    )
                point = Point(
                    index=len(result),
                    point_id=f"{slug(run_name)}-{digest[:8]}",
                    run_name=run_name,
                    parameters=merged,
                    varying=varying,
                    params_hash=digest,
                    sources=sources,
                )
                seen[digest] = point
                result.append(point)
    return result


def reference_points(study: Study) -> list[dict[str, Any]]:
    """The ``grid`` x ``points`` combinations beside a search, as dicts of space values."""
    if not study.grid and not study.points:
        return []
    combos = [dict(zip(study.grid, values, strict=True))
              for values in itertools.product(*study.grid.values())]
    return [{**combo, **bundle} for combo in combos for bundle in (study.points or [{}])]


def trial_point(study: Study, number: int, values: dict[str, Any]) -> Point:
    """The point a trial runs: the study's fixed parameters, the trial's values and the seed.

    Its ``point_id`` (the executed notebook's name) starts with the trial number, so two
    trials of the same configuration never share a file; ``params_hash`` is the computation's
    (equal for equal configurations).
    """
    declared = study.notebook_parameters or {}
    varying = {k: coerce(v, declared.get(k)) for k, v in values.items()}
    merged = {**study.parameters, **varying, SEED_PARAMETER: study.seeds[0]}
    merged = {k: coerce(v, declared.get(k)) for k, v in merged.items()}
    digest = params_hash(study.notebook_name, merged)
    run_name = f"trial {number}: " + tracking.run_name(varying, digits=4)
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


__all__ = [
    "MAX_POINTS",
    "SEED_PARAMETER",
    "Constraint",
    "Dimension",
    "NotebookParameter",
    "Objective",
    "Point",
    "Search",
    "Study",
    "StudyError",
    "coerce",
    "expand_points",
    "params_hash",
    "reference_points",
    "same_value",
    "slug",
    "trial_point",
]
