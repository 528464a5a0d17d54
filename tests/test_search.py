"""Search studies: Optuna trials asked and told by the study runner, one MLflow run each.

Real components throughout: Optuna's RDB storage on SQLite files, a real MLflow SQLite store,
papermill kernels running tests/data/toy_search.ipynb (two analytic objectives f1, f2 of its
parameters x, y, kind and a constraint metric c), runners killed with a real SIGKILL, a real
Dask LocalCluster and a real optuna-dashboard server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import optuna
import psutil
import pytest
from studyfiles import ROOT, write_study

from mpimpy import cli
from mpimpy.studies import StudyError, load_study, run_study
from mpimpy.studies.analysis import search_results
from mpimpy.studies.notebook import notebook_metrics
from mpimpy.studies.search import (
    RETRY_ATTR,
    RUN_ATTR,
    default_storage,
    experiment_store,
    open_search,
    storage_lock,
)
from mpimpy.studies.spec import Constraint, trial_point

TOY = "toy_search.ipynb"
SEARCH = {
    "sampler": "nsga2",
    "n_trials": 6,
    "seed": 0,
    "objectives": [{"metric": "f1", "direction": "minimize"},
                   {"metric": "f2", "direction": "minimize"}],
    "constraints": [{"metric": "c", "max": 0.9}],
    "space": {"x": {"low": 0.0, "high": 1.0}, "y": {"low": 1, "high": 3},
              "kind": {"choices": ["a", "b"]}},
}


def toy(x: float, y: int, kind: str = "a", shape=(1, 2)) -> dict[str, float]:
    """The toy notebook's metrics, written out independently of it."""
    return {"f1": x**2 + 0.1 * y + (0.2 if kind == "b" else 0.0),
            "f2": (1 - x) ** 2 + 0.1 * (3 - y) + 0.01 * sum(shape),
            "c": x + 0.1 * y}


def search_study(folder: Path, name: str, **changes) -> Path:
    notebook = changes.pop("notebook", TOY)
    content = {"search": {**SEARCH, **changes.pop("search", {})}, **changes}
    return write_study(folder, name, notebook=notebook, **content)


def storage_of(store_uri: str) -> str:
    return default_storage(store_uri)


def trials_of(store_uri: str, name: str) -> list:
    return optuna.load_study(study_name=name, storage=storage_of(store_uri)).get_trials()


def search_runs(client, experiment: str, name: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([found.experiment_id], max_results=1000)
            if r.data.tags.get("search") == name]


def assert_one_to_one(client, store_uri: str, name: str) -> tuple[list, list]:
    """Every trial has exactly one run and every run one trial; states agree."""
    trials, runs = trials_of(store_uri, name), search_runs(client, name, name)
    by_number = Counter(r.data.tags["trial"] for r in runs)
    assert by_number == Counter(str(t.number) for t in trials if t.state.name != "WAITING"), (
        by_number)
    runs_by_id = {r.info.run_id: r for r in runs}
    for trial in trials:
        if trial.state.name == "WAITING":
            continue
        run = runs_by_id[trial.user_attrs[RUN_ATTR]]
        assert run.data.tags["trial"] == str(trial.number)
        expected = {"COMPLETE": {"FINISHED"}, "FAIL": {"FAILED", "KILLED"}}[trial.state.name]
        assert run.info.status in expected, (trial.number, trial.state, run.info.status)
        if trial.state.name == "COMPLETE":
            assert trial.values == [run.data.metrics["f1"], run.data.metrics["f2"]]
            assert run.data.tags["objective.f1"] == f"{trial.values[0]:.10g}"
            feasible = run.data.metrics["c"] <= 0.9
            assert run.data.tags["feasible"] == str(feasible).lower()
            assert trial.system_attrs["constraints:c"] == pytest.approx(
                run.data.metrics["c"] - 0.9)
    return trials, runs


# ---------------------------------------------------------------------------------------------
# Study files (no kernels)


BAD_SEARCHES = [
    ({"search": {"sampler": "cmaes"}}, "'search.sampler'",
     "expected one of nsga2, tpe, random, grid (Optuna's samplers), got 'cmaes' (str)"),
    ({"search": {"n_trials": 0}}, "'search.n_trials'", "expected an integer >= 1"),
    ({"search": {"trials": 5}}, "'search.trials'", "unknown key; allowed keys are sampler"),
    ({"search": {"objectives": []}}, "'search.objectives'", "expected a non-empty list"),
    ({"search": {"objectives": [{"metric": "f3", "direction": "minimize"}]}},
     "'search.objectives[0].metric'",
     "'f3' is not a metric notebook toy_search.ipynb logs (it declares: f1, f2, c)"),
    ({"search": {"objectives": [{"metric": "f1", "direction": "max"}]}},
     "'search.objectives[0].direction'", "expected minimize or maximize, got 'max'"),
    ({"search": {"constraints": [{"metric": "c"}]}}, "'search.constraints[0]'",
     "expected {metric: NAME, max: X} and/or min: X"),
    ({"search": {"constraints": [{"metric": "c", "min": 1, "max": 0}]}},
     "'search.constraints[0]'", "min 1 is above max 0: nothing is feasible"),
    ({"search": {"constraints": [{"metric": "accuracy", "max": 1}]}},
     "'search.constraints[0].metric'", "'accuracy' is not a metric notebook toy_search.ipynb"),
    ({"search": {"space": {"x": {"low": 1.0, "high": 1.0}}}}, "'search.space.x'",
     "expected low < high, got low = 1.0, high = 1.0"),
    ({"search": {"space": {"y": {"low": 1.5, "high": 3}}}}, "'search.space.y'",
     "the notebook's y = 2 is an int: low, high and step must be integers"),
    ({"search": {"space": {"kind": {"low": 0, "high": 1}}}}, "'search.space.kind'",
     "a range needs a number parameter, but the notebook's kind = 'a' is str"),
    ({"search": {"space": {"colour": {"choices": [1, 2]}}}}, "'search.space.colour'",
     "'colour' is not a parameter of notebook toy_search.ipynb"),
    ({"search": {"space": {"shape": {"choices": [[1], "x"]}}}},
     "'search.space.shape.choices[1]'", "expected list like the notebook's default"),
    ({"search": {"space": {"x": {"choices": [0.5, 0.5]}}}}, "'search.space.x.choices[1]'",
     "the same as choices[0]"),
    ({"search": {"space": {"x": {"low": 0.0, "high": 1.0, "log": True}}}},
     "'search.space.x.low'", "a log range needs low > 0, got 0.0"),
    ({"search": {"space": {"x": {"low": 0.0, "high": 1.0, "step": 0.3}}}},
     "'search.space.x.step'", "is not a multiple of step 0.3"),
    ({"search": {"space": {"x": {"low": 0.0, "high": 1.0, "size": 3}}}}, "'search.space.x'",
     "expected {low: A, high: B} (optionally step: S, log: true)"),
    ({"search": {"space": {"seed": {"choices": [0, 1]}}}}, "'search.space.seed'",
     "set by the top-level key 'seeds'"),
    ({"search": {"sampler": "grid"}}, "'search.space.x'",
     "the grid sampler needs discrete values"),
    ({"search": {"sampler": "grid", "n_trials": 9,
                 "space": {"x": {"choices": [0.0, 1.0]}, "y": {"low": 1, "high": 3}}}},
     "'search.n_trials'", "the grid holds 6 configurations, fewer than n_trials = 9"),
    ({"search": {"sampler": "tpe", "population_size": 8}}, "'search.population_size'",
     "only the nsga2 sampler has a population"),
    ({"search": {"cost": "c"}}, "'search.cost'", "expected one of the objectives' metrics"),
    ({"seeds": [0, 1]}, "'seeds'", "a search runs each trial once: give one seed"),
    ({"points": [{"x": 2.0}]}, "'points[0].x'",
     "2.0 is outside the search space of x (0.0 .. 1.0)"),
    ({"points": [{"shape": [1]}]}, "'points[0].shape'",
     "with a search, grid and points give reference configurations of the space's parameters"),
    ({"parameters": {"x": 0.5}}, "'search.space.x'", "also set under 'parameters'"),
    ({"search": {"n_trials": 1}, "grid": {"y": [1, 2]}}, "'search.n_trials'",
     "1 trials cannot hold the 2 reference configurations"),
    ({"notebook": "simple.ipynb"}, "'search.objectives'",
     "notebook simple.ipynb declares no metrics; add a line '# logs metrics: NAME, NAME, ...'"),
]


@pytest.mark.parametrize(("change", "key", "message"), BAD_SEARCHES)
def test_bad_search_sections_are_refused_naming_file_key_and_expectation(
        tmp_path, change, key, message):
    path = search_study(tmp_path, "bad", **change)
    with pytest.raises(StudyError) as info:
        load_study(path)
    text = str(info.value)
    assert str(path) in text and key in text and message in text, text


def test_space_values_the_simulator_always_refuses_are_refused(tmp_path):
    path = write_study(tmp_path, "settings", notebook="simulate.ipynb", search={
        "n_trials": 4, "objectives": [{"metric": "RE", "direction": "minimize"}],
        "space": {"var": {"choices": [-0.1, 0.05]}, "fmt": {"choices": ["INT", "int"]}}})
    with pytest.raises(StudyError) as info:
        load_study(path)
    text = str(info.value)
    assert "key 'search.space.var': -0.1 is refused by the simulator" in text, text
    assert "var must be >= 0.0" in text
    assert "key 'search.space.fmt': \"int\" is refused by the simulator" in text, text


def test_the_cli_refuses_a_bad_search_before_anything_runs(store, tmp_path, capsys):
    path = search_study(tmp_path, "refused", search={"n_trials": -2})
    assert cli.main(["study", "run", str(path), "--no-progress"]) == 2
    assert "key 'search.n_trials': expected an integer >= 1" in capsys.readouterr().err
    assert store.get_experiment_by_name("refused") is None
    assert not Path(default_storage()).exists() or "refused" not in {
        s.study_name for s in optuna.get_all_study_summaries(default_storage())}


def test_metrics_are_declared_in_the_parameters_cell_and_the_search_parses(tmp_path):
    assert notebook_metrics(ROOT / "tests" / "data" / TOY) == ["f1", "f2", "c"]
    assert notebook_metrics(ROOT / "tests" / "data" / "simple.ipynb") is None
    study = load_study(search_study(tmp_path, "parsed", search={
        "space": {**SEARCH["space"], "shape": {"choices": [[1, 2], [3]]},
                  "x": {"low": 0, "high": 1, "step": 0.25}}}))
    search = study.search
    assert search.space["x"].integer is False and search.space["x"].values() == [
        0.0, 0.25, 0.5, 0.75, 1.0]  # a float parameter: an int-looking range is a float range
    assert search.space["y"].values() == [1, 2, 3]
    assert search.space["shape"].decode(search.space["shape"].encode([3])) == [3]
    assert search.cost_objective.metric == "f2"  # the last objective minimized
    assert Constraint("c", max=0.9).violation(1.0) == pytest.approx(0.1)
    assert Constraint("c", min=0.5, max=0.9).violation(0.2) == pytest.approx(0.3)
    point = trial_point(study, 7, {"x": 0.5, "y": 2, "kind": "b"})
    assert point.parameters == {"x": 0.5, "y": 2, "kind": "b", "seed": 0}
    assert point.point_id.startswith("trial-0007-") and point.run_name.startswith("trial 7: ")


# ---------------------------------------------------------------------------------------------
# Searches that run


def test_a_search_with_two_workers_gives_n_trials_trials_and_runs_one_to_one(
        store, store_uri, tmp_path, capsys):
    path = search_study(tmp_path, "two-workers", points=[{"x": 0.5, "y": 2}])
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    assert result.search_counts == {"COMPLETE": 6}
    trials, runs = assert_one_to_one(store, store_uri, "two-workers")
    assert len(trials) == 6 and len(runs) == 6
    assert all(r.info.status == "FINISHED" for r in runs)
    first = trials[0]  # the reference configuration is the first trial
    assert first.params["x"] == 0.5 and first.params["y"] == 2
    assert {r.data.tags["trial"] for r in runs if r.data.tags.get("reference") == "true"} == {"0"}
    for run in runs:  # the notebook ran with the trial's values and logged what they give
        params = run.data.params
        expected = toy(float(params["x"]), int(params["y"]), params["kind"])
        assert run.data.metrics["f1"] == pytest.approx(expected["f1"])
        assert run.data.metrics["c"] == pytest.approx(expected["c"])
        assert run.data.tags["study"] == "two-workers"

    again = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert again.ok and again.results == []  # complete: nothing asked, nothing run
    assert len(search_runs(store, "two-workers", "two-workers")) == 6

    # more trials continue the same search, here on a Dask cluster
    from distributed import LocalCluster

    more = search_study(tmp_path, "two-workers", points=[{"x": 0.5, "y": 2}],
                        search={"n_trials": 8})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        grown = run_study(more, scheduler=cluster.scheduler_address,
                          output_dir=tmp_path / "out", progress=False)
    assert grown.ok and grown.search_counts == {"COMPLETE": 8}, grown.summary()
    trials, runs = assert_one_to_one(store, store_uri, "two-workers")
    assert len(trials) == len(runs) == 8

    assert cli.main(["study", "show", str(more)]) == 0
    shown = capsys.readouterr().out
    assert "Search 'two-workers': 8 of 8 trials complete" in shown
    results = search_results(load_study(more), store_uri)
    for _, row in results.front.iterrows():
        assert f"{row['f1']:.4g}" in shown
    assert f"Cheapest feasible (f2): trial {int(results.cheapest['trial'])}" in shown

    changed = search_study(tmp_path, "two-workers", search={"seed": 1})
    with pytest.raises(StudyError, match="was started with another definition "
                                         r"\(changed: sampler_seed\)"):
        run_study(changed, output_dir=tmp_path / "out", progress=False)


def runner(uri: str, path: Path, tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "mpimpy", "study", "run", str(path), "--no-progress",
               "--output-dir", str(tmp_path / "out"), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_for(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_sigkill_of_the_runner_mid_search_then_a_rerun_gives_n_trials_without_duplicates(
        store, store_uri, tmp_path):
    block = tmp_path / "block"
    block.write_text("hold the trials")
    path = search_study(tmp_path, "sigkill", parameters={"block_file": str(block)},
                        search={"n_trials": 4, "sampler": "random"})
    proc = runner(store_uri, path, tmp_path, "--workers", "2")
    try:
        wait_for(lambda: store.get_experiment_by_name("sigkill") and sum(
            r.info.status == "RUNNING" for r in search_runs(store, "sigkill", "sigkill")) == 2,
            "two trials in flight")
        descendants = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(2)  # their kernels are in the blocked cell
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    psutil.wait_procs(descendants, timeout=30)
    killed = search_runs(store, "sigkill", "sigkill")
    assert Counter(r.info.status for r in killed) == {"KILLED": 2}  # their workers saw it
    assert Counter(t.state.name for t in trials_of(store_uri, "sigkill")) == {"RUNNING": 2}

    block.unlink()
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    trials, runs = assert_one_to_one(store, store_uri, "sigkill")
    states = Counter(t.state.name for t in trials)
    assert states == {"COMPLETE": 4, "FAIL": 2}, states
    assert Counter(r.info.status for r in runs) == {"FINISHED": 4, "KILLED": 2}
    failed = {t.number: t for t in trials if t.state.name == "FAIL"}
    retries = [t for t in trials if RETRY_ATTR in t.user_attrs]
    assert sorted(t.user_attrs[RETRY_ATTR] for t in retries) == sorted(failed)  # once each
    for retry in retries:
        assert retry.state.name == "COMPLETE"
        assert retry.params == failed[retry.user_attrs[RETRY_ATTR]].params
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len({r.data.tags["trial"] for r in finished}) == 4  # no trial finished twice


def test_two_runners_started_together_on_one_search_share_its_trials(tmp_path):
    """Two runners on one search at once, real processes on a fresh local store that both
    create: trials one to one with runs, exactly one FINISHED run per trial, and no more than
    n_trials trials COMPLETE (neither runner asks beyond what the other holds)."""
    from mpimpy import tracking

    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    path = search_study(tmp_path, "together", search={"n_trials": 6, "sampler": "random"})
    procs = [runner(uri, path, tmp_path, "--workers", "2") for _ in range(2)]
    outputs = []
    try:
        for proc in procs:
            output, _ = proc.communicate(timeout=600)
            outputs.append(output)
    finally:
        for proc in procs:
            proc.kill()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output
        assert "Traceback" not in output, output
        assert "6 of 6 trials complete" in output, output
    client = tracking.get_client(uri)
    trials, runs = assert_one_to_one(client, uri, "together")
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 6}
    finished = Counter(r.data.tags["trial"] for r in runs if r.info.status == "FINISHED")
    assert sorted(finished) == sorted(str(t.number) for t in trials)
    assert set(finished.values()) == {1}  # exactly one FINISHED run per trial


def test_a_trial_whose_run_finished_while_no_runner_watched_is_told_not_rerun(
        store, store_uri, tmp_path):
    """A runner killed between its run's end and telling Optuna loses nothing: the next runner
    tells the trial from the run's metrics."""
    from mpimpy.studies.lease import Lease
    from mpimpy.studies.store import create_run, open_store

    path = search_study(tmp_path, "untold", search={"n_trials": 1, "sampler": "random"})
    study = load_study(path)
    client, experiment_id = open_store(store_uri, study)
    storage = storage_of(store_uri)
    optuna_study = open_search(study, storage, storage_lock(storage),
                               store=experiment_store(store_uri))
    trial = optuna_study.ask({k: d.distribution() for k, d in study.search.space.items()})
    values = {k: study.search.space[k].decode(v) for k, v in trial.params.items()}
    point = trial_point(study, trial.number, values)
    run_id = create_run(client, experiment_id, study, point, Lease("gone", 1, "t", 60),
                         extra_tags={"search": "untold", "trial": str(trial.number)})
    metrics = toy(values["x"], values["y"], values["kind"])
    for name, value in metrics.items():
        client.log_metric(run_id, name, value)
    client.set_terminated(run_id, "FINISHED")  # the worker finished; the runner died

    result = run_study(path, output_dir=tmp_path / "out", progress=False)
    assert result.ok and result.results == [], result.summary()  # nothing ran again
    (told,) = trials_of(store_uri, "untold")
    assert told.state.name == "COMPLETE" and told.values == [metrics["f1"], metrics["f2"]]
    assert store.get_run(run_id).data.tags["feasible"] == str(metrics["c"] <= 0.9).lower()


def brute_force_front(configs: list[dict]) -> set[tuple]:
    """Feasible configurations no other feasible one dominates, by nested loops."""
    rows = [(c, toy(c["x"], c["y"])) for c in configs]
    feasible = [(c, m) for c, m in rows if m["c"] <= 0.9]
    front = set()
    for c, m in feasible:
        dominated = any(
            o["f1"] <= m["f1"] and o["f2"] <= m["f2"] and (o["f1"] < m["f1"] or o["f2"] < m["f2"])
            for _, o in feasible)
        if not dominated:
            front.add((c["x"], c["y"]))
    return front


def test_the_front_equals_a_brute_force_front_on_a_small_grid(store, store_uri, tmp_path):
    xs, ys = [0.0, 0.3, 0.6, 0.9], [1, 3]
    path = search_study(tmp_path, "grid-front", parameters={"kind": "a"}, search={
        "sampler": "grid", "n_trials": 8,
        "space": {"x": {"choices": xs}, "y": {"low": 1, "high": 3, "step": 2}}})
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    results = search_results(load_study(path), store_uri)
    evaluated = sorted(zip(results.trials["x"], results.trials["y"], strict=True))
    assert evaluated == sorted((x, y) for x in xs for y in ys)  # the whole grid, once each
    configs = [{"x": x, "y": y} for x in xs for y in ys]
    assert set(zip(results.front["x"], results.front["y"], strict=True)) == brute_force_front(
        configs)
    feasible = [c for c in configs if toy(c["x"], c["y"])["c"] <= 0.9]
    cheapest = min(feasible, key=lambda c: (toy(c["x"], c["y"])["f2"], toy(c["x"], c["y"])["f1"]))
    assert (results.cheapest["x"], results.cheapest["y"]) == (cheapest["x"], cheapest["y"])
    assert results.knee["trial"] in set(results.front["trial"])

    # the comparison notebook draws it and logs a summary run
    import papermill

    out = tmp_path / "compare.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "compare_search.ipynb"), str(out), kernel_name="python3",
        parameters={"study": str(path), "tracking_uri": store_uri,
                    "gallery_dir": str(tmp_path / "gallery")}, progress_bar=False)
    text = out.read_text()
    assert f"trial {int(results.cheapest['trial'])}" in text
    assert (tmp_path / "gallery" / "grid-front_front.png").is_file()
    summaries = [r for r in store.search_runs(
        [store.get_experiment_by_name("grid-front").experiment_id])
        if r.data.tags.get("mpimpy.summary") == "true"]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary.data.params["cheapest_trial"] == str(int(results.cheapest["trial"]))
    assert summary.data.metrics["n_feasible"] == float(results.trials["feasible"].sum())
    artifacts = {a.path for a in store.list_artifacts(summary.info.run_id, "figures")}
    assert "figures/pareto_front.png" in artifacts


def test_a_failing_trial_fails_alone_and_invalid_settings_never_run(store, store_uri, tmp_path):
    path = search_study(tmp_path, "failing", search={
        "n_trials": 3, "sampler": "random",
        "space": {"x": {"low": 0.0, "high": 1.0}, "fail": {"choices": [True, False]}}},
        points=[{"fail": True}])
    result = run_study(path, workers=1, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()  # the failed configuration was replaced
    (failed, *_) = result.with_status("FAILED")
    assert "RuntimeError: trial asked to fail" in failed.error
    trials, runs = assert_one_to_one(store, store_uri, "failing")
    assert Counter(t.state.name for t in trials)["COMPLETE"] == 3
    assert not any(RETRY_ATTR in t.user_attrs for t in trials)  # a failure is not retried


# ---------------------------------------------------------------------------------------------
# The dashboard


def test_ui_optuna_serves_the_searches_storage(store, store_uri, tmp_path):
    path = search_study(tmp_path, "dashboard", search={"n_trials": 1})
    study = load_study(path)
    storage = storage_of(store_uri)
    open_search(study, storage, storage_lock(storage), store=experiment_store(store_uri))
    from test_runner_reliability import free_port

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mpimpy", "ui", "--optuna", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def studies():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies",
                                        timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            return None

    try:
        listed = wait_for(studies, "the dashboard", 120)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert "dashboard" in {s["study_name"] for s in listed["study_summaries"]}


# ---------------------------------------------------------------------------------------------
# The shipped searches


def test_codesign_point_declares_what_it_logs():
    """The declaration is true: the metrics the co-design evaluation logs, for both
    workloads (``mpimpy.studies.codesign.METRICS``)."""
    from mpimpy.studies.codesign import METRICS

    declared = notebook_metrics(ROOT / "notebooks" / "codesign_point.ipynb")
    assert set(declared) == set(METRICS["product"]) | set(METRICS["mnist"])


def test_the_shipped_product_search_runs_shrunk(store, store_uri, tmp_path, capsys):
    """studies/codesign_product.yaml as shipped (validated against codesign_point.ipynb), run
    for three trials of a small product with two workers."""
    import yaml

    data = yaml.safe_load((ROOT / "studies" / "codesign_product.yaml").read_text())
    assert load_study(ROOT / "studies" / "codesign_product.yaml").search.n_trials == 16
    data["name"] = data["experiment"] = "codesign-product-small"
    data["parameters"].update(m=8, k=64, n=8)
    data["search"].update(n_trials=3, population_size=2)
    small = tmp_path / "codesign_product_small.yaml"
    small.write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "codesign_point.ipynb").write_bytes(
        (ROOT / "notebooks" / "codesign_point.ipynb").read_bytes())
    result = run_study(small, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    runs = search_runs(store, "codesign-product-small", "codesign-product-small")
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        assert run.data.metrics["energy_per_mac_pJ"] > 0
        assert run.data.tags["feasible"] == str(run.data.metrics["SNR_dB"] >= 25).lower()
    assert cli.main(["study", "show", str(small)]) == 0
    assert "Search 'codesign-product-small': 3 of 3 trials complete" in capsys.readouterr().out
