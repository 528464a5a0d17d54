"""Stage 3: program weight slices into memristor conductances.

A slice value ``v`` of width ``w`` becomes the level ``v * ((g_level - 1) // (2**w - 1))``
(``level_mapping="integer"``; the original mPimPy's ``"spread"`` rounds
``v / (2**w - 1) * (g_level - 1)``, see :func:`mpimpy.config.level_scale`) and the conductance
``G = LGS + level * (HGS - LGS) / (g_level - 1)`` (siemens). Non-idealities drawn
once, at programming time, and kept until the weights are programmed again:

* device-to-device variation: ``G *= exp(N(0, var))`` (a lognormal factor; var is its sigma);
* stuck-at faults: a ``stuck_fault_ratio`` of cells holds exactly LGS (``stuck_fault_value=0``)
  or HGS (``1``), whatever was written.

With ``mapping="offset"`` every slice (the sign slice included) lives on one array; with
``mapping="diffpair"`` a signed slice value is written to a G+ array when positive and to a G-
array when negative, and the sign slice needs no array. With ``mapping="bias"`` every slice of
the offset-binary weight lives on one array, and with ``unit_column=True`` every array gets one
more column at the far end of its word lines holding the bias (the offset-binary value of a
zero weight), ISAAC's unit column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import CrossbarConfig, TileShape, level_scale
from .slicing import bit_slices
from .tiling import n_tiles, tile_weights


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
        columns: the columns a read uses, as indices into the ``Tn * cols`` columns of one
            row-block of arrays side by side: the N weight columns in order, then the unit
            columns (one per column of arrays) if any. Padding columns are not read.
        unit_columns: how many of ``columns`` are unit columns (0, or Tn with
            ``unit_column=True``).
        reference_column: whether every array also has a reference column of LGS cells (the
            offset mapping), whose current is subtracted before the ADC.
    """

    positive: torch.Tensor
    negative: torch.Tensor | None
    slice_index: tuple[int, ...]
    shape: tuple[int, int]
    columns: torch.Tensor
    unit_columns: int = 0
    reference_column: bool = False

    @property
    def tile(self) -> TileShape:
        """The size of one physical array (its unit column included)."""
        return TileShape(self.positive.shape[-2], self.positive.shape[-1])

    @property
    def weight_columns_per_array(self) -> int:
        """Columns of one array that hold weights (the unit column excluded)."""
        return self.tile.cols - (1 if self.unit_columns else 0)


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
        slices: integers ``(n_slices, K, N)``, the weight matrix cut with the mapping's encoding
            (:attr:`CrossbarConfig.weight_encoding`): two's complement (offset), sign-magnitude
            (differential pair) or offset binary (bias).
        widths: the slice widths.
        cfg: hardware settings.
        tile: array size (weight columns; a unit column comes on top).
        generator: random source for variation and faults.
    """
    diffpair = cfg.mapping == "diffpair"
    check_widths(widths, cfg.g_level, "slice_method of the weights", skip_sign=diffpair)
    index = tuple(range(1 if diffpair else 0, len(widths)))
    scale = torch.tensor([level_scale(widths[i], cfg.g_level, cfg.level_mapping)
                          for i in index], dtype=torch.float64,
                         device=slices.device).view(-1, 1, 1)
    values = slices[list(index)].to(torch.float64)
    k, n = slices.shape[1:]
    columns = torch.arange(n, device=slices.device)
    unit_columns = 0
    if cfg.unit_column:
        # the bias is the offset-binary value of a zero weight, sliced like every weight
        bias = bit_slices(torch.zeros(1, 1, dtype=slices.dtype, device=slices.device), widths,
                          "offset_binary")[list(index)].to(torch.float64)  # (n_a, 1, 1)
        values, columns = _with_unit_columns(values, bias, tile)
        tile = TileShape(tile.rows, tile.cols + 1)
        unit_columns = n_tiles(n, tile.cols - 1)

    def levels(v):
        return torch.round(v * scale)

    if diffpair:
        positive = _conductance(tile_weights(levels(v=values.clamp(min=0)), tile), cfg, generator)
        negative = _conductance(tile_weights(levels(v=(-values).clamp(min=0)), tile), cfg,
                                generator)
    else:
        positive, negative = _conductance(tile_weights(levels(values), tile), cfg, generator), None
    return ProgrammedArrays(positive, negative, index, (k, n), columns, unit_columns,
                            reference_column=cfg.mapping == "offset")


def _with_unit_columns(values: torch.Tensor, bias: torch.Tensor, tile: TileShape):
    """Weight slices ``(n_a, K, N)`` with one unit column after every ``tile.cols`` columns.

    Returns the slices ``(n_a, K, Tn * (cols + 1))`` (the last column of arrays zero-padded
    before its unit column, so the unit column always sits at the far end of its word lines) and
    the read columns: the N weight columns, then the Tn unit columns.
    """
    n_a, k, n = values.shape
    tn = n_tiles(n, tile.cols)
    padded = torch.nn.functional.pad(values, (0, tn * tile.cols - n)).view(n_a, k, tn, tile.cols)
    unit = bias.view(n_a, 1, 1, 1).expand(n_a, k, tn, 1)
    with_unit = torch.cat([padded, unit], dim=-1).reshape(n_a, k, tn * (tile.cols + 1))
    weight_index = torch.arange(n, device=values.device)
    weight_columns = weight_index // tile.cols * (tile.cols + 1) + weight_index % tile.cols
    unit_index = torch.arange(tn, device=values.device) * (tile.cols + 1) + tile.cols
    return with_unit, torch.cat([weight_columns, unit_index])
