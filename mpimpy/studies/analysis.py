"""What a search found, read from its runs: the trials, the Pareto front, the knee and the
cheapest feasible trial (:func:`search_results`), the front drawn (:func:`plot_front`) and logged
as a summary run of the search's experiment (:func:`log_search_summary`).

Analysis only: nothing here runs a notebook or touches the Optuna study (running a search is
:mod:`mpimpy.studies.search`'s job); the runs are loaded with
:func:`mpimpy.studies.compare.load_runs`, as the comparison notebooks load theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpimpy.studies.compare import load_runs, log_summary, metric_label, parse_number, tidy_runs
from mpimpy.studies.pareto import front_table, pareto_mask
from mpimpy.studies.search import DUPLICATE_TAG, REFERENCE_TAG, SEARCH_TAG, TRIAL_TAG
from mpimpy.studies.spec import Search, Study, StudyError
from mpimpy.studies.validate import load_study
from mpimpy.tracking import project_root


@dataclass
class SearchResults:
    """A search's trials as logged to MLflow, and what they found.

    ``trials``: one row per trial run (``trial``, ``status``, ``run_id``, every metric and
    parameter under its own name, ``complete``: FINISHED with every objective, ``feasible``:
    complete and within every constraint, ``reference``, ``duplicate_of``). ``front``: the
    Pareto front of the feasible, distinct configurations (:func:`mpimpy.studies.pareto
    .front_table`, with its ``knee`` column), sorted by the first objective. ``knee`` and
    ``cheapest`` (the feasible trial best on :attr:`Search.cost_objective`): rows, or ``None``.
    """

    study: Study
    trials: Any
    front: Any
    knee: Any = None
    cheapest: Any = None

    @property
    def search(self) -> Search:
        return self.study.search

    @property
    def columns(self) -> list[str]:
        """The columns worth showing: trial, objectives, constraint metrics, space."""
        names = ["trial", *self.search.metrics, *self.search.space]
        return [c for c in dict.fromkeys(names) if c in self.trials]

    def front_text(self) -> str:
        """The front as a table for the terminal, the knee and the cheapest marked."""
        if self.front.empty:
            return "No feasible complete trial yet: no front."
        table = self.front[self.columns].copy()
        marks = []
        for _, row in self.front.iterrows():
            mark = ("knee " if row["knee"] else "") + (
                "cheapest" if self.cheapest is not None
                and row["trial"] == self.cheapest["trial"] else "")
            marks.append(mark.strip())
        table.insert(0, "", marks)
        return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")

    def describe(self, row) -> str:
        """``trial 12: x_slice=[1, 3, 4], ..., accuracy=0.981, energy_per_inference_J=2e-06``."""
        values = [f"{k}={row[k]}" for k in self.search.space if k in row]
        values += [f"{m}={row[m]:.4g}" for m in self.search.metrics if m in row]
        return f"trial {int(row['trial'])}: " + ", ".join(values)


def load_search(study: str | Path) -> Study:
    """A search study by file, or by the name of a shipped one (``codesign_mnist``: the
    project's ``studies/codesign_mnist.yaml``); its notebook is not opened (results only)."""
    path = Path(study)
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        path = project_root() / "studies" / f"{study}.yaml"
    loaded = load_study(path, check_notebook=False)
    if loaded.search is None:
        raise StudyError(f"{path}: key 'search': missing: not a search study")
    return loaded


def _is_true(value: Any) -> bool:
    return str(value).lower() == "true"


def search_results(study: Study, tracking_uri: str | None = None) -> SearchResults:
    """Read a search's trial runs from the tracking store and find its front (see
    :class:`SearchResults`); the trials are those the runs tag ``search`` with the study's
    name, in the study's experiment."""
    search = study.search
    runs = load_runs(study.experiment, tracking_uri, status=None)
    if not runs.empty and f"tags.{SEARCH_TAG}" in runs:
        runs = runs[runs[f"tags.{SEARCH_TAG}"] == study.name]
    trials = tidy_runs(runs.reset_index(drop=True)) if not runs.empty else pd.DataFrame()
    if trials.empty:
        empty = pd.DataFrame(columns=["trial", *search.metrics, *search.space, "knee"])
        return SearchResults(study, empty, empty)
    trials["trial"] = pd.to_numeric(trials[TRIAL_TAG], errors="coerce").astype("Int64")
    for name in search.metrics:
        trials[name] = pd.to_numeric(trials[name], errors="coerce") if name in trials \
            else np.nan
    for name, dimension in search.space.items():
        if name in trials:
            trials[name] = trials[name].map(parse_number)
            whole = dimension.integer or dimension.choices is not None and all(
                isinstance(c, int) and not isinstance(c, bool) for c in dimension.choices)
            if whole:  # a NaN (a run without it) would make the column float
                trials[name] = pd.to_numeric(trials[name], errors="coerce").astype("Int64")
    complete = (trials["status"] == "FINISHED") & trials[
        [o.metric for o in search.objectives]].notna().all(axis=1)
    feasible = complete.copy()
    for constraint in search.constraints:
        values = trials[constraint.metric]
        feasible &= values.notna() & values.map(
            lambda v, c=constraint: c.violation(v) <= 0 if v == v else False)
    trials["complete"], trials["feasible"] = complete, feasible
    trials["reference"] = trials.get(REFERENCE_TAG, pd.Series(index=trials.index)).map(_is_true)
    if DUPLICATE_TAG not in trials:
        trials[DUPLICATE_TAG] = None
    trials = trials.sort_values("trial").reset_index(drop=True)
    distinct = trials["feasible"] & trials[DUPLICATE_TAG].isna()
    front = front_table(trials[distinct], search.directions)
    knee = front[front["knee"]].iloc[0] if not front.empty else None
    cheapest = None
    if distinct.any():
        cost = search.cost_objective
        ranked = trials[distinct].sort_values(
            [cost.metric] + [o.metric for o in search.objectives if o != cost],
            ascending=[cost.direction == "minimize"] + [
                o.direction == "minimize" for o in search.objectives if o != cost])
        cheapest = ranked.iloc[0]
    return SearchResults(study, trials, front, knee, cheapest)


def plot_front(results: SearchResults):
    """Objective against objective (the cost on x, each other objective on y): every complete
    trial, feasible ones highlighted, reference configurations and failures noted, the
    front of that pair as a step line, the knee and the cheapest feasible trial marked.
    Returns the matplotlib figure (one panel per other objective)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    search = results.search
    cost = search.cost_objective
    others = [o for o in search.objectives if o != cost] or [cost]
    figure, axes = plt.subplots(1, len(others), figsize=(6.4 * len(others), 4.8), squeeze=False)
    trials = results.trials[results.trials["complete"]].copy()
    trials["trial kind"] = np.where(trials["feasible"], "feasible", "infeasible")
    for ax, other in zip(axes[0], others, strict=True):
        if not trials.empty:
            sns.scatterplot(data=trials, x=cost.metric, y=other.metric, hue="trial kind",
                            hue_order=["feasible", "infeasible"],
                            palette={"feasible": "tab:blue", "infeasible": "lightgray"},
                            s=40, ax=ax, zorder=2)
        feasible = trials[trials["feasible"] & trials["duplicate_of"].isna()]
        if len(feasible):
            values = feasible[[cost.metric, other.metric]].to_numpy(dtype=float)
            front = feasible[pareto_mask(values, [cost.direction, other.direction])]
            front = front.sort_values(cost.metric, ascending=cost.direction == "minimize")
            ax.step(front[cost.metric], front[other.metric], where="post", color="tab:blue",
                    linewidth=1.5, zorder=1, label="Pareto front (feasible)")
        references = trials[trials["reference"]]
        if len(references):
            ax.scatter(references[cost.metric], references[other.metric], marker="s", s=90,
                       facecolors="none", edgecolors="black", zorder=3, label="reference")
        for row, label, marker, colour in ((results.knee, "knee", "D", "tab:orange"),
                                           (results.cheapest, "cheapest feasible", "*",
                                            "tab:red")):
            if row is not None:
                ax.scatter([row[cost.metric]], [row[other.metric]], marker=marker, s=160,
                           color=colour, zorder=4,
                           label=f"{label} (trial {int(row['trial'])})")
        values = trials[cost.metric].to_numpy(dtype=float)
        if len(values) and values.min() > 0 and values.max() / values.min() > 20:
            ax.set_xscale("log")
        ax.set(xlabel=f"{metric_label(cost.metric)}, {cost.direction}",
               ylabel=f"{metric_label(other.metric)}, {other.direction}",
               title=f"{results.study.name}: {int(results.trials['complete'].sum())} complete "
                     f"trials, {int(results.trials['feasible'].sum())} feasible")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def summary_metrics(results: SearchResults) -> dict[str, float]:
    """Counts and the cheapest feasible trial's metrics (``cheapest.<metric>``), and its cost
    relative to each reference configuration (``cost_ratio_to_trial_<n>``)."""
    trials = results.trials
    metrics = {"n_trials": float(len(trials)), "n_complete": float(trials["complete"].sum()),
               "n_feasible": float(trials["feasible"].sum()),
               "n_front": float(len(results.front))}
    if results.cheapest is not None:
        cost = results.search.cost_objective.metric
        metrics.update({f"cheapest.{m}": float(results.cheapest[m])
                        for m in results.search.metrics})
        for _, reference in trials[trials["reference"] & trials["complete"]].iterrows():
            metrics[f"cost_ratio_to_trial_{int(reference['trial'])}"] = float(
                results.cheapest[cost] / reference[cost])
    return metrics


def log_search_summary(results: SearchResults, figure, *, tracking_uri: str | None = None,
                       gallery_dir: str = "", enabled: bool = True) -> str | None:
    """Log the front figure, the trials and the front as one summary run of the search's
    experiment (params: the cheapest feasible and knee trials and the cheapest's settings);
    save the figure as ``<gallery_dir>/<study>_front.png`` when ``gallery_dir`` is set.
    Returns the summary run's id (``None`` when not ``enabled`` or nothing completed)."""
    if gallery_dir:
        folder = Path(gallery_dir)
        folder.mkdir(parents=True, exist_ok=True)
        figure.savefig(folder / f"{results.study.name}_front.png", dpi=100,
                       bbox_inches="tight")
    if not enabled or results.cheapest is None:
        print("summary not logged" + ("" if enabled else " (log=False)"))
        return None
    params = {"cheapest_trial": int(results.cheapest["trial"]),
              "knee_trial": int(results.knee["trial"]),
              "cost": results.search.cost_objective.metric}
    params.update({f"cheapest.{k}": results.cheapest[k] for k in results.search.space
                   if k in results.cheapest})
    keep = [c for c in (*results.columns, "status", "feasible", "run_id") if c in results.trials]
    run_id = log_summary(results.study.experiment, {"pareto_front": figure},
                         tables={"trials": results.trials[keep],
                                 "front": results.front[[*results.columns, "knee"]]},
                         params=params, metrics=summary_metrics(results),
                         tracking_uri=tracking_uri,
                         run_name=f"summary of search {results.study.name}")
    print(f"summary run {run_id}")
    return run_id


__all__ = [
    "SearchResults",
    "load_search",
    "log_search_summary",
    "plot_front",
    "search_results",
    "summary_metrics",
]
