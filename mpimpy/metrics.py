"""Error metrics of a simulated product, with the original mPimPy's argument order.

Every function takes ``(ytest, ypred)`` as the original's ``utils.py`` does: ``ytest`` the
reference (the exact product) and ``ypred`` the prediction (the simulated product), and
normalizes by the first argument. (The original's README examples call ``RE(result,
rel_result)`` with the simulated result first, which normalizes by it; pass the exact result
first to normalize by the exact one, as mPimPy's own code does.) Both may be numpy arrays or
torch tensors of the same shape, on any device; the functions compute in float64 and return a
Python float. NaN or Inf inputs raise ``ValueError``; no function returns NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _pair(ytest, ypred):
    def as64(a, name):
        if isinstance(a, torch.Tensor):
            a = a.detach().to("cpu", torch.float64).numpy()
        a = np.asarray(a, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
        return a

    test, pred = as64(ytest, "ytest"), as64(ypred, "ypred")
    if test.shape != pred.shape:
        raise ValueError(
            f"ytest and ypred must have the same shape, got {test.shape} and {pred.shape}"
        )
    return test, pred


def RE(ytest, ypred) -> float:
    """Relative error ``||ytest - ypred||_2 / ||ytest||_2`` over all elements.

    An all-zero ``ytest`` gives 0.0 if ``ypred`` is also all zero, else ``inf``.
    """
    test, pred = _pair(ytest, ypred)
    err, ref = np.linalg.norm(test - pred), np.linalg.norm(test)
    if ref == 0:
        return 0.0 if err == 0 else math.inf
    return float(err / ref)


def SNR(ytest, ypred) -> float:
    """Signal-to-noise ratio in dB: ``10 log10(sum ytest**2 / sum (ytest - ypred)**2)``.

    An exact match gives ``inf``; an all-zero ``ytest`` with an error, ``-inf``.
    """
    test, pred = _pair(ytest, ypred)
    noise = float(np.sum((test - pred) ** 2))
    signal = float(np.sum(test**2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def ABSE(ytest, ypred) -> float:
    """Mean absolute relative error ``mean(|(ytest - ypred) / ytest|)`` over all elements.

    As in the original, every element counts. Where ``ytest == 0`` the relative error is 0 if
    ``ypred`` is 0 too and infinite otherwise, so one such element makes ABSE ``inf`` (never
    NaN); an empty array gives 0.0.
    """
    test, pred = _pair(ytest, ypred)
    if not test.size:
        return 0.0
    diff = np.abs(test - pred)
    zero = test == 0
    if np.any(diff[zero] > 0):
        return math.inf
    terms = np.divide(diff, np.abs(test), out=np.zeros_like(diff), where=~zero)
    return float(np.mean(terms))


def max_abs_error(ytest, ypred) -> float:
    """Largest absolute elementwise difference."""
    test, pred = _pair(ytest, ypred)
    return float(np.max(np.abs(test - pred))) if test.size else 0.0


def all_metrics(ytest, ypred) -> dict:
    """``{"RE", "SNR_dB", "ABSE", "max_abs_error"}`` in one dict (for logging), ``ytest`` the
    reference."""
    return {
        "RE": RE(ytest, ypred),
        "SNR_dB": SNR(ytest, ypred),
        "ABSE": ABSE(ytest, ypred),
        "max_abs_error": max_abs_error(ytest, ypred),
    }
