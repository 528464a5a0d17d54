"""A study's notebook: where it may be, its parameters and the metrics it declares it logs.

The parameters are those of the notebook's cell tagged ``parameters``, as papermill reads them;
each carries the type names it accepts, from its annotation (``radc: Optional[int] = 256``) or
else from its literal default (``var = 0.05``: a float). The metrics are the lines
``# logs metrics: A, B`` of the same cell.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from mpimpy.studies.schema import decode_utf8
from mpimpy.studies.spec import NotebookParameter, StudyError
from mpimpy.tracking import project_root


def type_names(annotation: ast.expr | None) -> frozenset[str] | None:
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


def read_notebook(notebook: Path) -> dict:
    """A notebook file as its JSON dict, checked to be an nbformat-4 notebook.

    Plain :mod:`json` rather than nbformat, whose schema validator takes a second to import.
    A broken file raises :class:`StudyError` giving the position of the problem, never the
    file's content.
    """
    text = decode_utf8(notebook, "a notebook")
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

    Read by papermill's own inference (:func:`papermill.inspect_notebook`, what
    ``papermill --help-notebook`` lists): each parameter's default as written and its type, from
    the annotation (``x_slice: list[int] = [1, 2]``) or from a type comment, which is where a
    union goes, since papermill does not read ``|`` in annotations
    (``radc = 256  # type: int|None ADC levels``). The type is then read with :mod:`ast` into
    the names :class:`~mpimpy.studies.spec.NotebookParameter` accepts; without one, the type
    of the literal default.
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
    try:
        tree = ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                   for line in cells[0]["source"].splitlines()))
    except SyntaxError as exc:
        raise StudyError(f"{notebook}: the parameters cell is not valid Python: {exc}") from None
    import papermill

    inferred = papermill.inspect_notebook(str(notebook))
    # a parameter papermill does not see would be silently left at its default: refuse it
    unseen = [target.id for stmt in tree.body if isinstance(stmt, ast.Assign | ast.AnnAssign)
              for target in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
              if isinstance(target, ast.Name) and target.id not in inferred]
    if unseen:
        raise StudyError(
            f"{notebook}: papermill cannot read the parameter {unseen[0]!r} of the parameters "
            "cell; write it on one line as 'name = value  # help' (or 'name: type = value'), "
            "with no '=' in the comment and a union type as '# type: int|None help'")
    params: dict[str, NotebookParameter] = {}
    for name, found in inferred.items():
        try:  # the default as Python writes it back, for messages (``'INT'``)
            value = ast.parse(found["default"].strip(), mode="eval").body
        except SyntaxError:
            raise StudyError(f"{notebook}: the parameters cell does not give {name} a value "
                             f"papermill can read: {found['default']!r}") from None
        source = ast.unparse(value)
        try:
            default, known = ast.literal_eval(value), True
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            default, known = None, False
        types = None
        if found["inferred_type_name"] != "None":
            try:
                types = type_names(ast.parse(found["inferred_type_name"], mode="eval").body)
            except SyntaxError:
                types = None
        if types is None and known:
            types = _default_type_names(default)
        params[name] = NotebookParameter(name, default, types, source, known)
    return params


def notebook_metrics(notebook: Path) -> list[str] | None:
    """The metrics a notebook declares it logs: the lines ``# logs metrics: A, B`` of its
    parameters cell (all such lines together), or ``None`` when it declares none."""
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


__all__ = [
    "notebook_metrics",
    "notebook_parameters",
    "notebook_roots",
    "read_notebook",
    "resolve_notebook",
    "type_names",
]
