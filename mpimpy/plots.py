"""Figures logged with every simulation: measured vs expected, and the error histogram.

Both take the simulated and the ideal result (numpy arrays or torch tensors of one shape),
write a PNG and return its path. They draw on a bare ``matplotlib.figure.Figure`` (no pyplot
state, no backend switch), so they work in a worker process or a kernel without a display and
leave a notebook's inline figures alone. The outputs of a matrix product
of unitless operands are unitless, hence "a.u." (arbitrary units) on the value axes; pass
``unit`` when the operands carry one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Scatter plots of huge products are thinned to this many points (chosen at random, seed 0).
MAX_SCATTER_POINTS = 20_000


def _flat(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().to("cpu").double().numpy()
    return np.asarray(a, dtype=np.float64).ravel()


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 4.2), dpi=110)
    return fig, fig.subplots()


def scatter_plot(
    y_sim, y_ideal, path: str | Path, *, unit: str = "a.u.", title: str | None = None
) -> Path:
    """Simulated output against the exact output, with the ideal line y = x."""
    sim, ideal = _flat(y_sim), _flat(y_ideal)
    if sim.size > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).choice(sim.size, MAX_SCATTER_POINTS, replace=False)
        sim, ideal = sim[keep], ideal[keep]
    fig, ax = _figure()
    ax.scatter(ideal, sim, s=4, alpha=0.5, linewidths=0, label="outputs")
    if ideal.size:
        low, high = float(min(ideal.min(), sim.min())), float(max(ideal.max(), sim.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="ideal (y = x)")
    ax.set_xlabel(f"expected output, exact x @ W ({unit})")
    ax.set_ylabel(f"measured output, simulated ({unit})")
    ax.set_title(title or "Simulated vs expected output")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def error_histogram(
    y_sim, y_ideal, path: str | Path, *, unit: str = "a.u.", bins: int = 60
) -> Path:
    """Histogram of the elementwise error ``y_sim - y_ideal``."""
    error = _flat(y_sim) - _flat(y_ideal)
    fig, ax = _figure()
    try:
        ax.hist(error, bins=bins if error.size else 1, color="tab:red", alpha=0.8)
    except ValueError:  # a (nearly) constant error: too narrow a range for many bins
        ax.cla()
        ax.hist(error, bins=1, color="tab:red", alpha=0.8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"error, simulated - expected ({unit})")
    ax.set_ylabel("number of outputs")
    ax.set_title("Output error distribution")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def cost_breakdown_plot(reports, path: str | Path, *, title: str | None = None) -> Path:
    """Stacked bars of energy per MAC by component, one bar per report.

    ``reports``: a :class:`mpimpy.cost.CostReport`, or a dict ``{label: report}`` (e.g. the
    layers of a network).
    """
    from mpimpy.cost import COMPONENTS

    if not isinstance(reports, dict):
        reports = {"product": reports}
    labels = list(reports)
    fig, ax = _figure()
    bottom = np.zeros(len(labels))
    for component in COMPONENTS:
        heights = np.array([r.energy_breakdown.get(component, 0.0) / r.macs * 1e12
                            if r.macs else 0.0 for r in reports.values()])
        if heights.any():
            ax.bar(labels, heights, bottom=bottom, label=component)
            bottom += heights
    ax.set_xlabel("product" if len(labels) == 1 else "layer")
    ax.set_ylabel("energy per MAC (pJ)")
    technology = next(iter(reports.values())).technology
    ax.set_title(title or f"Energy per MAC by component ({technology})")
    ax.legend(loc="upper left", fontsize="small", ncols=2)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


__all__ = ["MAX_SCATTER_POINTS", "cost_breakdown_plot", "error_histogram", "scatter_plot"]
