"""Drift compensation: one digital gain per array, calibrated with a known input.

``drift_compensation="global"`` follows aihwkit's global drift compensation
(``GlobalDriftCompensation``, ``src/aihwkit/inference/compensation/drift.py``, applied by its
inference tiles): right after programming the array is read with a known input, each word line
alone at full scale (aihwkit's one-hot read-out ``eye(in_size)``), and the read-out is kept;
at the time of inference the same read-out is repeated, and the array's outputs are multiplied
by the gain that maps the new read-out back onto the first. mPimPy calibrates every physical
array (each weight slice, row-block and column-block) separately, since arrays holding
different slices hold different levels and so drift differently, and applies the gain
digitally, after the ADC.

The one-hot read-out of an array gives each cell's contribution ``m`` (its entry of the read
matrix: levels after the reference column, IR drop included). aihwkit's gain is the ratio of
the mean absolute read-outs, ``sum |m_0| / sum |m_t|``; mPimPy's is the least-squares fit
``sum m_0^2 / sum m_0 m_t``. They agree for a common drift factor, but with LGS > 0 the cells
at level 0 drift apart by zero-mean amounts whose absolute values inflate ``sum |m_t|``
(about -2 % of gain after ten years with the ``pcm`` model and LGS = HGS / 100), while the fit
weights each cell by its programmed value, as a product with inputs uncorrelated across word
lines does. The read-outs are taken as exact: averaging over ``rows x cols`` cells makes their
read noise and ADC rounding negligible.

Cost per calibration (once right after programming, once per time read): ``rows`` reads of
every array and ``rows * cols`` conversions, ``rows * cols`` stored baseline values per array
and two multiply-accumulates per cell; then one multiplication per converted output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from . import ProgrammedArrays


def array_of_columns(arrays: ProgrammedArrays) -> torch.Tensor:
    """For each read column of a row-block (:attr:`ProgrammedArrays.columns`: the N weight
    columns, then the unit columns), the index of its column of arrays, ``(C,)`` int64."""
    n = arrays.shape[1]
    weight = torch.arange(n, device=arrays.positive.device) // arrays.weight_columns_per_array
    unit = torch.arange(arrays.unit_columns, device=arrays.positive.device)
    return torch.cat([weight, unit])


def per_array(values: torch.Tensor, arrays: ProgrammedArrays) -> torch.Tensor:
    """Sum of ``values`` ``(Tk, rows, n_a * C)`` (a read matrix's shape) over the cells of
    every array, float64 ``(Tk, n_a, Tn)``."""
    tk, _, width = values.shape
    n_a = len(arrays.slice_index)
    columns = values.double().sum(1).view(tk, n_a, width // n_a)  # (Tk, n_a, C)
    readout = torch.zeros(tk, n_a, arrays.positive.shape[2], dtype=torch.float64,
                          device=values.device)
    return readout.index_add_(2, array_of_columns(arrays), columns)


def global_drift_gain(now: torch.Tensor, baseline: torch.Tensor, arrays: ProgrammedArrays
                      ) -> torch.Tensor:
    """Gain of every read column, float64 ``(Tk, n_a * C)``.

    For each array, ``sum m_0^2 / sum m_0 m_t`` over its cells, ``m_0`` and ``m_t`` the read
    matrices ``baseline`` (right after programming) and ``now`` (at the time read), both
    ``(Tk, rows, n_a * C)`` (:func:`mpimpy.crossbar.read_matrix`); 1 for an array that held
    nothing (or whose read-out no longer correlates with its baseline).
    """
    baseline, now = baseline.double(), now.double()
    power, overlap = per_array(baseline * baseline, arrays), per_array(baseline * now, arrays)
    gain = torch.where(overlap > 0, power / overlap.clamp(min=1e-300), torch.ones_like(power))
    owner = array_of_columns(arrays)
    tk, n_a, _ = gain.shape
    return gain.index_select(2, owner).reshape(tk, n_a * len(owner))


def calibration_cost(arrays: ProgrammedArrays) -> dict[str, int]:
    """What one calibration of ``drift_compensation="global"`` costs for ``arrays``: the
    one-hot reads (``rows`` per physical array; a G+/G- pair is read together), the ADC
    conversions they take (every read converts the array's read columns) and the baseline
    values kept (one per cell read)."""
    n_a, tk, tn, rows, _ = arrays.positive.shape
    arrays_read = n_a * tk * tn
    converted = n_a * tk * len(arrays.columns)  # columns read, over all arrays
    return {"array_reads": arrays_read * rows, "conversions": converted * rows,
            "baseline_values": converted * rows}
