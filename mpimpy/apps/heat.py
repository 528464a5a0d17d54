"""The 2-D heat equation by explicit finite differences (Zidan et al., Nature Electronics 1,
411 (2018), solve PDEs with the stencil products on memristor crossbars).

``du/dt = D (d2u/dx2 + d2u/dy2)`` on an ``n x n`` grid of interior points with spacing ``h``
and ``u = 0`` on the boundary (Dirichlet). Forward Euler with the 5-point Laplacian::

    u[t+1] = u[t] + r * (L @ u[t]),   r = D dt / h**2,   stable for r <= 1/4

where ``L`` is :func:`laplacian_2d` (entries -4 on the diagonal and 1 for each grid neighbour,
an integer matrix). Only the product ``L @ u`` goes to the crossbar; the scaling by ``r`` and
the addition stay digital. ``L`` is symmetric, so a row state ``u`` times ``L`` is ``L @ u``:
the matmul passed to :func:`heat_solve` computes ``x @ laplacian_2d(n)``. The grid is
flattened row-major: point ``(i, j)`` is element ``i * n + j``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpimpy.metrics import RE

from .matmul import resolve

#: Largest stable ``r = D dt / h**2`` of the explicit 2-D scheme.
MAX_STABLE_R = 0.25


def laplacian_2d(n: int) -> np.ndarray:
    """The 5-point Laplacian (times ``h**2``) of an ``n x n`` interior grid with zero
    Dirichlet boundaries: ``(n*n, n*n)``, -4 on the diagonal, 1 for each neighbour."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    one = -2.0 * np.eye(n) + np.eye(n, k=1) + np.eye(n, k=-1)  # 1-D second difference
    eye = np.eye(n)
    return np.kron(one, eye) + np.kron(eye, one)


def heat_solve(u0, steps: int, r: float = 0.2, matmul=None, check_stability: bool = True):
    """Forward-Euler time stepping of the heat equation from ``u0``.

    Args:
        u0: initial state ``(n, n)``, or a batch ``(B, n, n)`` (each solved independently, all
            in one product per step).
        steps: number of time steps.
        r: ``D dt / h**2``; at most :data:`MAX_STABLE_R` unless ``check_stability=False``.
        matmul: computes ``x @ laplacian_2d(n)``; default the exact product.

    Returns:
        The trajectory ``(steps + 1, *u0.shape)``, float64; element 0 is ``u0``.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim not in (2, 3) or u0.shape[-1] != u0.shape[-2]:
        raise ValueError(f"u0 must be (n, n) or (B, n, n), got shape {u0.shape}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not r > 0 or (check_stability and r > MAX_STABLE_R):
        raise ValueError(f"r must be in (0, {MAX_STABLE_R}] for a stable explicit scheme, got "
                         f"{r!r}")
    n = u0.shape[-1]
    mm = resolve(matmul, laplacian_2d(n))
    u = u0.reshape(-1, n * n)
    trajectory = np.empty((steps + 1, *u.shape))
    trajectory[0] = u
    for t in range(steps):
        u = u + r * np.asarray(mm(u), dtype=np.float64)
        trajectory[t + 1] = u
    return trajectory.reshape(steps + 1, *u0.shape)


def stencil_step(u, r: float = 0.2) -> np.ndarray:
    """One explicit step computed with the stencil directly (zero padding), for checks:
    ``u + r * (u[i-1, j] + u[i+1, j] + u[i, j-1] + u[i, j+1] - 4 u[i, j])``."""
    u = np.asarray(u, dtype=np.float64)
    p = np.pad(u, [(0, 0)] * (u.ndim - 2) + [(1, 1), (1, 1)])
    lap = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * u
    return u + r * lap


def initial_condition(n: int, kind: str = "hotspots", seed: int = 0) -> np.ndarray:
    """An ``n x n`` initial temperature field, peak 1.

    ``"hotspots"``: three Gaussian spots of random position, width and height (``seed``);
    ``"square"``: a hot square in the centre (a sharp edge, all frequencies);
    ``"mode"``: the slowest eigenmode ``sin(pi x) sin(pi y)`` (decays as one exponential).
    """
    x = (np.arange(n) + 1) / (n + 1)
    gx, gy = np.meshgrid(x, x, indexing="ij")
    if kind == "hotspots":
        rng = np.random.default_rng(seed)
        u = np.zeros((n, n))
        for _ in range(3):
            cx, cy = rng.uniform(0.25, 0.75, 2)
            width = rng.uniform(0.06, 0.15)
            u += rng.uniform(0.5, 1.0) * np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2)
                                                / (2 * width**2))
    elif kind == "square":
        u = ((np.abs(gx - 0.5) < 0.2) & (np.abs(gy - 0.5) < 0.2)).astype(np.float64)
    elif kind == "mode":
        u = np.sin(np.pi * gx) * np.sin(np.pi * gy)
    else:
        raise ValueError(f"kind must be 'hotspots', 'square' or 'mode', got {kind!r}")
    return u / u.max()


@dataclass
class HeatComparison:
    """A simulated trajectory against the exact one."""

    ideal: np.ndarray  # (steps + 1, n, n)
    simulated: np.ndarray
    relative_error: np.ndarray  # per step: ||u_sim - u|| / ||u||
    error_vs_initial: np.ndarray  # per step: ||u_sim - u|| / ||u0||

    @property
    def final_relative_error(self) -> float:
        return float(self.relative_error[-1])


def compare_trajectories(simulated, ideal) -> HeatComparison:
    """Per-step errors of a trajectory (``(steps + 1, ...)``) against the exact one."""
    simulated, ideal = np.asarray(simulated), np.asarray(ideal)
    axes = tuple(range(1, ideal.ndim))
    # a diverged trajectory (Inf, NaN) shows as such in its steps' errors
    rel = RE(ideal, simulated, axis=axes, nonfinite="propagate")
    err = np.sqrt(np.sum((simulated - ideal) ** 2, axis=axes))
    norm0 = float(np.sqrt(np.sum(ideal[0] ** 2)))
    return HeatComparison(ideal, simulated, np.atleast_1d(rel),
                          err / norm0 if norm0 > 0 else err)


__all__ = [
    "MAX_STABLE_R",
    "HeatComparison",
    "compare_trajectories",
    "heat_solve",
    "initial_condition",
    "laplacian_2d",
    "stencil_step",
]
