"""Every code block of README.md, docs/ and notebooks/README.md works as written.

* ``python`` blocks run, each on its own (a reader pastes one block), in a temporary folder
  with a temporary MLflow store.
* ``yaml`` blocks are study files: validated against their notebook, then run through the real
  runner shrunk to one point (first value of each grid key, first ``points`` entry, first seed,
  small ``m``/``k``/``n``), or for a search to two trials, into an experiment of their own,
  never a shipped study's; or
  technology files (``preset:`` and :class:`mpimpy.cost.Technology` fields), validated.
* ``shell``/``bash`` blocks are checked, not run (``make run`` alone takes minutes): each
  ``make`` target exists, each ``mpimpy`` command line parses with the CLI's own parser and the
  study files it names exist, each notebook handed to papermill exists and declares the
  parameters given with ``-p``/``-y``.
* ``text`` blocks (messages, folder trees) are not code; every block says which kind it is.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
        ROOT / "notebooks" / "README.md"]
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
KINDS = {"python", "yaml", "shell", "bash", "text"}


def code_blocks(kinds: set[str] | None = None) -> list:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            kind, code = match.group(1), match.group(2)
            line = text.count("\n", 0, match.start()) + 1
            if kinds is None or kind in kinds:
                found.append(pytest.param(code, id=f"{path.relative_to(ROOT)}:{line}"))
    return found


def test_every_block_says_what_it_is():
    untagged = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) not in KINDS:
                line = text.count("\n", 0, match.start()) + 1
                untagged.append(f"{path.relative_to(ROOT)}:{line} ({match.group(1) or 'none'})")
    assert not untagged, f"code blocks without a known kind {sorted(KINDS)}: {untagged}"
    assert len(code_blocks({"python"})) >= 6 and code_blocks({"yaml"})


@pytest.mark.parametrize("code", code_blocks({"python"}))
def test_python_block_runs(code, store, tmp_path, monkeypatch):
    import matplotlib

    from mpimpy import tracking

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    try:
        exec(compile(code, "<docs block>", "exec"), namespace)
    finally:
        if tracking.current_run() is not None:
            tracking.current_run().end()


def shipped_experiments() -> set[str]:
    names = set()
    for path in (ROOT / "studies").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        names.add(data.get("experiment", data["name"]))
    return names


@pytest.mark.parametrize("code", code_blocks({"yaml"}))
def test_yaml_block_is_a_study_that_runs(code, store, tmp_path):
    from mpimpy.studies import load_study, run_study

    data = yaml.safe_load(code)
    assert isinstance(data, dict), "not a mapping"
    if "preset" in data:  # a technology file
        from mpimpy import cost

        technology = cost.Technology.from_dict(data)
        assert all(getattr(technology, k) == v for k, v in data.items() if k != "preset")
        return
    assert {"name", "notebook"} <= set(data), "not a study file"
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(code)
    study = load_study(path)  # validated against the notebook, as `mpimpy study validate` does
    assert study.experiment not in shipped_experiments(), (
        f"the example writes into the shipped experiment {study.experiment!r}")
    small = dict(data)
    declared = study.notebook_parameters
    small["parameters"] = {**data.get("parameters", {}),
                           **{k: v for k, v in {"m": 8, "k": 64, "n": 8}.items() if k in declared}}
    if "grid" in data:
        small["grid"] = {key: values[:1] for key, values in data["grid"].items()}
    if "points" in data:
        small["points"] = data["points"][:1]
    small["seeds"] = data.get("seeds", [0])[:1]
    if "search" in data:  # a search: two trials (the first reference, one asked)
        small["search"] = {**data["search"], "n_trials": min(2, data["search"]["n_trials"])}
        if "population_size" in data["search"]:
            small["search"]["population_size"] = 2
    small_path = tmp_path / "small.yaml"
    small_path.write_text(yaml.safe_dump(small))
    result = run_study(small_path, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    runs = store.search_runs([store.get_experiment_by_name(study.experiment).experiment_id])
    if "search" in data:
        assert result.search_counts == {"COMPLETE": small["search"]["n_trials"]}
        assert sorted(r.data.tags["trial"] for r in runs) == [
            str(i) for i in range(small["search"]["n_trials"])]
        assert all(r.info.status == "FINISHED" for r in runs)
        return
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))


def _check_command(words: list[str]) -> None:
    from mpimpy import cli
    from mpimpy.studies.notebook import notebook_parameters

    program, args = Path(words[0]).name, words[1:]
    if words[:3] == ["python", "-m", "mpimpy.cli"] or words[:3] == ["python", "-m", "mpimpy"]:
        program, args = "mpimpy", words[3:]
    if program == "make":
        targets = [a for a in args if "=" not in a and not a.startswith("-")]
        assert set(targets) <= _make_targets(), f"no such make target: {targets}"
    elif program == "mpimpy":
        try:
            cli.build_parser().parse_args(args)
        except SystemExit as exc:
            raise AssertionError(f"`mpimpy {shlex.join(args)}` does not parse") from exc
        for arg in args:
            if arg.endswith((".yaml", ".yml")):
                assert (ROOT / arg).is_file(), f"{arg} does not exist"
    elif program == "papermill":
        notebook = ROOT / args[0]
        assert notebook.is_file(), f"{args[0]} does not exist"
        declared = notebook_parameters(notebook) or {}
        names = [args[i + 1] for i, a in enumerate(args) if a == "-p"]
        names += [next(iter(yaml.safe_load(args[i + 1]))) for i, a in enumerate(args)
                  if a == "-y"]
        assert set(names) <= set(declared), f"not parameters of {args[0]}: {names}"
    elif program == "jupyter":
        assert all((ROOT / a).exists() for a in args[1:] if not a.startswith("-"))


@pytest.mark.parametrize("code", code_blocks({"shell", "bash"}))
def test_shell_block_commands_exist(code):
    code = re.sub(r"\\\n\s*", " ", code)  # a command continued on the next line is one line
    for line in code.splitlines():
        command = line.split(" #")[0].strip()
        if not command or command.startswith("#"):
            continue
        words = shlex.split(command)
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value prefixes
            words = words[1:]
        if words:
            _check_command(words)
