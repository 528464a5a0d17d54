"""Pareto fronts against a brute-force definition of domination."""

import itertools

import numpy as np
import pandas as pd
import pytest

from mpimpy.studies.pareto import front_table, knee, pareto_mask


def brute_force_front(values, directions):
    sign = np.array([1 if d == "minimize" else -1 for d in directions])
    costs = [np.asarray(v) * sign for v in values]
    keep = []
    for i, a in enumerate(costs):
        dominated = any(all(b <= a) and any(b < a) for j, b in enumerate(costs) if j != i)
        keep.append(not dominated)
    return np.array(keep)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("directions", [("minimize", "minimize"), ("maximize", "minimize"),
                                        ("maximize", "minimize", "minimize")])
def test_front_equals_brute_force(seed, directions):
    rng = np.random.default_rng(seed)
    # a small grid with ties, as a grid study gives
    values = rng.integers(0, 6, size=(40, len(directions))).astype(float)
    assert np.array_equal(pareto_mask(values, directions), brute_force_front(values, directions))


def test_front_of_a_grid_of_configurations():
    # accuracy rises and energy rises with ADC bits; 8 bits at 64 x 64 is dominated by 8 bits
    # at 128 x 128 here
    grid = list(itertools.product([4, 6, 8], [64, 128]))
    accuracy = {(4, 64): 0.90, (4, 128): 0.88, (6, 64): 0.95, (6, 128): 0.95, (8, 64): 0.97,
                (8, 128): 0.97}
    energy = {(4, 64): 1.0, (4, 128): 0.8, (6, 64): 2.0, (6, 128): 1.5, (8, 64): 4.0,
              (8, 128): 3.0}
    frame = pd.DataFrame([{"bits": b, "rows": r, "accuracy": accuracy[b, r],
                           "energy": energy[b, r]} for b, r in grid])
    front = front_table(frame, {"accuracy": "maximize", "energy": "minimize"})
    assert sorted(zip(front.bits, front.rows, strict=True)) == [(4, 64), (4, 128), (6, 128),
                                                                (8, 128)]
    assert front["knee"].sum() == 1
    feasible = front_table(frame.assign(ok=frame.accuracy >= 0.95),
                           {"accuracy": "maximize", "energy": "minimize"}, feasible="ok")
    assert set(zip(feasible.bits, feasible.rows, strict=True)) == {(6, 128), (8, 128)}


def test_knee_is_the_balanced_point():
    values = np.array([[0.0, 10.0], [1.0, 1.0], [10.0, 0.0], [5.0, 5.0]])
    assert knee(values, ("minimize", "minimize")) == 1


def test_bad_objectives_are_refused():
    with pytest.raises(ValueError, match="directions"):
        pareto_mask([[1.0]], ["smaller"])
    with pytest.raises(ValueError, match="finite"):
        pareto_mask([[np.nan, 1.0]], ["minimize", "minimize"])
    with pytest.raises(ValueError, match="n_points, 2"):
        pareto_mask([1.0, 2.0], ["minimize", "minimize"])
