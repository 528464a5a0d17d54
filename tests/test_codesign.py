"""Co-design: one design's accuracy and cost from one simulated run (mpimpy.studies.codesign),
its notebooks executed with papermill, and the codesign study with its comparison notebook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from test_notebooks import artifact_paths, execute, only_run

from mpimpy import cost
from mpimpy.studies import codesign, compare, load_study, run_study
from mpimpy.studies.pareto import pareto_mask

SMALL = dict(m=16, k=128, n=32)


def test_a_product_design_reports_accuracy_and_the_cost_of_the_same_run():
    design = codesign.Design(mapping="diffpair", input_encoding="sign_magnitude", radc_bits=6,
                             array_rows=32)
    evaluation = codesign.evaluate(design, "product", seed=1, **SMALL)
    report = evaluation.cost
    assert isinstance(report, cost.CostReport) and report.macs == 16 * 128 * 32
    # the cost is the schedule of the very product whose error is reported
    engine = evaluation.product.engine
    assert engine.last_schedule.vectors == 16 and report.adc_bits == 6
    assert report.energy == pytest.approx(cost.report(engine.last_schedule, "isaac-32nm").energy)
    metrics = evaluation.metrics
    assert set(codesign.METRICS["product"]) <= set(metrics)
    assert metrics["energy_per_inference_J"] == pytest.approx(report.energy / 16)
    assert 0 < metrics["RE"] < 0.2 and metrics["energy_per_mac_pJ"] == pytest.approx(
        report.energy_per_mac * 1e12)
    physics = codesign.evaluate(codesign.Design(array_energy="physics"), "product", **SMALL)
    assert physics.cost.array_energy_model == "physics"


def test_designs_and_sweeps():
    grid = codesign.designs(codesign.Design(var=0.0), radc_bits=[4, 8], mapping=["offset",
                                                                              "diffpair"])
    assert [(d.radc_bits, d.mapping) for d in grid] == [(4, "offset"), (4, "diffpair"),
                                                        (8, "offset"), (8, "diffpair")]
    assert all(d.var == 0.0 for d in grid)
    with pytest.raises(ValueError, match=r"unknown Design fields \['radc'\]"):
        codesign.designs(radc=[4])
    with pytest.raises(ValueError, match="mapping must be one of"):
        codesign.Design(mapping="pair")
    with pytest.raises(ValueError, match=r"radc_bits must be an integer in \[0, 24\]"):
        codesign.Design(radc_bits=-1)
    # a design the devices cannot hold is listed with its error, not dropped silently
    table = codesign.sweep(grid + [codesign.Design(w_slice=(1, 5), g_level=16)], "product",
                           progress=False, **SMALL)
    assert len(table) == 5 and table["error"].iloc[-1].startswith("slice_method")
    assert np.isnan(table["SNR_dB"].iloc[-1]) and (table["error"].iloc[:4] == "").all()
    # more ADC bits: better SNR, more energy per MAC (at equal mapping)
    for mapping in ("offset", "diffpair"):
        rows = table[(table["mapping"] == mapping) & (table["error"] == "")].set_index(
            "radc_bits")
        assert rows.loc[8, "SNR_dB"] > rows.loc[4, "SNR_dB"]
        assert rows.loc[8, "energy_per_mac_pJ"] > rows.loc[4, "energy_per_mac_pJ"]


def test_the_plotted_front_is_the_pareto_front(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"SNR_dB": rng.uniform(10, 40, 30),
                          "energy_per_mac_pJ": rng.uniform(0.5, 5, 30),
                          "mapping": rng.choice(["offset", "diffpair"], 30)})
    ax = Figure().subplots()
    front = codesign.plot_front(frame, "product", ax=ax, hue="mapping")
    mask = pareto_mask(frame[["SNR_dB", "energy_per_mac_pJ"]].to_numpy(),
                       ["maximize", "minimize"])
    assert set(front.index) == set(frame.index[mask]) and front["knee"].sum() == 1
    assert ax.get_xlabel() == "energy per MAC (pJ)" and ax.get_ylabel() == "output SNR (dB)"


def test_mnist_design_accuracy_and_energy_per_inference():
    evaluation = codesign.evaluate(codesign.Design(), "mnist", n_test=60, epochs=1)
    metrics = evaluation.metrics
    assert 0.5 < metrics["software_accuracy"] <= 1 and 0 <= metrics["accuracy"] <= 1
    assert metrics["accuracy_drop"] == pytest.approx(metrics["software_accuracy"]
                                                     - metrics["accuracy"])
    network = evaluation.cost
    assert network.batch == 60 and network.outputs.shape == (60, 10)
    assert metrics["energy_per_inference_J"] == pytest.approx(network.total.energy / 60)
    assert sorted(network.layer_reports) == ["0", "3", "7"]


def test_codesign_point_notebook_logs_accuracy_and_cost(store, store_uri, tmp_path):
    nb = execute("codesign_point", {"workload": "product", "mapping": "bias", "radc_bits": 6,
                                    "array_rows": 32, "seed": 2, **SMALL}, tmp_path, store_uri,
                 experiment="codesign-point")
    run = only_run(store, "codesign-point")
    metrics, params = run.data.metrics, run.data.params
    for name in ("RE", "SNR_dB", "energy_J", "energy_per_mac_pJ", "energy_per_inference_J",
                 "latency_s", "area_mm2", "tops_per_w", "energy_adc_J"):
        assert name in metrics, name
    assert params["mapping"] == "bias" and params["radc_bits"] == "6"
    assert params["workload"] == "product" and run.data.tags["cost.technology"] == "isaac-32nm"
    assert "plots/cost_breakdown.png" in artifact_paths(store, run.info.run_id, "plots")
    assert nb.cells[-1].outputs


def test_codesign_study_then_its_comparison(store, store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    spec = yaml.safe_load(open(codesign.__file__.replace("mpimpy/studies/codesign.py",
                                                          "studies/codesign.yaml")))
    small = dict(spec, name="codesign-small", experiment="codesign-small",
                 parameters={**spec["parameters"], **SMALL, "n_test": 40, "epochs": 1},
                 grid={"workload": ["product", "mnist"], "mapping": ["offset", "diffpair"],
                       "radc_bits": [4, 8], "array_rows": [64]},
                 points=spec["points"][:1])
    path = tmp_path / "codesign-small.yaml"
    path.write_text(yaml.safe_dump(small))
    study = load_study(path)
    assert study.notebook.name == "codesign_point.ipynb"  # the shipped notebook
    result = run_study(study, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok and len(result.with_status("FINISHED")) == 8
    runs = compare.tidy_runs(compare.load_runs("codesign-small", store_uri))
    assert set(runs["workload"]) == {"product", "mnist"}
    assert runs["energy_per_mac_pJ"].notna().all()
    nb = execute("compare_codesign", {"experiment": "codesign-small"}, tmp_path, store_uri)
    summaries = [r for r in store.search_runs(
        [store.get_experiment_by_name("codesign-small").experiment_id])
        if r.data.tags.get("mpimpy.summary") == "true"]
    assert len(summaries) == 1
    paths = artifact_paths(store, summaries[0].info.run_id, "figures")
    assert any(p.endswith("pareto_fronts.png") for p in paths)
    assert "Pareto front" in "".join(str(c.get("outputs", "")) for c in nb.cells)


def test_codesign_sweep_notebook(store, store_uri, tmp_path):
    execute("codesign", {"workloads": ["product", "mnist"], "x_slices": [[1, 1, 2, 4]],
                         "radc_bits": [4, 8], "array_rows": [32], "mappings": ["offset",
                                                                              "diffpair"],
                         "n_test": 40, "epochs": 1, **SMALL}, tmp_path, store_uri,
            experiment="codesign-sweep")
    run = only_run(store, "codesign-sweep")
    assert run.data.tags["mpimpy.summary"] == "true"
    assert {"front_size.product", "front_size.mnist"} <= set(run.data.metrics)
    paths = artifact_paths(store, run.info.run_id, "tables")
    assert {"tables/product_designs.csv", "tables/mnist_designs.csv"} <= paths
