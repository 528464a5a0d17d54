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
the file, the key and what was expected, not an hour into a sweep: the file is UTF-8 YAML with
no key given twice; the notebook exists inside the project's ``notebooks/`` or the study's own
folder and is a readable notebook; every parameter is declared in the notebook's cell tagged
``parameters``, has the type of its default there (or of its annotation,
``adc_range: str | float = "full"``) and is a value papermill can pass on; no two points are the
same computation; and every point's hardware and slicing settings are ones the simulator accepts
(:mod:`mpimpy.studies.settings`). All the problems found are reported together.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mpimpy.tracking import project_root

#: Keys a study file may have; anything else is most likely a typo (``gird:``) and is refused.
REQUIRED_KEYS = ("name", "notebook")
OPTIONAL_KEYS = ("description", "experiment", "parameters", "grid", "points", "seeds", "timeout_s",
                 "search")

#: The notebook parameter that receives each point's seed.
SEED_PARAMETER = "seed"

#: Most points a study may expand to: a larger grid is almost surely a mistake (10**8 points
#: would exhaust memory while being listed) and is refused before it is expanded.
MAX_POINTS = 100_000

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
    known: bool = True  # the default is a literal (``np.pi`` is not): ``default`` holds it


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
    #: The ``search:`` section (:class:`mpimpy.studies.search.Search`), or ``None`` for a study
    #: of listed points.
    search: Any = None
    #: The metrics the notebook declares it logs (``# logs metrics: ...``), when checked.
    notebook_metrics: list[str] | None = None

    def expand(self) -> list[Point]:
        """All points of the study, in a stable order: grid x points x seeds. A search has no
        points of its own: its trials are asked as it runs (``grid``/``points`` beside it are
        its reference trials, :func:`mpimpy.studies.search.reference_points`)."""
        if self.search is not None:
            return []
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


def _decode_utf8(path: Path, what: str) -> str:
    """A file's text, or a :class:`StudyError` saying it is not UTF-8 (never its bytes)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StudyError(
            f"{path}: not {what}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None


def read_notebook(notebook: Path) -> dict:
    """A notebook file as its JSON dict, checked to be an nbformat-4 notebook.

    Plain :mod:`json` rather than nbformat, whose schema validator takes a second to import.
    A broken file raises :class:`StudyError` giving the position of the problem, never the
    file's content.
    """
    text = _decode_utf8(notebook, "a notebook")
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StudyError(
            f"{notebook}: not a valid notebook: JSON error at line {exc.lineno} column "
            f"{exc.colno}: {exc.msg}"
        ) from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list) or nb.get("nbformat") != 4:
        raise StudyError(
            f"{notebook}: not a valid notebook: expected a Jupyter notebook in format 4 "
            "(a JSON object with 'nbformat': 4 and a list of 'cells')"
        )
    for i, cell in enumerate(cells):
        source = cell.get("source") if isinstance(cell, dict) else None
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            cell["source"] = "".join(source)
        elif not isinstance(source, str):
            raise StudyError(
                f"{notebook}: not a valid notebook: cell {i} has no text 'source'"
            )
    return nb


def notebook_parameters(notebook: Path) -> dict[str, NotebookParameter] | None:
    """Parameters declared in the notebook's cell tagged ``parameters``, or ``None`` if none.

    The cell is parsed with :mod:`ast` (papermill's own parser drops annotated parameters with
    ``|`` unions). IPython magics and shell lines are ignored.
    """
    nb = read_notebook(Path(notebook))
    cells = [
        c
        for c in nb["cells"]
        if isinstance(c.get("metadata"), dict)
        and "parameters" in (c["metadata"].get("tags") or [])
    ]
    if not cells:
        return None
    source = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line
        for line in cells[0]["source"].splitlines()
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
            params[target.id] = NotebookParameter(target.id, default, types, src, known)
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


def notebook_roots(study_path: Path) -> list[Path]:
    """The folders a study may run notebooks from: the project's ``notebooks/`` and the study
    file's own folder (symlinks resolved)."""
    return [(project_root() / "notebooks").resolve(), Path(study_path).resolve().parent]


def resolve_notebook(notebook: str, study_path: Path, *, allow_any_notebook: bool = False) -> Path:
    """Find a study's notebook: next to the YAML file, else in the project's notebooks/.

    The notebook's real path (symlinks resolved) must lie inside one of :func:`notebook_roots`
    unless ``allow_any_notebook`` is set (``mpimpy study run --allow-any-notebook``): a study file
    from elsewhere must not run an arbitrary ``.ipynb`` on the disk (``../..``, ``~``, absolute
    paths, symlinks). Raises :class:`StudyError` listing the places looked at.
    """
    candidate = Path(notebook).expanduser()
    if candidate.is_absolute():
        places = [candidate]
    else:
        places = [study_path.parent / candidate, project_root() / "notebooks" / candidate]
    for place in places:
        if place.is_file():
            real = place.resolve()
            roots = notebook_roots(study_path)
            if not allow_any_notebook and not any(real.is_relative_to(r) for r in roots):
                raise StudyError(
                    f"{study_path}: key 'notebook': {notebook!r} is {real}, outside the folders "
                    f"a study may run notebooks from ({', '.join(map(str, roots))}); move it "
                    "there or pass --allow-any-notebook (allow_any_notebook=True) to run it"
                )
            return real
    looked = ", ".join(str(p) for p in places)
    raise StudyError(
        f"{study_path}: key 'notebook': notebook {notebook!r} not found (looked at {looked})"
    )


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _report(path: Path, problems: list[str]) -> StudyError:
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


def _read_yaml(path: Path):
    text = _decode_utf8(path, "a study file")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from None
    duplicates = _yaml_duplicates(node)
    if duplicates:
        raise _report(path, duplicates)
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


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _duplicates(items: list[tuple[str, Any]]) -> list[str]:
    """Messages for items (label, canonical value) that repeat an earlier one."""
    first: dict[str, str] = {}
    problems = []
    for label, value in items:
        key = _canonical(value)
        if key in first:
            problems.append(
                f"key '{label}': the same as '{first[key]}' ({value!r}): the point would run "
                "twice; remove one"
            )
        else:
            first[key] = label
    return problems


def load_study(
    path: str | Path, *, check_notebook: bool = True, allow_any_notebook: bool = False
) -> Study:
    """Read and validate a study file; raise :class:`StudyError` naming every problem found.

    ``check_notebook=False`` checks only the file's own structure (for listing studies whose
    notebook is not written yet); the runner always checks the notebook, every parameter and
    every point's settings. ``allow_any_notebook``: see :func:`resolve_notebook`.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    data = _read_yaml(path)

    def fail(key: str, message: str):
        raise StudyError(f"{path}: key '{key}': {message}")

    if not isinstance(data, dict):
        raise StudyError(
            f"{path}: expected a mapping with keys {REQUIRED_KEYS}, got {_describe(data)}"
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
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            fail("seeds", f"expected integers >= 0 (the engine's seed), got {_describe(seed)}")
    if len(set(seeds)) != len(seeds):
        fail("seeds", f"seeds repeat: {seeds}")
    search = None
    if "search" in data:
        from mpimpy.studies.search import parse_search

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
            f"expected a positive number of seconds (finite), got {_describe(timeout_s)}",
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
                f"number, a string, a list or a mapping with string keys, got {_describe(bad)}"
            )
    if problems:
        raise _report(path, problems)

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
        search=search,
    )
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
        problems += _duplicates(
            [(f"grid.{key}[{i}]", _coerce(v, spec)) for i, v in enumerate(values)]
        )
    problems += _duplicates(
        [
            (f"points[{i}]", {k: _coerce(v, declared.get(k)) for k, v in p.items()})
            for i, p in enumerate(study.points)
        ]
    )
    if problems:
        raise _report(study.path, problems)


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
        elif spec.types is not None and not _type_ok(value, spec.types):
            expected = " or ".join(sorted(t if t != "NoneType" else "None" for t in spec.types))
            problem = (
                f"key '{where}': expected {expected} like the notebook's default "
                f"{key} = {spec.source}, got {_describe(value)}"
            )
        else:
            continue
        if problem not in problems:
            problems.append(problem)
    if problems:
        raise _report(study.path, problems)
    _check_duplicate_points(study, declared)
    study.notebook_parameters = declared

    from mpimpy.studies.settings import check_settings

    if study.search is not None:
        from mpimpy.studies.search import check_search, notebook_metrics

        study.notebook_metrics = notebook_metrics(study.notebook)
        problems = check_search(study, declared, study.notebook_metrics)
    else:
        problems = check_settings(study, study.expand())
    if problems:
        raise _report(study.path, problems)


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
                merged = {k: _coerce(v, declared.get(k)) for k, v in merged.items()}
                varying = {k: merged[k] for k in varying}
                digest = params_hash(study.notebook_name, merged)
                run_name = ",".join(f"{k}={_short(v)}" for k, v in varying.items())
                if digest in seen:  # load_study refuses repeated values; a Study made by hand
                    raise StudyError(
                        f"{study.path}: points {seen[digest].run_name} and {run_name} are the "
                        "same computation: each would run twice"
                    )
                point = Point(
                    index=len(result),
                    point_id=f"{_slug(run_name)}-{digest[:8]}",
                    run_name=run_name,
                    parameters=merged,
                    varying=varying,
                    params_hash=digest,
                    sources=sources,
                )
                seen[digest] = point
                result.append(point)
    return result


__all__ = [
    "NotebookParameter",
    "Point",
    "SEED_PARAMETER",
    "Study",
    "StudyError",
    "MAX_POINTS",
    "expand_points",
    "load_study",
    "notebook_parameters",
    "notebook_roots",
    "params_hash",
    "read_notebook",
    "resolve_notebook",
]
