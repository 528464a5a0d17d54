"""ISAAC-CE set up on the engine: the product whose cost :mod:`mpimpy.cost` checks against
ISAAC's published figures (:data:`mpimpy.cost.ISAAC_TABLE_1`, :func:`mpimpy.cost.ima_figures`).

It sits above the engine, so that the cost model, which the engine calls after every product,
does not import the engine::

    from mpimpy import cost, isaac
    report = cost.estimate(*isaac.isaac_workload(128, 128))
"""

from __future__ import annotations

import torch

from .engine import DPETensor
from .slicing import SlicedData


def isaac_workload(k: int = 128, n: int = 128, vectors: int = 64, unit_column: bool = True,
                   seed: int = 0):
    """A product set up as ISAAC-CE, ready for :func:`mpimpy.cost.estimate`: ``(engine, x, mat)``.

    128 x 128 arrays of 2-bit cells (``g_level=4``), 16-bit weights in eight 2-bit cells stored
    with a bias of 2**15 (``mapping="bias"``, slices ``[2] * 8``; ``unit_column``: ISAAC's
    129th column), 16-bit inputs fed bit by bit through 1-bit DACs (``rdac=2``, slices
    ``[1] * 16``), an 8-bit ADC; no noise. ``k = n = 128`` fills one IMA, ``k=384, n=512`` the
    12 IMAs of one tile. Data: ``vectors x k`` and ``k x n`` standard normal, from ``seed``.
    """
    engine = DPETensor(mapping="bias", unit_column=unit_column, g_level=4, var=0.0,
                       vnoise=0.0, rdac=2, radc=2**8, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = SlicedData([1] * 16, paral_size=(128, 128)).slice_data_imp(
        engine, torch.randn(vectors, k, generator=gen, dtype=torch.float64), transpose=True)
    mat = SlicedData([2] * 8, paral_size=(128, 128), is_weight=True).slice_data_imp(
        engine, torch.randn(k, n, generator=gen, dtype=torch.float64))
    return engine, x, mat


__all__ = ["isaac_workload"]
