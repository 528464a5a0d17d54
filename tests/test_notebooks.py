"""The notebooks in notebooks/ and their helper module mpimpy.studies.compare.

Each notebook is executed with papermill in a real kernel of this Python (as the study runner
does), with small parameters, into a temporary SQLite store; the tests then look at what it
logged. Comparison notebooks get their runs from the study runner (quickstart) or from runs
logged here directly, then must log a summary run with their figures. The compare helpers are
unit-tested without kernels.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
import yaml

from mpimpy import tracking
from mpimpy.studies import compare, load_study, run_study
from mpimpy.studies.store import log_point_params
from mpimpy.studies.worker import kernel_manager_class, package_root

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SIMULATOR_NOTEBOOKS = ["quickstart", "int_slicing", "fp_slicing", "variation", "wire_resistance"]
COMPARE_NOTEBOOKS = ["compare_quickstart", "compare_int_slicing", "compare_fp_formats",
                     "compare_variation"]
DNN_NOTEBOOKS = ["dnn_inference", "noise_aware_training", "compare_dnn_robustness"]


def execute(name: str, parameters: dict, tmp_path: Path, store_uri: str,
            experiment: str | None = None) -> nbformat.NotebookNode:
    """Run notebooks/<name>.ipynb with papermill in a kernel of this Python, as the runner
    does, by hand-style (no run id: the notebook starts its own run in ``experiment``)."""
    import papermill

    env = {"MLFLOW_TRACKING_URI": store_uri, "PYTHONPATH": package_root(),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if experiment:
        env["MLFLOW_EXPERIMENT_NAME"] = experiment
    output = tmp_path / f"{name}.out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"), str(output), parameters=parameters,
        kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False, start_timeout=120,
        kernel_manager_class=kernel_manager_class(env),
    )
    return nbformat.read(str(output), as_version=4)


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or "".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def images(nb) -> int:
    return sum("image/png" in out.get("data", {})
               for cell in nb.cells for out in cell.get("outputs", []))


def only_run(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"experiment {experiment!r} missing"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def artifact_paths(client, run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, folder)}


# ---------------------------------------------------------------------------------------------
# The notebooks as committed


SHIPPED = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))
TEST_DATA = sorted(path.name for path in (ROOT / "tests" / "data").glob("*.ipynb"))


def test_every_shipped_notebook_is_executed_by_a_test():
    """Each notebook is its own source (no generator scripts) and runs in the tests."""
    assert not list(NOTEBOOKS.glob("*.py")) and not list((ROOT / "tests" / "data").glob("*.py"))
    tested = set(SIMULATOR_NOTEBOOKS + COMPARE_NOTEBOOKS + DNN_NOTEBOOKS + ["explorer"])
    tested |= {f"{app}" for app in ("dct", "heat_equation", "pagerank")}  # tests/test_apps.py
    tested |= {f"compare_{app}" for app in ("dct", "heat_equation", "pagerank")}
    tested |= {"codesign", "codesign_point", "compare_codesign"}  # tests/test_codesign.py
    tested |= {"drift", "drift_inference", "compare_drift"}  # tests/test_drift.py
    tested |= {"compare_search"}  # tests/test_search.py
    assert {name.removesuffix(".ipynb") for name in SHIPPED} == tested


@pytest.mark.parametrize("name", SHIPPED + [f"../tests/data/{n}" for n in TEST_DATA])
def test_committed_notebooks_are_clean_and_parameterized(name):
    """No outputs, counts or kernel metadata (mpimpy.nbclean, the rule the Jupyter hook and
    the git filter apply), and one cell tagged `parameters` declaring what runs need."""
    from mpimpy import nbclean

    nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    nbformat.validate(nb)
    assert nbclean.is_clean(nb), f"{name} carries outputs: python -m mpimpy.nbclean {name}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "outputs not cleared"
    if name.endswith("noparams.ipynb"):  # the study tests' notebook without one, on purpose
        return
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} must have one cell tagged 'parameters'"
    declared = set()
    for line in tagged[0].source.splitlines():
        if line and not line.startswith("#"):
            declared.add(line.split(":")[0].split("=")[0].strip())
    if name.startswith("compare_"):
        assert {"experiment", "tracking_uri", "log"} <= declared
    elif name == "explorer.ipynb":
        assert {"experiment"} <= declared
    elif not name.endswith("noseed.ipynb"):
        assert "seed" in declared


@pytest.mark.parametrize("name", ["quickstart", "int_slicing", "fp_formats", "variation"])
def test_shipped_studies_match_the_notebooks(name):
    study = load_study(ROOT / "studies" / f"{name}.yaml")  # checks every parameter
    assert study.notebook.parent == NOTEBOOKS


# ---------------------------------------------------------------------------------------------
# Simulator notebooks, run by hand (papermill, no study)

SIMULATOR_CASES = {
    "quickstart": {"fmt": "FP", "var": 0.02, "vnoise": 0.01, "radc": None,
                   "adc_range": "calibrated", "m": 16, "k": 64, "n": 16, "seed": 1},
    "int_slicing": {"x_slice": [1, 1, 2, 4], "w_slice": [1, 3, 4], "radc": 64, "rdac": 16,
                    "mapping": "diffpair", "var": 0.02, "g_level": 16, "m": 8, "k": 64,
                    "n": 8, "seed": 0},
    "fp_slicing": {"bw_e": 6, "data": "laplace", "x_slice": [1, 1, 2, 4],
                   "w_slice": [1, 1, 2, 2, 2], "var": 0.02, "m": 8, "k": 64, "n": 8,
                   "seed": 2},
    "variation": {"var": 0.05, "read_noise": 0.01, "stuck_fault_ratio": 0.01,
                  "stuck_fault_value": 1, "fmt": "FP", "m": 8, "k": 64, "n": 8, "n_seeds": 2,
                  "seed": 3},
    "wire_resistance": {"wire_resistance": 2.0, "array_size": 16, "fmt": "INT", "m": 4, "k": 32,
                        "n": 16, "seed": 0},
}
EXPECTED_PARAMS = {
    "quickstart": {"var": "0.02", "fmt": "FP", "x_bw_e": "8", "x_slice": "[1, 1, 4, 4]",
                   "x_shape": "[16, 64]", "w_shape": "[64, 16]", "seed": "1", "vnoise": "0.01",
                   "radc": "None", "adc_range": "calibrated"},
    "int_slicing": {"radc": "64", "rdac": "16", "mapping": "diffpair", "g_level": "16",
                    "w_slice": "[1, 3, 4]", "x_bw_e": "None", "seed": "0"},
    "fp_slicing": {"x_bw_e": "6", "w_bw_e": "6", "data": "laplace",
                   "w_slice": "[1, 1, 2, 2, 2]", "var": "0.02", "seed": "2"},
    "variation": {"var": "0.05", "read_noise": "0.01", "stuck_fault_ratio": "0.01",
                  "stuck_fault_value": "1", "fmt": "FP", "x_bw_e": "8", "seed": "3"},
    "wire_resistance": {"wire_resistance": "2.0", "array_rows": "16", "fmt": "INT",
                        "seed": "0"},
}
EXPECTED_ARTIFACTS = {
    "quickstart": set(),
    "int_slicing": {"plots/slicing_heatmap.png", "plots/adc_sweep.png", "plots/dac_sweep.png",
                    "plots/g_level_sweep.png", "tables/slicing_sweep.csv", "tables/adc_sweep.csv",
                    "tables/dac_sweep.csv", "tables/g_level_sweep.csv"},
    "fp_slicing": {"plots/formats.png", "plots/exponent_width.png",
                   "plots/int_vs_fp_equal_bits.png", "tables/formats.csv",
                   "tables/exponent_width.csv", "tables/int_vs_fp_equal_bits.csv"},
    "variation": {"plots/variation_sweep.png", "plots/read_noise_sweep.png",
                  "plots/stuck_fault_sweep.png", "plots/g_level_variation.png",
                  "tables/variation_sweep.csv", "tables/stuck_fault_sweep.csv"},
    "wire_resistance": {"plots/ir_drop_map.png", "plots/array_size_sweep.png",
                        "tables/array_size_sweep.csv"},
}


def wires_supported() -> bool:
    from mpimpy import DPETensor

    try:
        DPETensor(wire_resistance=1.0)
    except NotImplementedError:
        return False
    return True


@pytest.mark.parametrize("name", SIMULATOR_NOTEBOOKS)
def test_simulator_notebook_logs_one_run(name, store, store_uri, tmp_path):
    if name == "wire_resistance" and not wires_supported():
        pytest.skip("the engine does not simulate wire_resistance > 0 yet")
    experiment = f"nb-{name}"
    nb = execute(name, SIMULATOR_CASES[name], tmp_path, store_uri, experiment)
    run = only_run(store, experiment)
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    for key, value in EXPECTED_PARAMS[name].items():
        assert params.get(key) == value, (key, params.get(key))
    assert {"HGS", "LGS", "vnoise", "mpimpy_version", "torch_version"} <= set(params)
    assert math.isfinite(metrics["RE"]) and 0 < metrics["RE"] < 2, metrics["RE"]
    assert math.isfinite(metrics["SNR_dB"]) and -10 < metrics["SNR_dB"] < 100
    assert metrics["sim_time_s"] >= 0
    assert run.data.tags["format"] == ("FP" if params.get("x_bw_e") not in (None, "None")
                                       else "INT")
    artifacts = artifact_paths(store, run.info.run_id, "plots")
    artifacts |= artifact_paths(store, run.info.run_id, "tables")
    assert {"plots/measured_vs_expected.png", "plots/error_histogram.png"} <= artifacts
    assert EXPECTED_ARTIFACTS[name] <= artifacts, EXPECTED_ARTIFACTS[name] - artifacts
    text = outputs_text(nb)
    assert "RE" in text and "SNR" in text
    if name == "quickstart":  # where the error comes from: the budget table
        assert "no DAC noise (vnoise=0)" in text and "quantization only" in text
    if name == "fp_slicing":
        # exponent widths too narrow for the data are refused: NaN rows with the message
        local = store.download_artifacts(run.info.run_id, "tables/exponent_width.csv",
                                         str(tmp_path))
        table = pd.read_csv(local)
        refused = table[table["error"].fillna("") != ""]
        assert len(refused) and refused["SNR_dB"].isna().all()
        assert refused["error"].str.contains("exponent range").all()
        assert table[table["error"].fillna("") == ""]["SNR_dB"].notna().all()
    assert images(nb) >= 1 + len([a for a in EXPECTED_ARTIFACTS[name] if a.startswith("plots")])


# ---------------------------------------------------------------------------------------------
# Comparison notebooks


def log_point(client, experiment_id: str, study: str, parameters: dict) -> str:
    """One FINISHED run as the study runner and a simulator notebook would leave it, from a
    tiny simulated product with the point's parameters: the notebook logs what the simulator
    used, the runner adds the point's other parameters."""
    run = client.create_run(experiment_id, tags={"study": study})
    tracked = tracking.TrackedRun(run.info.run_id, client=client, managed=True)
    settings = {key: parameters[key] for key in
                ("x_slice", "w_slice", "radc", "mapping", "var", "read_noise",
                 "stuck_fault_ratio", "stuck_fault_value", "bw_e") if key in parameters}
    if parameters.get("fmt") == "FP":
        settings["bw_e"] = 8
    kind = parameters.get("data", "normal")
    generator = torch.Generator().manual_seed(parameters["seed"])
    x = compare.random_operand(kind, (4, 64), generator)
    w = compare.random_operand(kind, (64, 8), generator)
    product = compare.simulate(x, w, seed=parameters["seed"], **settings)
    product.log(seed=parameters["seed"], run=tracked, plots=False,
                extra_params={k: v for k, v in parameters.items() if k in ("fmt", "data")})
    log_point_params(tracked, parameters)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


SEEDED_STUDIES = {
    "compare_int_slicing": [
        {"x_slice": xs, "w_slice": xs, "radc": radc, "mapping": mp, "var": 0.05, "seed": s}
        for xs in ([1, 1, 2, 4], [1, 3, 4]) for radc in (16, 256)
        for mp in ("offset", "diffpair") for s in (0, 1)
    ],
    "compare_fp_formats": [
        {"bw_e": e, "data": d, "x_slice": sl, "w_slice": sl, "var": 0.05, "seed": 0}
        for e in (4, 8) for d in ("normal", "laplace") for sl in ([1, 1, 2, 4], [1, 1, 2, 2, 2])
    ],
    "compare_variation": [
        {"var": v, "fmt": f, "seed": s, **extra}
        for v in (0.0, 0.1) for f in ("INT", "FP")
        for extra in ({"read_noise": 0.0, "stuck_fault_ratio": 0.0},
                      {"read_noise": 0.02, "stuck_fault_ratio": 0.0},
                      {"read_noise": 0.0, "stuck_fault_ratio": 0.01, "stuck_fault_value": 0})
        for s in (0, 1)
    ],
}
SUMMARY_FIGURES = {
    "compare_quickstart": {"error_vs_variation"},
    "compare_int_slicing": {"snr_heatmaps", "snr_vs_adc_bits", "snr_vs_total_bits"},
    "compare_fp_formats": {"snr_heatmaps", "snr_vs_bw_e_and_bits"},
    "compare_variation": {"error_vs_variation", "snr_heatmap"},
}


def check_summary(client, experiment: str, name: str, n_runs: int, nb) -> None:
    summaries = compare.summary_runs(experiment)
    assert len(summaries) == 1
    summary = summaries.iloc[0]
    assert summary["status"] == "FINISHED"
    assert summary["metrics.n_runs"] == n_runs
    figures = artifact_paths(client, summary["run_id"], "figures")
    assert {f"figures/{f}.png" for f in SUMMARY_FIGURES[name]} <= figures, figures
    assert artifact_paths(client, summary["run_id"], "tables")
    # the summary is not one of the runs it summarizes
    assert len(compare.load_runs(experiment)) == n_runs
    assert images(nb) >= len(SUMMARY_FIGURES[name])
    assert "Traceback" not in outputs_text(nb)


def test_quickstart_study_then_its_comparison(store, store_uri, tmp_path):
    """The shipped quickstart study, shrunk, through the real runner; then its comparison."""
    shipped = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    study = {**shipped, "name": "qs-small", "experiment": "qs-small",
             "notebook": str(NOTEBOOKS / "quickstart.ipynb"),
             "parameters": {"m": 8, "k": 64, "n": 8},
             "grid": {"fmt": ["INT", "FP"], "var": [0.1]},
             "seeds": [0]}  # 2 points: one round of 2 workers
    path = tmp_path / "qs-small.yaml"
    path.write_text(yaml.safe_dump(study))
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    runs = compare.load_runs("qs-small")
    assert len(runs) == 2
    tidy = compare.tidy_runs(runs)
    assert sorted(tidy["fmt"]) == ["FP", "INT"]
    assert tidy["var"].dtype.kind == "f" and set(tidy["var"]) == {0.1}
    assert (tidy["m"] == 8).all() and tidy["RE"].between(0, 2).all()

    nb = execute("compare_quickstart", {"experiment": "qs-small"}, tmp_path, store_uri)
    check_summary(store, "qs-small", "compare_quickstart", 2, nb)


@pytest.mark.parametrize("name", sorted(SEEDED_STUDIES))
def test_comparison_notebook_logs_a_summary_run(name, store, store_uri, tmp_path):
    experiment = f"seeded-{name}"
    experiment_id = tracking.ensure_experiment(experiment, client=store)
    for point in SEEDED_STUDIES[name]:
        log_point(store, experiment_id, experiment, point)
    nb = execute(name, {"experiment": experiment}, tmp_path, store_uri)
    check_summary(store, experiment, name, len(SEEDED_STUDIES[name]), nb)


def test_comparison_of_an_experiment_without_runs_says_so(store, store_uri, tmp_path):
    nb = execute("compare_variation", {"experiment": "never-ran"}, tmp_path, store_uri)
    text = outputs_text(nb)
    assert "No experiment named 'never-ran'" in text and "mpimpy study run" in text
    assert "nothing to summarize" in text
    assert store.get_experiment_by_name("never-ran") is None  # nothing created or logged


# ---------------------------------------------------------------------------------------------
# mpimpy.studies.compare, without kernels


def test_parse_number_and_numeric_params():
    assert compare.parse_number("3") == 3 and isinstance(compare.parse_number("3"), int)
    assert compare.parse_number("0.05") == 0.05
    assert compare.parse_number("None") is None
    for text in ("[1, 1, 2, 4]", "True", "offset", "inf", "nan", ""):
        assert compare.parse_number(text) == text
    frame = pd.DataFrame({
        "params.var": ["0.0", "0.05", None],
        "params.radc": ["16", "None", "256"],
        "params.x_slice": ["[1, 2]", "[1, 3]", "[1, 4]"],
        "params.mapping": ["offset", "diffpair", "offset"],
        "params.flag": ["True", "False", "True"],
        "params.mixed": ["1", "two", "3"],
        "metrics.RE": [0.1, 0.2, 0.3],
    })
    out = compare.numeric_params(frame)
    assert out["params.var"].tolist()[:2] == [0.0, 0.05] and math.isnan(out["params.var"][2])
    assert out["params.radc"].dtype.kind == "f" and math.isnan(out["params.radc"][1])
    assert out["params.radc"][2] == 256
    for column in ("params.x_slice", "params.mapping", "params.flag", "params.mixed"):
        assert out[column].tolist() == frame[column].tolist()
    assert frame["params.var"].tolist()[0] == "0.0"  # the input is left alone


def test_tidy_runs_gives_short_names():
    runs = pd.DataFrame({
        "run_id": ["a"], "status": ["FINISHED"], "metrics.RE": [0.1], "params.RE": ["x"],
        "params.var": [0.05], "params.g_level": [16], "tags.var": ["tag"],
        "tags.format": ["INT"], "tags.mlflow.runName": ["x"],
    })
    tidy = compare.tidy_runs(runs)
    assert tidy.loc[0, "var"] == 0.05 and tidy.loc[0, "g_level"] == 16  # params over tags
    assert tidy.loc[0, "RE"] == 0.1 and tidy.loc[0, "format"] == "INT"  # metrics over params
    assert tidy.loc[0, "fmt"] == "INT"  # from the tag where no param has it
    assert "mlflow.runName" not in tidy and tidy.loc[0, "run_id"] == "a"
    assert compare.tidy_runs(pd.DataFrame()).empty
    # runs logged before one name per setting: the study's nb.<name> values fill the gaps
    old = pd.DataFrame({"params.nb.x_slice": ["[1, 3, 4]", None], "params.x_slice": [None, "[1]"],
                        "params.nb.m": [8, 16]})
    tidy = compare.tidy_runs(old)
    assert list(tidy["x_slice"]) == ["[1, 3, 4]", "[1]"] and list(tidy["m"]) == [8, 16]
    assert not [c for c in tidy if c.startswith("nb.")]


def test_slice_helpers():
    assert compare.slice_list("[1, 1, 2, 4]") == [1, 1, 2, 4]
    assert compare.slice_list((1, 3)) == [1, 3] and compare.slice_list("offset") is None
    assert compare.slice_label("[1, 1, 2, 4]") == "1-1-2-4 (8b)"
    assert compare.slice_label("offset") == "offset"
    assert compare.total_bits([1, 3, 4]) == 8 and math.isnan(compare.total_bits(None))
    assert compare.slices_for_bits(8) == [1, 4, 3]
    assert compare.slices_for_bits(9) == [1, 4, 4] and compare.slices_for_bits(2) == [1, 1]
    assert compare.slices_for_bits(12, max_width=2) == [1, 2, 2, 2, 2, 2, 1]
    for bits in range(2, 30):
        widths = compare.slices_for_bits(bits)
        assert sum(widths) == bits and widths[0] == 1 and max(widths) <= 4
    with pytest.raises(ValueError, match="bits"):
        compare.slices_for_bits(1)
    assert compare.fits_g_level([1, 1, 2, 4], 16)
    assert not compare.fits_g_level([1, 1, 2, 4], 8)
    assert compare.fits_g_level([1, 1, 1], 2) and not compare.fits_g_level([1, 2], 2)
    assert not compare.fits_g_level([1, 1], 1)  # offset: the sign slice has an array too
    assert compare.fits_g_level([1, 1], 2, "diffpair")
    assert compare.metric_label("SNR_dB") == "SNR (dB)" and compare.metric_label("x") == "x"


def test_random_operands():
    for kind in compare.DISTRIBUTIONS:
        a = compare.random_operand(kind, (50, 40), torch.Generator().manual_seed(0))
        b = compare.random_operand(kind, (50, 40), torch.Generator().manual_seed(0))
        assert a.shape == (50, 40) and a.dtype == torch.float32 and torch.equal(a, b)
        assert torch.isfinite(a).all() and (a < 0).any() and (a > 0).any()
    uniform = compare.random_operand("uniform", (1000,), torch.Generator().manual_seed(1))
    assert uniform.abs().max() <= 1
    wide = compare.random_operand("wide", (10000,), torch.Generator().manual_seed(1)).abs()
    assert wide.min() >= 1e-4 * 0.999 and wide.max() <= 100 * 1.001
    assert wide.max() / wide.min() > 1e5  # about six decades
    with pytest.raises(ValueError, match="data must be one of"):
        compare.random_operand("cauchy", (3,), torch.Generator())


def test_simulate_matches_the_quantized_product_on_ideal_hardware():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 70, generator=generator, dtype=torch.float64)
    w = torch.randn(70, 6, generator=generator, dtype=torch.float64)
    ideal = dict(var=0.0, vnoise=0.0, rdac=None, radc=None)
    for bw_e in (None, 8):
        # every weight slice width divides g_level - 1 = 15 levels: exact
        product = compare.simulate(x, w, x_slice=[1, 3, 4], w_slice=[1, 1, 2, 4], bw_e=bw_e,
                                   paral_size=(32, 32), seed=0, **ideal)
        exact = product.x.quantized_data @ product.mat.quantized_data
        torch.testing.assert_close(product.y, exact, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(product.y_ideal, x @ w)
        assert product.mat.slice_method == (1, 1, 2, 4) and product.x.bw_e == bw_e
        assert product.engine.config.radc is None and product.sim_time_s >= 0
        metrics = product.metrics()
        assert 0 < metrics["RE"] < 0.1 and metrics["SNR_dB"] > 20
    with pytest.raises(TypeError, match="either engine or engine settings"):
        compare.simulate(x, w, engine=product.engine, var=0.1)


def test_sweep_tabulates_cases_and_refusals():
    generator = torch.Generator().manual_seed(0)
    x, w = torch.randn(4, 64, generator=generator), torch.randn(64, 8, generator=generator)
    table = compare.sweep(
        x, w, [{"g_level": 16}, {"g_level": 4}, {"radc": None, "seed": 1}],
        x_slice=[1, 1, 2, 4], w_slice=[1, 1, 2, 4], seed=0,
    )
    assert list(table["g_level"][:2]) == [16, 4]
    assert {"RE", "SNR_dB", "ABSE", "max_abs_error", "sim_time_s", "error"} <= set(table)
    assert table.loc[0, "error"] == "" and table.loc[0, "RE"] > 0
    assert "g_level=4" in table.loc[1, "error"] and math.isnan(table.loc[1, "SNR_dB"])
    assert table.loc[2, "error"] == "" and table.loc[2, "SNR_dB"] > table.loc[0, "SNR_dB"] - 20


def test_load_runs_log_summary_and_messages(store, store_uri, tmp_path, monkeypatch):
    # An experiment that is not there, and a store that is not there, give empty frames.
    assert compare.load_runs("nowhere").empty
    missing = tmp_path / "missing" / "mlflow.db"
    assert compare.load_runs("x", f"sqlite:///{missing}").empty and not missing.exists()
    assert "No experiment named 'nowhere'" in compare.no_runs_message("nowhere")

    experiment_id = tracking.ensure_experiment("unit-compare", client=store)
    assert "no FINISHED runs" in compare.no_runs_message("unit-compare")
    for var in (0.0, 0.1):
        log_point(store, experiment_id, "unit-compare", {"var": var, "seed": 0, "fmt": "INT"})
    failed = store.create_run(experiment_id)
    store.set_terminated(failed.info.run_id, "FAILED")

    runs = compare.load_runs("unit-compare", store_uri)
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["params.var"]) == [0.0, 0.1] and runs["params.g_level"].dtype.kind == "i"
    assert len(compare.load_runs("unit-compare", status=None)) == 3

    # load_runs left mlflow's global URI and the environment variable as they were
    import mlflow

    assert os.environ["MLFLOW_TRACKING_URI"] == store_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert not compare.load_runs("unit-compare", store_uri).empty
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() != store_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run_id = compare.log_summary("unit-compare", {"line": fig},
                                 tables={"t": pd.DataFrame({"a": [1]})},
                                 metrics={"n_runs": 2}, params={"what": "test"})
    plt.close(fig)
    assert len(compare.load_runs("unit-compare")) == 2  # summaries are left out
    summaries = compare.summary_runs("unit-compare")
    assert list(summaries["run_id"]) == [run_id]
    assert summaries.loc[0, "tags.mpimpy.summary_of"] == "unit-compare"
    assert summaries.loc[0, "params.what"] == "test"
    assert artifact_paths(store, run_id, "figures") == {"figures/line.png"}
    assert artifact_paths(store, run_id, "tables") == {"tables/t.csv"}
    assert store.get_run(run_id).info.status == "FINISHED"
    with pytest.raises(RuntimeError, match="no open run"):
        compare.log_figure(fig, "x")


# ---------------------------------------------------------------------------------------------
# Deep-learning notebooks


def test_dnn_robustness_study_then_its_comparison(store, store_uri, tmp_path, monkeypatch):
    """The shipped DNN study, shrunk, through the real runner (dnn_inference.ipynb logs each
    point); then its comparison notebook summarizes the runs."""
    monkeypatch.setenv("MPIMPY_CACHE", str(tmp_path / "cache"))
    shipped = yaml.safe_load((ROOT / "studies" / "dnn_robustness.yaml").read_text())
    study = {**shipped, "name": "dnn-small", "experiment": "dnn-small",
             "notebook": str(NOTEBOOKS / "dnn_inference.ipynb"),
             "parameters": {**shipped["parameters"], "model": "mlp", "epochs": 3,
                            "snr_images": 50},
             "grid": {"var": [0.0, 0.3]}, "seeds": [1]}
    study["points"] = study["points"][:1]
    path = tmp_path / "dnn-small.yaml"
    path.write_text(yaml.safe_dump(study))
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()
    tidy = compare.tidy_runs(compare.load_runs("dnn-small"))
    assert sorted(tidy["var"]) == [0.0, 0.3]
    assert tidy["accuracy"].between(0, 1).all() and (tidy["seed"] == 1).all()
    assert {"snr_dB.layer_1", "snr_dB.layer_3", "software_accuracy"} <= set(tidy.columns)
    # what each inference cost, from the same forward pass
    assert (tidy["energy_per_inference_J"] > 0).all() and (tidy["energy_J"] > 0).all()
    assert {"energy_adc_J", "latency_per_inference_s", "area_mm2"} <= set(tidy.columns)
    run_id = compare.load_runs("dnn-small")["run_id"].iloc[0]
    assert artifact_paths(store, run_id, "plots") == {"plots/confusion_matrix.png",
                                                      "plots/cost_breakdown.png"}
    assert "cost/layers.csv" in artifact_paths(store, run_id, "cost")

    nb = execute("compare_dnn_robustness", {"experiment": "dnn-small"}, tmp_path, store_uri)
    summaries = compare.summary_runs("dnn-small")
    assert len(summaries) == 1 and summaries.iloc[0]["metrics.n_runs"] == 2
    figures = artifact_paths(store, summaries.iloc[0]["run_id"], "figures")
    assert figures == {"figures/accuracy_vs_var.png"}
    assert images(nb) >= 1 and "Traceback" not in outputs_text(nb)


def test_noise_aware_training_notebook_logs_both_trainings(store, store_uri, tmp_path,
                                                           monkeypatch):
    monkeypatch.setenv("MPIMPY_CACHE", str(tmp_path / "cache"))
    nb = execute("noise_aware_training", {"model": "mlp", "vars_": [0.0, 0.3], "nat_epochs": 2,
                                          "n_programs": 2, "seed": 3},
                 tmp_path, store_uri)
    run = only_run(store, "noise_aware_training")  # the notebook's own experiment
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for var in ("0", "0.3"):
        for training in ("plain", "noise_aware_programmed", "noise_aware_ideal"):
            assert 0 <= metrics[f"accuracy.{training}.var_{var}"] <= 1
        for backward in ("programmed", "ideal"):
            gain = metrics[f"nat_gain.{backward}.var_{var}"]
            assert gain == pytest.approx(metrics[f"accuracy.noise_aware_{backward}.var_{var}"]
                                         - metrics[f"accuracy.plain.var_{var}"])
    assert run.data.params["nat_backward"] == "['programmed', 'ideal']"
    assert artifact_paths(store, run.info.run_id, "tables") == {
        "tables/accuracy.csv", "tables/training_loss.csv"}
    table = pd.read_csv(store.download_artifacts(run.info.run_id, "tables/accuracy.csv",
                                                 str(tmp_path)))
    assert len(table) == 2 * 3 * 2  # variation levels x models x programmings
    assert images(nb) >= 1


# ---------------------------------------------------------------------------------------------
# The explorer notebook and the helpers that keep notebook cells short


def test_explorer_notebook_runs_under_papermill(store, store_uri, tmp_path):
    nb = execute("explorer", {"debounce_s": 0.0}, tmp_path, store_uri)
    widgets = [out for cell in nb.cells for out in cell.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert widgets and "Traceback" not in outputs_text(nb)
    assert store.get_experiment_by_name("explorer") is None  # nothing logged without a click


def test_exponent_bits_error_budget_and_product_plot():
    import matplotlib

    matplotlib.use("Agg")
    assert compare.exponent_bits("INT") is None and compare.exponent_bits("FP", 5) == 5
    with pytest.raises(ValueError, match="fmt must be 'INT' or 'FP', got 'int'"):
        compare.exponent_bits("int")
    generator = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 64, generator=generator), torch.randn(64, 8, generator=generator)
    budget = compare.error_budget(x, w, x_slice=[1, 1, 4, 4], w_slice=[1, 1, 4, 4], var=0.0,
                                  vnoise=0.05, radc=256, adc_range="full", seed=0)
    assert list(budget["case"]) == list(compare.BUDGET_CASES)
    re_of = dict(zip(budget["case"], budget["RE"], strict=True))
    quantization = re_of["quantization only (no noise, no variation, ideal DAC and ADC)"]
    assert quantization < re_of["no DAC noise (vnoise=0)"] < re_of["as set"]
    assert quantization < re_of["ideal ADC (radc=None)"] < re_of["as set"]
    # an independent reference: quantization only is the product of the quantized operands
    product = compare.simulate(x, w, x_slice=[1, 1, 4, 4], w_slice=[1, 1, 4, 4], var=0.0,
                               vnoise=0.0, radc=None, rdac=None, seed=0)
    exact = product.x.quantized_data @ product.mat.quantized_data
    assert quantization == pytest.approx(float(torch.linalg.norm(exact - product.y_ideal)
                                               / torch.linalg.norm(product.y_ideal)), rel=1e-3)
    figure = compare.plot_product(product, title="ideal")
    ax = figure.axes[0]
    assert ax.get_title().startswith("ideal: RE = ") and "(a.u.)" in ax.get_xlabel()


def test_comparison_collects_and_logs_one_summary(store, store_uri, tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    empty = compare.Comparison("not-there", store_uri)
    assert not empty.have_runs and "No experiment named 'not-there'" in capsys.readouterr().out
    assert empty.log() is None and "nothing to summarize" in capsys.readouterr().out

    experiment_id = tracking.ensure_experiment("cmp", client=store)
    for var in (0.0, 0.1):
        log_point(store, experiment_id, "cmp", {"var": var, "seed": 0, "fmt": "FP"})
    comparison = compare.Comparison("cmp", store_uri, gallery_dir=str(tmp_path / "gallery"))
    assert "2 finished runs" in capsys.readouterr().out
    assert sorted(comparison.runs["var"]) == [0.0, 0.1] and set(comparison.runs["fmt"]) == {"FP"}
    table = comparison.runs.groupby("var")["RE"].agg(["mean"])
    assert comparison.add_table("by_var", table) is table
    assert list(comparison.tables["by_var"].columns) == ["var", "mean"]  # index kept as column
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    comparison.add_figure("line", fig, gallery="line_study")
    assert (tmp_path / "gallery" / "line_study.png").is_file()
    assert comparison.log(False) is None
    run_id = comparison.log()
    plt.close(fig)
    assert f"summary run {run_id}: 1 figures, 1 tables" in capsys.readouterr().out
    assert artifact_paths(store, run_id, "figures") == {"figures/line.png"}
    assert store.get_run(run_id).data.metrics["n_runs"] == 2


def test_notebooks_saved_into_the_shipped_folder_are_cleaned(tmp_path, capsys):
    """The Jupyter pre-save hook cleans what is saved into notebooks/ and nothing else; the
    command line cleans files in place or only reports them."""
    from types import SimpleNamespace

    from mpimpy import nbclean

    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3, outputs=[
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)])
    notebook = nbformat.v4.new_notebook(cells=[cell], metadata={
        "language_info": {"name": "python", "version": "3.11.7"}, "widgets": {"state": {}}})
    assert not nbclean.is_clean(notebook)
    model = {"type": "notebook", "content": nbformat.from_dict(notebook)}
    nbclean.pre_save_hook(model, "/elsewhere.ipynb", SimpleNamespace(root_dir=str(tmp_path)))
    assert model["content"] == notebook  # a notebook outside notebooks/ keeps its outputs
    nbclean.pre_save_hook(model, "/explorer.ipynb", SimpleNamespace(root_dir=str(NOTEBOOKS)))
    cleaned = model["content"]
    assert nbclean.is_clean(cleaned) and cleaned.cells[0].outputs == []
    assert cleaned.cells[0].execution_count is None and cleaned.cells[0].id == cell.id
    assert "language_info" not in cleaned.metadata and "widgets" not in cleaned.metadata

    path = tmp_path / "used.ipynb"
    nbformat.write(notebook, str(path))
    assert nbclean.main(["--check", str(path)]) == 1 and "not clean" in capsys.readouterr().out
    assert nbclean.main([str(path)]) == 0
    assert nbclean.is_clean(nbformat.read(str(path), as_version=4))
    assert nbclean.main(["--check", str(path)]) == 0
