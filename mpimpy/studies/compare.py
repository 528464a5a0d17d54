"""Helpers shared by the notebooks: run one simulated product, and compare a study's runs.

Simulating (the simulator notebooks)
    :func:`random_operand` draws operands from a named distribution (``"normal"``,
    ``"uniform"``, ``"laplace"``, or ``"wide"`` for data spanning many decades);
    :func:`simulate` quantizes, slices and multiplies them on a :class:`mpimpy.DPETensor` and
    returns everything :func:`mpimpy.tracking.log_simulation` needs (:class:`Product`).

Each notebook's repeated steps are one call here, so its cells stay a few lines:
:func:`exponent_bits` (the ``fmt`` parameter), :func:`plot_product` (measured against
expected outputs), :func:`error_budget` (where the error of one product comes from) and, for
the comparison notebooks, :class:`Comparison` (load a study's runs, collect figures and
tables, log them as one summary run).

Comparing (the ``compare_*`` notebooks)
    :func:`load_runs` pulls an experiment's runs with :func:`mlflow.search_runs` into a pandas
    DataFrame, with parameters that are numbers turned into numbers; :func:`tidy_runs` gives
    it short column names (each setting has one name: ``var``, ``x_slice``, ``fmt``);
    :func:`log_summary` logs figures and tables as one *summary run*
    in the same experiment (tag ``mpimpy.summary=true``), which :func:`load_runs` leaves out.
"""

from __future__ import annotations

import ast
import contextlib
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mpimpy import tracking
from mpimpy.studies.store import experiment_id

#: Tag that marks a summary run (figures comparing the other runs of its experiment).
SUMMARY_TAG = "mpimpy.summary"
#: Axis labels with units for the metrics the simulator, the notebooks and the searches log.
METRIC_LABELS = {
    "RE": "relative error ||y - y_ideal|| / ||y_ideal|| (1)",
    "SNR_dB": "SNR (dB)",
    "ABSE": "mean |relative error| (1)",
    "max_abs_error": "max |y - y_ideal| (a.u.)",
    "sim_time_s": "simulation time (s)",
    "notebook_wall_s": "notebook wall time (s)",
    "energy_per_inference_J": "energy per inference (J)",
    "energy_per_mac_pJ": "energy per MAC (pJ)",
    "energy_J": "energy (J)",
    "latency_s": "latency (s)",
    "area_mm2": "area (mm²)",
    "tops_per_w": "TOPS/W",
    "accuracy": "test accuracy (1)",
    "accuracy_drop": "accuracy drop vs software (1)",
}
DISTRIBUTIONS = ("normal", "uniform", "laplace", "wide")


# --------------------------------------------------------------------------------------------
# Simulating


def random_operand(kind: str, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """A float32 tensor of ``shape`` drawn from the distribution ``kind``.

    ``"normal"``: N(0, 1). ``"uniform"``: U(-1, 1). ``"laplace"``: Laplace(0, 1) (heavy tails).
    ``"wide"``: random signs times magnitudes log-uniform over 10**-4 .. 10**2 (six decades:
    a wide dynamic range, where a block's small values underflow to 0).
    """
    shape = tuple(int(s) for s in shape)
    if kind == "normal":
        return torch.randn(shape, generator=generator)
    if kind == "uniform":
        return torch.rand(shape, generator=generator) * 2 - 1
    if kind == "laplace":
        u = torch.rand(shape, generator=generator, dtype=torch.float64) - 0.5
        u = u.clamp(-0.5 + 1e-12, 0.5 - 1e-12)
        return (-torch.sign(u) * torch.log1p(-2 * u.abs())).float()
    if kind == "wide":
        exponent = torch.rand(shape, generator=generator) * 6 - 4
        sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
        return sign * torch.pow(10.0, exponent)
    raise ValueError(f"data must be one of {DISTRIBUTIONS}, got {kind!r}")


@dataclass
class Product:
    """One simulated product ``y ~ x_data @ w_data`` and what produced it."""

    y: torch.Tensor
    y_ideal: torch.Tensor
    engine: Any  # mpimpy.DPETensor
    x: Any  # mpimpy.SlicedData of the input
    mat: Any  # mpimpy.SlicedData of the weights
    sim_time_s: float

    def metrics(self) -> dict[str, float]:
        """RE, SNR_dB, ABSE and max_abs_error against the exact float64 product."""
        from mpimpy.metrics import all_metrics

        return all_metrics(self.y_ideal, self.y)

    def log(self, *, seed: int | None, **kwargs) -> dict[str, float]:
        """:func:`mpimpy.tracking.log_simulation` of this product (keywords passed on)."""
        return tracking.log_simulation(
            self.engine, self.x, self.mat, self.y, self.y_ideal,
            sim_time_s=self.sim_time_s, seed=seed, **kwargs,
        )


def simulate(x_data, w_data, *, x_slice=(1, 1, 2, 4), w_slice=(1, 1, 2, 4), bw_e=None,
             paral_size=(64, 64), quant_gran=None, engine=None, **engine_kwargs) -> Product:
    """Simulate ``x_data @ w_data`` on crossbars: slice both operands, program, read.

    ``engine`` (a :class:`mpimpy.DPETensor`) or ``engine_kwargs`` to make one; ``bw_e`` is the
    exponent width of both operands (``None`` for INT). The ideal product is the exact float64
    product of the unquantized operands. ``sim_time_s`` times the engine call only.
    """
    from mpimpy import DPETensor, SlicedData

    if engine is None:
        engine = DPETensor(**engine_kwargs)
    elif engine_kwargs:
        raise TypeError(f"pass either engine or engine settings, not both: {sorted(engine_kwargs)}")
    x = SlicedData(list(x_slice), bw_e=bw_e, paral_size=paral_size, quant_gran=quant_gran,
                   device=engine.device)
    mat = SlicedData(list(w_slice), bw_e=bw_e, paral_size=paral_size, quant_gran=quant_gran,
                     device=engine.device, is_weight=True)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, w_data)
    start = time.perf_counter()
    y = engine(x, mat)
    sim_time_s = time.perf_counter() - start
    y_ideal = torch.as_tensor(x_data).double() @ torch.as_tensor(w_data).double()
    return Product(y, y_ideal.to(y.device), engine, x, mat, sim_time_s)


def sweep(x_data, w_data, cases: Sequence[Mapping[str, Any]], **base) -> pd.DataFrame:
    """Simulate the same operands once per case and tabulate the errors.

    Each case is a dict of :func:`simulate` keywords (slicing, ``bw_e``, hardware settings,
    ``seed``) merged over ``base``. Returns one row per case: the case's own keys, then RE,
    SNR_dB, ABSE, max_abs_error and sim_time_s, and ``error``: empty, or the message of a
    setting the simulator refused (``ValueError``: e.g. a slice wider than ``g_level`` allows,
    data beyond an exponent range), whose metrics are then NaN.
    """
    rows = []
    for case in cases:
        row: dict[str, Any] = dict(case)
        try:
            product = simulate(x_data, w_data, **{**base, **case})
        except ValueError as exc:
            row.update({k: math.nan for k in ("RE", "SNR_dB", "ABSE", "max_abs_error",
                                              "sim_time_s")})
            row["error"] = str(exc)
        else:
            row.update(product.metrics())
            row["sim_time_s"] = product.sim_time_s
            row["error"] = ""
        rows.append(row)
    return pd.DataFrame(rows)


def exponent_bits(fmt: str, bw_e: int = 8) -> int | None:
    """The exponent width of a notebook's number format: ``None`` for ``"INT"``, ``bw_e`` for
    ``"FP"`` (block floating point); anything else is refused, naming ``fmt``."""
    if fmt not in ("INT", "FP"):
        raise ValueError(f"fmt must be 'INT' or 'FP', got {fmt!r}")
    return bw_e if fmt == "FP" else None


#: The cases of :func:`error_budget`: what each turns off, as :func:`simulate` keywords.
BUDGET_CASES = {
    "as set": {},
    "no DAC noise (vnoise=0)": {"vnoise": 0.0},
    "ideal ADC (radc=None)": {"radc": None},
    "calibrated ADC range (adc_range='calibrated')": {"adc_range": "calibrated"},
    "no DAC noise, ideal ADC": {"vnoise": 0.0, "radc": None},
    "quantization only (no noise, no variation, ideal DAC and ADC)": {
        "vnoise": 0.0, "radc": None, "rdac": None, "var": 0.0, "read_noise": 0.0},
}


def error_budget(x_data, w_data, **settings) -> pd.DataFrame:
    """Where the error of one simulated product comes from: the same operands and settings
    (:func:`simulate` keywords) with one non-ideality after another turned off
    (:data:`BUDGET_CASES`). One row per case: ``case``, ``RE``, ``SNR_dB``, ``ABSE``,
    ``max_abs_error``, ``sim_time_s``, ``error``."""
    cases = [{**settings, **turned_off} for turned_off in BUDGET_CASES.values()]
    table = sweep(x_data, w_data, cases)
    table.insert(0, "case", list(BUDGET_CASES))
    return table[["case", "RE", "SNR_dB", "ABSE", "max_abs_error", "sim_time_s", "error"]]


def plot_product(product: Product, title: str = "", max_points: int = 20_000):
    """Measured against expected outputs of ``product`` with the ideal line and RE/SNR in the
    title (a pyplot figure, shown inline by a notebook); returns the figure."""
    import matplotlib.pyplot as plt

    points = output_pairs(product, max_points)
    metrics = product.metrics()
    figure, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(points["expected"], points["measured"], s=5, alpha=0.4, linewidths=0,
               label="outputs")
    low, high = points.min().min(), points.max().max()
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="ideal (y = x)")
    ax.set(xlabel="expected value of dot product, exact x @ W (a.u.)",
           ylabel="measured value of dot product, simulated (a.u.)",
           title=f"{title + ': ' if title else ''}RE = {metrics['RE']:.3g}, "
                 f"SNR = {metrics['SNR_dB']:.1f} dB")
    ax.legend(loc="upper left")
    return figure


def output_pairs(product: Product, max_points: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """Columns ``expected`` (exact) and ``measured`` (simulated) of a product's outputs, at
    most ``max_points`` of them chosen at random, for a scatter plot."""
    frame = pd.DataFrame({
        "expected": product.y_ideal.detach().double().cpu().flatten().numpy(),
        "measured": product.y.detach().double().cpu().flatten().numpy(),
    })
    if len(frame) > max_points:
        frame = frame.sample(max_points, random_state=seed)
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Loading runs


def parse_number(value: Any) -> Any:
    """``"3"`` -> 3, ``"0.05"`` -> 0.05, ``"None"`` -> None; anything else unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text == "None":
        return None
    if text in ("True", "False", "nan", "inf", "-inf", ""):
        return value
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def numeric_params(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy where each ``params.*`` column whose values are all numbers (or ``"None"``,
    which becomes NaN) is numeric; other columns (lists, names, booleans) stay strings."""
    frame = frame.copy()
    for column in [c for c in frame.columns if c.startswith("params.")]:
        values = frame[column]
        present = values.dropna()
        parsed = present.map(parse_number)
        numbers = parsed.dropna()
        if len(numbers) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in numbers
        ):
            frame[column] = pd.to_numeric(values.map(parse_number), errors="coerce")
    return frame


@contextlib.contextmanager
def _tracking_uri(uri: str):
    """Point :mod:`mlflow`'s global tracking URI at ``uri`` for a while, then put back both the
    global and the ``MLFLOW_TRACKING_URI`` environment variable as they were (MLflow's own
    setter also writes, or deletes, that variable)."""
    import os

    from mlflow.tracking._tracking_service import utils

    saved_global = getattr(utils, "_tracking_uri", None)
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    utils.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils.set_tracking_uri(saved_global)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def load_runs(experiment: str, tracking_uri: str | None = None, *,
              status: str | None = "FINISHED", summaries: bool = False) -> pd.DataFrame:
    """The runs of ``experiment`` as :func:`mlflow.search_runs` gives them, params numeric.

    Args:
        experiment: experiment (study) name.
        tracking_uri: the store; default the one in force (:func:`mpimpy.tracking.tracking_uri`).
        status: keep only runs with this status (default FINISHED); ``None`` keeps all.
        summaries: also return summary runs (tag ``mpimpy.summary=true``).

    Returns:
        One row per run, columns ``run_id``, ``status``, ``metrics.*``, ``params.*`` (numbers
        where every value is a number, see :func:`numeric_params`), ``tags.*``; an empty frame
        when the experiment does not exist or has no such runs.
    """
    import mlflow

    uri = tracking_uri or tracking.tracking_uri()
    exp_id = experiment_id(experiment, uri)
    if exp_id is None:
        return pd.DataFrame()
    filters = []
    if status:
        filters.append(f"attributes.status = '{status}'")
    with _tracking_uri(uri):
        frame = mlflow.search_runs([exp_id], " and ".join(filters), max_results=100_000)
    if frame.empty:
        return frame
    if not summaries and f"tags.{SUMMARY_TAG}" in frame:
        frame = frame[frame[f"tags.{SUMMARY_TAG}"].fillna("") != "true"]
    return numeric_params(frame.reset_index(drop=True))


def tidy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Short column names: every param, metric and tag without its prefix, plus ``run_id``,
    ``status``, ``start_time``, and ``fmt`` (from the tag ``format``) where no param has it.
    Runs of older stores that kept a study's values as ``nb.<name>`` params get them as
    ``<name>`` where the run has no ``<name>`` of its own.

    Metrics win over params and tags of the same name; tags are only added where no
    param or metric has the name.
    """
    out: dict[str, pd.Series] = {}
    if runs.empty:
        return pd.DataFrame()
    for prefix in ("tags.", "params.", "metrics."):
        for column in runs.columns:
            if column.startswith(prefix) and not column.startswith("tags.mlflow."):
                out[column[len(prefix):]] = runs[column]
    for name in [k for k in out if k.startswith("nb.")]:  # runs logged before one name per
        values = out.pop(name)  # setting kept the study's values as nb.<name>: fill them in
        short = name[len("nb."):]
        out[short] = out[short].fillna(values) if short in out else values
    if "fmt" not in out and "format" in out:
        out["fmt"] = out["format"]
    for column in ("run_id", "status", "start_time"):
        if column in runs:
            out[column] = runs[column]
    return pd.DataFrame(out, index=runs.index)


def no_runs_message(experiment: str, tracking_uri: str | None = None) -> str:
    """What to tell a user whose experiment has no finished runs to compare."""
    uri = tracking_uri or tracking.tracking_uri()
    where = tracking.store_summary(uri)
    if experiment_id(experiment, uri) is None:
        return (f"No experiment named {experiment!r} in {where}; nothing to compare and "
                f"nothing was logged. Run the study that logs into it first (for a shipped "
                f"study: `mpimpy study run studies/{experiment}.yaml`), or set `experiment` "
                f"(and MLFLOW_TRACKING_URI or `tracking_uri`) to where the runs are.")
    return (f"Experiment {experiment!r} in {where} has no FINISHED runs to compare yet; "
            f"nothing was logged. Run its study first (for a shipped study: "
            f"`mpimpy study run studies/{experiment}.yaml`).")


# --------------------------------------------------------------------------------------------
# Small conveniences for plots


def slice_list(value: Any) -> list[int] | None:
    """Slice widths from a logged value (``"[1, 1, 2, 4]"``) or a list; ``None`` if not one."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, list | tuple) and all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    return None


def slice_label(value: Any) -> str:
    """A compact label of slice widths: ``[1, 1, 2, 4]`` -> ``"1-1-2-4 (8b)"``."""
    widths = slice_list(value)
    if widths is None:
        return str(value)
    return "-".join(str(w) for w in widths) + f" ({sum(widths)}b)"


def total_bits(value: Any) -> float:
    """Total bits of slice widths (``[1, 1, 2, 4]`` -> 8); NaN if not slice widths."""
    widths = slice_list(value)
    return float(sum(widths)) if widths is not None else math.nan


def metric_label(name: str) -> str:
    """Axis label with the unit of a logged metric."""
    return METRIC_LABELS.get(name, name)


def slices_for_bits(bits: int, max_width: int = 4) -> list[int]:
    """Slice widths totalling ``bits``: the 1-bit sign slice, then slices of ``max_width`` bits
    (the last one narrower if needed), e.g. 8 -> [1, 4, 3]."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 2:
        raise ValueError(f"bits must be an integer >= 2, got {bits!r}")
    if isinstance(max_width, bool) or not isinstance(max_width, int) or max_width < 1:
        raise ValueError(f"max_width must be a positive integer, got {max_width!r}")
    rest = bits - 1
    tail = [rest % max_width] if rest % max_width else []
    return [1] + [max_width] * (rest // max_width) + tail


def fits_g_level(widths: Sequence[int], g_level: int, mapping: str = "offset") -> bool:
    """Whether every weight slice fits ``g_level`` conductance levels (the sign slice needs no
    array with ``mapping="diffpair"``)."""
    widths = list(widths)[1:] if mapping == "diffpair" else list(widths)
    return all(2**w <= g_level for w in widths)


# --------------------------------------------------------------------------------------------
# Artifacts


def log_figure(figure, name: str, run=None, artifact_path: str = "plots") -> None:
    """Save a matplotlib figure as ``<artifact_path>/<name>.png`` in ``run`` (default: the
    notebook's open run, see :func:`mpimpy.tracking.start_run`)."""
    run = run or tracking.current_run()
    if run is None:
        raise RuntimeError("no open run: call mpimpy.tracking.start_run() first, or pass run")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        run.log_artifact(path, artifact_path)


def log_table(table: pd.DataFrame, name: str, run=None, artifact_path: str = "tables") -> None:
    """Save a DataFrame as ``<artifact_path>/<name>.csv`` in ``run`` (default: the open run)."""
    run = run or tracking.current_run()
    if run is None:
        raise RuntimeError("no open run: call mpimpy.tracking.start_run() first, or pass run")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.csv"
        table.to_csv(path, index=False)
        run.log_artifact(path, artifact_path)


# --------------------------------------------------------------------------------------------
# Summary runs


def log_summary(experiment: str, figures: Mapping[str, Any], *,
                tables: Mapping[str, pd.DataFrame] | None = None,
                params: Mapping[str, Any] | None = None,
                metrics: Mapping[str, float] | None = None,
                tracking_uri: str | None = None, run_name: str | None = None) -> str:
    """Log figures (matplotlib figures, as ``figures/<name>.png``) and tables (as
    ``tables/<name>.csv``) as one new FINISHED run in ``experiment``, tagged
    ``mpimpy.summary=true``; returns its run id.

    The run is always a new one in the named experiment (never a study runner's run from
    ``MLFLOW_RUN_ID``), so summaries do not mix with the runs they summarize.
    """
    uri = tracking_uri or tracking.tracking_uri()
    client = tracking.get_client(uri)
    exp_id = tracking.ensure_experiment(experiment, client=client)
    tags = {SUMMARY_TAG: "true", "mpimpy.summary_of": experiment}
    created = client.create_run(exp_id, run_name=run_name or f"summary of {experiment}",
                                tags=tags)
    run = tracking.TrackedRun(created.info.run_id, client=client, managed=False)
    try:
        if params:
            run.log_params(params)
        if metrics:
            run.log_metrics(metrics)
        for name, figure in figures.items():
            log_figure(figure, name, run, "figures")
        for name, table in (tables or {}).items():
            log_table(table, name, run, "tables")
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")
    return run.run_id


def summary_runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The summary runs of an experiment (newest first)."""
    runs = load_runs(experiment, tracking_uri, status=None, summaries=True)
    if runs.empty or f"tags.{SUMMARY_TAG}" not in runs:
        return pd.DataFrame()
    return runs[runs[f"tags.{SUMMARY_TAG}"] == "true"].reset_index(drop=True)


class Comparison:
    """A comparison notebook's work: a study's finished runs and the summary it logs.

    ``Comparison(experiment, tracking_uri="", gallery_dir="")`` loads the FINISHED runs of
    ``experiment`` (:func:`load_runs`, the store in force when ``tracking_uri`` is empty) and
    prints how many, or what to run first when there are none. ``runs``: the tidy runs
    (:func:`tidy_runs`), empty when there are none (``have_runs``). :meth:`add_figure` and
    :meth:`add_table` collect what :meth:`log` logs as one summary run in the experiment
    (:func:`log_summary`); a figure added with ``gallery=NAME`` is also saved as
    ``<gallery_dir>/NAME.png`` when ``gallery_dir`` is set.
    """

    def __init__(self, experiment: str, tracking_uri: str = "", gallery_dir: str = ""):
        self.experiment = experiment
        self.tracking_uri = tracking_uri or None
        self.gallery_dir = gallery_dir
        self.figures: dict[str, Any] = {}
        self.tables: dict[str, pd.DataFrame] = {}
        self.runs = tidy_runs(load_runs(experiment, self.tracking_uri))
        if self.have_runs:
            print(f"{len(self.runs)} finished runs in experiment {experiment!r}")
        else:
            print(no_runs_message(experiment, self.tracking_uri))

    @property
    def have_runs(self) -> bool:
        return not self.runs.empty

    def add_figure(self, name: str, figure, gallery: str | None = None):
        """Keep ``figure`` for the summary as ``figures/<name>.png``; returns it."""
        self.figures[name] = figure
        if gallery and self.gallery_dir:
            folder = Path(self.gallery_dir)
            folder.mkdir(parents=True, exist_ok=True)
            figure.savefig(folder / f"{gallery}.png", dpi=100, bbox_inches="tight")
        return figure

    def add_table(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Keep ``table`` for the summary as ``tables/<name>.csv`` (a grouped table with its
        index as columns); returns it as given."""
        self.tables[name] = table.reset_index() if table.index.name or any(
            table.index.names) else table
        return table

    def log(self, enabled: bool = True) -> str | None:
        """Log the figures and tables as one summary run (metric ``n_runs``) and say so;
        returns its id, or ``None`` when there is nothing to log or ``enabled`` is false."""
        if not self.have_runs:
            print("nothing to summarize")
            return None
        if not enabled or not self.figures:
            print("summary not logged" + ("" if enabled else " (log=False)"))
            return None
        run_id = log_summary(self.experiment, self.figures, tables=self.tables,
                             tracking_uri=self.tracking_uri, metrics={"n_runs": len(self.runs)})
        print(f"summary run {run_id}: {len(self.figures)} figures, {len(self.tables)} tables")
        return run_id


def finite(values) -> np.ndarray:
    """Boolean mask of finite values (for filtering before plots)."""
    return np.isfinite(np.asarray(values, dtype=np.float64))


__all__ = [
    "BUDGET_CASES",
    "Comparison",
    "DISTRIBUTIONS",
    "METRIC_LABELS",
    "Product",
    "SUMMARY_TAG",
    "error_budget",
    "exponent_bits",
    "finite",
    "fits_g_level",
    "log_figure",
    "log_table",
    "slices_for_bits",
    "sweep",
    "load_runs",
    "log_summary",
    "metric_label",
    "no_runs_message",
    "numeric_params",
    "output_pairs",
    "parse_number",
    "plot_product",
    "random_operand",
    "simulate",
    "slice_label",
    "slice_list",
    "summary_runs",
    "tidy_runs",
    "total_bits",
]
