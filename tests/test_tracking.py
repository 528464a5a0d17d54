"""mpimpy.tracking against a real SQLite MLflow store in a temporary folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mpimpy import tracking
from mpimpy.plots import error_histogram, scatter_plot
from mpimpy.studies.store import log_point_params, point_note

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracking.get_client(uri).search_experiments()  # create MLflow's tables once
    return uri


@pytest.fixture
def client(store_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", tracking.ENV_RUN_MANAGED):
        monkeypatch.delenv(name, raising=False)
    yield tracking.get_client(store_uri)
    if tracking.current_run() is not None:
        tracking.current_run().end()


def test_default_store_is_the_projects_mlruns(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.ENV_STORE, raising=False)
    root = tracking.project_root()
    assert (root / "pyproject.toml").is_file() and (root / "mpimpy").is_dir()
    assert tracking.tracking_uri() == f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    assert tracking.artifact_root() == (root / "mlruns" / "artifacts").as_uri()
    monkeypatch.setenv(tracking.ENV_STORE, str(tmp_path / "elsewhere"))
    assert tracking.sqlite_path(tracking.tracking_uri()) == tmp_path / "elsewhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.tracking_uri() == "http://tracking.example:5000"
    assert tracking.artifact_root() is None  # a server decides where artifacts go


def test_sqlite_paths():
    assert tracking.sqlite_path("sqlite:////abs/dir/mlflow.db") == Path("/abs/dir/mlflow.db")
    assert tracking.sqlite_path("sqlite:///rel.db") == Path.cwd() / "rel.db"
    assert tracking.sqlite_path("http://host") is None


def test_experiments_are_created_once_with_an_absolute_artifact_location(client, store_uri):
    first = tracking.ensure_experiment("created-once", client=client)
    assert tracking.ensure_experiment("created-once", client=client) == first
    location = client.get_experiment(first).artifact_location
    expected = tracking.sqlite_path(store_uri).parent / "artifacts" / "created-once"
    assert location == expected.as_uri()


def test_infinite_metrics_are_capped_or_left_out():
    finite, tags = tracking.loggable_metrics({"SNR_dB": math.inf, "RE": math.nan, "ABSE": 0.5})
    assert finite == {"SNR_dB": tracking.SNR_CAP_DB, "ABSE": 0.5}
    assert tags == {"SNR_dB_capped": "true", "nonfinite.RE": "nan"}
    finite, tags = tracking.loggable_metrics({"SNR_dB": -math.inf})
    assert finite == {} and tags == {"nonfinite.SNR_dB": "-inf"}


def test_log_result_records_params_metrics_tags_and_plots(client, tmp_path):
    rng = np.random.default_rng(0)
    y_ideal = rng.normal(size=(32, 8))
    y_sim = y_ideal + 0.05 * rng.normal(size=y_ideal.shape)
    notebook = tmp_path / "analysis.ipynb"
    cell = nbformat.v4.new_code_cell("print(6 * 7)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="42\n")])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(notebook))
    with tracking.start_run("by-hand", run_name="manual") as run:
        metrics = tracking.log_result(
            y_sim,
            y_ideal,
            sim_time_s=0.25,
            seed=3,
            params={"var": 0.05, "x_bw_e": 8, "x_slice": (1, 1, 4, 4)},
            tags={"note": "unit test"},
            notebook_path=notebook,
        )
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert client.get_experiment(logged.info.experiment_id).name == "by-hand"
    assert set(logged.data.metrics) == {"RE", "SNR_dB", "ABSE", "max_abs_error", "sim_time_s"}
    assert logged.data.metrics["RE"] == pytest.approx(metrics["RE"])
    assert logged.data.metrics["sim_time_s"] == 0.25
    params = logged.data.params
    assert params["seed"] == "3" and params["var"] == "0.05"
    assert params["x_slice"] == "[1, 1, 4, 4]"
    assert params["y_shape"] == "[32, 8]" and params["dtype"] == "float64"
    assert params["numpy_version"] == np.__version__
    assert {"mpimpy_version", "torch_version", "python_version"} <= set(params)
    assert logged.data.tags["format"] == "FP" and logged.data.tags["note"] == "unit test"
    plots = client.list_artifacts(run.run_id, "plots")
    assert {a.path for a in plots} == {
        "plots/measured_vs_expected.png",
        "plots/error_histogram.png",
    }
    for artifact in plots:
        local = client.download_artifacts(run.run_id, artifact.path, str(tmp_path))
        assert Path(local).read_bytes()[:8] == PNG
    assert {a.path for a in client.list_artifacts(run.run_id, "notebook")} == {
        "notebook/analysis.ipynb",
        "notebook/analysis.html",  # rendered, to read in the UI
    }
    html = client.download_artifacts(run.run_id, "notebook/analysis.html", str(tmp_path))
    assert "<html" in Path(html).read_text() and "<pre>42" in Path(html).read_text()  # output


def test_exact_result_logs_capped_snr(client):
    y = np.arange(12.0).reshape(3, 4)
    with tracking.start_run("exact") as run:
        metrics = tracking.log_result(y, y.copy(), sim_time_s=0.0, seed=None, plots=False)
    assert metrics["SNR_dB"] == math.inf
    logged = client.get_run(run.run_id)
    assert logged.data.metrics["SNR_dB"] == tracking.SNR_CAP_DB
    assert logged.data.tags["SNR_dB_capped"] == "true" and logged.data.tags["format"] == "INT"


def test_a_failing_block_marks_the_run_failed(client):
    with pytest.raises(RuntimeError), tracking.start_run("failing") as run:
        raise RuntimeError("boom")
    assert client.get_run(run.run_id).info.status == "FAILED"


def test_runner_owned_run_is_resumed_and_left_open(client, monkeypatch):
    experiment_id = tracking.ensure_experiment("managed", client=client)
    created = client.create_run(experiment_id)
    monkeypatch.setenv("MLFLOW_RUN_ID", created.info.run_id)
    monkeypatch.setenv(tracking.ENV_RUN_MANAGED, "1")
    monkeypatch.setenv(tracking.ENV_STUDY, "a-study")
    monkeypatch.setenv(tracking.ENV_POINT_ID, "p-1")
    run = tracking.start_run("ignored-when-resuming")
    assert run.run_id == created.info.run_id and run.managed
    tracking.log_result(np.ones(4), np.ones(4) * 1.1, sim_time_s=1.0, seed=0, plots=False)
    run.end()
    logged = client.get_run(created.info.run_id)
    assert logged.info.status == "RUNNING"  # the runner sets the final status
    assert logged.data.tags["study"] == "a-study" and logged.data.tags["point_id"] == "p-1"
    assert client.get_experiment_by_name("ignored-when-resuming") is None


def test_plots_are_labelled_pngs(tmp_path):
    y = np.linspace(-1, 1, 50_000)
    assert scatter_plot(y + 0.01, y, tmp_path / "s.png").read_bytes()[:8] == PNG
    assert error_histogram(y + 0.01, y, tmp_path / "h.png").read_bytes()[:8] == PNG


def test_log_simulation_with_the_simulator(client):
    torch = pytest.importorskip("torch")
    try:
        from mpimpy import DPETensor, SlicedData
    except ImportError:
        pytest.skip("the simulator core is not importable yet")
    engine = DPETensor(var=0.02, seed=1)
    x_data, w_data = torch.randn(16, 32), torch.randn(32, 8)
    x = SlicedData([1, 1, 2, 4], paral_size=(32, 32))
    x.slice_data_imp(engine, x_data, transpose=True)
    mat = SlicedData([1, 1, 2, 4], bw_e=8, paral_size=(32, 32))
    mat.slice_data_imp(engine, w_data)
    y = engine(x, mat)
    with tracking.start_run("simulator") as run:
        tracking.log_simulation(engine, x, mat, y, x_data @ w_data, sim_time_s=0.1, seed=1)
    logged = client.get_run(run.run_id)
    params = logged.data.params
    for name in (
        "HGS",
        "LGS",
        "g_level",
        "var",
        "vnoise",
        "read_noise",
        "stuck_fault_ratio",
        "rdac",
        "radc",
    ):
        assert name in params
    assert (
        params["var"] == "0.02" and params["mapping"] == "offset" and params["adc_range"] == "full"
    )
    assert params["x_slice"] == "[1, 1, 2, 4]" and params["w_bw_e"] == "8"
    assert params["x_bw_e"] == "None" and params["array_rows"] == "32"
    assert params["x_shape"] == "[16, 32]" and params["w_shape"] == "[32, 8]"
    assert params["device"] == "cpu" and params["dtype"].startswith("torch.")
    assert logged.data.tags["format"] == "FP"
    assert 0 < logged.data.metrics["RE"] < 1


def test_log_simulation_logs_what_the_product_costs(client):
    torch = pytest.importorskip("torch")
    from mpimpy import DPETensor, SlicedData, cost

    physics = {"preset": "isaac-32nm", "array_energy_per_cell": None}
    for technology, model in ((None, "per-cell"), (physics, "physics")):
        engine = DPETensor(var=0.02, seed=1, technology=technology)
        x_data, w_data = torch.randn(16, 32), torch.randn(32, 8)
        x = SlicedData([1, 1, 2, 4], paral_size=(32, 32)).slice_data_imp(engine, x_data,
                                                                          transpose=True)
        mat = SlicedData([1, 1, 2, 4], paral_size=(32, 32)).slice_data_imp(engine, w_data)
        y = engine(x, mat)
        with tracking.start_run("simulator-cost") as run:
            metrics = tracking.log_simulation(engine, x, mat, y, x_data @ w_data,
                                              sim_time_s=0.1, seed=1)
        logged = client.get_run(run.run_id)
        expected = cost.report(engine.last_schedule, technology or "isaac-32nm")
        for name in tracking.COST_METRICS:
            assert logged.data.metrics[name] == pytest.approx(expected.as_dict()[name])
            assert metrics[name] == pytest.approx(expected.as_dict()[name])
        assert logged.data.metrics["energy_adc_J"] == pytest.approx(
            expected.energy_breakdown["adc"])
        assert logged.data.tags["cost.technology"] == "isaac-32nm"
        assert logged.data.tags["cost.array_energy_model"] == model
        paths = {a.path for a in client.list_artifacts(run.run_id, "plots")}
        assert "plots/cost_breakdown.png" in paths
        table = client.download_artifacts(run.run_id, "cost/breakdown.csv")
        import pandas as pd

        rows = pd.read_csv(table)
        assert set(rows["component"]) == set(cost.COMPONENTS)
        assert rows["energy_J"].sum() == pytest.approx(expected.energy)


def test_experiments_open_on_their_runs_with_their_description_and_columns(client, tmp_path):
    """The tags that make MLflow's UI open an experiment on its runs table (the kind), say what
    it is (the note) and show the key columns (mpimpy ui); an existing one is brought up to
    date, and keeps the columns a study chose when opened without any."""
    experiment_id = tracking.ensure_experiment("tagged", client=client, description="what it is",
                                               columns=["var", "metrics.n_products"])
    tags = client.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == "what it is"
    assert json.loads(tags[tracking.COLUMNS_TAG]) == [
        "metrics.RE", "metrics.SNR_dB", "metrics.accuracy", "metrics.energy_per_mac_pJ",
        "params.var", "metrics.n_products"]
    assert tracking.ensure_experiment("tagged", client=client) == experiment_id
    assert client.get_experiment(experiment_id).tags == tags
    tracking.ensure_experiment("tagged", client=client, description="new words")
    assert client.get_experiment(experiment_id).tags["mlflow.note.content"] == "new words"
    # an experiment made by someone else gets the kind when the project first uses it
    plain = client.create_experiment("plain", artifact_location=(tmp_path / "a").as_uri())
    tracking.ensure_experiment("plain", client=client)
    assert client.get_experiment(plain).tags["mlflow.experimentKind"] == "custom_model_development"
    # a new local store's Default experiment too
    fresh = tracking.get_client(f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}")
    assert fresh.get_experiment("0").tags["mlflow.experimentKind"] == "custom_model_development"


def test_point_params_join_the_simulators_values_under_one_name(client):
    """The runner adds the point's parameters after the notebook: what the simulator used
    stays (an ideal ADC is None, not the 0 a notebook parameter may write), the rest joins."""
    with tracking.start_run("one-name") as run:
        tracking.log_result(np.ones(4), np.ones(4) * 1.1, sim_time_s=0.1, seed=0, plots=False,
                            params={"radc": None, "var": 0.05})
        added = log_point_params(run.run_id, {"radc": 0, "var": 0.05, "m": 8})
    assert added == {"m": 8}
    params = client.get_run(run.run_id).data.params
    assert params["radc"] == "None" and params["var"] == "0.05" and params["m"] == "8"
    assert not [k for k in params if k.startswith("nb.")]


def test_run_names_and_point_notes():
    assert tracking.run_name({"fmt": "INT", "x_slice": [1, 3, 4], "var": 0.05}) == (
        "fmt=INT,x_slice=[1,3,4],var=0.05")
    note = point_note("qs", "quickstart.ipynb", {"fmt": "FP", "seed": 1},
                               {"m": 128, "fmt": "ignored"})
    assert note == "Study qs, point fmt=FP, seed=1 of quickstart.ipynb (m=128)"
    assert "\n" not in note


def test_the_ui_defaults_fill_in_only_what_the_browser_has_not_chosen():
    from types import SimpleNamespace

    from mpimpy import mlflow_ui

    experiments = [
        SimpleNamespace(experiment_id="7",
                        tags={tracking.COLUMNS_TAG: '["metrics.RE", "params.var"]'}),
        SimpleNamespace(experiment_id="8", tags={}),
        SimpleNamespace(experiment_id="9", tags={tracking.COLUMNS_TAG: "not json"}),
    ]
    states = mlflow_ui.runs_table_states(experiments)
    assert list(states) == ['MLflowLocalStorage-1.1-ExperimentPage-["7"]-ReactComponentState']
    columns = json.loads(next(iter(states.values())))["selectedColumns"]
    assert columns[-2:] == ["metrics.`RE`", "params.`var`"]
    script = mlflow_ui.defaults_script(experiments)
    assert script.startswith("<script>") and "getItem(k)===null" in script
    assert '\\"machine_learning\\"' in script and "mlflow.workflowType_v1" in script
