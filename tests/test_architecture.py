"""The package's shape, read from its source with nothing imported.

Three rules keep the core readable as it grows (issue #27):

- no import cycle between mpimpy's modules, imports inside functions included (only imports
  under ``if TYPE_CHECKING:`` are left out: they never run);
- no module imports another module's private names (``from .x import _y``, ``x._y``), nor
  reaches into private attributes that another module defines (``engine._measure_power``
  outside ``engine.py``);
- no use of Optuna's private attributes (``study._storage``, ``trial._trial_id``, ...), which
  any Optuna release may change;

and two size limits: no module over 800 lines, ``engine.py`` at most 400.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mpimpy"
MAX_LINES = 800
MAX_ENGINE_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _absolute(module: str, level: int, target: str | None) -> str:
    """The absolute name that ``from <level dots><target> import ...`` in ``module`` means."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _resolve(name: str) -> str | None:
    """The mpimpy module ``name`` is, or is inside of (``mpimpy.a.b.f`` -> ``mpimpy.a.b``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import statement that can run (those under ``if TYPE_CHECKING:`` left out)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _analyse():
    """``(graph, private_uses)``: the modules each module imports, and each private name a module
    takes from another one."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    private: list[str] = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        aliases: dict[str, str] = {}  # local name -> mpimpy module it is bound to
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(alias.name)
                    if target and target != name:
                        graph[name].add(target)
                        if alias.asname:
                            aliases[alias.asname] = target
                continue
            source = _absolute(name, node.level, node.module)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:  # ``from pkg import module``
                    target = submodule
                    aliases[alias.asname or alias.name] = submodule
                else:
                    target = _resolve(source)
                    if target and _private(alias.name) and target != name:
                        private.append(f"{name} imports {target}.{alias.name}")
                if target and target != name:
                    graph[name].add(target)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                base = node.value
                if isinstance(base, ast.Name) and base.id in aliases:
                    private.append(f"{name} uses {aliases[base.id]}.{node.attr}")
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _without_package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exports its submodules, which import siblings through it
    (``from . import x``); an edge from a submodule to its own package is an edge to the
    submodules the ``__init__`` names, so it is followed through, not counted as a cycle
    with the package itself."""
    resolved = {}
    for name, targets in graph.items():
        out = set()
        for target in targets:
            if _is_package(target) and name.startswith(target + "."):
                out |= {t for t in graph[target] if t != name}
            else:
                out.add(target)
        resolved[name] = out
    return resolved


def _private_definitions(tree: ast.AST) -> set[str]:
    """Private attributes a module's classes define: their methods and class attributes, and
    what their methods set on ``self``/``cls``. (Module-level private names are reached through
    the module, which :func:`_analyse` checks.)"""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
    return {n for n in names if _private(n)}


def _foreign_private_attributes() -> list[str]:
    """``obj._name`` where ``_name`` is defined by another mpimpy module and not by this one:
    one module reaching into another's private state through an object."""
    trees = {name: ast.parse(p.read_text(encoding="utf-8")) for name, p in MODULES.items()}
    defined = {name: _private_definitions(tree) for name, tree in trees.items()}
    uses = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in defined[name]:
                continue
            owners = sorted(m for m, names in defined.items() if node.attr in names)
            if owners:
                uses.append(f"{name}:{node.lineno} {ast.unparse(node)} (private to "
                            f"{', '.join(owners)})")
    return uses


GRAPH, PRIVATE_USES = _analyse()


def test_the_source_reader_finds_the_modules_and_their_imports():
    # the reader itself must see what is there, or the rules below check nothing
    assert "mpimpy.engine" in MODULES and "mpimpy.studies" in MODULES
    assert "mpimpy.slicing" in GRAPH["mpimpy.engine"]
    assert _absolute("mpimpy.studies.runner", 2, "config") == "mpimpy.config"
    assert _absolute("mpimpy.studies", 1, "spec") == "mpimpy.studies.spec"
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_modules():
    cycles = _cycles(_without_package_edges(GRAPH))
    assert not cycles, "import cycles (each line: modules that import each other):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_names():
    assert not PRIVATE_USES, "\n".join(PRIVATE_USES)


OPTUNA_PRIVATE = ("_storage", "_study_id", "_trial_id", "_cached_frozen_trial",
                  "_study_name", "_number")


def test_no_module_reaches_into_another_modules_private_attributes():
    uses = _foreign_private_attributes()
    assert not uses, "\n".join(uses)


def test_no_use_of_optunas_private_attributes():
    uses = []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        if "optuna" not in source:
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Attribute) and node.attr in OPTUNA_PRIVATE:
                uses.append(f"{name}:{node.lineno} .{node.attr}")
    assert not uses, "Optuna's private attributes in use:\n" + "\n".join(uses)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    limit = MAX_ENGINE_LINES if name == "mpimpy.engine" else MAX_LINES
    assert lines <= limit, f"{MODULES[name]} has {lines} lines, over {limit}"
