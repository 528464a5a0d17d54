"""The drift notebooks, study and helpers (mpimpy.drift), run for real: papermill kernels, the
study runner, an MLflow store per module."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import yaml
from test_notebooks import (
    NOTEBOOKS,
    ROOT,
    artifact_paths,
    execute,
    images,
    only_run,
    outputs_text,
)

from mpimpy import DPETensor, SlicedData, drift, metrics
from mpimpy import nn as mnn
from mpimpy.devices.compensation import calibration_cost
from mpimpy.devices.models import Measured
from mpimpy.studies import compare, load_study, run_study

DRIFT_NOTEBOOKS = ["drift", "drift_inference", "compare_drift"]


def test_drift_notebooks_are_shipped():
    # their cleanliness and parameters cells are checked with every shipped notebook's
    # (tests/test_notebooks.py::test_committed_notebooks_are_clean_and_parameterized)
    assert all((NOTEBOOKS / f"{name}.ipynb").is_file() for name in DRIFT_NOTEBOOKS)


def test_drift_study_matches_its_notebook():
    study = load_study(ROOT / "studies" / "drift.yaml")  # checks every parameter
    assert study.notebook == NOTEBOOKS / "drift_inference.ipynb"
    points = study.expand()
    assert len(points) == 4 * 2 * 5 * 3
    assert {p.parameters["device_model"] for p in points} == {"lognormal", "pcm", "rram",
                                                              "measured"}


def test_engine_settings_and_time_labels():
    measured = drift.engine_settings("measured", radc=64)
    assert isinstance(measured["device_model"], Measured)
    assert measured["device_model"].extrapolate and measured["radc"] == 64
    assert DPETensor(**measured).config.HGS == 4e-5
    assert drift.engine_settings("pcm", drift_compensation="global") == {
        "device_model": "pcm", "drift_compensation": "global"}
    with pytest.raises(ValueError, match="device_model must be one of"):
        drift.engine_settings("flash")
    assert drift.time_label(3600.0) == "1 h" and drift.time_label(2 * 86400) == "2 days"
    assert drift.time_label(0.5) == "0.5 s" and drift.time_label(90.0) == "1.5 min"
    assert drift.TIMES[0] == 1.0 and drift.TIMES[-1] == 10 * drift.YEAR


def test_product_and_accuracy_over_time_read_one_chip_per_seed():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(16, 64, generator=g), torch.randn(64, 8, generator=g)
    times = [1.0, 86400.0, 10 * drift.YEAR]
    table = drift.product_over_time(x, w, times, seeds=[0, 1], device_model="pcm", vnoise=0.0,
                                    rdac=None, radc=None)
    assert list(table.columns[:2]) == ["seed", "t_inference"] and len(table) == 6
    by_time = table.groupby("t_inference")["gain"].mean()
    assert by_time[10 * drift.YEAR] < 0.6 < by_time[1.0]  # pcm loses half its gain in 10 years
    again = drift.product_over_time(x, w, times[::-1], seeds=[1], device_model="pcm",
                                    vnoise=0.0, rdac=None, radc=None)
    pd.testing.assert_frame_equal(  # the same chip read in another order: the same numbers
        again.sort_values("t_inference").reset_index(drop=True),
        table[table.seed == 1].reset_index(drop=True))
    with pytest.raises(ValueError, match="times"):
        drift.product_over_time(x, w, [-1.0])
    # the errors are against the exact product, as documented: the same chip (seed 1) read
    # again through the engine's public API gives the reference numbers
    engine = DPETensor(seed=1, device_model="pcm", vnoise=0.0, rdac=None, radc=None)
    xs, ws = SlicedData([1, 1, 2, 4]), SlicedData([1, 1, 2, 4], is_weight=True)
    xs.slice_data_imp(engine, x, transpose=True)
    ws.slice_data_imp(engine, w)
    exact = x.double() @ w.double()
    late = again.set_index("t_inference").loc[10 * drift.YEAR]
    y = engine.at_time(10 * drift.YEAR)(xs, ws).double()
    assert late["RE"] == pytest.approx(metrics.RE(exact, y), rel=1e-12)
    assert late["ABSE"] == pytest.approx(metrics.ABSE(exact, y), rel=1e-12)
    assert late["RE"] > 0.4  # half the gain lost: about 0.5 of the exact norm, not 1.0

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    images_ = torch.rand(30, 1, 8, 8, generator=g)
    labels = net(images_).argmax(-1)  # the digital model is always right
    hw = mnn.convert(net, DPETensor(device_model="pcm", seed=0)).eval()
    accuracy = drift.accuracy_over_time(hw, images_, labels, times, seeds=[3, 4])
    assert len(accuracy) == 6 and accuracy["accuracy"].between(0, 1).all()
    assert accuracy.loc[accuracy.t_inference == 1.0, "accuracy"].min() > 0.8
    # one calibration of the 64 x 10 layer: one row-block, one array per weight slice
    arrays = hw[1].engine.programmed(hw[1].programmed_operands[0])
    costs = calibration_cost(arrays)
    n_a = len(arrays.slice_index)
    assert costs == {"array_reads": n_a * 64, "conversions": n_a * 64 * 10,
                     "baseline_values": n_a * 64 * 10}


def test_drift_inference_notebook_logs_one_run(store, store_uri, tmp_path):
    parameters = {"device_model": "pcm", "drift_compensation": "global",
                  "t_inference": 10 * drift.YEAR, "n_test": 60, "m": 8, "k": 64, "n": 8,
                  "seed": 1}
    nb = execute("drift_inference", parameters, tmp_path, store_uri)
    run = only_run(store, "drift_inference")  # the notebook's own experiment
    params, metrics = run.data.params, run.data.metrics
    assert run.info.status == "FINISHED"
    assert params["device_model"] == "pcm" and params["device_model.t0"] == "20.0"
    assert params["drift_compensation"] == "global" and params["var"] == "0.0"
    assert float(params["t_inference"]) == 10 * drift.YEAR and params["mapping"] == "diffpair"
    assert 0.5 <= metrics["accuracy"] <= 1 and 0.8 < metrics["gain"] < 1.2
    assert math.isfinite(metrics["SNR_dB"]) and metrics["energy_J"] > 0
    assert {"plots/measured_vs_expected.png"} <= artifact_paths(store, run.info.run_id, "plots")
    assert "read at 10 years" in outputs_text(nb)


def test_drift_notebook_sweeps_models_compensations_and_times(store, store_uri, tmp_path):
    parameters = {"dataset": "digits", "device_models": ["pcm", "measured"],
                  "compensations": ["none", "global"], "times": [1.0, 10 * drift.YEAR],
                  "n_seeds": 2, "n_test": 40, "m": 16, "k": 128, "n": 16, "seed": 0}
    nb = execute("drift", parameters, tmp_path, store_uri)
    run = only_run(store, "drift")  # the notebook's own experiment
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    # compensation buys back the SNR the pcm drift costs after ten years
    assert metrics["SNR_dB.pcm.global.last_time"] > metrics["SNR_dB.pcm.none.last_time"] + 5
    assert 0 <= metrics["accuracy.measured.none.last_time"] <= 1
    assert run.data.params["device_models"] == "['pcm', 'measured']"
    assert {"plots/accuracy_vs_time.png", "plots/product_vs_time.png"} <= artifact_paths(
        store, run.info.run_id, "plots")
    local = store.download_artifacts(run.info.run_id, "tables/accuracy_over_time.csv",
                                     str(tmp_path))
    table = pd.read_csv(local)
    assert len(table) == 2 * 2 * 2 * 2  # models x compensations x seeds x times
    assert images(nb) >= 2 and "Traceback" not in outputs_text(nb)


def test_drift_study_then_its_comparison(store, store_uri, tmp_path):
    """The shipped drift study, shrunk to 4 points, through the real runner; then
    compare_drift.ipynb logs its summary."""
    shipped = yaml.safe_load((ROOT / "studies" / "drift.yaml").read_text())
    study = {**shipped, "name": "drift-small", "experiment": "drift-small",
             "notebook": str(NOTEBOOKS / "drift_inference.ipynb"),
             "parameters": {**shipped["parameters"], "n_test": 40, "m": 8, "k": 64, "n": 8},
             "grid": {"device_model": ["pcm"], "drift_compensation": ["none", "global"],
                      "t_inference": [1.0, 10 * drift.YEAR]}, "seeds": [0]}
    path = tmp_path / "drift-small.yaml"
    path.write_text(yaml.safe_dump(study))
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    tidy = compare.tidy_runs(compare.load_runs("drift-small"))
    assert len(tidy) == 4 and set(tidy["t_inference"]) == {1.0, 10 * drift.YEAR}
    late = tidy[tidy.t_inference == 10 * drift.YEAR].set_index("drift_compensation")
    assert abs(late.loc["global", "gain"] - 1) < abs(late.loc["none", "gain"] - 1)

    nb = execute("compare_drift", {"experiment": "drift-small"}, tmp_path, store_uri)
    summaries = compare.summary_runs("drift-small")
    assert len(summaries) == 1 and summaries.iloc[0]["metrics.n_runs"] == 4
    figures = artifact_paths(store, summaries.iloc[0]["run_id"], "figures")
    assert {"figures/accuracy_and_snr_vs_time.png", "figures/gain_vs_time.png"} <= figures
    assert images(nb) >= 2 and "Traceback" not in outputs_text(nb)


def test_compare_drift_without_runs_says_so(store, store_uri, tmp_path):
    nb = execute("compare_drift", {"experiment": "drift-never-ran"}, tmp_path, store_uri)
    assert "nothing to summarize" in outputs_text(nb)
