"""Quality of an application's answer: image fidelity and rank agreement."""

from __future__ import annotations

import math

import numpy as np


def _as64(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().to("cpu").double().numpy()
    return np.asarray(a, dtype=np.float64)


def psnr(image, reference, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(peak**2 / mean((image - reference)**2))``.

    ``peak`` is the largest value the pixels can take (1.0 for images in [0, 1], 255 for
    8-bit). Identical images give ``inf``.
    """
    x, ref = _as64(image), _as64(reference)
    if x.shape != ref.shape:
        raise ValueError(f"image and reference differ in shape: {x.shape} vs {ref.shape}")
    if peak <= 0:
        raise ValueError(f"peak must be positive, got {peak!r}")
    mse = float(np.mean((x - ref) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def kendall_tau(a, b) -> float:
    """Kendall's tau-b rank correlation of two score vectors (ties handled as scipy does).

    ``(C - D) / sqrt((P - T_a) (P - T_b))`` over all pairs: C concordant, D discordant pairs,
    T_a / T_b pairs tied in ``a`` / ``b``. 1: the same order, -1: reversed. NaN when either
    vector is constant. O(n**2) memory; fine up to a few thousand elements.
    """
    x, y = _as64(a).ravel(), _as64(b).ravel()
    if x.shape != y.shape:
        raise ValueError(f"a and b differ in length: {x.size} vs {y.size}")
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


def top_k_overlap(a, b, k: int = 10) -> float:
    """Fraction of the ``k`` highest-scoring items of ``a`` that are among those of ``b``."""
    return len(set(top_k(a, k).tolist()) & set(top_k(b, k).tolist())) / k


def relative_error(x, reference, axis=None):
    """``||x - reference|| / ||reference||`` (2-norm), over all elements or along ``axis``
    (e.g. per time step); 0/0 gives 0, and a nonzero error on a zero reference inf."""
    x, ref = _as64(x), _as64(reference)
    if x.shape != ref.shape:
        raise ValueError(f"x and reference differ in shape: {x.shape} vs {ref.shape}")
    err = np.sqrt(np.sum((x - ref) ** 2, axis=axis))
    norm = np.sqrt(np.sum(ref**2, axis=axis))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(norm > 0, err / np.where(norm > 0, norm, 1), np.where(err > 0, np.inf, 0))
    return float(out) if np.ndim(out) == 0 else out


__all__ = ["kendall_tau", "psnr", "relative_error", "top_k", "top_k_overlap"]
