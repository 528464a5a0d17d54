"""Study files: loading, validation and expansion into points.

A study is a YAML file that names a parameterised notebook and the parameter values to run it
with (see ``docs/studies.md``)::

    name: quickstart
    notebook: quickstart.ipynb        # relative to the YAML's folder, then to notebooks/
    experiment: quickstart            # MLflow experiment (default: the study name)
    parameters: {m: 128, k: 128}      # fixed for every point
    grid: {fmt: [INT, FP], var: [0.0, 0.05]}   # cartesian product
    points: [{x_slice: [1, 1, 2, 4]}, {x_slice: [1, 2, 4]}]  # bundles of values, x grid
    seeds: [0, 1]                     # every point is run once per seed

Everything is checked before anything runs, so a typo fails in a second with a message naming
the file, the key and what was expected, not an hour into a sweep: the notebook must exist,
every parameter must be declared in the notebook's cell tagged ``parameters`` and have the type
of its default there (or of its annotation, ``adc_range: str | float = "full"``).
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mpimpy.tracking import project_root

#: Keys a study file may have; anything else is most likely a typo (``gird:``) and is refused.
REQUIRED_KEYS = ("name", "notebook")
OPTIONAL_KEYS = ("description", "experiment", "parameters", "grid", "points", "seeds", "timeout_s")

#: The notebook parameter that receives each point's seed.
SEED_PARAMETER = "seed"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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


@dataclass(frozen=True)
class Point:
    """One notebook execution: a parameter set and the seed it runs with.

    ``params_hash`` identifies the computation (notebook name + every parameter incl. the seed);
    the runner stores it as a tag and uses it to skip points that already finished.
    """

    index: int
    point_id: str
    run_name: str
    parameters: dict[str, Any]
    varying: dict[str, Any]
    params_hash: str


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

    def expand(self) -> list[Point]:
        """All points of the study, in a stable order: grid x points x seeds."""
        return expand_points(self)


# --------------------------------------------------------------------------------------------
# Notebook parameters


def _type_names(annotation: ast.expr | None) -> frozenset[str] | None:
    """Type names accepted by an annotation such as ``int``, ``str | float``, ``Optional[int]``."""
    if annotation is None:
        return None
    names: set[str] = set()

    def walk(node):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return walk(node.left) and walk(node.right)
        if isinstance(node, ast.Constant) and node.value is None:
            names.add("NoneType")
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "int" (quoted)
            try:
                return walk(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                return False
        if isinstance(node, ast.Subscript):
            base = ast.unparse(node.value).split(".")[-1]
            if base == "Optional":
                names.add("NoneType")
                return walk(node.slice)
            if base == "Union":
                elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
                return all(walk(e) for e in elts)
            if base in ("list", "List", "Sequence", "tuple", "Tuple"):
                names.add("list")
                return True
            if base in ("dict", "Dict", "Mapping"):
                names.add("dict")
                return True
            return False
        if isinstance(node, ast.Name | ast.Attribute):
            name = ast.unparse(node).split(".")[-1]
            mapped = {
                "int": "int",
                "float": "float",
                "str": "str",
                "bool": "bool",
                "list": "list",
                "List": "list",
                "tuple": "list",
                "Tuple": "list",
                "Sequence": "list",
                "dict": "dict",
                "Dict": "dict",
                "Mapping": "dict",
                "None": "NoneType",
            }.get(name)
            if mapped is None:
                return False  # Any or a type we cannot check from YAML
            names.add(mapped)
            return True
        return False

    return frozenset(names) if walk(annotation) and names else None


def _default_type_names(value: Any) -> frozenset[str] | None:
    if value is None:
        return None  # ``x = None`` tells nothing about what x may be
    name = {tuple: "list", list: "list"}.get(type(value), type(value).__name__)
    if name not in ("int", "float", "str", "bool", "list", "dict"):
        return None
    return frozenset([name])


def notebook_parameters(notebook: Path) -> dict[str, NotebookParameter] | None:
    """Parameters declared in the notebook's cell tagged ``parameters``, or ``None`` if none.

    The cell is parsed with :mod:`ast` (papermill's own parser drops annotated parameters with
    ``|`` unions). IPython magics and shell lines are ignored.
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return None
    source = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line
        for line in cells[0].source.splitlines()
    )
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise StudyError(f"{notebook}: the parameters cell is not valid Python: {exc}") from None
    params: dict[str, NotebookParameter] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            targets, value, annotation = [stmt.target], stmt.value, stmt.annotation
        elif isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            targets, value, annotation = stmt.targets, stmt.value, None
        else:
            continue
        src = ast.unparse(value) if value is not None else ""
        try:
            default = ast.literal_eval(value) if value is not None else None
            known = True
        except (ValueError, SyntaxError, TypeError):
            default, known = None, False
        types = _type_names(annotation)
        if types is None and known:
            types = _default_type_names(default)
        for target in targets:
            params[target.id] = NotebookParameter(target.id, default, types, src)
    return params


def _type_ok(value: Any, types: frozenset[str]) -> bool:
    """Whether a YAML value fits the accepted type names (an int is a valid float)."""
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


def _coerce(value: Any, spec: NotebookParameter | None) -> Any:
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


# --------------------------------------------------------------------------------------------
# Loading


def resolve_notebook(notebook: str, study_path: Path) -> Path:
    """Find a study's notebook: absolute, next to the YAML file, or in the project's notebooks/.

    Raises :class:`StudyError` listing the places looked at.
    """
    candidate = Path(notebook).expanduser()
    if candidate.is_absolute():
        places = [candidate]
    else:
        places = [study_path.parent / candidate, project_root() / "notebooks" / candidate]
    for place in places:
        if place.is_file():
            return place.resolve()
    looked = ", ".join(str(p) for p in places)
    raise StudyError(
        f"{study_path}: key 'notebook': notebook {notebook!r} not found (looked at {looked})"
    )


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def load_study(path: str | Path, *, check_notebook: bool = True) -> Study:
    """Read and validate a study file; raise :class:`StudyError` on the first problem found.

    ``check_notebook=False`` checks only the file's own structure (for listing studies whose
    notebook is not written yet); the runner always checks the notebook.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None

    def fail(key: str, message: str):
        raise StudyError(f"{path}: key '{key}': {message}")

    if not isinstance(data, dict):
        raise StudyError(
            f"{path}: expected a mapping with keys {REQUIRED_KEYS}, got {_describe(data)}"
        )
    for key in REQUIRED_KEYS:
        if key not in data:
            fail(key, "missing (required: " + ", ".join(REQUIRED_KEYS) + ")")
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        fail(
            unknown[0], "unknown key; allowed keys are " + ", ".join(REQUIRED_KEYS + OPTIONAL_KEYS)
        )

    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        fail("name", f"expected a name of letters, digits, '_', '-' or '.', got {_describe(name)}")
    notebook_name = data["notebook"]
    if not isinstance(notebook_name, str) or not notebook_name.endswith(".ipynb"):
        fail(
            "notebook",
            f"expected the file name of a .ipynb notebook, got {_describe(notebook_name)}",
        )
    experiment = data.get("experiment", name)
    if not isinstance(experiment, str) or not experiment.strip():
        fail("experiment", f"expected a non-empty string, got {_describe(experiment)}")
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        fail("description", f"expected a string, got {_describe(description)}")

    parameters = data.get("parameters", {}) or {}
    if not isinstance(parameters, dict):
        fail("parameters", f"expected a mapping of parameter: value, got {_describe(parameters)}")

    grid = data.get("grid", None)
    if "grid" in data:
        if not isinstance(grid, dict) or not grid:
            fail(
                "grid",
                f"expected a non-empty mapping of parameter: [values], got {_describe(grid)}",
            )
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                fail(f"grid.{key}", f"expected a non-empty list of values, got {_describe(values)}")
    grid = grid or {}

    points = data.get("points", None)
    if "points" in data:
        if not isinstance(points, list) or not points:
            fail("points", f"expected a non-empty list of mappings, got {_describe(points)}")
        for i, point in enumerate(points):
            if not isinstance(point, dict) or not point:
                fail(f"points[{i}]", f"expected a non-empty mapping, got {_describe(point)}")
    points = points or []

    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        fail("seeds", f"expected a non-empty list of integers, got {_describe(seeds)}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            fail("seeds", f"expected integers, got {_describe(seed)}")
    if len(set(seeds)) != len(seeds):
        fail("seeds", f"seeds repeat: {seeds}")

    timeout_s = data.get("timeout_s")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0
    ):
        fail("timeout_s", f"expected a positive number of seconds, got {_describe(timeout_s)}")

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

    study = Study(
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
    )
    if check_notebook:
        _check_against_notebook(study)
    return study


def _check_against_notebook(study: Study) -> None:
    """Resolve the notebook and check every study parameter against its parameters cell."""
    study.notebook = resolve_notebook(study.notebook_name, study.path)
    declared = notebook_parameters(study.notebook)
    if declared is None:
        raise StudyError(
            f"{study.path}: key 'notebook': {study.notebook} has no cell tagged 'parameters'; "
            "tag the cell that sets the notebook's defaults with 'parameters'"
        )
    study.notebook_parameters = declared
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
    for where, key, value in values:
        spec = declared.get(key)
        if spec is None:
            raise StudyError(
                f"{study.path}: key '{where}': {key!r} is not a parameter of notebook "
                f"{study.notebook.name} (its parameters cell declares: {known})"
            )
        if spec.types is not None and not _type_ok(value, spec.types):
            expected = " or ".join(sorted(t if t != "NoneType" else "None" for t in spec.types))
            raise StudyError(
                f"{study.path}: key '{where}': expected {expected} like the notebook's default "
                f"{key} = {spec.source}, got {_describe(value)}"
            )


# --------------------------------------------------------------------------------------------
# Expansion


def params_hash(notebook_name: str, parameters: dict[str, Any]) -> str:
    """A stable hash of one computation: the notebook's name and all its parameter values."""
    blob = json.dumps(
        {"notebook": notebook_name, "parameters": parameters}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def _slug(text: str, limit: int = 60) -> str:
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
    result: list[Point] = []
    for combo in combos:
        for bundle in bundles:
            for seed in study.seeds:
                varying = {**combo, **bundle, SEED_PARAMETER: seed}
                merged = {**study.parameters, **varying}
                merged = {k: _coerce(v, declared.get(k)) for k, v in merged.items()}
                varying = {k: merged[k] for k in varying}
                digest = params_hash(study.notebook_name, merged)
                run_name = ",".join(f"{k}={_short(v)}" for k, v in varying.items())
                result.append(
                    Point(
                        index=len(result),
                        point_id=f"{_slug(run_name)}-{digest[:8]}",
                        run_name=run_name,
                        parameters=merged,
                        varying=varying,
                        params_hash=digest,
                    )
                )
    return result


__all__ = [
    "NotebookParameter",
    "Point",
    "SEED_PARAMETER",
    "Study",
    "StudyError",
    "expand_points",
    "load_study",
    "notebook_parameters",
    "params_hash",
    "resolve_notebook",
]
