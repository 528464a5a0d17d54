"""Stage 5: reading arrays. (To be merged into crossbar.py.)"""

from __future__ import annotations

import torch

from .config import CrossbarConfig
from .devices import ProgrammedArrays
from .tiling import arrays_to_columns


def read_matrix(arrays: ProgrammedArrays, cfg: CrossbarConfig) -> torch.Tensor:
    """The matrix each read multiplies the DAC codes by, in conductance levels (float64).

    Offset mapping: ``(G - LGS) / level_step``, the reference column removing the LGS offset;
    differential pair: ``(G+ - G-) / level_step``. Shape ``(Tk, rows, n_arrays * Np)``,
    ``Np = Tn * cols``.
    """
    reference = cfg.LGS if arrays.negative is None else arrays.negative
    return arrays_to_columns((arrays.positive - reference) / cfg.level_step)


def read_noise_matrix(arrays: ProgrammedArrays, cfg: CrossbarConfig) -> torch.Tensor:
    """Sum of the squared conductances behind each output, in levels squared: the variance of a
    read's current is ``read_noise**2 * codes**2 @ this``."""
    squared = (arrays.positive / cfg.level_step) ** 2
    if arrays.negative is not None:
        squared = squared + (arrays.negative / cfg.level_step) ** 2
    return arrays_to_columns(squared)


def read_currents(codes, matrix, noise_matrix, read_noise, generator):
    """Column currents of every (input slice, array) pair, in code units.

    Args:
        codes: DAC codes ``(Tk, n_x * M, rows)``, slice-major.
        matrix: read matrix ``(Tk, rows, n_arrays * Np)``, array-major.
        noise_matrix: matching read-noise matrix, or ``None``.
        read_noise: relative standard deviation of every cell's conductance on every read.
        generator: random source of the read noise.

    Returns:
        ``(Tk, n_x * M, n_arrays * Np)``, i.e. ``(Tk, n_x, M, n_arrays, Np)`` flattened. With
        read noise each cell's conductance on each read is ``G * (1 + read_noise * N(0, 1))``,
        independently per cell and input vector; the sum of those Gaussian terms is drawn exactly
        as one Gaussian per output, with variance ``read_noise**2 * sum_k V_k**2 G_k**2``, so
        noise costs one more product, not one per cell.
    """
    currents = torch.bmm(codes, matrix)
    if noise_matrix is not None and read_noise > 0:
        std = torch.bmm(codes * codes, noise_matrix).sqrt_()
        noise = torch.randn(currents.shape, generator=generator, device=currents.device,
                            dtype=currents.dtype)
        currents.addcmul_(std, noise, value=read_noise)
    return currents
