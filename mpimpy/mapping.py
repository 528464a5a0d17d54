"""How signed weights live on conductances: one class per mapping, each saying what it stores,
how it reads, what bias it removes and what it costs.

A mapping is chosen by name (``CrossbarConfig.mapping``) from :data:`MAPPINGS`; the stages ask
the :class:`Mapping` object (``CrossbarConfig.weight_mapping``) instead of testing the name:

* **store** (:func:`mpimpy.devices.program`): the encoding the weights are sliced with
  (:attr:`Mapping.weight_encoding`), which slices get arrays (:meth:`Mapping.stored_slices`),
  and how a signed slice value becomes the levels of one array or of a G+/G- pair
  (:meth:`Mapping.split`);
* **read** (:mod:`mpimpy.crossbar`): a reference column of LGS cells subtracted per array
  (:attr:`Mapping.reference_column`), ``G+ - G-`` of a pair, or the raw ``G`` whose LGS
  current every cell adds (:attr:`Mapping.holds_lgs`); whether currents take both signs
  (:attr:`Mapping.bipolar`);
* **remove** (:mod:`mpimpy.engine`, after the shift-add): the bias of offset-binary weights,
  digitally from the input sums or by each array's unit column (:meth:`Mapping.remove_bias`);
* **cost** (:mod:`mpimpy.schedule`): the physical columns of one array
  (:meth:`Mapping.array_columns`) and whether a digital stage removes a bias.

A new mapping is one subclass of :class:`Mapping` added to :data:`MAPPINGS`.

This module depends on torch only, so that :mod:`mpimpy.config` validates a mapping's name
and options against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class Mapping:
    """A weight mapping; its class attributes say what it stores and how it reads.

    Attributes:
        unit_column: only for mappings that store a bias (:attr:`stores_bias`): every array
            has one more column holding the bias, whose result is subtracted from its array's
            columns (ISAAC's unit column) instead of a digital correction.
    """

    #: the name in ``CrossbarConfig.mapping``
    name: ClassVar[str]
    #: how weights are cut into slices (:data:`mpimpy.slicing.ENCODINGS`)
    weight_encoding: ClassVar[str]
    #: the weight widths start with a 1-bit sign slice (two's complement, sign-magnitude)
    sign_slice: ClassVar[bool] = True
    #: the sign slice is programmed into an array of its own (not for sign-magnitude pairs,
    #: whose sign decides between G+ and G-)
    sign_array: ClassVar[bool] = True
    #: every slice lives on a G+ / G- pair of arrays sharing word lines, ``I = V @ (G+ - G-)``
    pair: ClassVar[bool] = False
    #: every array has a reference column of LGS cells, its current subtracted before the ADC
    reference_column: ClassVar[bool] = False
    #: a read holds the LGS current of every cell (no reference, no pair removes it)
    holds_lgs: ClassVar[bool] = False
    #: column currents take both signs: the ADC is bipolar
    bipolar: ClassVar[bool] = False
    #: the stored weights carry a bias that is removed after the shift-add
    stores_bias: ClassVar[bool] = False

    unit_column: bool = False

    def __post_init__(self):
        if not isinstance(self.unit_column, bool):
            raise TypeError(f"unit_column must be True or False, got {self.unit_column!r}")
        if self.unit_column and not self.stores_bias:
            biased = [n for n, m in MAPPINGS.items() if m.stores_bias]
            raise ValueError(f"unit_column=True needs mapping={biased[0]!r} (the unit column "
                             f"removes the bias of offset-binary weights), got "
                             f"mapping={self.name!r}")

    @property
    def digital_bias(self) -> bool:
        """The bias is removed digitally, from the sums of each vector's DAC codes."""
        return self.stores_bias and not self.unit_column

    def bias_levels(self, bias: int, lgs_levels: float, level_weights: torch.Tensor) -> float:
        """What a read holds beyond the weights, per unit of input, in weight units: the
        encoding's ``bias`` (``2**(bits-1)`` for offset binary) plus the ``lgs_levels``
        (``LGS / level_step``) every cell of each array adds, shift-added with
        ``level_weights`` ``(n_a,)``. 0 for a mapping that stores no bias."""
        if not self.stores_bias:
            return 0.0
        return bias + lgs_levels * float(level_weights.sum())

    def stored_slices(self, n_slices: int) -> tuple[int, ...]:
        """The indices of the weight slices that get arrays, one array (or pair) each."""
        return tuple(range(0 if self.sign_array else 1, n_slices))

    def split(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Slice values ``(n_a, K, N)`` (signed for sign-magnitude) -> the values of the
        arrays, and of their G- partners (``None`` without pairs), both non-negative."""
        return values, None

    def array_columns(self, cols: int) -> int:
        """Physical columns of one array of ``cols`` stored columns (a unit column
        included): the G- columns of a pair and a reference column come on top."""
        return cols * (2 if self.pair else 1) + (1 if self.reference_column else 0)

    @staticmethod
    def remove_bias(values: torch.Tensor, unit_columns: int, weight_columns: int,
                    digital: torch.Tensor | float | None = None) -> torch.Tensor:
        """Subtract the bias of stored weights from shift-added results ``(..., C)``.

        With ``unit_columns`` (the last ``Tn`` of the ``C`` columns) each column loses the
        result of its own array's unit column (arrays of ``weight_columns`` weight columns);
        otherwise ``digital`` (broadcastable to ``(..., N)``, or ``None`` for no bias) is
        subtracted. Returns ``(..., N)``.
        """
        if unit_columns:
            n = values.shape[-1] - unit_columns
            tile_of = torch.arange(n, device=values.device) // weight_columns
            return values[..., :n] - values[..., n:].index_select(-1, tile_of)
        return values if digital is None else values - digital


@dataclass(frozen=True)
class Offset(Mapping):
    """Two's complement slices, each on one array of unsigned levels; a reference column of
    LGS cells removes the LGS offset (the original mPimPy's mapping)."""

    name: ClassVar[str] = "offset"
    weight_encoding: ClassVar[str] = "twos_complement"
    reference_column: ClassVar[bool] = True


@dataclass(frozen=True)
class DiffPair(Mapping):
    """Sign-magnitude slices on G+/G- pairs: a positive value on G+, a negative one on G-;
    the sign slice needs no array; currents take both signs."""

    name: ClassVar[str] = "diffpair"
    weight_encoding: ClassVar[str] = "sign_magnitude"
    sign_array: ClassVar[bool] = False
    pair: ClassVar[bool] = True
    bipolar: ClassVar[bool] = True

    def split(self, values):
        return values.clamp(min=0), (-values).clamp(min=0)


@dataclass(frozen=True)
class Bias(Mapping):
    """ISAAC's encoding: the offset-binary ``w + 2**(bits-1)`` (no sign slice) on arrays read
    without a reference column; the bias times the input sum (and the cells' LGS current) is
    removed after the shift-add, digitally or by a unit column."""

    name: ClassVar[str] = "bias"
    weight_encoding: ClassVar[str] = "offset_binary"
    sign_slice: ClassVar[bool] = False
    holds_lgs: ClassVar[bool] = True
    stores_bias: ClassVar[bool] = True


#: Every mapping by name, in the order settings list them.
MAPPINGS: dict[str, type[Mapping]] = {m.name: m for m in (Offset, DiffPair, Bias)}


def resolve_mapping(name: str, unit_column: bool = False) -> Mapping:
    """The :class:`Mapping` called ``name`` (a key of :data:`MAPPINGS`), checked."""
    if name not in MAPPINGS:
        raise ValueError(f"mapping must be one of {tuple(MAPPINGS)}, got {name!r}")
    return MAPPINGS[name](unit_column=unit_column)


__all__ = ["MAPPINGS", "Bias", "DiffPair", "Mapping", "Offset", "resolve_mapping"]
