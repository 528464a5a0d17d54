"""Study files, the runner and the CLI, against a real MLflow store, papermill and Dask.

The notebooks are the small ones in tests/data (they need neither torch nor the simulator), so
each point costs about one kernel start. All tests share one SQLite store in a temporary folder
(creating MLflow's tables takes seconds); each test uses its own study/experiment name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from studyfiles import ROOT, all_runs, default_sigint, write_study

from mpimpy import cli, tracking
from mpimpy.studies import StudyError, load_study, run_study
from mpimpy.studies.spec import expand_points, params_hash
from mpimpy.studies.store import HASH_TAG, runs_with_status

# ---------------------------------------------------------------------------------------------
# Study files (no kernels)


def test_grid_points_and_seeds_expand(tmp_path):
    path = write_study(
        tmp_path,
        parameters={"label": "fixed", "scale": 2},
        grid={"a": [1, 2, 3], "mode": ["full", 0.5]},
        points=[{"flags": [1]}, {"flags": [2, 3], "fail": False}],
        seeds=[0, 7],
    )
    study = load_study(path)
    points = study.expand()
    assert len(points) == 3 * 2 * 2 * 2
    assert len({p.params_hash for p in points}) == len(points)
    assert len({p.point_id for p in points}) == len(points)
    first = points[0]
    assert first.parameters == {
        "label": "fixed",
        "scale": 2.0,
        "a": 1,
        "mode": "full",
        "flags": [1],
        "seed": 0,
    }
    assert isinstance(first.parameters["scale"], float)  # int in YAML, float in the notebook
    assert first.varying == {"a": 1, "mode": "full", "flags": [1], "seed": 0}
    assert [p.parameters["seed"] for p in points[:4]] == [0, 7, 0, 7]  # seeds innermost
    assert points[-1].parameters["a"] == 3 and points[-1].parameters["fail"] is False


def test_no_grid_means_one_point_per_seed_and_hash_ignores_int_float(tmp_path):
    one = load_study(write_study(tmp_path, name="one", parameters={"scale": 0}, seeds=[1, 2]))
    two = load_study(write_study(tmp_path, name="two", parameters={"scale": 0.0}, seeds=[1, 2]))
    assert [p.params_hash for p in expand_points(one)] == [
        p.params_hash for p in expand_points(two)
    ]
    assert len(one.expand()) == 2
    assert params_hash("n.ipynb", {"a": 1}) != params_hash("n.ipynb", {"a": 2})


BAD_STUDIES = [
    ({"name": None}, "'name'", "missing"),
    ({"notebook": None}, "'notebook'", "missing"),
    ({"gird": {"a": [1]}}, "'gird'", "unknown key"),
    ({"name": "has space"}, "'name'", "expected a name"),
    ({"notebook": "nowhere.ipynb"}, "'notebook'", "not found"),
    ({"notebook": "noparams.ipynb"}, "'notebook'", "no cell tagged 'parameters'"),
    ({"notebook": "noseed.ipynb"}, "'seeds'", "declares no 'seed' parameter"),
    (
        {"parameters": {"colour": 1}},
        "'parameters.colour'",
        "not a parameter of notebook simple.ipynb",
    ),
    (
        {"parameters": {"a": "one"}},
        "'parameters.a'",
        "expected int like the notebook's default a = 1",
    ),
    ({"grid": {"scale": [0.1, "big"]}}, "'grid.scale'", "expected float"),
    ({"grid": {"fail": [0, 1]}}, "'grid.fail'", "expected bool"),
    ({"points": [{"flags": 3}]}, "'points[0].flags'", "expected list"),
    ({"parameters": {"mode": [1]}}, "'parameters.mode'", "expected float or str"),
    ({"grid": {}}, "'grid'", "non-empty mapping"),
    ({"grid": {"a": []}}, "'grid.a'", "non-empty list"),
    ({"grid": {"a": 3}}, "'grid.a'", "non-empty list"),
    ({"points": []}, "'points'", "non-empty list"),
    ({"seeds": [0, "x"]}, "'seeds'", "expected integers"),
    ({"seeds": []}, "'seeds'", "non-empty list"),
    ({"parameters": {"a": 1}, "grid": {"a": [2]}}, "'grid.a'", "set it in one place"),
    ({"grid": {"seed": [1]}}, "'grid'", "top-level key 'seeds'"),
    ({"timeout_s": -1}, "'timeout_s'", "positive number"),
]


@pytest.mark.parametrize(("change", "key", "message"), BAD_STUDIES)
def test_bad_study_files_are_refused_with_a_clear_message(tmp_path, change, key, message):
    path = write_study(tmp_path, "bad")
    data = yaml.safe_load(path.read_text())
    for k, v in change.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StudyError) as info:
        load_study(path)
    text = str(info.value)
    assert str(path) in text and key in text and message in text, text


def test_unreadable_study_files(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    for name, message in (
        ("list.yaml", "expected a mapping"),
        ("broken.yaml", "not valid YAML"),
        ("no.yaml", "not found"),
    ):
        with pytest.raises(StudyError, match=message):
            load_study(tmp_path / name)


def test_union_annotations_accept_each_member(tmp_path):
    study = load_study(write_study(tmp_path, grid={"mode": ["full", 0.5, 1]}))
    assert [p.parameters["mode"] for p in study.expand()] == ["full", 0.5, 1]


def test_cli_refuses_a_bad_study_before_anything_runs(store, tmp_path, capsys):
    path = write_study(tmp_path, name="refused", grid={"a": ["x"]})
    assert cli.main(["study", "run", str(path)]) == 2
    assert "grid.a" in capsys.readouterr().err
    assert store.get_experiment_by_name("refused") is None
    assert cli.main(["study", "validate", str(path)]) == 2


def test_shipped_study_files_are_valid():
    files = sorted((ROOT / "studies").glob("*.yaml"))
    assert {f.stem for f in files} >= {"quickstart", "int_slicing", "fp_formats", "variation"}
    for path in files:
        study = load_study(path, check_notebook=False)
        assert study.name == path.stem
        size = study.search.n_trials if study.search is not None else len(study.expand())
        assert 1 <= size <= 200
        if (ROOT / "notebooks" / study.notebook_name).is_file():
            load_study(path)  # the notebook exists: check every parameter against it
    quickstart = load_study(ROOT / "studies" / "quickstart.yaml", check_notebook=False)
    assert {p.parameters["fmt"] for p in quickstart.expand()} == {"INT", "FP"}


# ---------------------------------------------------------------------------------------------
# Running (real papermill kernels)


def test_failing_point_is_recorded_and_the_others_go_on_then_resume(store, tmp_path, capsys):
    path = write_study(
        tmp_path, name="isolation", points=[{"a": 1}, {"a": 2, "fail": True}, {"a": 3}]
    )
    out = tmp_path / "out"
    assert (
        cli.main(
            ["study", "run", str(path), "--workers", "2", "--output-dir", str(out), "--no-progress"]
        )
        == 1
    )
    printed = capsys.readouterr().out
    assert "2 finished" in printed and "1 failed" in printed and "point asked to fail" in printed

    runs = all_runs(store, "isolation")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "RuntimeError: point asked to fail (a=2" in failed.data.tags["mpimpy.error"]
    assert failed.data.params["fail"] == "True"  # a failed point keeps its parameters
    artifacts = {a.path for a in store.list_artifacts(failed.info.run_id)}
    assert {"notebook", "error.txt"} <= artifacts
    notebook, rendered = store.list_artifacts(failed.info.run_id, "notebook")  # .html, .ipynb
    notebook, rendered = sorted([notebook, rendered], key=lambda a: a.path.endswith(".html"))
    assert rendered.path.endswith(".html")
    local = store.download_artifacts(failed.info.run_id, notebook.path, str(tmp_path))
    executed = nbformat.read(local, as_version=4)
    assert any(
        o.get("ename") == "RuntimeError" for c in executed.cells for o in c.get("outputs", [])
    )
    for run in runs:
        finished = run.info.status == "FINISHED"
        assert (out / f"{run.data.tags['point_id']}.ipynb").is_file()
        assert run.data.tags["study"] == "isolation"
        if finished:  # the kernel saw the run's id
            text = (out / f"{run.data.tags['point_id']}.ipynb").read_text()
            assert f"run: {run.info.run_id}" in text

    # Again: the finished points are skipped, the failed one is tried in a new run.
    assert (
        cli.main(
            ["study", "run", str(path), "--workers", "2", "--output-dir", str(out), "--no-progress"]
        )
        == 1
    )
    runs = all_runs(store, "isolation")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert failed.info.run_id in {r.info.run_id for r in runs if r.info.status == "FAILED"}
    assert "1 points to run, 2 finished before" in capsys.readouterr().out


def test_eight_points_four_workers_make_eight_runs_in_the_right_experiment(store, tmp_path):
    path = write_study(tmp_path, name="eight", experiment="eight-exp", grid={"a": list(range(8))})
    result = run_study(path, workers=4, output_dir=tmp_path / "out", progress=False)
    assert result.ok and len(result.with_status("FINISHED")) == 8
    runs = all_runs(store, "eight-exp")
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags[HASH_TAG] for r in runs}) == 8
    assert sorted(int(r.data.params["a"]) for r in runs) == list(range(8))
    default = store.get_experiment_by_name("Default")
    if default is not None:
        assert store.search_runs([default.experiment_id]) == []
    experiment = store.get_experiment_by_name("eight-exp")
    assert experiment.artifact_location.startswith("file:///")
    assert all(r.info.artifact_uri.startswith(experiment.artifact_location) for r in runs)

    # Nothing left to do: no new runs.
    again = run_study(path, workers=4, output_dir=tmp_path / "out", progress=False)
    assert again.ok and len(again.with_status("SKIPPED")) == 8
    assert len(all_runs(store, "eight-exp")) == 8
    dry = run_study(path, dry_run=True, echo=lambda *_: None)
    assert len(dry.with_status("SKIPPED")) == 8 and not dry.with_status("PENDING")


def test_interrupted_study_resumes_without_loss_or_duplicates(store, store_uri, tmp_path):
    block = tmp_path / "block"
    block.write_text("hold the last point")
    path = write_study(
        tmp_path,
        name="interrupted",
        points=[{"a": 1}, {"a": 2}, {"a": 3, "block_file": str(block)}],
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "mpimpy.cli",
        "study",
        "run",
        str(path),
        "--workers",
        "3",
        "--no-progress",
    ]
    command += ["--output-dir", str(tmp_path / "out")]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            experiment = store.get_experiment_by_name("interrupted")
            if experiment is not None:
                done = runs_with_status(store, experiment.experiment_id, "interrupted", "FINISHED")
                if len(done) == 2:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the two free points did not finish")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, output
    assert "Interrupted" in output
    runs = all_runs(store, "interrupted")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED", "KILLED"]
    killed = next(r for r in runs if r.info.status == "KILLED")

    # A runner killed outright leaves a RUNNING run behind; simulate one for the same point.
    stale = store.create_run(
        killed.info.experiment_id,
        tags={"study": "interrupted", HASH_TAG: killed.data.tags[HASH_TAG], "point_id": "stale"},
    )
    block.unlink()
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert (
        result.ok
        and len(result.with_status("SKIPPED")) == 2
        and len(result.with_status("FINISHED")) == 1
    )
    runs = all_runs(store, "interrupted")
    statuses = {r.info.run_id: r.info.status for r in runs}
    assert statuses[killed.info.run_id] == "KILLED" and statuses[stale.info.run_id] == "KILLED"
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 3 and len({r.data.tags[HASH_TAG] for r in finished}) == 3


def test_dask_local_cluster_runs_the_same_points(store, tmp_path):
    from distributed import LocalCluster

    path = write_study(tmp_path, name="dask", grid={"a": [1, 2, 3]})
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        result = run_study(
            path, scheduler=cluster.scheduler_address, output_dir=tmp_path / "out", progress=False
        )
    assert result.ok and len(result.with_status("FINISHED")) == 3
    runs = all_runs(store, "dask")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert [a.path for a in store.list_artifacts(run.info.run_id, "notebook")]


def test_simulator_notebook_logs_into_the_runners_run(store, tmp_path):
    notebook = "simulate.ipynb"
    path = write_study(tmp_path, name="simulate", notebook=notebook, grid={"fmt": ["INT", "FP"]})
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    runs = all_runs(store, "simulate")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert store.get_experiment_by_name("simulate-by-hand") is None  # the runner's run was resumed
    for run in runs:
        metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
        assert {"RE", "SNR_dB", "ABSE", "max_abs_error", "sim_time_s", "notebook_wall_s"} <= set(
            metrics
        )
        assert 0 < metrics["RE"] < 1
        assert params["var"] == "0.05" and params["seed"] == "0" and params["x_shape"] == "[16, 32]"
        assert params["fmt"] == tags["format"]  # INT/FP tag from the slicing
        assert {"HGS", "g_level", "radc", "w_slice", "array_rows", "mpimpy_version"} <= set(params)
        assert not [k for k in params if k.startswith("nb.")]  # one name per setting
        assert tags["mlflow.note.content"].startswith(f"Study simulate, point fmt={params['fmt']}")
        assert tags["study"] == "simulate" and tags["point_id"].startswith(f"fmt={params['fmt']}")
        plots = {a.path for a in store.list_artifacts(run.info.run_id, "plots")}
        assert plots == {"plots/measured_vs_expected.png", "plots/error_histogram.png",
                         "plots/cost_breakdown.png"}
        notebooks = {a.path for a in store.list_artifacts(run.info.run_id, "notebook")}
        point = tags["point_id"]
        assert notebooks == {f"notebook/{point}.ipynb", f"notebook/{point}.html"}
        html = store.download_artifacts(run.info.run_id, f"notebook/{point}.html", str(tmp_path))
        assert "<html" in Path(html).read_text() and "sim_time_s" in Path(html).read_text()
    experiment = store.get_experiment_by_name("simulate")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert json.loads(experiment.tags["mpimpy.runs_table_columns"]) == [
        "metrics.RE", "metrics.SNR_dB", "metrics.accuracy", "metrics.energy_per_mac_pJ",
        "params.fmt", "params.seed"]


def test_study_list_shows_shipped_studies_and_experiments(store, capsys):
    assert cli.main(["study", "list"]) == 0
    printed = capsys.readouterr().out
    assert "quickstart" in printed and "Experiments in local store" in printed


def test_ui_command_serves_the_same_store(store, store_uri):
    command = cli.ui_command(port=5123)
    assert command[command.index("--backend-store-uri") + 1] == store_uri
    assert command[command.index("--host") + 1] == "127.0.0.1"
    root = command[command.index("--default-artifact-root") + 1]
    assert root == tracking.artifact_root(store_uri)
    assert command[command.index("--app-name") + 1] == "mpimpy"  # opens experiments on runs


def test_a_point_past_its_timeout_fails(store, tmp_path):
    block = tmp_path / "block"
    block.write_text("never released")
    path = write_study(tmp_path, name="timeout", parameters={"block_file": str(block)}, timeout_s=2)
    result = run_study(path, output_dir=tmp_path / "out", progress=False)
    assert not result.ok
    (failed,) = result.with_status("FAILED")
    assert "CellTimeoutError" in failed.error or "timed out" in failed.error
    (run,) = all_runs(store, "timeout")
    assert run.info.status == "FAILED"
