"""Writes the project's notebooks (run from anywhere: ``python notebooks/make_notebooks.py``).

The .ipynb files are committed (outputs cleared); edit the sources here and regenerate, or edit
a notebook in JupyterLab and carry the change back here. Each notebook has one cell tagged
``parameters`` (papermill and ``mpimpy study run`` override it) and logs one MLflow run per
execution through ``mpimpy.tracking``; see README.md in this folder.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import nbformat

HERE = Path(__file__).resolve().parent


def write(name: str, cells: list[tuple[str, str]]) -> Path:
    """Write ``name`` from (kind, source) cells: kind is "md", "code" or "params"."""
    nb = nbformat.v4.new_notebook()
    for i, (kind, source) in enumerate(cells):
        source = dedent(source).strip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"{Path(name).stem}-{i}"
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    path = HERE / name
    nbformat.write(nb, str(path))
    return path


IMPORTS = """
import matplotlib.pyplot as plt
import seaborn as sns
import torch

from mpimpy import tracking
from mpimpy.studies import compare

sns.set_theme(style="whitegrid", context="notebook")
# One thread: these products are small (thread start-up would dominate) and a study runs one
# kernel per worker side by side. Raise it for a large product run by hand.
torch.set_num_threads(1)
"""

IMPORTS_PD = IMPORTS.replace("import seaborn", "import pandas as pd\nimport seaborn")
IMPORTS_WIRES = IMPORTS.replace("from mpimpy import tracking",
                                "from mpimpy import DPETensor, crossbar, tracking")

START_RUN = """
# Under `mpimpy study run` this resumes the run the runner made for this point; by hand it starts
# a new run in the experiment $MLFLOW_EXPERIMENT_NAME (default "notebooks").
run = tracking.start_run(run_name="{name}")
"""

END_RUN = """
run.end()  # by hand: marks the run FINISHED; under the study runner the runner does it
print(f"logged run {run.run_id} in {tracking.store_summary()}")
"""

SCATTER = """
points = compare.output_pairs(product)
fig, ax = plt.subplots(figsize=(5.5, 5))
sns.scatterplot(data=points, x="expected", y="measured", s=5, alpha=0.4, linewidth=0, ax=ax)
low, high = points.min().min(), points.max().max()
ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="ideal (y = x)")
ax.set(xlabel="expected value of dot product, exact x @ W (a.u.)",
       ylabel="measured value of dot product, simulated (a.u.)",
       title=f"{title}: RE = {metrics['RE']:.3g}, SNR = {metrics['SNR_dB']:.1f} dB")
ax.legend(loc="upper left")
plt.show()
"""

# ---------------------------------------------------------------------------------------------
# Simulator notebooks

write("quickstart.ipynb", [
    ("md", """
    # Quickstart: the original mPimPy example

    The example of the original mPimPy README: `x` (m x k) and `W` (k x n) drawn from N(0, 1),
    both cut into bit slices `[1, 1, 4, 4]` (sign slice first), INT or block floating point
    with an 8-bit exponent (`fmt="FP"`, `bw_e=8`), multiplied on 64 x 64 crossbars with the
    default hardware (4-bit DAC, 8-bit ADC, 5 % DAC noise) and programming variation `var`.
    It prints and logs RE and SNR and plots measured against expected outputs.

    The original used m, k, n = 4000, 1000, 1200 (about 20 s on 2 CPU cores); the defaults here
    are smaller so the notebook runs in seconds. `studies/quickstart.yaml` sweeps `fmt` x `var`.
    """),
    ("params", """
    fmt: str = "INT"  # "INT" or "FP" (block floating point with an 8-bit exponent)
    var: float = 0.0  # device-to-device programming variation (sigma of a lognormal factor)
    m: int = 400  # x is m x k (the original: 4000 x 1000)
    k: int = 1000
    n: int = 1200  # W is k x n (the original: 1000 x 1200)
    seed: int = 42  # operands and engine (the original: torch.manual_seed(42))
    """),
    ("code", IMPORTS + START_RUN.format(name="quickstart")),
    ("code", """
    if fmt not in ("INT", "FP"):
        raise ValueError(f"fmt must be 'INT' or 'FP', got {fmt!r}")
    torch.manual_seed(seed)
    x_data, w_data = torch.randn(m, k), torch.randn(k, n)
    product = compare.simulate(
        x_data, w_data, x_slice=[1, 1, 4, 4], w_slice=[1, 1, 4, 4],
        bw_e=8 if fmt == "FP" else None, var=var, seed=seed,
    )
    print(f"{fmt}: x {m}x{k} @ W {k}x{n} simulated in {product.sim_time_s:.2f} s")
    """),
    ("code", """
    metrics = product.log(seed=seed, extra_params={"fmt": fmt})
    print(f"RE  = {metrics['RE']:.4g}")
    print(f"SNR = {metrics['SNR_dB']:.2f} dB")
    """),
    ("code", 'title = f"{fmt}, var = {var}"\n' + dedent(SCATTER)),
    ("code", END_RUN),
])

write("int_slicing.ipynb", [
    ("md", """
    # Integer slicing, ADC/DAC resolution, mapping and conductance levels

    One simulated product `x @ W` (N(0, 1) operands, INT format) with the slicing
    `x_slice` / `w_slice` (bit widths, sign slice first) and the hardware given below is logged
    as this notebook's run. With `sweep=True` the notebook then varies one setting at a time
    around that point, on the same operands, and logs each sweep as a figure (`plots/`) and a
    table (`tables/`):

    1. slicing of the input x slicing of the weights, of the same and of different total bits;
    2. ADC resolution (`radc = 2**bits` levels, or ideal) for both weight mappings;
    3. DAC resolution (`rdac = 2**bits` levels, or ideal);
    4. conductance levels per cell (`g_level`) for slicings that fit them.

    `studies/int_slicing.yaml` sweeps slicing schemes x `radc` x `mapping` x seeds.
    """),
    ("params", """
    x_slice: list[int] = [1, 1, 2, 4]  # input slice widths (bits), sign slice first
    w_slice: list[int] = [1, 1, 2, 4]  # weight slice widths; a w-bit slice needs 2**w levels
    radc: int = 256  # ADC levels (256: 8 bits); 0: an ideal ADC
    rdac: int = 16  # DAC levels (16: 4 bits); 0: an ideal DAC
    mapping: str = "offset"  # "offset" (reference column) or "diffpair" (G+ / G- arrays)
    var: float = 0.05  # device-to-device programming variation
    g_level: int = 16  # conductance levels per cell
    m: int = 128  # x is m x k, W is k x n
    k: int = 256
    n: int = 128
    sweep: bool = True  # also run the one-at-a-time sweeps below
    seed: int = 0
    """),
    ("code", IMPORTS + START_RUN.format(name="int_slicing")),
    ("code", """
    torch.manual_seed(seed)
    x_data, w_data = torch.randn(m, k), torch.randn(k, n)
    hardware = dict(radc=radc or None, rdac=rdac or None, mapping=mapping, var=var, g_level=g_level,
                    seed=seed)  # 0 levels: an ideal converter (None)
    product = compare.simulate(x_data, w_data, x_slice=x_slice, w_slice=w_slice, **hardware)
    metrics = product.log(seed=seed)
    print(f"x_slice {x_slice}, w_slice {w_slice}: RE = {metrics['RE']:.4g}, "
          f"SNR = {metrics['SNR_dB']:.2f} dB")
    """),
    ("code", 'title = f"x {x_slice}, W {w_slice}"\n' + dedent(SCATTER)),
    ("md", "## Slicing of x and W, same and different total bits"),
    ("code", """
    if sweep:
        # 4, 8 (three ways) and 12 bits
        schemes = [[1, 1, 2], [1, 3, 4], [1, 1, 2, 4], [1, 1, 2, 2, 2], [1, 3, 4, 4]]
        w_schemes = [s for s in schemes if compare.fits_g_level(s, g_level, mapping)]
        base = {**hardware, "x_slice": x_slice, "w_slice": w_slice}
        cases = [{"x_slice": xs, "w_slice": ws} for xs in schemes for ws in w_schemes]
        slicing = compare.sweep(x_data, w_data, cases, **base)
        slicing["x slicing"] = slicing["x_slice"].map(compare.slice_label)
        slicing["W slicing"] = slicing["w_slice"].map(compare.slice_label)
        grid = slicing.pivot(index="x slicing", columns="W slicing", values="SNR_dB")
        fig, ax = plt.subplots(figsize=(7.5, 5.5))
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax,
                    cbar_kws={"label": "SNR (dB)"})
        ax.set(xlabel="weight slicing (widths, total bits)",
               ylabel="input slicing (widths, total bits)",
               title=f"SNR (dB): radc={radc}, rdac={rdac}, {mapping}, var={var}")
        compare.log_figure(fig, "slicing_heatmap")
        compare.log_table(slicing.drop(columns=["x_slice", "w_slice"]), "slicing_sweep")
        plt.show()
    """),
    ("md", "## ADC resolution, for both weight mappings"),
    ("code", """
    if sweep:
        adc_bits = [4, 6, 8, 10]
        base = {**hardware, "x_slice": x_slice, "w_slice": w_slice}
        cases = [{"radc": 2**b, "mapping": mp} for b in adc_bits for mp in ("offset", "diffpair")]
        cases += [{"radc": None, "mapping": mp} for mp in ("offset", "diffpair")]
        adc = compare.sweep(x_data, w_data, cases, **base)
        adc["ADC bits"] = [c["radc"].bit_length() - 1 if c["radc"] else None for c in cases]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sns.lineplot(data=adc.dropna(subset=["ADC bits"]), x="ADC bits", y="SNR_dB",
                     hue="mapping", marker="o", ax=ax)
        for i, mp in enumerate(("offset", "diffpair")):
            ideal = adc[adc["ADC bits"].isna() & (adc["mapping"] == mp)]["SNR_dB"].iloc[0]
            ax.axhline(ideal, color=f"C{i}", linestyle="--", linewidth=0.8,
                       label=f"{mp}, ideal ADC")
        ax.set(xlabel="ADC resolution (bits)", ylabel="SNR (dB)",
               title=f"x {x_slice}, W {w_slice}, var={var}")
        ax.legend()
        compare.log_figure(fig, "adc_sweep")
        compare.log_table(adc, "adc_sweep")
        plt.show()
    """),
    ("md", "## DAC resolution"),
    ("code", """
    if sweep:
        dac_bits = [1, 2, 4, 6]
        base = {**hardware, "x_slice": x_slice, "w_slice": w_slice}
        dac = compare.sweep(x_data, w_data, [{"rdac": 2**b} for b in dac_bits], **base)
        dac["DAC bits"] = dac_bits
        ideal_dac = compare.sweep(x_data, w_data, [{"rdac": None}], **base)["SNR_dB"].iloc[0]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sns.lineplot(data=dac, x="DAC bits", y="SNR_dB", marker="o", ax=ax, label="DAC")
        ax.axhline(ideal_dac, color="black", linestyle="--", linewidth=0.8, label="ideal DAC")
        ax.set(xlabel="DAC resolution (bits)", ylabel="SNR (dB)",
               title=f"x {x_slice} (widest slice {max(x_slice)} bits), radc={radc}")
        ax.legend()
        compare.log_figure(fig, "dac_sweep")
        compare.log_table(dac, "dac_sweep")
        plt.show()
    """),
    ("md", "## Conductance levels per cell"),
    ("code", """
    if sweep:
        levels = [4, 8, 16, 32]
        level_schemes = [[1, 1, 2, 2, 2], [1, 1, 2, 4]]
        base = {**hardware, "x_slice": x_slice}
        cases = [{"g_level": g, "w_slice": s} for s in level_schemes for g in levels
                 if compare.fits_g_level(s, g, mapping)]
        glevel = compare.sweep(x_data, w_data, cases, **base)
        glevel["W slicing"] = glevel["w_slice"].map(compare.slice_label)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sns.lineplot(data=glevel, x="g_level", y="SNR_dB", hue="W slicing", marker="o", ax=ax)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="conductance levels per cell, g_level (levels)", ylabel="SNR (dB)",
               title=f"x {x_slice}, var={var}, {mapping} (slicings that fit g_level)")
        compare.log_figure(fig, "g_level_sweep")
        compare.log_table(glevel.drop(columns=["w_slice"]), "g_level_sweep")
        plt.show()
    """),
    ("code", END_RUN),
])

write("fp_slicing.ipynb", [
    ("md", """
    # Floating-point formats: exponent width, mantissa slicing, INT vs FP

    One simulated product in block floating point (exponent width `bw_e`, mantissa slicing
    `x_slice` / `w_slice`) on operands drawn from `data` (`normal`, `uniform`, `laplace`, or
    `wide`: magnitudes spread over six decades) is logged as this notebook's run, with the
    default hardware and programming variation `var`.

    With `sweep=True` three sweeps isolate the number format: they use ideal devices and
    converters (`var=0`, no DAC noise, `rdac=radc=None`), so every error is quantization:

    1. FP16-, BF16- and FP32-like formats (exponent bits / total bits 5/12, 8/9, 8/25) and INT
       of the same bits, on `data` and on wide-range data;
    2. exponent width `bw_e` (data beyond a format's exponent range is refused, shown as a gap);
    3. INT vs FP at equal total bits on `data` and on wide-range data.

    Block FP shares one exponent per block (one 64 x 64 array tile by default): values far
    below the block's largest one underflow to 0. `studies/fp_formats.yaml` sweeps `bw_e` x
    `data` x slicing.
    """),
    ("params", """
    bw_e: int = 8  # exponent bits of both operands
    data: str = "normal"  # operand distribution: normal, uniform, laplace or wide
    x_slice: list[int] = [1, 1, 2, 4]  # mantissa slice widths (bits), sign slice first
    w_slice: list[int] = [1, 1, 2, 4]
    var: float = 0.05  # device-to-device programming variation
    m: int = 128  # x is m x k, W is k x n
    k: int = 256
    n: int = 128
    sweep: bool = True  # also run the format sweeps below
    seed: int = 0
    """),
    ("code", IMPORTS_PD + START_RUN.format(name="fp_slicing")),
    ("code", """
    def operands(kind):
        generator = torch.Generator().manual_seed(seed)
        return (compare.random_operand(kind, (m, k), generator),
                compare.random_operand(kind, (k, n), generator))


    x_data, w_data = operands(data)
    product = compare.simulate(x_data, w_data, x_slice=x_slice, w_slice=w_slice, bw_e=bw_e,
                               var=var, seed=seed)
    metrics = product.log(seed=seed, extra_params={"data": data})
    print(f"FP e{bw_e} {x_slice} on {data} data: RE = {metrics['RE']:.4g}, "
          f"SNR = {metrics['SNR_dB']:.2f} dB")
    """),
    ("code", 'title = f"FP e{bw_e}, {data} data"\n' + dedent(SCATTER)),
    ("md", "## FP16-, BF16- and FP32-like formats vs INT of the same bits"),
    ("code", """
    ideal = dict(var=0.0, vnoise=0.0, rdac=None, radc=None, seed=seed)
    formats = {  # name: (exponent bits, slice widths of sign + mantissa)
        "FP16-like (e5, 12 b)": (5, [1, 1, 2, 4, 4]),
        "BF16-like (e8, 9 b)": (8, [1, 4, 4]),
        "FP32-like (e8, 25 b)": (8, [1, 4, 4, 4, 4, 4, 4]),
    }
    if sweep:
        tables = []
        for kind in sorted({data, "wide"}):
            xd, wd = operands(kind)
            labels = [(name, number) for name in formats for number in ("INT", "FP")]
            cases = [{"x_slice": formats[name][1], "w_slice": formats[name][1],
                      "bw_e": formats[name][0] if number == "FP" else None}
                     for name, number in labels]
            rows = compare.sweep(xd, wd, cases, **ideal)
            rows["format"] = [name for name, _ in labels]
            rows["number format"] = [number for _, number in labels]
            rows["data"] = kind
            tables.append(rows)
        formats_table = pd.concat(tables, ignore_index=True)
        grid = sns.catplot(data=formats_table, x="data", y="SNR_dB", hue="number format",
                           col="format", kind="bar", height=3.8, aspect=0.9)
        grid.set_axis_labels("operand distribution", "SNR (dB)")
        grid.figure.suptitle("Quantization only (ideal devices and converters)", y=1.03)
        compare.log_figure(grid.figure, "formats")
        compare.log_table(formats_table.drop(columns=["x_slice", "w_slice"]), "formats")
        plt.show()
    """),
    ("md", "## Exponent width"),
    ("code", """
    if sweep:
        widths = [2, 3, 4, 6, 8]
        tables = []
        for kind in sorted({data, "wide"}):
            xd, wd = operands(kind)
            rows = compare.sweep(xd, wd, [{"bw_e": e} for e in widths], x_slice=x_slice,
                                 w_slice=w_slice, **ideal)
            rows["data"] = kind
            tables.append(rows)
        exponent = pd.concat(tables, ignore_index=True)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sns.lineplot(data=exponent, x="bw_e", y="SNR_dB", hue="data", marker="o", ax=ax)
        ax.set(xlabel="exponent width, bw_e (bits)", ylabel="SNR (dB)",
               title=f"mantissa slicing {x_slice}; gaps: data beyond the exponent range")
        compare.log_figure(fig, "exponent_width")
        compare.log_table(exponent, "exponent_width")
        refused = exponent[exponent["error"] != ""]
        if len(refused):
            print("refused:", *sorted(set(refused["error"])), sep="\\n  ")
        plt.show()
    """),
    ("md", "## INT vs FP at equal total bits"),
    ("code", """
    if sweep:
        bits = [4, 8, 12, 16]
        tables = []
        for kind in sorted({data, "wide"}):
            xd, wd = operands(kind)
            cases = [{"x_slice": compare.slices_for_bits(b), "w_slice": compare.slices_for_bits(b),
                      "bw_e": e} for b in bits for e in (None, 8)]
            rows = compare.sweep(xd, wd, cases, **ideal)
            rows["total bits"] = [sum(c["x_slice"]) for c in cases]
            rows["number format"] = ["INT" if c["bw_e"] is None else "FP (e8)" for c in cases]
            rows["data"] = kind
            tables.append(rows)
        equal_bits = pd.concat(tables, ignore_index=True)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sns.lineplot(data=equal_bits, x="total bits", y="SNR_dB", hue="number format", style="data",
                     marker="o", ax=ax)
        ax.set(xlabel="total bits per operand, sign included (bits)", ylabel="SNR (dB)",
               title="INT vs block FP at equal bits (ideal devices and converters)")
        compare.log_figure(fig, "int_vs_fp_equal_bits")
        compare.log_table(equal_bits.drop(columns=["x_slice", "w_slice"]), "int_vs_fp_equal_bits")
        plt.show()
    """),
    ("code", END_RUN),
])

write("variation.ipynb", [
    ("md", """
    # Device non-idealities: variation, read noise, stuck cells, mapping

    One simulated product (N(0, 1) operands, INT or FP by `fmt`) with programming variation
    `var`, read noise `read_noise`, a fraction `stuck_fault_ratio` of cells stuck at LGS
    (`stuck_fault_value=0`) or HGS (`1`), the weight `mapping` and `g_level` given below is
    logged as this notebook's run.

    With `sweep=True` the notebook varies one non-ideality at a time around that point, over
    `n_seeds` seeds (new devices and noise; the bands are one standard deviation), for the
    offset mapping and the differential pair: programming variation, read noise, stuck-at
    faults, and variation at several `g_level`s. `studies/variation.yaml` sweeps `var` x `fmt`
    x non-idealities x 3 seeds.
    """),
    ("params", """
    var: float = 0.05  # device-to-device programming variation (sigma of a lognormal factor)
    read_noise: float = 0.0  # cycle-to-cycle read noise, relative sd per cell and read
    stuck_fault_ratio: float = 0.0  # fraction of weight cells stuck
    stuck_fault_value: int = 0  # 0: stuck at LGS, 1: stuck at HGS
    fmt: str = "INT"  # "INT" or "FP" (block floating point with an 8-bit exponent)
    mapping: str = "offset"  # "offset" or "diffpair"
    g_level: int = 16  # conductance levels per cell
    x_slice: list[int] = [1, 1, 2, 4]  # slice widths (bits), sign slice first
    w_slice: list[int] = [1, 1, 2, 4]
    m: int = 128  # x is m x k, W is k x n
    k: int = 256
    n: int = 128
    sweep: bool = True  # also run the sweeps below
    n_seeds: int = 3  # seeds per sweep point (for the bands)
    seed: int = 0
    """),
    ("code", IMPORTS_PD + START_RUN.format(name="variation")),
    ("code", """
    if fmt not in ("INT", "FP"):
        raise ValueError(f"fmt must be 'INT' or 'FP', got {fmt!r}")
    torch.manual_seed(seed)
    x_data, w_data = torch.randn(m, k), torch.randn(k, n)
    point = dict(var=var, read_noise=read_noise, stuck_fault_ratio=stuck_fault_ratio,
                 stuck_fault_value=stuck_fault_value, mapping=mapping, g_level=g_level,
                 x_slice=x_slice, w_slice=w_slice, bw_e=8 if fmt == "FP" else None)
    product = compare.simulate(x_data, w_data, seed=seed, **point)
    metrics = product.log(seed=seed, extra_params={"fmt": fmt})
    print(f"{fmt}, {mapping}: RE = {metrics['RE']:.4g}, SNR = {metrics['SNR_dB']:.2f} dB")
    """),
    ("code", 'title = f"{fmt}, var={var}, read noise={read_noise}, stuck={stuck_fault_ratio}"\n'
     + dedent(SCATTER)),
    ("code", """
    seeds = list(range(seed, seed + n_seeds))
    mappings = [mp for mp in ("offset", "diffpair") if compare.fits_g_level(w_slice, g_level, mp)]


    def one_at_a_time(name, values, **fixed):
        # The point above with `name` set to each value, for each mapping and seed.
        cases = [{name: v, "mapping": mp, "seed": s, **fixed}
                 for v in values for mp in mappings for s in seeds]
        return compare.sweep(x_data, w_data, cases, **point)


    def band_plot(table, x, title, xlabel, hue="mapping"):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sns.lineplot(data=table, x=x, y="RE", hue=hue, marker="o", errorbar="sd", ax=ax)
        ax.set(xlabel=xlabel, ylabel=compare.metric_label("RE"), title=title)
        return fig
    """),
    ("md", "## Programming variation"),
    ("code", """
    if sweep:
        by_var = one_at_a_time("var", [0.0, 0.05, 0.1, 0.2])
        fig = band_plot(by_var, "var", f"{fmt}: error vs programming variation ({n_seeds} seeds)",
                        "programming variation, sigma of ln G (1)")
        compare.log_figure(fig, "variation_sweep")
        compare.log_table(by_var.drop(columns=["x_slice", "w_slice"], errors="ignore"),
                          "variation_sweep")
        plt.show()
    """),
    ("md", "## Read noise"),
    ("code", """
    if sweep:
        by_noise = one_at_a_time("read_noise", [0.0, 0.02, 0.05, 0.1])
        fig = band_plot(by_noise, "read_noise", f"{fmt}, var={var}: error vs read noise",
                        "read noise, relative sd per cell and read (1)")
        compare.log_figure(fig, "read_noise_sweep")
        compare.log_table(by_noise, "read_noise_sweep")
        plt.show()
    """),
    ("md", "## Stuck-at faults"),
    ("code", """
    if sweep:
        ratios = [0.0, 0.01, 0.05]
        stuck = pd.concat([one_at_a_time("stuck_fault_ratio", ratios, stuck_fault_value=v)
                           for v in (0, 1)], ignore_index=True)
        stuck["stuck at"] = stuck["stuck_fault_value"].map({0: "LGS", 1: "HGS"})
        stuck["percent"] = 100 * stuck["stuck_fault_ratio"]
        grid = sns.relplot(data=stuck, x="percent", y="RE", hue="mapping", col="stuck at",
                           kind="line", marker="o", errorbar="sd", height=3.8)
        grid.set_axis_labels("stuck cells (% of weight cells)", compare.metric_label("RE"))
        grid.figure.suptitle(f"{fmt}, var={var}: error vs stuck-at faults", y=1.03)
        compare.log_figure(grid.figure, "stuck_fault_sweep")
        compare.log_table(stuck, "stuck_fault_sweep")
        plt.show()
    """),
    ("md", "## Variation at several conductance-level counts"),
    ("code", """
    if sweep:
        level_slice = [1, 1, 2, 2, 2]  # fits every g_level below
        cases = [{"g_level": g, "var": v, "seed": s, "w_slice": level_slice}
                 for g in (4, 16) for v in (0.0, 0.1) for s in seeds]
        levels = compare.sweep(x_data, w_data, cases, **point)
        fig = band_plot(levels, "var", f"W sliced {level_slice}, {mapping}",
                        "programming variation, sigma of ln G (1)", hue="g_level")
        compare.log_figure(fig, "g_level_variation")
        compare.log_table(levels, "g_level_variation")
        plt.show()
    """),
    ("code", END_RUN),
])

write("wire_resistance.ipynb", [
    ("md", """
    # Wire resistance: IR drop vs array size

    Every word-line and bit-line segment of a crossbar has resistance `r` (ohms); currents
    through it lower the voltage cells see (IR drop), most for cells far from the drivers and
    sense amplifiers and for large arrays. The engine solves the crossbar circuit exactly
    (`DPETensor(wire_resistance=r)`, `mpimpy.crossbar`).

    One simulated product (N(0, 1) operands, INT or FP) on `array_size` x `array_size` arrays
    with wire resistance `r` is logged as this notebook's run. Then:

    1. an IR-drop map of one array (`mpimpy.crossbar.solve(..., return_voltages=True)`): the
       voltage across each cell with every input at the read voltage, and the column currents
       against ideal wires;
    2. with `sweep=True`, error vs array size for several wire resistances, with ideal devices
       and converters so that IR drop is the only error left besides quantization.
    """),
    ("params", """
    r: float = 1.0  # resistance of one wire segment (ohm)
    array_size: int = 64  # rows and columns of each crossbar array
    fmt: str = "INT"  # "INT" or "FP" (block floating point with an 8-bit exponent)
    var: float = 0.0  # device-to-device programming variation
    m: int = 64  # x is m x k, W is k x n
    k: int = 256
    n: int = 128
    sweep: bool = True  # also run the array-size sweep
    seed: int = 0
    """),
    ("code", IMPORTS_WIRES + START_RUN.format(name="wire_resistance")),
    ("code", """
    if fmt not in ("INT", "FP"):
        raise ValueError(f"fmt must be 'INT' or 'FP', got {fmt!r}")
    torch.manual_seed(seed)
    x_data, w_data = torch.randn(m, k), torch.randn(k, n)
    tile = (array_size, array_size)
    bw_e = 8 if fmt == "FP" else None
    product = compare.simulate(x_data, w_data, bw_e=bw_e, paral_size=tile, var=var,
                               wire_resistance=r, seed=seed)
    metrics = product.log(seed=seed, extra_params={"fmt": fmt})
    print(f"{array_size}x{array_size} arrays, r = {r} ohm: RE = {metrics['RE']:.4g}, "
          f"SNR = {metrics['SNR_dB']:.2f} dB ({product.sim_time_s:.2f} s)")
    """),
    ("code", 'title = f"{array_size}x{array_size} arrays, r = {r} ohm"\n' + dedent(SCATTER)),
    ("md", "## IR-drop map of one array"),
    ("code", """
    engine = DPETensor(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, engine.g_level, tile, generator=generator, dtype=torch.float64)
    G = engine.LGS + levels * engine.config.level_step  # conductances (S)
    V = torch.full((array_size,), engine.vread, dtype=torch.float64)  # every input at vread (V)
    solution = crossbar.solve(V, G, r, return_voltages=True)
    cell_v = solution.word_line_voltages - solution.bit_line_voltages  # across each cell (V)
    ideal_currents = V @ G

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    sns.heatmap(cell_v.numpy() / engine.vread * 100, cmap="magma", ax=ax1,
                cbar_kws={"label": "voltage across the cell (% of vread)"},
                xticklabels=max(1, array_size // 8), yticklabels=max(1, array_size // 8))
    ax1.set(xlabel="bit line (column index)", ylabel="word line (row index)",
            title=f"cell voltage, r = {r} ohm, vread = {engine.vread} V")
    ratio = (solution.currents / ideal_currents).numpy()
    sns.lineplot(x=range(array_size), y=ratio * 100, ax=ax2)
    ax2.set(xlabel="bit line (column index)",
            ylabel="output current (% of ideal wires)",
            title="column currents vs ideal wires")
    fig.tight_layout()
    compare.log_figure(fig, "ir_drop_map")
    run.log_metrics({"min_cell_voltage_fraction": float(cell_v.min() / engine.vread),
                     "min_current_ratio": float(ratio.min())})
    plt.show()
    """),
    ("md", "## Error vs array size and wire resistance"),
    ("code", """
    if sweep:
        sizes = [16, 32, 64, 128]
        resistances = [0.0, 0.5, 1.0, 2.5, 5.0]
        ideal = dict(var=0.0, vnoise=0.0, rdac=None, radc=None, seed=seed, bw_e=bw_e)
        cases = [{"paral_size": (s, s), "wire_resistance": res}
                 for s in sizes for res in resistances]
        wires = compare.sweep(x_data, w_data, cases, **ideal)
        wires["array size"] = [c["paral_size"][0] for c in cases]
        wires["r (ohm)"] = wires["wire_resistance"]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sns.lineplot(data=wires, x="array size", y="SNR_dB", hue="r (ohm)", marker="o",
                     palette="viridis", ax=ax)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="array size (rows = columns)", ylabel="SNR (dB)",
               title=f"{fmt}: IR drop only (ideal devices and converters)")
        compare.log_figure(fig, "array_size_sweep")
        compare.log_table(wires.drop(columns=["paral_size"]), "array_size_sweep")
        plt.show()
    """),
    ("code", END_RUN),
])

# ---------------------------------------------------------------------------------------------
# Comparison notebooks

COMPARE_INTRO = dedent("""
    Pulls the FINISHED runs of the experiment (`mpimpy.studies.compare.load_runs`, which uses
    `mlflow.search_runs`), plots them, and logs the figures and tables as one summary run (tag
    `mpimpy.summary=true`) in the same experiment. An experiment with no runs gets a message
    and nothing is logged. Run the study first, e.g. `mpimpy study run studies/<name>.yaml`.
""").strip()

COMPARE_PARAMS = """
experiment: str = "{experiment}"  # the study's MLflow experiment
tracking_uri: str = ""  # the store; "": the one in force ($MLFLOW_TRACKING_URI, else mlruns/)
log: bool = True  # log the figures as a summary run in the same experiment
"""

COMPARE_LOAD = """
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import display

from mpimpy.studies import compare

sns.set_theme(style="whitegrid", context="notebook")
uri = tracking_uri or None
runs = compare.load_runs(experiment, uri)
have_runs = not runs.empty
figures, tables = {}, {}
if have_runs:
    df = compare.tidy_runs(runs)
    print(f"{len(df)} finished runs in experiment {experiment!r}")
else:
    print(compare.no_runs_message(experiment, uri))
"""

COMPARE_LOG = """
if have_runs and log and figures:
    summary_id = compare.log_summary(experiment, figures, tables=tables, tracking_uri=uri,
                                     metrics={"n_runs": len(df)})
    print(f"summary run {summary_id}: {len(figures)} figures, {len(tables)} tables")
elif not have_runs:
    print("nothing to summarize")
"""


def compare_notebook(name, experiment, title, intro, body, numpy=False):
    load = COMPARE_LOAD.replace("import seaborn", "import numpy as np\nimport seaborn") if numpy \
        else COMPARE_LOAD
    write(name, [
        ("md", f"# {title}\n\n" + dedent(intro).strip() + "\n\n" + COMPARE_INTRO),
        ("params", COMPARE_PARAMS.format(experiment=experiment)),
        ("code", load),
        *[(kind, src) for kind, src in body],
        ("code", COMPARE_LOG),
    ])


compare_notebook("compare_quickstart.ipynb", "quickstart", "Compare: quickstart study",
                 """
    INT vs FP at equal bits (both sliced `[1, 1, 4, 4]`, 10 bits) as programming variation
    grows: error vs `var` with bands over seeds, and a table of the means.
    """, [
    ("code", """
    if have_runs:
        df["fmt"] = df["fmt"] if "fmt" in df else df["format"]
        table = df.groupby(["fmt", "var"])[["RE", "SNR_dB"]].agg(["mean", "std", "count"])
        tables["by_fmt_and_var"] = table.reset_index()
        display(table)
    """),
    ("code", """
    if have_runs:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, metric in zip(axes, ("RE", "SNR_dB"), strict=True):
            sns.lineplot(data=df, x="var", y=metric, hue="fmt", marker="o", errorbar="sd", ax=ax)
            ax.set(xlabel="programming variation, sigma of ln G (1)",
                   ylabel=compare.metric_label(metric))
        fig.suptitle("INT vs FP at 10 bits ([1, 1, 4, 4]); bands: sd over seeds")
        fig.tight_layout()
        figures["error_vs_variation"] = fig
        plt.show()
    """),
])

compare_notebook("compare_int_slicing.ipynb", "int_slicing", "Compare: integer slicing study",
                 """
    SNR over input slicing x weight slicing (heatmaps, one per ADC resolution and mapping),
    error vs ADC bits per slicing scheme, and SNR vs total bits.
    """, [
    ("code", """
    if have_runs:
        df["x slicing"] = df["x_slice"].map(compare.slice_label)
        df["W slicing"] = df["w_slice"].map(compare.slice_label)
        df["ADC bits"] = np.log2(df["radc"]).round().astype("Int64")
        df["total bits"] = df["w_slice"].map(compare.total_bits)
        table = (df.groupby(["x slicing", "W slicing", "mapping", "ADC bits"])["SNR_dB"]
                 .agg(["mean", "std", "count"]))
        tables["snr_by_slicing"] = table.reset_index()
        display(table)
    """),
    ("code", """
    if have_runs:
        panels = df.groupby(["ADC bits", "mapping"])
        scale = dict(vmin=df["SNR_dB"].min(), vmax=df["SNR_dB"].max())  # one scale for all
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.8), squeeze=False)
        for ax, ((bits, mapping), part) in zip(axes[0], panels, strict=True):
            grid = part.pivot_table(index="x slicing", columns="W slicing", values="SNR_dB")
            sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, **scale,
                        cbar_kws={"label": "mean SNR over seeds (dB)"})
            ax.set(title=f"{bits}-bit ADC, {mapping}", xlabel="weight slicing (widths, bits)",
                   ylabel="input slicing (widths, bits)")
        fig.tight_layout()
        figures["snr_heatmaps"] = fig
        plt.show()
    """),
    ("code", """
    if have_runs:
        grid = sns.relplot(data=df, x="ADC bits", y="SNR_dB", hue="W slicing", col="mapping",
                           kind="line", marker="o", errorbar="sd", height=4)
        grid.set_axis_labels("ADC resolution (bits)", "SNR (dB)")
        grid.figure.suptitle("Error vs ADC resolution; bands: sd over seeds", y=1.03)
        figures["snr_vs_adc_bits"] = grid.figure
        plt.show()
    """),
    ("code", """
    if have_runs:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sns.stripplot(data=df, x="total bits", y="SNR_dB", hue="W slicing", dodge=True, ax=ax)
        ax.set(xlabel="total bits per operand (bits)", ylabel="SNR (dB)",
               title="Same and different total bits")
        figures["snr_vs_total_bits"] = fig
        plt.show()
    """),
], numpy=True)

compare_notebook("compare_fp_formats.ipynb", "fp_formats", "Compare: floating-point formats study",
                 """
    SNR over exponent width x data distribution (heatmaps, one per mantissa slicing), and
    error vs exponent width and vs total mantissa bits.
    """, [
    ("code", """
    if have_runs:
        df["slicing"] = df["w_slice"].map(compare.slice_label)
        df["total bits"] = df["w_slice"].map(compare.total_bits)
        table = df.groupby(["slicing", "bw_e", "data"])[["RE", "SNR_dB"]].agg(["mean", "count"])
        tables["by_format_and_data"] = table.reset_index()
        display(table)
    """),
    ("code", """
    if have_runs:
        panels = df.groupby("slicing")
        scale = dict(vmin=df["SNR_dB"].min(), vmax=df["SNR_dB"].max())  # one scale for all
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
        for ax, (slicing, part) in zip(axes[0], panels, strict=True):
            grid = part.pivot_table(index="bw_e", columns="data", values="SNR_dB")
            sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, **scale,
                        cbar_kws={"label": "mean SNR (dB)"})
            ax.set(title=f"mantissa slicing {slicing}", xlabel="operand distribution",
                   ylabel="exponent width, bw_e (bits)")
        fig.tight_layout()
        figures["snr_heatmaps"] = fig
        plt.show()
    """),
    ("code", """
    if have_runs:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        sns.lineplot(data=df, x="bw_e", y="SNR_dB", hue="data", style="slicing", marker="o",
                     ax=axes[0])
        axes[0].set(xlabel="exponent width, bw_e (bits)", ylabel="SNR (dB)")
        sns.lineplot(data=df, x="total bits", y="SNR_dB", hue="data", style="bw_e", marker="o",
                     ax=axes[1])
        axes[1].set(xlabel="total bits per operand, sign included (bits)", ylabel="SNR (dB)")
        fig.suptitle("Block floating point: exponent width and mantissa bits")
        fig.tight_layout()
        figures["snr_vs_bw_e_and_bits"] = fig
        plt.show()
    """),
])

compare_notebook("compare_variation.ipynb", "variation", "Compare: device non-idealities study",
                 """
    Error vs programming variation for INT and FP, one panel per extra non-ideality (none,
    read noise, stuck cells), with bands over seeds; and a heatmap of the mean SNR.
    """, [
    ("code", """
    if have_runs:
        df["fmt"] = df["fmt"] if "fmt" in df else df["format"]


        def condition(row):
            parts = []
            if row.get("read_noise", 0) > 0:
                parts.append(f"read noise {row['read_noise']:g}")
            if row.get("stuck_fault_ratio", 0) > 0:
                state = "HGS" if row.get("stuck_fault_value", 0) == 1 else "LGS"
                parts.append(f"{100 * row['stuck_fault_ratio']:g} % stuck at {state}")
            return ", ".join(parts) or "variation only"


        df["non-ideality"] = df.apply(condition, axis=1)
        table = (df.groupby(["non-ideality", "fmt", "var"])[["RE", "SNR_dB"]]
                 .agg(["mean", "std", "count"]))
        tables["by_condition"] = table.reset_index()
        display(table)
    """),
    ("code", """
    if have_runs:
        grid = sns.relplot(data=df, x="var", y="RE", hue="fmt", col="non-ideality", kind="line",
                           marker="o", errorbar="sd", height=4)
        grid.set_axis_labels("programming variation, sigma of ln G (1)",
                             compare.metric_label("RE"))
        grid.figure.suptitle("Error vs variation; bands: sd over seeds", y=1.03)
        figures["error_vs_variation"] = grid.figure
        plt.show()
    """),
    ("code", """
    if have_runs:
        panels = df.groupby("fmt")
        scale = dict(vmin=df["SNR_dB"].min(), vmax=df["SNR_dB"].max())  # one scale for all
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
        for ax, (fmt, part) in zip(axes[0], panels, strict=True):
            grid = part.pivot_table(index="non-ideality", columns="var", values="SNR_dB")
            sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, **scale,
                        cbar_kws={"label": "mean SNR over seeds (dB)"})
            ax.set(title=fmt, xlabel="programming variation (1)", ylabel="")
        fig.tight_layout()
        figures["snr_heatmap"] = fig
        plt.show()
    """),
])


if __name__ == "__main__":
    print("notebooks written to", HERE)
