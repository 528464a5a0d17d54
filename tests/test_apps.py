"""mpimpy.apps: the DCT, heat-equation and PageRank applications and their notebooks.

Unit tests check each algorithm against an independent reference (scipy, a direct stencil,
networkx), with the exact product and with simulated hardware; the notebook tests run each
application notebook through the study runner (papermill kernels) with small parameters into a
temporary MLflow store, then its comparison notebook, and check what was logged.
"""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import networkx as nx
import numpy as np
import pytest
import scipy.fft
import scipy.stats
import torch
import yaml

from mpimpy import apps, tracking
from mpimpy.apps import dct, heat, pagerank
from mpimpy.apps.matmul import resolve

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
#: Hardware with no error source besides quantization.
NOISE_FREE = dict(var=0.0, vnoise=0.0, rdac=None, radc=None)

# ---------------------------------------------------------------------------------------------
# Metrics


def test_psnr_of_a_known_error_and_identical_images():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(16, 16))
    assert apps.psnr(image + 0.01, image) == pytest.approx(40.0)  # -20 log10(0.01)
    assert apps.psnr(image * 255 + 2.55, image * 255, peak=255) == pytest.approx(40.0)
    assert apps.psnr(image, image) == math.inf
    with pytest.raises(ValueError, match="shape"):
        apps.psnr(image, image[:8])


@pytest.mark.parametrize("seed", range(4))
def test_kendall_tau_matches_scipy_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=40)
    b = a + rng.normal(scale=0.5, size=40)
    assert apps.kendall_tau(a, b) == pytest.approx(scipy.stats.kendalltau(a, b).statistic)
    ties_a, ties_b = rng.integers(0, 5, 40), rng.integers(0, 4, 40)
    expected = scipy.stats.kendalltau(ties_a, ties_b, variant="b").statistic
    assert apps.kendall_tau(ties_a, ties_b) == pytest.approx(expected)
    assert apps.kendall_tau(a, a) == pytest.approx(1.0)
    assert apps.kendall_tau(a, -a) == pytest.approx(-1.0)
    assert math.isnan(apps.kendall_tau(np.ones(5), a[:5]))


def test_top_k_overlap_and_relative_error():
    a = np.array([0.5, 0.1, 0.3, 0.05, 0.05])
    assert apps.top_k_overlap(a, a, 2) == 1.0
    assert apps.top_k_overlap(a, np.array([0.5, 0.1, 0.05, 0.3, 0.05]), 2) == 0.5
    assert list(apps.metrics.top_k(a, 3)) == [0, 2, 1]
    with pytest.raises(ValueError, match="k must be"):
        apps.top_k_overlap(a, a, 6)
    x = np.array([[3.0, 4.0], [1.0, 0.0]])
    # apps.relative_error(x, reference): the measured first, and a warning naming RE's order
    with pytest.deprecated_call(match=r"RE\(reference, measured"):
        assert apps.relative_error(x * 1.1, x) == pytest.approx(0.1)
    with pytest.deprecated_call():
        np.testing.assert_allclose(apps.relative_error(x + [[0, 0.5], [0, 0.1]], x, axis=1),
                                   [0.1, 0.1])
    assert apps.metrics.RE(x, x * 1.1) == apps.metrics.RE(x, x * 1.1, nonfinite="propagate")
    np.testing.assert_allclose(apps.metrics.RE(x, x + [[0, 0.5], [0, 0.1]], axis=1), [0.1, 0.1])


# ---------------------------------------------------------------------------------------------
# The matmuls


def test_ideal_matmul_keeps_the_kind_of_its_input():
    w = np.arange(12.0).reshape(3, 4)
    mm = apps.IdealMatmul(w)
    x = np.ones((2, 3))
    np.testing.assert_array_equal(mm(x), x @ w)
    y = mm(torch.ones(2, 3, dtype=torch.float32))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == (2, 4)
    assert mm.calls == 2 and mm.shape == (3, 4)
    with pytest.raises(ValueError, match="K = 3"):
        mm(np.ones(4))


def test_crossbar_matmul_without_error_sources_is_the_quantized_product():
    rng = np.random.default_rng(1)
    w, x = rng.normal(size=(20, 12)), rng.normal(size=(5, 20))
    for fmt in apps.FORMATS:
        mm = apps.CrossbarMatmul(w, fmt=fmt, seed=0, paral_size=(8, 8), **NOISE_FREE)
        y = mm(x)
        assert isinstance(y, np.ndarray) and y.shape == (5, 12)
        exact = (mm.x.quantized_data @ mm.w_quantized).numpy()
        np.testing.assert_allclose(y, exact, rtol=1e-12, atol=1e-12)
        assert mm.calls == 1 and mm.sim_time_s > 0
        params = mm.params()
        assert params["fmt"] == fmt and params["x_shape"] == [5, 20]
        assert params["w_bw_e"] == (8 if fmt == "FP" else None)


def test_crossbar_matmul_programs_its_matrix_once():
    rng = np.random.default_rng(2)
    w, x = rng.normal(size=(16, 16)), rng.normal(size=(3, 16))
    mm = apps.CrossbarMatmul(w, var=0.1, vnoise=0.0, seed=0)
    first, again = mm(x), mm(x)
    np.testing.assert_array_equal(first, again)  # the same conductances, no new variation
    mm.reprogram()
    assert not np.array_equal(mm(x), first)  # a fresh write draws new variation
    assert "var" in mm.params() and "fmt=" in repr(mm)


def test_resolve_refuses_a_wrong_operator():
    c = dct.dct_matrix(8)
    assert isinstance(resolve(None, c.T), apps.IdealMatmul)
    with pytest.raises(ValueError, match="transposed"):
        dct.dct(np.ones(8), apps.IdealMatmul(c))  # needs C.T
    with pytest.raises(ValueError, match="shape"):
        dct.dct(np.ones(8), apps.IdealMatmul(np.eye(4)))
    with pytest.raises(TypeError, match="callable"):
        dct.dct(np.ones(8), "not a matmul")
    with pytest.raises(ValueError, match="fmt"):
        apps.CrossbarMatmul(c, fmt="BF16")
    assert dct.dct(np.ones(8), lambda x: x @ c.T).shape == (8,)  # any plain callable


# ---------------------------------------------------------------------------------------------
# DCT


@pytest.mark.parametrize("n", [1, 5, 8, 64])
def test_dct_matrix_is_scipys_orthonormal_dct(n):
    c = dct.dct_matrix(n)
    rng = np.random.default_rng(n)
    x = rng.normal(size=(3, n))
    np.testing.assert_allclose(c @ x[0], scipy.fft.dct(x[0], norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(dct.dct(x), scipy.fft.dct(x, norm="ortho", axis=-1), atol=1e-12)
    np.testing.assert_allclose(c.T @ c, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(dct.idct(dct.dct(x)), x, atol=1e-12)


def test_block_dct2_is_scipys_2d_dct_of_each_block():
    rng = np.random.default_rng(3)
    image = rng.uniform(size=(16, 24))
    coefficients = dct.block_dct2(image)
    for i in range(0, 16, 8):
        for j in range(0, 24, 8):
            np.testing.assert_allclose(coefficients[i:i + 8, j:j + 8],
                                       scipy.fft.dctn(image[i:i + 8, j:j + 8], norm="ortho"),
                                       atol=1e-12)
    np.testing.assert_allclose(dct.block_idct2(coefficients), image, atol=1e-12)
    np.testing.assert_array_equal(dct.from_blocks(dct.to_blocks(image), image.shape), image)
    with pytest.raises(ValueError, match="multiples"):
        dct.block_dct2(image[:10])


def test_zigzag_and_compression():
    assert dct.zigzag_order(8)[:6] == [(0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2)]
    assert sorted(dct.zigzag_order(4)) == [(i, j) for i in range(4) for j in range(4)]
    assert dct.low_pass_mask(8, 10).sum() == 10
    image = dct.sample_image(size=64)
    assert image.shape == (64, 64) and 0 <= image.min() < image.max() <= 1
    everything = dct.compress_image(image, keep=64)  # nothing dropped: exact
    np.testing.assert_allclose(everything.reconstructed, image, atol=1e-12)
    psnrs = [apps.psnr(dct.compress_image(image, keep=k).reconstructed, image)
             for k in (3, 10, 30)]
    assert psnrs == sorted(psnrs) and dct.compress_image(image, keep=16).ratio == 4.0


def test_crossbar_dct_error_grows_with_variation():
    image = dct.sample_image(size=64)
    exact = dct.compress_image(image, keep=10)
    errors = {}
    for var in (0.0, 0.05, 0.2):
        runs = []
        for seed in (0, 1):
            mm = apps.CrossbarMatmul(dct.dct_operator(8), paral_size=(8, 8), seed=seed,
                                     var=var, vnoise=0.0, rdac=None, radc=None)
            got = dct.compress_image(image, keep=10, dct_matmul=mm)
            runs.append(apps.metrics.RE(exact.coefficients, got.coefficients))
            assert mm.calls == 2  # two passes through the same programmed matrix
        errors[var] = np.mean(runs)
    assert errors[0.0] < 0.02 < errors[0.05] < errors[0.2]


# ---------------------------------------------------------------------------------------------
# Heat equation


def test_laplacian_and_one_step_match_the_direct_stencil():
    rng = np.random.default_rng(4)
    u = rng.normal(size=(2, 6, 6))
    lap = heat.laplacian_2d(6)
    assert lap.shape == (36, 36) and np.allclose(lap, lap.T)
    assert set(np.unique(lap)) == {-4.0, 0.0, 1.0}
    trajectory = heat.heat_solve(u, steps=3, r=0.2)
    assert trajectory.shape == (4, 2, 6, 6)
    expected = u
    for t in range(1, 4):
        expected = heat.stencil_step(expected, 0.2)
        np.testing.assert_allclose(trajectory[t], expected, atol=1e-13)


def test_the_slowest_mode_decays_at_its_eigenvalue():
    n, r, steps = 10, 0.25, 40
    u0 = heat.initial_condition(n, "mode")
    eigenvalue = -8 * np.sin(np.pi / (2 * (n + 1))) ** 2  # of the 5-point Laplacian
    trajectory = heat.heat_solve(u0, steps, r)
    np.testing.assert_allclose(trajectory[-1], (1 + r * eigenvalue) ** steps * u0, atol=1e-12)
    with pytest.raises(ValueError, match="stable"):
        heat.heat_solve(u0, 1, r=0.3)


def test_heat_on_crossbars_exact_stencil_in_fp_and_error_grows_with_variation():
    n, steps = 8, 30
    u0 = heat.initial_condition(n, "hotspots", seed=1)
    exact = heat.heat_solve(u0, steps)
    lap = heat.laplacian_2d(n)
    # FP holds the integer stencil exactly: only the input quantization errs
    fp = apps.CrossbarMatmul(lap, fmt="FP", seed=0, **NOISE_FREE)
    np.testing.assert_array_equal(fp.w_quantized.numpy(), lap)
    assert fp.calls == 0
    fp_errors = heat.compare_trajectories(heat.heat_solve(u0, steps, matmul=fp), exact)
    assert fp.calls == steps
    assert fp_errors.final_relative_error < 0.02
    final = {}
    for var in (0.0, 0.05, 0.1):
        mm = apps.CrossbarMatmul(lap, fmt="FP", mapping="diffpair", seed=0, var=var, vnoise=0.0,
                                 rdac=None, radc=None)
        errors = heat.compare_trajectories(heat.heat_solve(u0, steps, matmul=mm), exact)
        assert errors.relative_error[0] == 0 and errors.error_vs_initial.shape == (steps + 1,)
        final[var] = errors.final_relative_error
    assert final[0.0] < final[0.05] < final[0.1]


# ---------------------------------------------------------------------------------------------
# PageRank


@pytest.mark.parametrize("name", ["les_miserables", "karate", "random"])
def test_pagerank_matches_networkx(name):
    graph = pagerank.load_graph(name, seed=3, n=60)
    p, nodes = pagerank.transition_matrix(graph)
    np.testing.assert_allclose(p.sum(axis=1)[p.sum(axis=1) > 0], 1.0)
    result = pagerank.pagerank(p, tol=1e-12, max_iter=500)
    reference = nx.pagerank(graph, alpha=0.85, tol=1e-12, max_iter=500)
    assert result.converged
    np.testing.assert_allclose(result.ranks, [reference[v] for v in nodes], atol=1e-10)
    assert result.as_dict(nodes).keys() == reference.keys()
    # the unnormalized iteration is the same with the exact product
    plain = pagerank.pagerank(p, tol=1e-12, max_iter=500, normalize=False)
    np.testing.assert_allclose(plain.ranks, result.ranks, atol=1e-12)


def test_random_graph_is_directed_weighted_and_has_dangling_nodes():
    graph = pagerank.random_graph(100, seed=0)
    assert graph.is_directed() and graph.number_of_nodes() == 100
    assert not any(u == v for u, v in graph.edges())
    p, _ = pagerank.transition_matrix(graph)
    assert (p.sum(axis=1) == 0).any()
    assert nx.is_isomorphic(graph, pagerank.random_graph(100, seed=0))


def test_pagerank_on_crossbars_agrees_less_as_variation_grows():
    p, _ = pagerank.transition_matrix(pagerank.load_graph("les_miserables"))
    exact = pagerank.pagerank(p)
    agreement = {}
    for var in (0.0, 0.3):
        taus = []
        for seed in (0, 1):
            mm = apps.CrossbarMatmul(p, seed=seed, var=var, vnoise=0.0, rdac=None, radc=None,
                                     x_slice=[1, 1, 2, 4, 4], w_slice=[1, 1, 2, 4, 4])
            result = pagerank.pagerank(p, mm, max_iter=60)
            assert mm.calls == result.iterations == len(result.deltas)
            taus.append(pagerank.rank_agreement(result.ranks, exact.ranks)["kendall_tau"])
        agreement[var] = np.mean(taus)
    assert agreement[0.0] > 0.97 and agreement[0.3] < agreement[0.0]
    same = pagerank.rank_agreement(exact.ranks, exact.ranks, k=10)
    assert same == {"kendall_tau": pytest.approx(1.0), "top10_overlap": 1.0,
                    "rank_l1_error": 0.0, "same_top_node": 1.0}


# ---------------------------------------------------------------------------------------------
# Logging helpers


def test_log_history_and_log_answer(store, tmp_path):
    import matplotlib.pyplot as plt

    run = tracking.start_run(experiment="apps-unit")
    try:
        assert apps.track.log_history("err", [0.1, float("nan"), 0.3], [1, 2, 3]) == 2
        mm = apps.CrossbarMatmul(np.eye(4), seed=0, **NOISE_FREE)
        y = mm(np.ones((2, 4)))
        metrics = apps.track.log_answer(y, np.ones((2, 4)), mm, seed=0, params={"k": 3},
                                        metrics={"extra": 1.5})
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        apps.track.save_figure(fig, "line", gallery_dir=tmp_path / "gallery")
        plt.close(fig)
    finally:
        run.end()
    history = store.get_metric_history(run.run_id, "err")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (3, 0.3)]
    data = store.get_run(run.run_id).data
    assert data.metrics["extra"] == 1.5 and data.metrics["n_products"] == 1
    assert data.params["fmt"] == "INT" and data.params["k"] == "3" and "var" in data.params
    assert metrics["RE"] < 0.01
    assert (tmp_path / "gallery" / "line.png").is_file()
    plots = {a.path for a in store.list_artifacts(run.run_id, "plots")}
    assert "plots/line.png" in plots and "plots/measured_vs_expected.png" in plots


# ---------------------------------------------------------------------------------------------
# Notebooks, through the study runner (real kernels)

SMALL = {
    "dct": {"image_size": 64, "signal_length": 16, "keep": 6},
    "heat_equation": {"n": 8, "steps": 12},
    "pagerank": {"graph": "karate", "random_nodes": 40, "max_iter": 25},
}
EXPECTED_METRICS = {
    "dct": {"psnr_dB", "psnr_ideal_dB", "psnr_vs_ideal_dB", "dct1d_SNR_dB", "RE", "SNR_dB"},
    "heat_equation": {"final_state_RE", "first_step_RE", "state_RE", "error_vs_initial", "RE"},
    "pagerank": {"kendall_tau", "top10_overlap", "iterations", "random_kendall_tau", "delta_l1",
                 "random_top10_overlap", "RE"},
}


def _execute(notebook: Path, output: Path, parameters: dict) -> nbformat.NotebookNode:
    import papermill

    papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                               kernel_name="python3", cwd=str(notebook.parent),
                               progress_bar=False)
    return nbformat.read(output, as_version=4)


def _stdout(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("name") == "stdout")


@pytest.mark.parametrize("app", ["dct", "heat_equation", "pagerank"])
def test_app_notebook_study_and_comparison(app, store, tmp_path):
    from mpimpy.studies import run_study

    experiment = f"test-{app}"
    study = {"name": experiment, "notebook": str(NOTEBOOKS / f"{app}.ipynb"),
             "parameters": {**SMALL[app], "gallery_dir": str(tmp_path / "gallery")},
             "grid": {"fmt": ["INT", "FP"]}, "seeds": [0], "timeout_s": 300}
    path = tmp_path / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok, result.summary()

    runs = store.search_runs([store.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["format"] for r in runs} == {"INT", "FP"}
    for run in runs:
        metrics, params = run.data.metrics, run.data.params
        assert EXPECTED_METRICS[app] <= set(metrics)
        assert params["var"] == "0.05" and params["seed"] == "0" and "mpimpy_version" in params
        assert params["fmt"] in ("INT", "FP") and not [k for k in params if k.startswith("nb.")]
        assert params["keep" if app == "dct" else "seed"]  # the study's values join, once
        plots = {a.path for a in store.list_artifacts(run.info.run_id, "plots")}
        assert f"plots/{app}.png" in plots
    assert (tmp_path / "gallery" / f"{app}.png").is_file()
    by_fmt = {r.data.params["fmt"]: r.data.metrics for r in runs}
    if app == "dct":
        images = {a.path for a in store.list_artifacts(runs[0].info.run_id, "images")}
        assert "images/reconstructed.png" in images
        for m in by_fmt.values():
            assert m["psnr_dB"] <= m["psnr_ideal_dB"] + 0.5 and m["compression_ratio"] > 10
    if app == "heat_equation":
        history = store.get_metric_history(runs[0].info.run_id, "state_RE")
        assert sorted(m.step for m in history) == list(range(1, SMALL[app]["steps"] + 1))
    if app == "pagerank":
        for m in by_fmt.values():
            assert -1 <= m["kendall_tau"] <= 1 and 0 <= m["top10_overlap"] <= 1
            assert 1 <= m["iterations"] <= SMALL[app]["max_iter"]

    compared = _execute(NOTEBOOKS / f"compare_{app}.ipynb", tmp_path / "compare.ipynb",
                        {"experiment": experiment, "gallery_dir": str(tmp_path / "gallery")})
    assert "summary run" in _stdout(compared)
    summaries = [r for r in store.search_runs(
        [store.get_experiment_by_name(experiment).experiment_id])
        if r.data.tags.get("mpimpy.summary") == "true"]
    assert len(summaries) == 1
    figures = store.list_artifacts(summaries[0].info.run_id, "figures")
    assert figures and all(f.path.endswith(".png") for f in figures)
    assert (tmp_path / "gallery" / f"{app}_study.png").is_file()


def test_comparison_notebook_on_an_empty_experiment(store, tmp_path):
    nb = _execute(NOTEBOOKS / "compare_heat_equation.ipynb", tmp_path / "empty.ipynb",
                  {"experiment": "no-such-experiment"})
    text = _stdout(nb)
    assert "No experiment named 'no-such-experiment'" in text and "nothing to summarize" in text
    assert store.get_experiment_by_name("no-such-experiment") is None
