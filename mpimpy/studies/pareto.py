"""Pareto fronts of study results: which configurations no other beats on every objective.

A configuration *dominates* another when it is at least as good on every objective and strictly
better on one; the front is the set of configurations nobody dominates. Objectives are named
with a direction, ``{"SNR_dB": "maximize", "energy_per_mac_pJ": "minimize"}``. Used by the
co-design notebooks (accuracy against energy) and by search studies.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DIRECTIONS = ("minimize", "maximize")


def _costs(values, directions) -> np.ndarray:
    """Objective values as costs to minimize, ``(n_points, n_objectives)``, finite."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(directions):
        raise ValueError(f"values must be (n_points, {len(directions)}) for {len(directions)} "
                         f"objectives, got shape {values.shape}")
    for d in directions:
        if d not in DIRECTIONS:
            raise ValueError(f"objective directions must be one of {DIRECTIONS}, got {d!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError("objective values must be finite (drop failed or infeasible points "
                         "first)")
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return values * sign


def pareto_mask(values, directions) -> np.ndarray:
    """Boolean mask of the non-dominated points.

    Args:
        values: ``(n_points, n_objectives)`` objective values.
        directions: ``"minimize"`` or ``"maximize"`` per objective.

    Returns:
        ``(n_points,)`` bool: True where no other point is at least as good on every objective
        and better on one. Points with identical values are all kept. Vectorized: one
        comparison of every pair (``O(n^2 m)``, fine for the thousands of points of a study).
    """
    costs = _costs(values, directions)
    if not len(costs):
        return np.zeros(0, dtype=bool)
    no_worse = (costs[:, None, :] <= costs[None, :, :]).all(-1)  # [j, i]: j no worse than i
    better = (costs[:, None, :] < costs[None, :, :]).any(-1)
    dominated = (no_worse & better).any(0)
    return ~dominated


def knee(values, directions) -> int:
    """Index of the front's knee: the non-dominated point closest (Euclidean, after scaling
    each objective to [0, 1] over the front) to the ideal point that is best on every
    objective; the usual compromise between accuracy and cost."""
    costs = _costs(values, directions)
    front = np.flatnonzero(pareto_mask(values, directions))
    if not len(front):
        raise ValueError("no points")
    sub = costs[front]
    low, high = sub.min(0), sub.max(0)
    span = np.where(high > low, high - low, 1.0)
    distance = np.linalg.norm((sub - low) / span, axis=1)
    return int(front[np.argmin(distance)])


def front_table(frame, objectives: Mapping[str, str], feasible=None):
    """The Pareto front of a pandas DataFrame, sorted by the first objective.

    Args:
        frame: one row per configuration, a column per objective.
        objectives: ``{column: "minimize" | "maximize"}``.
        feasible: optional boolean column name or mask; infeasible rows are left out.

    Returns:
        The front's rows (a copy) with a boolean column ``knee``.
    """
    rows = frame
    if feasible is not None:
        mask = frame[feasible] if isinstance(feasible, str) else feasible
        rows = frame[np.asarray(mask, dtype=bool)]
    names = list(objectives)
    rows = rows.dropna(subset=names)
    if rows.empty:
        return rows.assign(knee=[])
    values = rows[names].to_numpy(dtype=np.float64)
    directions = [objectives[n] for n in names]
    front = rows[pareto_mask(values, directions)].copy()
    front["knee"] = False
    front.loc[rows.index[knee(values, directions)], "knee"] = True
    ascending = objectives[names[0]] == "minimize"
    return front.sort_values(names[0], ascending=ascending)


__all__ = ["DIRECTIONS", "front_table", "knee", "pareto_mask"]
