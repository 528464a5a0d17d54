"""Error metrics of a simulated product against its ideal value, as the original mPimPy has them.

All functions take numpy arrays or torch tensors of the same shape (any device), compute in
float64 and return a Python float.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _pair(y_sim, y_ideal):
    def as64(a, name):
        if isinstance(a, torch.Tensor):
            a = a.detach().to("cpu", torch.float64).numpy()
        a = np.asarray(a, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
        return a

    sim, ideal = as64(y_sim, "y_sim"), as64(y_ideal, "y_ideal")
    if sim.shape != ideal.shape:
        raise ValueError(
            f"y_sim and y_ideal must have the same shape, got {sim.shape} and {ideal.shape}"
        )
    return sim, ideal


def RE(y_sim, y_ideal) -> float:
    """Relative error ``||y_sim - y_ideal||_2 / ||y_ideal||_2`` over all elements.

    An all-zero ``y_ideal`` gives 0.0 if ``y_sim`` is also all zero, else ``inf``.
    """
    sim, ideal = _pair(y_sim, y_ideal)
    err, ref = np.linalg.norm(sim - ideal), np.linalg.norm(ideal)
    if ref == 0:
        return 0.0 if err == 0 else math.inf
    return float(err / ref)


def SNR(y_sim, y_ideal) -> float:
    """Signal-to-noise ratio in dB: ``10 log10(sum y_ideal**2 / sum (y_ideal - y_sim)**2)``.

    An exact match gives ``inf``.
    """
    sim, ideal = _pair(y_sim, y_ideal)
    noise = float(np.sum((ideal - sim) ** 2))
    signal = float(np.sum(ideal**2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def ABSE(y_sim, y_ideal) -> float:
    """Mean absolute relative error ``mean(|(y_ideal - y_sim) / y_ideal|)``.

    Elements where ``y_ideal == 0`` have no relative error and are left out of the mean;
    if every element is zero the result is 0.0 when ``y_sim`` matches and ``inf`` otherwise.
    """
    sim, ideal = _pair(y_sim, y_ideal)
    nonzero = ideal != 0
    if not nonzero.any():
        return 0.0 if np.array_equal(sim, ideal) else math.inf
    return float(np.mean(np.abs((ideal[nonzero] - sim[nonzero]) / ideal[nonzero])))


def max_abs_error(y_sim, y_ideal) -> float:
    """Largest absolute elementwise difference."""
    sim, ideal = _pair(y_sim, y_ideal)
    return float(np.max(np.abs(sim - ideal))) if sim.size else 0.0


def all_metrics(y_sim, y_ideal) -> dict:
    """``{"RE", "SNR_dB", "ABSE", "max_abs_error"}`` in one dict (for logging)."""
    return {
        "RE": RE(y_sim, y_ideal),
        "SNR_dB": SNR(y_sim, y_ideal),
        "ABSE": ABSE(y_sim, y_ideal),
        "max_abs_error": max_abs_error(y_sim, y_ideal),
    }
