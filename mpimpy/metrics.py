"""Error and agreement metrics, every one taking ``(reference, measured)``.

The reference (the exact answer) comes first and the measured value (the simulated one)
second, and relative metrics normalize by the reference: the order of the original mPimPy's
``utils.py``, whose names ``RE``, ``SNR`` and ``ABSE`` take ``(ytest, ypred)``. (The
original's README examples call ``RE(result, rel_result)`` with the simulated result first,
which normalizes by it; pass the exact result first, as mPimPy's own code does.) Inputs may be
numpy arrays or torch tensors, on any device; the functions compute in float64.

Of a simulated product (one Python float each; NaN or Inf inputs raise ``ValueError`` naming
the argument, and no function returns NaN, unless :func:`RE` is told to let them through):

* :func:`RE`: relative error ``||ytest - ypred|| / ||ytest||``, also along an ``axis``;
* :func:`SNR`: signal-to-noise ratio in dB; :func:`ABSE`: mean absolute relative error;
* :func:`max_abs_error`; :func:`all_metrics`: the four in one dict, as logged.

Of an application's answer (:mod:`mpimpy.apps`; symmetric, so the order cannot change them):

* :func:`psnr`: peak signal-to-noise ratio of an image in dB;
* :func:`kendall_tau`, :func:`top_k`, :func:`top_k_overlap`: agreement of rankings.

:func:`relative_error` is :func:`RE` under the name and the ``(x, reference)`` order
``mpimpy.apps`` gave it before: it warns, naming :func:`RE` and its order.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

#: What :func:`RE` does with NaN or Inf in its inputs.
NONFINITE_POLICIES = ("raise", "propagate")


def _as64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


def _same_shape(reference, measured, names=("ytest", "ypred")):
    """Both as float64 arrays, or ``ValueError`` naming them when their shapes differ."""
    ref, meas = _as64(reference), _as64(measured)
    if ref.shape != meas.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {ref.shape} "
                         f"and {meas.shape}")
    return ref, meas


def _pair(ytest, ypred):
    """Both as float64 arrays of one shape, or ``ValueError`` naming the one with NaN or Inf."""
    test, pred = _same_shape(ytest, ypred)
    for a, name in ((test, "ytest"), (pred, "ypred")):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
    return test, pred


def RE(ytest, ypred, axis=None, nonfinite: str = "raise"):
    """Relative error ``||ytest - ypred||_2 / ||ytest||_2``.

    Over all elements (a float), or along ``axis`` (an int or a tuple: the norms over those
    axes, an array of the other axes' shape, e.g. one error per time step). A zero ``ytest``
    gives 0.0 if ``ypred`` is zero too, else ``inf``. ``nonfinite``: ``"raise"`` (default),
    NaN or Inf in either input raise ``ValueError``; ``"propagate"``, they give NaN or Inf
    errors where they are (a simulation that diverged).
    """
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    test, pred = _pair(ytest, ypred) if nonfinite == "raise" else _same_shape(ytest, ypred)
    diff = test - pred
    if axis is None:  # one BLAS dot each, as RE always computed them
        err, ref = np.linalg.norm(diff), np.linalg.norm(test)
    else:
        err, ref = np.sqrt(np.sum(diff**2, axis=axis)), np.sqrt(np.sum(test**2, axis=axis))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ref == 0, np.where(err > 0, math.inf, err), err / ref)
    return float(out) if out.ndim == 0 else out


def relative_error(x, reference, axis=None):
    """``RE(reference, x, axis, nonfinite="propagate")``: the measured ``x`` first, as
    ``mpimpy.apps.relative_error`` took it. Warns (``DeprecationWarning``): call :func:`RE`
    with the reference first, the order of every metric here."""
    warnings.warn("relative_error(x, reference) takes the measured value first; use "
                  "mpimpy.metrics.RE(reference, measured, axis=...), the reference first as "
                  "every metric", DeprecationWarning, stacklevel=2)
    return RE(reference, x, axis=axis, nonfinite="propagate")


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


def psnr(reference, image, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(peak**2 / mean((image - reference)**2))``.

    ``peak`` is the largest value the pixels can take (1.0 for images in [0, 1], 255 for
    8-bit). Identical images give ``inf``.
    """
    ref, x = _same_shape(reference, image, ("reference", "image"))
    if peak <= 0:
        raise ValueError(f"peak must be positive, got {peak!r}")
    mse = float(np.mean((x - ref) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def kendall_tau(reference, measured) -> float:
    """Kendall's tau-b rank correlation of two score vectors (ties handled as scipy does).

    ``(C - D) / sqrt((P - T_r) (P - T_m))`` over all pairs: C concordant, D discordant pairs,
    T_r / T_m pairs tied in ``reference`` / ``measured``. 1: the same order, -1: reversed.
    NaN when either vector is constant. O(n**2) memory; fine up to a few thousand elements.
    """
    x, y = _as64(reference).ravel(), _as64(measured).ravel()
    if x.shape != y.shape:
        raise ValueError(f"reference and measured differ in length: {x.size} vs {y.size}")
    if x.size < 2:
        return math.nan
    upper = np.triu_indices(x.size, k=1)
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    denominator = math.sqrt(float(np.sum(sx * sx)) * float(np.sum(sy * sy)))
    if denominator == 0:
        return math.nan
    return float(np.sum(sx * sy) / denominator)


def top_k(scores, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, largest first (ties: the lower index first)."""
    s = _as64(scores).ravel()
    if not 1 <= k <= s.size:
        raise ValueError(f"k must be in [1, {s.size}], got {k!r}")
    return np.argsort(-s, kind="stable")[:k]


def top_k_overlap(reference, measured, k: int = 10) -> float:
    """Fraction of the ``k`` highest-scoring items of ``reference`` that are among those of
    ``measured`` (both sets hold ``k`` items: symmetric)."""
    return len(set(top_k(reference, k).tolist()) & set(top_k(measured, k).tolist())) / k


__all__ = ["ABSE", "NONFINITE_POLICIES", "RE", "SNR", "all_metrics", "kendall_tau",
           "max_abs_error", "psnr", "relative_error", "top_k", "top_k_overlap"]
