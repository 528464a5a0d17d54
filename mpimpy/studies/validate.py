"""Validation of a study: the only place that checks a study file against its notebook and the
simulator, and formats the problems as ``"<file>: key '<key>': <expected>, got <value>"``
(with :func:`mpimpy.studies.schema.report`, all problems of a step together).

:func:`load_study` runs the steps in order: the file's schema (:mod:`.schema`), the notebook
(found inside the project's ``notebooks/`` or the study's own folder, a readable notebook with
a ``parameters`` cell and a ``seed`` parameter: :mod:`.notebook`), every value against the
parameter it sets (declared, of the type of its default or annotation), no two points the same
computation, and every point's hardware and slicing settings against the simulator's own
validation (:mod:`.settings`). For a search: the metrics the notebook declares it logs, the
space's types, its reference points and every value of the space tried on the simulator.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

from mpimpy.studies.notebook import notebook_metrics, notebook_parameters, resolve_notebook
from mpimpy.studies.schema import describe, duplicates, parse_study, report
from mpimpy.studies.settings import check_settings, point_problems
from mpimpy.studies.spec import (
    SEED_PARAMETER,
    Dimension,
    NotebookParameter,
    Study,
    StudyError,
    coerce,
    reference_points,
    trial_point,
)

#: Most combinations of the space's values the validation tries (beyond: a seeded sample).
MAX_PROBES = 512


def load_study(
    path: str | Path, *, check_notebook: bool = True, allow_any_notebook: bool = False
) -> Study:
    """Read and validate a study file; raise :class:`StudyError` naming every problem found.

    ``check_notebook=False`` checks only the file's own structure (for listing studies whose
    notebook is not written yet); the runner always checks the notebook, every parameter and
    every point's settings. ``allow_any_notebook``: see
    :func:`mpimpy.studies.notebook.resolve_notebook`.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    study = parse_study(path)
    if check_notebook:
        _check_against_notebook(study, allow_any_notebook=allow_any_notebook)
    else:
        _check_duplicate_points(study, {})
    return study


def _check_duplicate_points(study: Study, declared: dict[str, NotebookParameter]) -> None:
    """Refuse grid values or ``points`` entries that repeat (``[1, 1]``, ``[0, 0.0]`` for a
    float): each would run the same computation twice, two workers writing one notebook."""
    problems = []
    for key, values in study.grid.items():
        spec = declared.get(key)
        problems += duplicates(
            [(f"grid.{key}[{i}]", coerce(v, spec)) for i, v in enumerate(values)]
        )
    problems += duplicates(
        [
            (f"points[{i}]", {k: coerce(v, declared.get(k)) for k, v in p.items()})
            for i, p in enumerate(study.points)
        ]
    )
    if problems:
        raise report(study.path, problems)


def _check_against_notebook(study: Study, *, allow_any_notebook: bool = False) -> None:
    """Resolve the notebook, check every study parameter against its parameters cell, then
    every point's settings; all problems are reported together."""
    study.notebook = resolve_notebook(
        study.notebook_name, study.path, allow_any_notebook=allow_any_notebook
    )
    declared = notebook_parameters(study.notebook)
    if declared is None:
        raise StudyError(
            f"{study.path}: key 'notebook': {study.notebook} has no cell tagged 'parameters'; "
            "tag the cell that sets the notebook's defaults with 'parameters'"
        )
    if SEED_PARAMETER not in declared:
        raise StudyError(
            f"{study.path}: key 'seeds': notebook {study.notebook.name} declares no "
            f"'{SEED_PARAMETER}' parameter to receive the seed"
        )
    values: list[tuple[str, str, Any]] = [
        (f"parameters.{k}", k, v) for k, v in study.parameters.items()
    ]
    values += [(f"grid.{k}", k, v) for k, vs in study.grid.items() for v in vs]
    values += [(f"points[{i}].{k}", k, v) for i, p in enumerate(study.points) for k, v in p.items()]
    known = ", ".join(sorted(declared))
    problems: list[str] = []
    for where, key, value in values:
        spec = declared.get(key)
        if spec is None:
            problem = (
                f"key '{where}': {key!r} is not a parameter of notebook "
                f"{study.notebook.name} (its parameters cell declares: {known})"
            )
        elif not spec.accepts(value):
            problem = (
                f"key '{where}': expected {spec.expected} like the notebook's default "
                f"{key} = {spec.source}, got {describe(value)}"
            )
        else:
            continue
        if problem not in problems:
            problems.append(problem)
    if problems:
        raise report(study.path, problems)
    _check_duplicate_points(study, declared)
    study.notebook_parameters = declared

    if study.search is not None:
        study.notebook_metrics = notebook_metrics(study.notebook)
        problems = check_search(study, declared, study.notebook_metrics)
    else:
        problems = check_settings(study, study.expand())
    if problems:
        raise report(study.path, problems)


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
        expected = spec.expected
        if dimension.choices is not None:
            for i, choice in enumerate(dimension.choices):
                if not spec.accepts(choice):
                    problems.append(f"{choice_key}[{i}]': expected {expected} like the "
                                    f"notebook's default {key} = {spec.source}, got "
                                    f"{describe(choice)}")
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
                key, choices=tuple(coerce(c, declared[key]) for c in dimension.choices))
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


__all__ = ["MAX_PROBES", "check_search", "load_study"]
