"""Co-design: the accuracy and the cost of one hardware configuration, from one simulated run.

A :class:`Design` is a point of the design space (slicing, converters, array size, encodings,
devices, technology); :func:`evaluate` simulates a workload on it and returns what it computes
and what it costs, measured on the same simulated work:

* ``"product"``: a matrix product ``x @ W`` of standard normal operands; accuracy is RE and SNR
  against the exact product, cost the product's :class:`~mpimpy.cost.CostReport` (energy per
  MAC; ``energy_per_inference_J`` is the energy of one input vector);
* ``"mnist"``: the small CNN of :mod:`mpimpy.nn.models` on the MNIST subset (trained once in
  software and cached), converted to the design's crossbars; accuracy is the test accuracy, and
  its drop from software, cost the network's :class:`~mpimpy.nn.NetworkCost` of the same forward
  pass (energy per inference).

``notebooks/codesign_point.ipynb`` evaluates one design (a study's or a search's point),
``notebooks/codesign.ipynb`` sweeps a grid of them and draws the Pareto fronts.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from mpimpy.config import ADC_RANGE_MODES, INPUT_ENCODINGS, MAPPINGS

#: The workloads :func:`evaluate` knows.
WORKLOADS = ("product", "mnist")
#: How the arrays' energy is priced: the technology's fixed energy per cell read, or the
#: physics (``V^2 G t`` of every cell, measured on every read).
ARRAY_ENERGY = ("per-cell", "physics")


@dataclass(frozen=True)
class Design:
    """One point of the co-design space; every field validated by the engine it builds.

    Attributes:
        x_slice, w_slice: input and weight slice widths, most significant first.
        rdac_bits, radc_bits: DAC and ADC resolution in bits, >= 1; 0 is an ideal converter.
        adc_range: ``"full"``, ``"calibrated"`` or ``"calibrated-symmetric"``.
        array_rows, array_cols: array size in cells (``array_cols=0``: square).
        mapping: ``"offset"``, ``"diffpair"`` or ``"bias"``; ``unit_column`` for the bias
            mapping's unit columns.
        input_encoding: ``"twos_complement"``, ``"sign_magnitude"`` or ``"offset_binary"``.
        g_level: conductance levels per cell, >= 2 (``2**w <= g_level`` for every weight slice).
        var: lognormal programming variation (sigma of ln G), >= 0.
        vnoise: relative DAC voltage noise per read, >= 0.
        bw_e: exponent bits of block floating point, or ``None`` for INT.
        technology: a :data:`mpimpy.cost.PRESETS` name (or a YAML/JSON technology file).
        array_energy: ``"per-cell"`` or ``"physics"`` (:data:`ARRAY_ENERGY`).
    """

    x_slice: tuple[int, ...] = (1, 1, 2, 4)
    w_slice: tuple[int, ...] = (1, 1, 2, 4)
    rdac_bits: int = 4
    radc_bits: int = 8
    adc_range: str = "calibrated"
    array_rows: int = 64
    array_cols: int = 0
    mapping: str = "offset"
    unit_column: bool = False
    input_encoding: str = "twos_complement"
    g_level: int = 16
    var: float = 0.05
    vnoise: float = 0.0
    bw_e: int | None = None
    technology: str = "isaac-32nm"
    array_energy: str = "per-cell"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "x_slice", tuple(self.x_slice))
        object.__setattr__(self, "w_slice", tuple(self.w_slice))
        for name, allowed in (("mapping", MAPPINGS), ("input_encoding", INPUT_ENCODINGS),
                              ("adc_range", ADC_RANGE_MODES), ("array_energy", ARRAY_ENERGY)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("rdac_bits", "radc_bits"):
            bits = getattr(self, name)
            if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 24:
                raise ValueError(f"{name} must be an integer in [0, 24] (0: ideal), got {bits!r}")

    @property
    def paral_size(self) -> tuple[int, int]:
        return (self.array_rows, self.array_cols or self.array_rows)

    def engine_settings(self) -> dict[str, Any]:
        """The :class:`~mpimpy.engine.DPETensor` settings of this design."""
        return dict(var=self.var, vnoise=self.vnoise, g_level=self.g_level,
                    rdac=2**self.rdac_bits if self.rdac_bits else None,
                    radc=2**self.radc_bits if self.radc_bits else None,
                    adc_range=self.adc_range, mapping=self.mapping,
                    unit_column=self.unit_column, input_encoding=self.input_encoding,
                    **self.extra)

    def cost_technology(self):
        """The technology that prices this design, with its array-energy model."""
        from mpimpy.cost import resolve_technology

        overrides = {"array_energy_per_cell": None} if self.array_energy == "physics" else {}
        return resolve_technology(self.technology, **overrides)

    def engine(self, seed: int = 0):
        """A :class:`~mpimpy.engine.DPETensor` of this design that prices every product."""
        from mpimpy.engine import DPETensor

        return DPETensor(seed=seed, technology=self.cost_technology(), **self.engine_settings())

    def params(self) -> dict[str, Any]:
        """The design as loggable parameters."""
        out = {k: (list(v) if isinstance(v, tuple) else v)
               for k, v in dataclasses.asdict(self).items() if k != "extra"}
        out.update(self.extra)
        return out


@dataclass
class Evaluation:
    """What :func:`evaluate` measured: ``metrics`` (accuracy and cost, flat, for logging),
    the cost (a :class:`~mpimpy.cost.CostReport` or :class:`~mpimpy.nn.NetworkCost`) and the
    simulated objects (``product`` for a product: see :func:`mpimpy.studies.compare.simulate`)."""

    design: Design
    workload: str
    metrics: dict[str, float]
    cost: Any
    product: Any = None
    model: Any = None


#: The metrics an evaluation logs, by workload (what a search may optimize).
METRICS = {
    "product": ("RE", "SNR_dB", "energy_J", "energy_per_mac_pJ", "energy_per_inference_J",
                "latency_s", "area_mm2", "tops_per_w", "sim_time_s"),
    "mnist": ("accuracy", "software_accuracy", "accuracy_drop", "energy_J",
              "energy_per_mac_pJ", "energy_per_inference_J", "latency_s", "area_mm2",
              "tops_per_w", "sim_time_s"),
}


def cost_metrics(report) -> dict[str, float]:
    values = report.as_dict()
    return {k: float(values[k]) for k in ("energy_J", "energy_per_mac_pJ", "latency_s",
                                           "area_mm2", "tops_per_w")}


def evaluate_product(design: Design, m: int = 256, k: int = 512, n: int = 256, seed: int = 0
                     ) -> Evaluation:
    """Simulate ``x (m, k) @ W (k, n)`` (standard normal, from ``seed``) on ``design``."""
    import torch

    from mpimpy.studies.compare import simulate

    gen = torch.Generator().manual_seed(seed)
    x_data, w_data = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    engine = design.engine(seed)
    product = simulate(x_data, w_data, x_slice=list(design.x_slice),
                       w_slice=list(design.w_slice), bw_e=design.bw_e,
                       paral_size=design.paral_size, engine=engine)
    report = engine.last_cost
    metrics = {**product.metrics(), **cost_metrics(report),
               "energy_per_inference_J": report.energy / m, "sim_time_s": product.sim_time_s}
    return Evaluation(design, "product", metrics, report, product=product)


def evaluate_mnist(design: Design, n_test: int = 1000, seed: int = 0, epochs: int = 8
                   ) -> Evaluation:
    """The MNIST-subset CNN (trained in software once, cached) on ``design``: test accuracy on
    ``n_test`` images and the cost of that very forward pass."""
    from mpimpy import nn as mnn
    from mpimpy.datasets import load_dataset

    data = load_dataset("mnist", seed=seed)
    net, _ = mnn.pretrained("cnn", data, seed=seed, epochs=epochs)
    x_test, y_test = data.x_test[:n_test], data.y_test[:n_test]
    software = mnn.accuracy(net, x_test, y_test)
    engine = design.engine(seed)
    hw = mnn.convert(net, engine, xblk=list(design.x_slice), mblk=list(design.w_slice),
                     bw_e=design.bw_e, paral_size=design.paral_size, seed=seed).eval()
    start = time.perf_counter()
    network = mnn.cost_report(hw, x_test, design.cost_technology(), batch_size=250,
                              keep_outputs=True)
    sim_time_s = time.perf_counter() - start
    accuracy = float((network.outputs.argmax(-1) == y_test).double().mean())
    metrics = {"accuracy": accuracy, "software_accuracy": software,
               "accuracy_drop": software - accuracy, **cost_metrics(network.total),
               "energy_per_inference_J": network.energy_per_inference, "sim_time_s": sim_time_s}
    return Evaluation(design, "mnist", metrics, network, model=hw)


def evaluate(design: Design, workload: str = "product", **sizes) -> Evaluation:
    """:func:`evaluate_product` or :func:`evaluate_mnist` by name (:data:`WORKLOADS`)."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    return (evaluate_product if workload == "product" else evaluate_mnist)(design, **sizes)


def log_evaluation(evaluation: Evaluation, run=None, **extra_params) -> dict[str, float]:
    """Log an evaluation to MLflow: the design and workload as parameters, its accuracy and
    cost metrics, the cost breakdown (table and figure, one bar per layer for a network;
    :func:`mpimpy.tracking.log_cost`) and, for a product, the scatter and error figures.
    Returns the metrics."""
    from mpimpy import tracking

    params = {"workload": evaluation.workload, **evaluation.design.params(), **extra_params}
    if evaluation.product is not None:  # log_simulation logs the product's cost too
        tracking.log_simulation(
            evaluation.product.engine, evaluation.product.x, evaluation.product.mat,
            evaluation.product.y, evaluation.product.y_ideal,
            sim_time_s=evaluation.metrics["sim_time_s"], seed=evaluation.product.engine.seed,
            run=run, extra_params=params,
            extra_metrics={"energy_per_inference_J": evaluation.metrics[
                "energy_per_inference_J"]})
        return dict(evaluation.metrics)
    tracked = tracking.resolve_run(run)
    tracked.log_params({**params, **tracking.environment_info()})
    tracked.log_metrics({k: v for k, v in evaluation.metrics.items()
                         if k not in tracking.COST_METRICS})
    tracked.set_tags({"task": "codesign", "workload": evaluation.workload})
    tracking.log_cost(evaluation.cost, run=tracked)
    return dict(evaluation.metrics)


def designs(base: Design | None = None, **grid) -> list[Design]:
    """Every combination of ``grid`` (``field=[values]``) over ``base``: the cartesian
    product, in order."""
    base = base or Design()
    names = list(grid)
    unknown = sorted(set(names) - {f.name for f in dataclasses.fields(Design)})
    if unknown:
        raise ValueError(f"unknown Design fields {unknown}")
    return [dataclasses.replace(base, **dict(zip(names, values, strict=True)))
            for values in itertools.product(*(grid[n] for n in names))]


def sweep(points: list[Design], workload: str = "product", progress: bool = True, **sizes):
    """Evaluate every design; one row per design (its parameters, then its metrics), and
    ``error``: empty, or why the simulator refused the design (e.g. a weight slice wider than
    ``g_level`` holds), its metrics then NaN. A pandas DataFrame."""
    import pandas as pd
    from tqdm.auto import tqdm

    rows = []
    for design in tqdm(points, desc=f"{workload} designs", disable=not progress):
        row = design.params()
        try:
            row.update(evaluate(design, workload, **sizes).metrics, error="")
        except ValueError as err:
            row.update({m: float("nan") for m in METRICS[workload]}, error=str(err))
        rows.append(row)
    return pd.DataFrame(rows)


#: Each workload's accuracy and cost objectives, ``{column: direction}``.
OBJECTIVES = {"product": {"SNR_dB": "maximize", "energy_per_mac_pJ": "minimize"},
              "mnist": {"accuracy": "maximize", "energy_per_inference_J": "minimize"}}
#: Axis labels with units (the co-design plots' own words: "output SNR", "fraction").
LABELS = {"SNR_dB": "output SNR (dB)", "RE": "relative error (1)",
          "accuracy": "test accuracy (fraction)",
          "energy_per_mac_pJ": "energy per MAC (pJ)",
          "energy_per_inference_J": "energy per inference (J)"}


def plot_front(frame, workload: str, ax=None, hue: str | None = None, feasible=None,
               title: str | None = None):
    """Accuracy against cost for every design of ``frame`` (a :func:`sweep` table or a
    study's runs), the Pareto front as a step line and its knee marked; ``feasible`` (a column
    or mask) highlights the designs that meet a constraint. Returns the front
    (:func:`mpimpy.studies.pareto.front_table`)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mpimpy.studies.pareto import front_table

    objectives = OBJECTIVES[workload]
    accuracy, cost = list(objectives)
    ax = ax or plt.gca()
    valid = frame.dropna(subset=[accuracy, cost])
    if feasible is not None:
        mask = valid[feasible] if isinstance(feasible, str) else feasible
        valid = valid.assign(feasible=mask)
        sns.scatterplot(valid, x=cost, y=accuracy, hue="feasible", style=hue, ax=ax,
                        palette={True: "tab:green", False: "lightgray"})
    else:
        sns.scatterplot(valid, x=cost, y=accuracy, hue=hue, ax=ax)
    front = front_table(valid, objectives, feasible="feasible" if feasible is not None else None)
    ordered = front.sort_values(cost)
    ax.step(ordered[cost], ordered[accuracy], where="post", color="black", linewidth=1,
            label="Pareto front")
    knee = front[front["knee"]]
    ax.scatter(knee[cost], knee[accuracy], s=150, facecolors="none", edgecolors="red",
               linewidths=1.5, label="knee", zorder=5)
    ax.set_xscale("log")
    ax.set(xlabel=LABELS[cost], ylabel=LABELS[accuracy],
           title=title or f"{workload}: accuracy against cost")
    ax.legend(fontsize="small")
    return front


__all__ = ["ARRAY_ENERGY", "LABELS", "METRICS", "OBJECTIVES", "WORKLOADS", "Design",
           "Evaluation", "cost_metrics", "designs", "evaluate", "evaluate_mnist",
           "evaluate_product", "log_evaluation", "plot_front", "sweep"]
