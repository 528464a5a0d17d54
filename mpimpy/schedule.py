"""What one product did on the hardware (:class:`Schedule`), read off the engine's own tensors.

The engine builds one :class:`Schedule` per product (:func:`product_schedule`) from the DAC
codes it drove and the arrays it read; :mod:`mpimpy.cost` prices it without knowing the
engine. A schedule holds counts, never costs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .crossbar import read_power
from .peripherals import read_slices

if TYPE_CHECKING:
    from .config import CrossbarConfig
    from .devices import ProgrammedArrays


@dataclass(frozen=True)
class Schedule:
    """What one simulated product did on the hardware: counts, not costs.

    Built by the engine from the tensors it computed with (see
    :meth:`mpimpy.engine.DPETensor.MapReduceDot`).

    Attributes:
        vectors: input vectors ``M`` (the rows of ``x``, batch dims folded in).
        k, n: contraction length and output columns.
        rows, cols: word lines and weight columns of one array (``paral_size``).
        row_blocks, column_blocks: ``Tk = ceil(K / rows)``, ``Tn = ceil(N / cols)``.
        word_lines: word lines driven per column block, over all row-blocks (``K``: the
            padding rows of the last row-block carry no input).
        input_widths: the widths of the input slices driven, one read each (a sign-magnitude
            input's sign slice is its voltage's polarity, not a read).
        input_bits: bits of each input.
        weight_widths: the weight slice widths.
        arrays_per_group: arrays per (row-block, column block): one per weight slice that has
            an array (a differential pair counts as one array of ``2 * cols`` columns sharing
            its word lines).
        array_columns: physical columns of one array (weight columns, G- columns, a reference
            or a unit column).
        converted_columns: columns each (row-block, slice array) read converts, over all
            column blocks: ``N``, plus ``Tn`` unit columns.
        unit_columns: how many of those are unit columns.
        dac_bits, adc_bits: converter resolutions (an ideal converter is costed at the
            resolution that loses nothing).
        mapping: the weight mapping's name.
        digital_bias: the bias of offset-binary weights was removed by digital sums of the
            inputs (``mapping="bias"`` without unit columns).
        input_bias: the bias of offset-binary inputs was removed digitally (one subtraction
            per output per row-block).
        removes_bias: the mapping stores a bias that one more digital stage removes after the
            shift-add (by a unit column's result or the digital bias).
        array_power: ``sum over reads of V @ A @ V`` in watts (``sum V^2 G`` for ideal wires),
            or ``None`` if the product was run without measuring it.
        cells_written: cells this product programmed (0 when the weights were already held).
        input_max_finder: the inputs' scales were found from the data (a digital max-finder
            compares every input element of its block: per vector, per tile, or block floating
            point's exponents); ``False`` for a static input range, fixed before the data.
    """

    vectors: int
    k: int
    n: int
    rows: int
    cols: int
    row_blocks: int
    column_blocks: int
    word_lines: int
    input_widths: tuple[int, ...]
    input_bits: int
    weight_widths: tuple[int, ...]
    arrays_per_group: int
    array_columns: int
    converted_columns: int
    unit_columns: int
    dac_bits: int
    adc_bits: int
    mapping: str
    digital_bias: bool
    input_bias: bool
    removes_bias: bool
    array_power: float | None
    cells_written: int
    input_max_finder: bool = True

    @property
    def macs(self) -> int:
        return self.vectors * self.k * self.n

    def merge(self, other: Schedule) -> Schedule:
        """Two products on the same arrays, one after the other, as one schedule."""
        same = {f.name for f in dataclasses.fields(self)} - {
            "vectors", "array_power", "cells_written"}
        differ = [name for name in sorted(same) if getattr(self, name) != getattr(other, name)]
        if differ:
            raise ValueError(f"cannot merge schedules of different products: {differ} differ")
        power = None if self.array_power is None or other.array_power is None else \
            self.array_power + other.array_power
        return dataclasses.replace(self, vectors=self.vectors + other.vectors, array_power=power,
                                   cells_written=self.cells_written + other.cells_written)


def converter_bits(levels: int | None, slice_bits: int | None, full_levels: float | None = None,
                   bipolar: bool = False) -> int:
    """Resolution in bits of a converter with ``levels`` levels; an ideal one (``None``) is
    costed at what loses nothing: ``slice_bits`` for a DAC, enough bits for ``full_levels``
    (one more for a bipolar ADC) for an ADC."""
    if levels is not None:
        return max(1, math.ceil(math.log2(levels)))
    if slice_bits is not None:
        return int(slice_bits)
    return max(1, math.ceil(math.log2(full_levels + 1))) + (1 if bipolar else 0)


def product_schedule(cfg: CrossbarConfig, input_widths, weight_widths,
                     arrays: ProgrammedArrays, codes: torch.Tensor, dac_full: list[float],
                     fresh: bool, drive: torch.Tensor | None = None,
                     static_input: bool = False) -> Schedule:
    """The :class:`Schedule` of one product, read off its own tensors.

    Args:
        cfg: the hardware settings.
        input_widths, weight_widths: the slice widths of ``x`` and of the weights.
        arrays: the programmed arrays read.
        codes: the DAC codes driven, ``(Tk, word lines, M, n_x)``.
        dac_full: the DAC's full-scale code of each input slice read ``(n_x,)``.
        fresh: this product programmed the weights (its cells were written).
        drive: the row-blocks' admittance (:func:`mpimpy.crossbar.read_matrix`), to measure
            the power the reads dissipate; ``None``: not measured.
        static_input: the inputs were quantized against a static range (no max-finder).
    """
    mapping = cfg.weight_mapping
    tk, _, m, _ = codes.shape
    n_a, _, tn, rows, cols = arrays.positive.shape
    k, n = arrays.shape
    power = None
    if drive is not None:
        volts_per_code = torch.tensor([cfg.vread / f for f in dac_full], dtype=torch.float64)
        power = read_power(codes, drive, volts_per_code)
    full_levels = max(dac_full) * rows * (cfg.g_level - 1)  # the largest current, in codes
    driven = [input_widths[i] for i in read_slices(input_widths, cfg.input_encoding)]
    bipolar_dac = cfg.input_encoding == "sign_magnitude"  # one more bit: the polarity
    return Schedule(
        vectors=m, k=k, n=n, rows=rows, cols=arrays.weight_columns_per_array,
        row_blocks=tk, column_blocks=tn, word_lines=k, input_widths=tuple(driven),
        input_bits=sum(input_widths), weight_widths=tuple(weight_widths),
        arrays_per_group=n_a, array_columns=mapping.array_columns(cols),
        converted_columns=len(arrays.columns), unit_columns=arrays.unit_columns,
        dac_bits=converter_bits(cfg.rdac, max(driven)) + (1 if bipolar_dac else 0),
        adc_bits=converter_bits(cfg.radc, None, full_levels, bipolar=cfg.bipolar_adc),
        mapping=mapping.name, digital_bias=mapping.digital_bias,
        input_bias=cfg.input_encoding == "offset_binary", removes_bias=mapping.stores_bias,
        array_power=power,
        cells_written=arrays.positive.numel() * (2 if mapping.pair else 1) if fresh else 0,
        input_max_finder=not static_input)


__all__ = ["Schedule", "converter_bits", "product_schedule"]
