"""Validation of study files before anything runs: values, not only names.

Every bad file is refused by ``load_study`` (and ``mpimpy study validate`` / ``run``, exit 2)
with the file, the key and what was expected, all problems at once, before an experiment or a
run exists. Real notebooks: the small ones of tests/data and the project's own.
"""

from __future__ import annotations

import datetime
import json
import socket

import pytest
import yaml
from studyfiles import ROOT, write_study

from mpimpy import cli
from mpimpy.studies import StudyError, load_study
from mpimpy.studies.spec import MAX_POINTS

NOTEBOOKS = ROOT / "notebooks"


def refused(path, **kwargs) -> str:
    with pytest.raises(StudyError) as info:
        load_study(path, **kwargs)
    return str(info.value)


BAD_VALUES = [
    ({"seeds": [0, -1]}, "'seeds'", "expected integers >= 0"),
    ({"timeout_s": float("nan")}, "'timeout_s'", "positive number of seconds (finite)"),
    ({"timeout_s": float("inf")}, "'timeout_s'", "positive number of seconds (finite)"),
    (
        {"parameters": {"label": datetime.date(2024, 1, 1)}},
        "'parameters.label'",
        "cannot be passed to a notebook",
    ),
    ({"grid": {"flags": [[1], {1, 2}]}}, "'grid.flags[1]'", "cannot be passed to a notebook"),
    ({"points": [{"flags": [{1: "x"}]}]}, "'points[0].flags'", "got 1 (int)"),
    ({"grid": {"a": [1, 1, 2]}}, "'grid.a[1]'", "the same as 'grid.a[0]'"),
    ({"grid": {"scale": [0, 0.0]}}, "'grid.scale[1]'", "the point would run twice"),
    ({"grid": {"mode": ["full", 1, 1.0]}}, "'grid.mode[2]'", "the same as 'grid.mode[1]'"),
    ({"points": [{"a": 1}, {"a": 2}, {"a": 1}]}, "'points[2]'", "the same as 'points[0]'"),
    (
        {"grid": {"a": list(range(10_000)), "scale": [i / 7 for i in range(10_000)]}},
        "'grid'",
        f"expands to 100000000 points (10000 a x 10000 scale x 1 seeds), more than the limit "
        f"of {MAX_POINTS}",
    ),
]


@pytest.mark.parametrize(("change", "key", "message"), BAD_VALUES)
def test_bad_values_are_refused_with_file_key_and_expectation(tmp_path, change, key, message):
    path = write_study(tmp_path, "bad", **change)
    text = refused(path)
    assert str(path) in text and key in text and message in text, text


def test_keys_given_twice_are_refused_with_both_lines(tmp_path):
    path = write_study(tmp_path, "twice")
    path.write_text(
        "name: twice\nnotebook: simple.ipynb\ngrid:\n  a: [1, 2]\n  scale: [0.5]\n  a: [3]\n"
        "seeds: [0]\nseeds: [1]\n"
    )
    text = refused(path)
    assert "key 'grid.a': given twice (lines 4 and 6)" in text
    assert "key 'seeds': given twice (lines 7 and 8)" in text
    assert "2 problems" in text


def test_non_utf8_files_and_corrupt_notebooks_are_refused_without_their_content(tmp_path):
    path = write_study(tmp_path, "latin1")
    path.write_bytes("name: latin1\nnotebook: simple.ipynb\ndescription: café\n".encode("latin-1"))
    assert "not a study file: not UTF-8 text (byte 0xe9 at offset" in refused(path)

    secret = "SECRET-CONTENT-1234"
    broken = {
        "truncated.ipynb": ('{"cells": [' + secret).encode(),
        "list.ipynb": json.dumps([secret]).encode(),
        "v3.ipynb": json.dumps({"nbformat": 3, "worksheets": [secret]}).encode(),
        "latin1.ipynb": f'{{"cells": [], "nbformat": 4, "x": "{secret} é"}}'.encode("latin-1"),
        "cells.ipynb": json.dumps({"nbformat": 4, "cells": [{"source": 3}]}).encode(),
    }
    expected = {
        "truncated.ipynb": "not a valid notebook: JSON error at line 1 column",
        "list.ipynb": "not a valid notebook: expected a Jupyter notebook in format 4",
        "v3.ipynb": "not a valid notebook: expected a Jupyter notebook in format 4",
        "latin1.ipynb": "not a notebook: not UTF-8 text (byte 0xe9",
        "cells.ipynb": "not a valid notebook: cell 0 has no text 'source'",
    }
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
        text = refused(write_study(tmp_path, "corrupt", notebook=name))
        assert expected[name] in text and str(tmp_path / name) in text, text
        assert secret not in text


def test_notebooks_are_confined_to_notebooks_and_the_study_folder(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_study(outside)  # outside/simple.ipynb, a notebook that would run fine
    studies = tmp_path / "studies"
    studies.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / "simple.ipynb").write_bytes((outside / "simple.ipynb").read_bytes())
    monkeypatch.setenv("HOME", str(home))
    link = studies / "linked.ipynb"
    link.symlink_to(outside / "simple.ipynb")
    target = (outside / "simple.ipynb").resolve()
    for notebook, real in (("../outside/simple.ipynb", target), (str(target), target),
                           ("~/simple.ipynb", (home / "simple.ipynb").resolve()),
                           ("linked.ipynb", target)):
        path = studies / "escape.yaml"
        path.write_text(yaml.safe_dump({"name": "escape", "notebook": notebook}))
        text = refused(path)
        assert f"key 'notebook': {notebook!r} is {real}, outside the folders a study may run " \
               "notebooks from" in text, text
        assert "--allow-any-notebook" in text and str(NOTEBOOKS) in text
        assert load_study(path, allow_any_notebook=True).notebook == real  # the explicit option
        assert cli.main(["study", "validate", str(path)]) == 2
        assert cli.main(["study", "validate", "--allow-any-notebook", str(path)]) == 0

    # inside: the study's folder (and below it), and the project's notebooks/
    (studies / "sub").mkdir()
    write_study(studies / "sub")
    path = studies / "inside.yaml"
    path.write_text(yaml.safe_dump({"name": "inside", "notebook": "sub/simple.ipynb"}))
    assert load_study(path).notebook == (studies / "sub" / "simple.ipynb").resolve()
    path.write_text(yaml.safe_dump({"name": "inside", "notebook": "quickstart.ipynb"}))
    assert load_study(path).notebook == NOTEBOOKS / "quickstart.ipynb"


def study_of(tmp_path, notebook: str, **content):
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"name": "settings", "notebook": str(NOTEBOOKS / notebook),
                                    **content}, sort_keys=False))
    return path


def test_every_points_settings_are_checked_and_reported_at_once(tmp_path):
    """The issue's three typos, each a FAILED run a minute later before: one message now."""
    path = study_of(tmp_path, "variation.ipynb", parameters={"m": 8},
                    grid={"mapping": ["offset", "diffpiar"], "var": [0.0, -0.1],
                          "fmt": ["INT", "int"]})
    text = refused(path)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == f"{path}: 3 problems:"
    assert (
        "key 'grid.mapping': mapping must be one of ('offset', 'diffpair', 'bias'), got 'diffpiar' "
        "(4 of 8 points, e.g. mapping=diffpiar,var=0.0,fmt=INT,seed=0)"
    ) in lines
    assert "key 'grid.var': var must be >= 0.0, got -0.1 (4 of 8 points" in text
    assert "key 'grid.fmt': fmt must be 'INT' (integer) or 'FP' (block floating point), got 'int'" \
        in text


def test_settings_are_checked_together_with_the_notebooks_defaults(tmp_path):
    # heat_equation.ipynb: radc: int | None = 256, g_level: int = 16
    path = study_of(tmp_path, "heat_equation.ipynb",
                    grid={"mapping": ["offset", "diffpair"], "radc": [2, 16]},
                    points=[{"w_slice": [1, 1, 2, 4]}, {"w_slice": [1, 5]}])
    text = refused(path)
    assert "key 'grid.radc': radc must be an integer >= 3, got 2 (2 of 8 points, e.g. " \
           "mapping=diffpair,radc=2" in text
    assert ("key 'points[1].w_slice': w_slice: a 5-bit slice needs 32 conductance levels but "
            "g_level=16") in text
    assert "points[0]" not in text

    # 0 is an ideal converter where the notebook's radc cannot be None (int_slicing.ipynb) ...
    ok = study_of(tmp_path, "int_slicing.ipynb", grid={"radc": [0, 256], "rdac": [0, 16]})
    assert len(load_study(ok).expand()) == 4
    # ... but is refused where None is the notebook's ideal ADC
    path = study_of(tmp_path, "heat_equation.ipynb", grid={"radc": [0, None]})
    assert "key 'grid.radc': radc must be an integer >= 2, got 0 (1 of 2 points" in refused(path)
    path = study_of(tmp_path, "dnn_inference.ipynb",
                    grid={"x_slice": [[2, 2]], "bw_e": [None, 20], "paral_size": [[64, 0]]})
    text = refused(path)
    assert "key 'grid.x_slice': x_slice[0] is the sign slice and must be 1" in text
    assert "key 'grid.bw_e': bw_e must be None (INT) or an integer in [2, 11], got 20" in text
    assert "key 'grid.paral_size': paral_size[1] (array cols) must be an integer >= 1" in text


def test_cli_refuses_bad_values_before_creating_anything(store, tmp_path, capsys):
    path = study_of(tmp_path, "quickstart.ipynb", name="typo", experiment="typo",
                    grid={"fmt": ["int"], "var": [-0.1]})
    assert cli.main(["study", "run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "key 'grid.fmt'" in err and "key 'grid.var'" in err
    assert store.get_experiment_by_name("typo") is None
    assert cli.main(["study", "validate", str(path)]) == 2


def test_workers_zero_is_a_usage_error(store, tmp_path, capsys):
    path = write_study(tmp_path, "zero")
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as info:
            cli.main(["study", "run", str(path), "--workers", bad])
        assert info.value.code == 2
        assert "--workers: expected an integer >= 1" in capsys.readouterr().err
    assert store.get_experiment_by_name("zero") is None


def test_an_unreachable_scheduler_is_refused_first(store, tmp_path, capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = write_study(tmp_path, "nowhere")
    code = cli.main(["study", "run", str(path), "--scheduler", f"tcp://127.0.0.1:{port}",
                     "--connect-timeout", "2", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 2 s" in err
    assert "Traceback" not in err
    assert store.get_experiment_by_name("nowhere") is None
