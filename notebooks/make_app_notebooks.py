"""Writes the application notebooks (``python notebooks/make_app_notebooks.py``).

dct, heat_equation and pagerank run an algorithm from the mPimPy references with the exact
product and on simulated crossbars (``mpimpy.apps``), and log one MLflow run per execution;
compare_* summarize a study's runs. Conventions as in make_notebooks.py: one cell tagged
``parameters``, outputs cleared, logging through ``mpimpy.tracking``.
"""

from __future__ import annotations

from textwrap import dedent

from make_notebooks import COMPARE_LOAD, COMPARE_LOG, HERE, write  # the shared writer


def cat(*parts: str) -> str:
    """Join cell sources written at different indentations."""
    return "\n".join(dedent(part).strip("\n") for part in parts)


# Hardware parameters shared by the three application notebooks (DPETensor's names).
HARDWARE_PARAMS = """
fmt: str = "INT"  # "INT" or "FP" (block floating point, bw_e exponent bits), inputs and matrix
bw_e: int = 8  # exponent bits of the FP format
x_slice: list[int] = [1, 1, 2, 4]  # input slice widths (bits), sign slice first
w_slice: list[int] = [1, 1, 2, 4]  # matrix slice widths; each needs 2**width <= g_level
mapping: str = "offset"  # "offset" (reference column) or "diffpair" (G+ / G- arrays)
var: float = 0.05  # device-to-device programming variation (sigma of a lognormal factor)
vnoise: float = 0.05  # relative DAC voltage noise on each read
radc: int | None = 256  # ADC levels (256 = 8 bits); None: ideal ADC
rdac: int | None = 16  # DAC levels (16 = 4 bits); None: ideal DAC
adc_range: str | float = "full"  # ADC full scale: "full" (worst case), "calibrated" or a fraction
wire_resistance: float = 0.0  # resistance of one wire segment (ohm); 0: ideal wires
g_level: int = 16  # conductance levels per cell
"""

HARDWARE = """
hardware = dict(fmt=fmt, bw_e=bw_e, x_slice=x_slice, w_slice=w_slice, mapping=mapping, var=var,
                vnoise=vnoise, radc=radc, rdac=rdac, adc_range=adc_range,
                wire_resistance=wire_resistance, g_level=g_level,
                paral_size=(array_size, array_size))
"""

def imports(std: str, third: str, ours: str) -> str:
    """The import cell: standard library, third-party and mpimpy lines."""
    return (f"{std}\n\n{third}\n\n{ours}\n\n"
            'sns.set_theme(style="whitegrid", context="notebook")\n'
            "notebook_start = time.perf_counter()\n")

START_RUN = """
# Under `mpimpy study run` this resumes the run the runner made for this point; by hand it starts
# a new run in the experiment $MLFLOW_EXPERIMENT_NAME (default "notebooks").
run = tracking.start_run(run_name="{name}")
"""

END_RUN = """
run.end()  # by hand: marks the run FINISHED; under the study runner the runner does it
print(f"logged run {run.run_id} in {tracking.store_summary()} "
      f"({time.perf_counter() - notebook_start:.1f} s)")
"""

# ---------------------------------------------------------------------------------------------
# DCT

write("dct.ipynb", [
    ("md", """
    # Discrete cosine transform and image compression on crossbars

    Li et al. (Nature Electronics 1, 52 (2018)) computed the DCT with a memristor crossbar
    holding the DCT matrix. Here the orthonormal DCT-II matrix `C` is programmed once (as `C.T`,
    so that a batch of signals `X` transforms as `X @ C.T`) into `array_size` x `array_size`
    arrays of one simulated chip (`mpimpy.apps.CrossbarMatmul`), and:

    1. **image compression**: a photograph shipped with scikit-learn (`china.jpg`, grayscale,
       centre crop resized to `image_size`) is cut into 8 x 8 blocks; each block's 2-D DCT
       `C B C.T` takes two passes through the same arrays (rows, then columns); only the `keep`
       lowest-frequency coefficients per block (zig-zag order) are kept and the image is
       rebuilt with the inverse DCT (exact, or on a second programmed matrix with
       `inverse_on_crossbar=True`). Reconstruction PSNR (dB) with the exact and the simulated
       transform, against the original and against each other;
    2. **1-D DCT** of a length-`signal_length` test signal (three cosines plus noise): the
       spectrum on the crossbar against the exact one.

    The run logs the hardware, the transform coefficients of the image (simulated vs exact:
    RE, SNR), the PSNRs, the reconstructed image (`images/`) and the figures (`plots/`).
    `studies/dct.yaml` sweeps format x mapping x variation x seeds.
    """),
    ("params", cat(HARDWARE_PARAMS, """
    array_size: int = 8  # rows = columns of each crossbar array (8: one 8x8 DCT per array)
    image_size: int = 256  # side of the (square) test image, a multiple of 8 (pixels)
    keep: int = 10  # DCT coefficients kept per 8x8 block (of 64)
    inverse_on_crossbar: bool = False  # also run the inverse DCT (decoder) on crossbars
    signal_length: int = 64  # length of the 1-D test signal (samples)
    gallery_dir: str = ""  # if set, save the main figure there as dct.png
    seed: int = 0  # the chip's variation and noise
    """)),
    ("code", imports(
        "import tempfile\nimport time\nfrom pathlib import Path",
        "import matplotlib.pyplot as plt\nimport numpy as np\nimport seaborn as sns",
        "from mpimpy import DPETensor, apps, tracking\nfrom mpimpy.apps import track",
    ) + START_RUN.format(name="dct")),
    ("code", cat(HARDWARE, """
    engine = DPETensor(var=var, vnoise=vnoise, radc=radc, rdac=rdac, adc_range=adc_range,
                       mapping=mapping, wire_resistance=wire_resistance, g_level=g_level, seed=seed)
    slicing = {k: hardware[k] for k in ("fmt", "bw_e", "x_slice", "w_slice", "paral_size")}
    dct_mm = apps.CrossbarMatmul(apps.dct.dct_operator(8), engine=engine, **slicing)
    idct_mm = (apps.CrossbarMatmul(apps.dct.idct_operator(8), engine=engine, **slicing)
               if inverse_on_crossbar else None)

    image = apps.dct.sample_image("china.jpg", size=image_size)
    exact = apps.dct.compress_image(image, keep=keep)
    simulated = apps.dct.compress_image(image, keep=keep, dct_matmul=dct_mm, idct_matmul=idct_mm)
    psnr = {
        "psnr_ideal_dB": apps.psnr(exact.reconstructed, image),
        "psnr_dB": apps.psnr(simulated.reconstructed, image),
        "psnr_vs_ideal_dB": apps.psnr(simulated.reconstructed, exact.reconstructed),
    }
    psnr["psnr_loss_dB"] = psnr["psnr_ideal_dB"] - psnr["psnr_dB"]
    print(f"{fmt}, {mapping}, var={var}: {image_size}x{image_size} image, keep {keep}/64 "
          f"(ratio {exact.ratio:.1f}:1)")
    for name, value in psnr.items():
        print(f"  {name:18s} {value:7.2f}")
    """)),
    ("code", """
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6))
    panels = [
        (image, "original"),
        (exact.reconstructed, f"exact DCT, keep {keep}/64: {psnr['psnr_ideal_dB']:.1f} dB"),
        (simulated.reconstructed, f"crossbar DCT ({fmt}, {mapping}, var={var}): "
                                  f"{psnr['psnr_dB']:.1f} dB"),
    ]
    for ax, (picture, title) in zip(axes, panels, strict=False):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
        ax.set(title=title, xlabel="x (pixels)", ylabel="y (pixels)")
        ax.grid(False)
    difference = np.abs(simulated.reconstructed - exact.reconstructed)
    shown = axes[3].imshow(difference, cmap="magma", vmin=0)
    axes[3].set(title="|crossbar - exact| reconstruction", xlabel="x (pixels)", ylabel="y (pixels)")
    axes[3].grid(False)
    fig.colorbar(shown, ax=axes[3], label="pixel difference (fraction of full scale)")
    fig.suptitle("8x8 block DCT compression; PSNR against the original")
    fig.tight_layout()
    track.save_figure(fig, "dct", gallery_dir or None)
    plt.show()
    """),
    ("md", "## 1-D DCT of a signal"),
    ("code", """
    signal = apps.dct.example_signal(signal_length, seed=0)
    dct1_mm = apps.CrossbarMatmul(apps.dct.dct_operator(signal_length), engine=engine, **slicing)
    spectrum = apps.dct.dct(signal)
    spectrum_sim = apps.dct.dct(signal, dct1_mm)
    dct1d = {"dct1d_RE": apps.relative_error(spectrum_sim, spectrum),
             "dct1d_SNR_dB": -20 * np.log10(apps.relative_error(spectrum_sim, spectrum))}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax1.plot(signal, color="black", linewidth=1)
    ax1.set(xlabel="sample index (samples)", ylabel="amplitude (a.u.)", title="test signal")
    ax2.stem(spectrum, linefmt="C0-", markerfmt="C0o", basefmt=" ", label="exact")
    ax2.plot(spectrum_sim, "C3x", label=f"crossbar ({fmt})")
    ax2.set(xlabel="DCT frequency index k (cycles per 2 signal lengths)",
            ylabel="DCT coefficient (a.u.)",
            title=f"spectrum: SNR = {dct1d['dct1d_SNR_dB']:.1f} dB")
    ax2.legend()
    fig.tight_layout()
    track.save_figure(fig, "dct_1d")
    plt.show()
    """),
    ("code", """
    folder = Path(tempfile.mkdtemp())
    plt.imsave(folder / "reconstructed.png", simulated.reconstructed, cmap="gray", vmin=0, vmax=1)
    plt.imsave(folder / "original.png", image, cmap="gray", vmin=0, vmax=1)
    np.save(folder / "reconstructed.npy", simulated.reconstructed)
    for file in sorted(folder.iterdir()):
        run.log_artifact(file, "images")

    products = dct_mm.calls + dct1_mm.calls + (idct_mm.calls if idct_mm else 0)
    sim_time = dct_mm.sim_time_s + dct1_mm.sim_time_s + (idct_mm.sim_time_s if idct_mm else 0)
    metrics = track.log_answer(
        simulated.coefficients, exact.coefficients, dct_mm, seed=seed, sim_time_s=sim_time,
        params={"image": "china.jpg", "image_size": image_size, "keep": keep,
                "inverse_on_crossbar": inverse_on_crossbar, "signal_length": signal_length},
        metrics={**psnr, **dct1d, "compression_ratio": exact.ratio,
                 "n_products": products})
    print(f"coefficients: RE = {metrics['RE']:.4g}, SNR = {metrics['SNR_dB']:.2f} dB; "
          f"{products} simulated products in {sim_time:.2f} s")
    """),
    ("code", END_RUN),
])

# ---------------------------------------------------------------------------------------------
# Heat equation

write("heat_equation.ipynb", [
    ("md", """
    # The 2-D heat equation on crossbars

    Zidan et al. (Nature Electronics 1, 411 (2018)) solved partial differential equations with
    the finite-difference products on memristor crossbars. Here the explicit (forward Euler)
    scheme for `du/dt = D laplacian(u)` on an `n` x `n` grid with zero boundaries,

    `u[t+1] = u[t] + r * (L @ u[t])`, with `r = D dt / h**2 <= 1/4` for stability,

    runs with the 5-point Laplacian `L` (integers: -4 and 1) programmed **once** into one
    simulated chip; each time step drives the state through the same arrays, and the scaling
    and addition stay digital. Every step's error against the exact solution is logged as the
    metric `state_RE` with its step (`||u_sim - u|| / ||u||`; the solution decays, so it is
    relative to a shrinking norm) and `error_vs_initial` (`||u_sim - u|| / ||u0||`).
    `studies/heat_equation.yaml` sweeps format x mapping x variation x seeds.
    """),
    ("params", cat(HARDWARE_PARAMS, """
    array_size: int = 64  # rows = columns of each crossbar array
    n: int = 16  # grid points per side (L is n*n x n*n)
    steps: int = 100  # time steps
    r: float = 0.2  # D dt / h**2 (stable up to 0.25)
    initial: str = "hotspots"  # initial field: "hotspots", "square" or "mode"
    gallery_dir: str = ""  # if set, save the main figure there as heat_equation.png
    seed: int = 0  # the chip's variation and noise
    """)),
    ("code", imports(
        "import time",
        "import matplotlib.pyplot as plt\nimport numpy as np\nimport seaborn as sns",
        "from mpimpy import apps, tracking\nfrom mpimpy.apps import track",
    ) + START_RUN.format(name="heat_equation")),
    ("code", cat(HARDWARE, """
    u0 = apps.heat.initial_condition(n, initial, seed=0)
    laplacian = apps.heat.laplacian_2d(n)
    matmul = apps.CrossbarMatmul(laplacian, seed=seed, **hardware)
    exact = apps.heat.heat_solve(u0, steps, r)
    simulated = apps.heat.heat_solve(u0, steps, r, matmul)
    errors = apps.heat.compare_trajectories(simulated, exact)
    checkpoints = sorted({1, min(10, steps), steps // 2, steps} - {0})
    print(f"{fmt}, {mapping}, var={var}: {n}x{n} grid, {steps} steps of r={r}, "
          f"{matmul.sim_time_s:.2f} s in {matmul.calls} products")
    for t in checkpoints:
        print(f"  step {t:4d}: state RE = {errors.relative_error[t]:.3g}, "
              f"error / |u0| = {errors.error_vs_initial[t]:.3g}")
    """)),
    ("code", """
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.2]})
    finite_sim = simulated[-1][np.isfinite(simulated[-1])]
    limit = max(float(np.abs(exact[-1]).max()), float(np.abs(finite_sim).max(initial=0))) or 1.0
    extent = (0, 1, 0, 1)
    for ax, (field, title) in zip(axes[:2], [(exact[-1], "exact"), (simulated[-1], "crossbar")],
                                  strict=True):
        shown = ax.imshow(field, cmap="viridis", vmin=0, vmax=limit, extent=extent,
                          origin="lower")
        ax.set(title=f"{title}: u after {steps} steps", xlabel="x (grid lengths)",
               ylabel="y (grid lengths)")
        ax.grid(False)
        fig.colorbar(shown, ax=ax, label="temperature u (a.u.)")
    difference = simulated[-1] - exact[-1]
    bound = float(np.nan_to_num(np.abs(difference)).max()) or 1.0
    shown = axes[2].imshow(difference, cmap="RdBu_r", vmin=-bound, vmax=bound, extent=extent,
                           origin="lower")
    axes[2].set(title="crossbar - exact", xlabel="x (grid lengths)", ylabel="y (grid lengths)")
    axes[2].grid(False)
    fig.colorbar(shown, ax=axes[2], label="temperature difference (a.u.)")
    time_steps = np.arange(steps + 1)
    axes[3].semilogy(time_steps[1:], errors.relative_error[1:], label="||u_sim - u|| / ||u||")
    axes[3].semilogy(time_steps[1:], errors.error_vs_initial[1:], label="||u_sim - u|| / ||u0||")
    axes[3].set(xlabel="time step (steps of dt)", ylabel="relative error (1)",
                title="error accumulation")
    axes[3].legend()
    fig.suptitle(f"Heat equation, {n}x{n} grid, r = {r}: {fmt}, {mapping}, var = {var}, "
                 f"{radc}-level ADC ({adc_range}), vnoise = {vnoise}")
    fig.tight_layout()
    track.save_figure(fig, "heat_equation", gallery_dir or None)
    plt.show()
    """),
    ("code", """
    track.log_history("state_RE", errors.relative_error[1:], range(1, steps + 1))
    track.log_history("error_vs_initial", errors.error_vs_initial[1:], range(1, steps + 1))
    finite = np.isfinite(errors.relative_error)
    metrics = track.log_answer(
        simulated[-1], exact[-1], matmul, seed=seed,
        params={"n": n, "steps": steps, "r": r, "initial": initial},
        metrics={"final_state_RE": errors.final_relative_error,
                 "max_state_RE": float(np.max(errors.relative_error[finite])),
                 "final_error_vs_initial": float(errors.error_vs_initial[-1]),
                 "first_step_RE": float(errors.relative_error[min(1, steps)]),
                 "diverged": float(not np.isfinite(simulated[-1]).all()
                                   or np.abs(simulated[-1]).max() > 10 * np.abs(u0).max())})
    print(f"final state: RE = {metrics['RE']:.4g}, SNR = {metrics['SNR_dB']:.2f} dB")
    """),
    ("code", END_RUN),
])

# ---------------------------------------------------------------------------------------------
# PageRank

write("pagerank.ipynb", [
    ("md", """
    # PageRank by power iteration on crossbars

    The rank vector `x` of a graph is the fixed point of
    `x <- alpha * (x @ P + dangling mass / N) + (1 - alpha) / N`, with `P` the row-stochastic
    transition matrix. `P` is programmed **once** into one simulated chip and every iteration
    drives `x` through it; the teleport and dangling terms and a renormalization to sum 1
    (`normalize`) are digital. It runs on a real graph that ships with networkx (`graph`:
    `les_miserables`, 77 characters weighted by co-appearances, or `karate`, 34 members) and on a
    random directed scale-free graph of `random_nodes` nodes, each with the exact product and on
    the crossbar. Logged: Kendall's tau-b of the ranks against the exact ones, the top-10
    overlap, the iterations to converge (L1 change below `N * tol`, networkx's rule; a noisy
    product may never get there and stops at `max_iter`) and the L1 change per iteration
    (`delta_l1`, with step). `studies/pagerank.yaml` sweeps format x variation x ADC x seeds.
    """),
    ("params", cat(HARDWARE_PARAMS, """
    array_size: int = 64  # rows = columns of each crossbar array
    graph: str = "les_miserables"  # the real graph: "les_miserables" or "karate"
    random_nodes: int = 200  # nodes of the random scale-free graph (0: skip it)
    graph_seed: int = 0  # the random graph
    alpha: float = 0.85  # damping factor
    tol: float = 1e-6  # converged when the L1 change < N * tol
    max_iter: int = 100  # most iterations
    normalize: bool = True  # rescale the ranks to sum 1 after each iteration (digital)
    top_k: int = 10  # size of the top set compared
    gallery_dir: str = ""  # if set, save the main figure there as pagerank.png
    seed: int = 0  # the chip's variation and noise
    """)),
    ("code", imports(
        "import time",
        "import matplotlib.pyplot as plt\nimport pandas as pd\nimport seaborn as sns",
        "from mpimpy import apps, tracking\nfrom mpimpy.apps import track\n"
        "from mpimpy.studies import compare",
    ) + START_RUN.format(name="pagerank")),
    ("code", cat(HARDWARE, """
    settings = dict(alpha=alpha, tol=tol, max_iter=max_iter, normalize=normalize)
    graphs = {graph: apps.pagerank.load_graph(graph)}
    if random_nodes:
        graphs["random"] = apps.pagerank.load_graph("random", seed=graph_seed, n=random_nodes)
    results = {}
    for name, g in graphs.items():
        p, nodes = apps.pagerank.transition_matrix(g)
        matmul = apps.CrossbarMatmul(p, seed=seed, **hardware)
        exact = apps.pagerank.pagerank(p, **settings)
        simulated = apps.pagerank.pagerank(p, matmul, **settings)
        agreement = apps.pagerank.rank_agreement(simulated.ranks, exact.ranks, k=top_k)
        results[name] = dict(nodes=nodes, matmul=matmul, exact=exact, simulated=simulated,
                             agreement=agreement)
        print(f"{name} ({len(nodes)} nodes, {int((p > 0).sum())} links): exact converged in "
              f"{exact.iterations} iterations; crossbar {simulated.iterations} "
              f"({'converged' if simulated.converged else 'not converged'}), "
              + ", ".join(f"{k} = {v:.3g}" for k, v in agreement.items()))
    """)),
    ("code", """
    fig, axes = plt.subplots(1, 1 + len(results), figsize=(6 * (1 + len(results)), 4.8))
    for ax, (name, res) in zip(axes, results.items(), strict=False):
        top = apps.metrics.top_k(res["exact"].ranks, min(top_k, len(res["nodes"])))
        ax.loglog(res["exact"].ranks, res["simulated"].ranks, "o", alpha=0.6, markersize=4)
        ax.loglog(res["exact"].ranks[top], res["simulated"].ranks[top], "o", color="C3",
                  markersize=6, label=f"exact top {len(top)}")
        low = min(res["exact"].ranks.min(), res["simulated"].ranks[res["simulated"].ranks > 0]
                  .min())
        high = max(res["exact"].ranks.max(), res["simulated"].ranks.max())
        ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="y = x")
        a = res["agreement"]
        ax.set(xlabel="exact PageRank (probability)", ylabel="crossbar PageRank (probability)",
               title=f"{name}: tau = {a['kendall_tau']:.3f}, "
                     f"top-{len(top)} overlap = {a[f'top{len(top)}_overlap']:.1f}")
        ax.legend(loc="upper left")
        if name == graph:
            for i in top[:3]:
                ax.annotate(str(res["nodes"][i]), (res["exact"].ranks[i],
                                                   res["simulated"].ranks[i]), fontsize=8)
    ax = axes[-1]
    for i, (name, res) in enumerate(results.items()):
        ax.semilogy(range(1, len(res["exact"].deltas) + 1), res["exact"].deltas, color=f"C{i}",
                    linestyle="--", label=f"{name}, exact")
        ax.semilogy(range(1, len(res["simulated"].deltas) + 1), res["simulated"].deltas,
                    color=f"C{i}", label=f"{name}, crossbar")
        ax.axhline(len(res["nodes"]) * tol, color=f"C{i}", linewidth=0.6, linestyle=":")
    ax.set(xlabel="iteration (products)", ylabel="L1 change of the ranks (1)",
           title=f"convergence ({fmt}, {mapping}, var={var}); dotted: N * tol")
    ax.legend(fontsize=8)
    fig.tight_layout()
    track.save_figure(fig, "pagerank", gallery_dir or None)
    plt.show()
    """),
    ("code", """
    main = results[graph]
    metrics = {**main["agreement"], "iterations": main["simulated"].iterations,
               "converged": float(main["simulated"].converged),
               "ideal_iterations": main["exact"].iterations,
               "final_delta_l1": main["simulated"].deltas[-1]}
    if "random" in results:
        rnd = results["random"]
        metrics.update({f"random_{k}": v for k, v in rnd["agreement"].items()})
        metrics.update({"random_iterations": rnd["simulated"].iterations,
                        "random_converged": float(rnd["simulated"].converged),
                        "random_ideal_iterations": rnd["exact"].iterations})
        track.log_history("random_delta_l1", rnd["simulated"].deltas,
                          range(1, len(rnd["simulated"].deltas) + 1))
    track.log_history("delta_l1", main["simulated"].deltas,
                      range(1, len(main["simulated"].deltas) + 1))
    table = pd.DataFrame({"node": [str(v) for v in main["nodes"]],
                          "exact": main["exact"].ranks, "crossbar": main["simulated"].ranks})
    table = table.sort_values("exact", ascending=False)
    compare.log_table(table, "ranks")
    sim_time = sum(res["matmul"].sim_time_s for res in results.values())
    logged = track.log_answer(
        main["simulated"].ranks, main["exact"].ranks, main["matmul"], seed=seed,
        sim_time_s=sim_time,
        params={"graph": graph, "random_nodes": random_nodes, "graph_seed": graph_seed,
                "alpha": alpha, "tol": tol, "max_iter": max_iter, "normalize": normalize},
        metrics=metrics)
    print(f"{graph} ranks: RE = {logged['RE']:.4g}; top {top_k} by exact rank:")
    print(table.head(top_k).to_string(index=False))
    """),
    ("code", END_RUN),
])

# ---------------------------------------------------------------------------------------------
# Comparison notebooks

COMPARE_INTRO = dedent("""
    Pulls the FINISHED runs of the experiment (`mpimpy.studies.compare.load_runs`, which uses
    `mlflow.search_runs`), plots them with seaborn, and logs the figures and tables as one
    summary run (tag `mpimpy.summary=true`) in the same experiment. An experiment with no runs
    gets a message and nothing is logged. Run the study first, e.g.
    `mpimpy study run studies/{experiment}.yaml --workers 2`.
""").strip()

COMPARE_PARAMS = """
experiment: str = "{experiment}"  # the study's MLflow experiment
tracking_uri: str = ""  # the store; "" = the one in force ($MLFLOW_TRACKING_URI or mlruns/)
log: bool = True  # log the figures as a summary run in the same experiment
gallery_dir: str = ""  # if set, save the main figure there as {experiment}_study.png
"""

# After the shared loading cell of make_notebooks.COMPARE_LOAD: the applications' common
# columns and the gallery hook.
COMPARE_SETUP = """
from pathlib import Path

if have_runs:
    df["fmt"] = df["fmt"] if "fmt" in df else df["format"]
    df["setting"] = df["fmt"] + ", " + df["mapping"].astype(str)


def save_main(fig, name):
    if gallery_dir:
        Path(gallery_dir).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(gallery_dir) / f"{name}.png", dpi=100, bbox_inches="tight")
"""


def compare_notebook(name, experiment, title, intro, body):
    write(name, [
        ("md", f"# {title}\n\n" + dedent(intro).strip() + "\n\n"
         + COMPARE_INTRO.format(experiment=experiment)),
        ("params", COMPARE_PARAMS.format(experiment=experiment)),
        ("code", COMPARE_LOAD),
        ("code", COMPARE_SETUP),
        *body,
        ("code", COMPARE_LOG),
    ])


compare_notebook("compare_dct.ipynb", "dct", "Compare: DCT image compression study", """
    Reconstruction PSNR and transform-coefficient SNR against programming variation, for INT
    and FP slicing and both weight mappings, with bands over seeds; the PSNR of exact
    compression is the ceiling.
    """, [
    ("code", """
    if have_runs:
        columns = ["psnr_dB", "psnr_vs_ideal_dB", "SNR_dB", "dct1d_SNR_dB"]
        table = df.groupby(["fmt", "mapping", "var"])[columns].agg(["mean", "std", "count"])
        tables["by_setting"] = table.reset_index()
        display(table.round(2))
    """),
    ("code", """
    if have_runs:
        fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
        panels = [("psnr_dB", "reconstruction PSNR vs original (dB)"),
                  ("psnr_vs_ideal_dB", "PSNR vs exact-DCT reconstruction (dB)"),
                  ("SNR_dB", "DCT coefficient SNR (dB)")]
        for ax, (metric, label) in zip(axes, panels, strict=True):
            sns.lineplot(data=df, x="var", y=metric, hue="setting", marker="o", errorbar="sd",
                         ax=ax)
            ax.set(xlabel="programming variation, sigma of ln G (1)", ylabel=label)
        ceiling = df["psnr_ideal_dB"].mean()
        axes[0].axhline(ceiling, color="black", linestyle="--", linewidth=0.8,
                        label=f"exact DCT ({ceiling:.1f} dB)")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"8x8 block DCT compression (keep {int(df['keep'].iloc[0])}/64) on "
                     "crossbars; bands: sd over seeds")
        fig.tight_layout()
        figures["psnr_vs_variation"] = fig
        save_main(fig, "dct_study")
        plt.show()
    """),
])

compare_notebook("compare_heat_equation.ipynb", "heat_equation",
                 "Compare: heat equation study", """
    How the error of the explicit heat-equation solver accumulates over time steps, per number
    format, weight mapping and programming variation (the `state_RE` history of every run,
    averaged over seeds), and the final error against variation.
    """, [
    ("code", """
    import pandas as pd

    from mpimpy import tracking

    if have_runs:
        client = tracking.get_client(uri or tracking.tracking_uri())
        histories = []
        for _, row in df.iterrows():
            for m in client.get_metric_history(row["run_id"], "state_RE"):
                histories.append({"run_id": row["run_id"], "step": m.step, "state_RE": m.value})
        history = pd.DataFrame(histories).merge(df[["run_id", "fmt", "mapping", "var", "seed",
                                                     "setting"]], on="run_id")
        table = df.groupby(["fmt", "mapping", "var"])[["first_step_RE", "final_state_RE",
                                                      "diverged"]].agg(["mean", "count"])
        tables["final_error"] = table.reset_index()
        display(table)
    """),
    ("code", """
    if have_runs:
        grid = sns.relplot(data=history, x="step", y="state_RE", hue="var", col="setting",
                           kind="line", errorbar=None, palette="viridis", height=3.8,
                           facet_kws={"sharey": True})
        grid.set(yscale="log")
        grid.set_axis_labels("time step (steps of dt)", "state error ||u_sim - u|| / ||u|| (1)")
        grid.figure.suptitle("Error accumulation over time steps (mean over seeds)", y=1.03)
        figures["error_vs_step"] = grid.figure
        save_main(grid.figure, "heat_equation_study")
        plt.show()
    """),
    ("code", """
    if have_runs:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        sns.lineplot(data=df, x="var", y="final_state_RE", hue="setting", marker="o",
                     errorbar="sd", ax=ax)
        ax.set(yscale="log", xlabel="programming variation, sigma of ln G (1)",
               ylabel="final state error ||u_sim - u|| / ||u|| (1)",
               title=f"after {int(df['steps'].iloc[0])} steps; bands: sd over seeds")
        figures["final_error_vs_variation"] = fig
        plt.show()
    """),
])

compare_notebook("compare_pagerank.ipynb", "pagerank", "Compare: PageRank study", """
    Rank agreement with the exact PageRank (Kendall's tau-b, top-10 overlap) and iterations,
    against programming variation, per number format and ADC resolution, on the real graph and
    on the random scale-free graph.
    """, [
    ("code", """
    import numpy as np

    if have_runs:
        df["ADC"] = df["radc"].map(lambda v: "ideal ADC" if v != v or v is None
                                   else f"{int(np.log2(v))}-bit ADC")
        df["setting"] = df["fmt"] + ", " + df["ADC"]
        columns = [c for c in ("kendall_tau", "top10_overlap", "iterations", "random_kendall_tau",
                               "random_top10_overlap", "random_iterations") if c in df]
        table = df.groupby(["fmt", "ADC", "var"])[columns].agg(["mean", "count"])
        tables["agreement"] = table.reset_index()
        display(table.round(3))
    """),
    ("code", """
    if have_runs:
        real = df["graph"].iloc[0]
        panels = [("kendall_tau", f"{real}: Kendall tau (1)"),
                  ("top10_overlap", f"{real}: top-10 overlap (fraction)")]
        if "random_kendall_tau" in df:
            panels += [("random_kendall_tau", "random graph: Kendall tau (1)"),
                       ("random_top10_overlap", "random graph: top-10 overlap (fraction)")]
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4))
        for ax, (metric, label) in zip(np.atleast_1d(axes), panels, strict=True):
            sns.lineplot(data=df, x="var", y=metric, hue="setting", marker="o", errorbar="sd",
                         ax=ax)
            ax.set(xlabel="programming variation, sigma of ln G (1)", ylabel=label)
        fig.suptitle("PageRank on crossbars vs exact; bands: sd over seeds")
        fig.tight_layout()
        figures["rank_agreement"] = fig
        save_main(fig, "pagerank_study")
        plt.show()
    """),
    ("code", """
    if have_runs:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        sns.lineplot(data=df, x="var", y="iterations", hue="setting", marker="o", errorbar="sd",
                     ax=ax)
        ax.axhline(df["ideal_iterations"].iloc[0], color="black", linestyle="--", linewidth=0.8,
                   label="exact product")
        ax.set(xlabel="programming variation, sigma of ln G (1)",
               ylabel="iterations to converge (products)",
               title=f"{df['graph'].iloc[0]}; max_iter = {int(df['max_iter'].iloc[0])}")
        ax.legend(fontsize=8)
        figures["iterations"] = fig
        plt.show()
    """),
])

if __name__ == "__main__":
    print("notebooks written to", HERE)
