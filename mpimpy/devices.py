"""Stage 3: program weight slices into memristor conductances.

A slice value ``v`` of width ``w`` becomes the level ``round(v / (2**w - 1) * (g_level - 1))`` and
the conductance ``G = LGS + level * (HGS - LGS) / (g_level - 1)`` (siemens). Non-idealities drawn
once, at programming time, and kept until the weights are programmed again:

* device-to-device variation: ``G *= exp(N(0, var))`` (a lognormal factor; var is its sigma);
* stuck-at faults: a ``stuck_fault_ratio`` of cells holds exactly LGS (``stuck_fault_value=0``)
  or HGS (``1``), whatever was written.

With ``mapping="offset"`` every slice (the sign slice included) lives on one array; with
``mapping="diffpair"`` a signed slice value is written to a G+ array when positive and to a G-
array when negative, and the sign slice needs no array.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import CrossbarConfig, TileShape
from .tiling import tile_weights


@dataclass
class ProgrammedArrays:
    """Conductances of all arrays holding one weight operand.

    Attributes:
        positive: conductances in siemens, float64 ``(n_arrays, Tk, Tn, rows, cols)``: the weight
            arrays (offset mapping) or the G+ arrays (differential pair).
        negative: the G- arrays, same shape, or ``None`` for the offset mapping, whose reference
            column holds LGS.
        slice_index: for each array, the index of the weight slice it holds.
        shape: (K, N) of the weight matrix.
    """

    positive: torch.Tensor
    negative: torch.Tensor | None
    slice_index: tuple[int, ...]
    shape: tuple[int, int]

    @property
    def tile(self) -> TileShape:
        return TileShape(self.positive.shape[-2], self.positive.shape[-1])


def check_widths(widths, g_level: int, name: str, skip_sign: bool = False) -> None:
    """A slice of width w needs 2**w distinct levels; the device offers g_level."""
    for i, w in enumerate(widths):
        if skip_sign and i == 0:
            continue
        if 2**w > g_level:
            raise ValueError(
                f"{name}: a {w}-bit slice needs {2**w} conductance levels but g_level={g_level}; "
                f"use slices of at most {g_level.bit_length() - 1} bits or raise g_level"
            )


def _conductance(levels: torch.Tensor, cfg: CrossbarConfig, generator) -> torch.Tensor:
    """Integer levels -> conductances in siemens with variation and stuck-at faults."""
    g = cfg.LGS + levels * cfg.level_step
    if cfg.var > 0:
        noise = torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
        g = g * torch.exp(noise * cfg.var)
    if cfg.stuck_fault_ratio > 0:
        stuck = torch.rand(g.shape, generator=generator, device=g.device, dtype=g.dtype)
        stuck_at = cfg.HGS if cfg.stuck_fault_value == 1 else cfg.LGS
        g = torch.where(stuck < cfg.stuck_fault_ratio, torch.full_like(g, stuck_at), g)
    return g


def program(slices: torch.Tensor, widths, cfg: CrossbarConfig, tile: TileShape,
            generator: torch.Generator) -> ProgrammedArrays:
    """Write weight slices into arrays.

    Args:
        slices: integers ``(n_slices, K, N)``: two's complement slices (offset mapping) or
            signed-magnitude slices (differential pair) of the weight matrix.
        widths: the slice widths.
        cfg: hardware settings.
        tile: array size.
        generator: random source for variation and faults.
    """
    diffpair = cfg.mapping == "diffpair"
    check_widths(widths, cfg.g_level, "slice_method of the weights", skip_sign=diffpair)
    index = tuple(range(1 if diffpair else 0, len(widths)))
    full_scale = torch.tensor([2 ** widths[i] - 1 for i in index], dtype=torch.float64,
                              device=slices.device).view(-1, 1, 1)
    values = slices[list(index)].to(torch.float64)

    def levels(v):
        return torch.round(v / full_scale * (cfg.g_level - 1))

    if diffpair:
        positive = _conductance(tile_weights(levels(v=values.clamp(min=0)), tile), cfg, generator)
        negative = _conductance(tile_weights(levels(v=(-values).clamp(min=0)), tile), cfg,
                                generator)
    else:
        positive, negative = _conductance(tile_weights(levels(values), tile), cfg, generator), None
    return ProgrammedArrays(positive, negative, index, tuple(slices.shape[1:]))
