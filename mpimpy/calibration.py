"""Calibration: the stage that sets a chip's ADC ranges from data, once, between programming
and inference.

A chip converts each input vector on its own: its ADC ranges are trimmed on calibration data
and then frozen, so what it computes for one vector never depends on the vectors sent beside
it. :meth:`mpimpy.engine.DPETensor.calibrate` reads calibration inputs through the same read
path as a product and records each array's range by a :class:`CalibrationRule`; the ranges
(:class:`AdcRanges`) are frozen on the weight's :class:`~mpimpy.programmed.ProgrammedWeight`
(programming the weight again clears them; pickling keeps them). A product on a calibrated
weight converts against them: currents outside saturate at the end codes, and the engine
records the fraction that did (``engine.last_clipped_fraction``). Ranges frozen at one read
time do not follow drift (currents that drift below a range's lower end saturate there): a chip
read long after programming calibrates again at that time (``engine.at_time(t)`` then
``calibrate``).

The ADC range modes (``adc_range``) that use ranges found from currents:

* ``"calibrated"``: frozen, one range ``[low, high]`` per array (row-block, slice pair,
  column block), all ``radc`` levels spread over it;
* ``"calibrated-symmetric"``: frozen, one range per slice pair that keeps zero current at
  code 0;
* ``"batch-oracle"`` and ``"batch-oracle-symmetric"``: the same ranges found, at the time of
  every product, from the currents of that product's whole batch. No chip has them (each
  answer then depends on its batch): an upper bound for studies, the ``"calibrated"`` modes
  of mPimPy before calibration was a stage.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .validation import check_real

if TYPE_CHECKING:
    from .config import CrossbarConfig
    from .programmed import ProgrammedWeight

#: How a calibration turns the currents it sees into a range (see :class:`CalibrationRule`).
CALIBRATION_RULES = ("minmax", "percentile")
#: ADC range modes whose ranges are set by the calibration stage and frozen.
FROZEN_ADC_RANGES = ("calibrated", "calibrated-symmetric")
#: ADC range modes whose ranges come from every product's own batch (upper-bound oracles).
ORACLE_ADC_RANGES = ("batch-oracle", "batch-oracle-symmetric")
#: Modes with one range per array (the others: one range per slice pair, zero at code 0).
PER_ARRAY_ADC_RANGES = ("calibrated", "batch-oracle")


@dataclass(frozen=True)
class CalibrationRule:
    """How a calibration sets each range from the currents it sees.

    Attributes:
        name: ``"minmax"``: ``[min, max]`` of the currents (nothing they hold clips);
            ``"percentile"``: ``[the (100 - p)-th, the p-th percentile]``, which clips the
            outliers of the calibration data to give the rest finer ADC steps.
        percentile: ``p`` in ``[50, 100]`` for ``"percentile"`` (default 99.99).
    """

    name: str = "minmax"
    percentile: float = 99.99

    def __post_init__(self):
        if self.name not in CALIBRATION_RULES:
            raise ValueError(f"rule must be one of {CALIBRATION_RULES}, got {self.name!r}")
        check_real("percentile", self.percentile, low=50.0, high=100.0)

    @classmethod
    def resolve(cls, rule: str | CalibrationRule = "minmax",
                percentile: float | None = None) -> CalibrationRule:
        """A rule from its name (and percentile), or the rule itself."""
        if isinstance(rule, CalibrationRule):
            if percentile is not None:
                raise TypeError("pass percentile with a rule's name, not with a CalibrationRule")
            return rule
        if not isinstance(rule, str):
            raise TypeError(f"rule must be one of {CALIBRATION_RULES} or a CalibrationRule, "
                            f"got {rule!r}")
        return cls(rule) if percentile is None else cls(rule, percentile)

    def ends(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The range ``(low, high)`` of ``values`` ``(..., n)`` along its last axis, float64."""
        if self.name == "minmax":
            return values.amin(-1).double(), values.amax(-1).double()
        n = values.shape[-1]
        k = min(n, max(1, math.ceil(self.percentile / 100 * n)))
        return (values.kthvalue(n - k + 1, -1).values.double(),
                values.kthvalue(k, -1).values.double())


@dataclass
class AdcRanges:
    """ADC ranges frozen by the calibration stage, in code units of current.

    Attributes:
        low, high: float64: ``(Tk, n_x, n_a, Tn)`` per array (row-block, input slice, weight
            array, column block) for ``"calibrated"``, ``(n_x, n_a)`` per slice pair for
            ``"calibrated-symmetric"``.
        rule: the rule that set them.
        vectors: how many calibration vectors they were set from.
    """

    low: torch.Tensor
    high: torch.Tensor
    rule: CalibrationRule
    vectors: int

    @property
    def per_array(self) -> bool:
        return self.low.dim() == 4

    def merged(self, other: AdcRanges) -> AdcRanges:
        """These ranges and ``other``'s, set from more calibration data by the same rule:
        min/max of the ends for ``"minmax"``; for ``"percentile"``, each end averaged over the
        calibrations, weighted by their vectors (the percentile of each batch, not of their
        union, which would keep every current of every batch)."""
        if other.rule != self.rule:
            raise ValueError(f"calibrating with {other.rule} on top of ranges set with "
                             f"{self.rule}: use one rule, or program the weights again")
        if other.low.shape != self.low.shape:
            raise ValueError(f"calibration data read as ranges of shape "
                             f"{tuple(other.low.shape)}, earlier ones {tuple(self.low.shape)}: "
                             f"calibrate with inputs sliced the same way")
        vectors = self.vectors + other.vectors
        if self.rule.name == "minmax":
            low, high = torch.minimum(self.low, other.low), torch.maximum(self.high, other.high)
        else:
            low, high = ((a * self.vectors + b * other.vectors) / vectors
                         for a, b in ((self.low, other.low), (self.high, other.high)))
        return AdcRanges(low, high, self.rule, vectors)

    def check(self, shape: tuple[int, ...], mode: str) -> None:
        """Refuse a product whose ranges would have another shape (other input slices, another
        mode) than the calibration's."""
        if tuple(self.low.shape) != tuple(shape):
            raise ValueError(
                f"adc_range={mode!r}: this product needs ADC ranges of shape {tuple(shape)}, "
                f"the calibration froze {tuple(self.low.shape)}: slice the inputs as the "
                f"calibration data was, or program the weights again and calibrate anew")


class RangeRecorder:
    """Collects the ranges a calibration finds, group of chunks by group (see
    :meth:`mpimpy.peripherals.ChunkConverter.ranges`), into the whole product's ranges."""

    def __init__(self, shape: tuple[int, ...], rule: CalibrationRule, vectors: int,
                 device: torch.device):
        self.rule, self.vectors = rule, vectors
        self.low = torch.full(shape, torch.inf, dtype=torch.float64, device=device)
        self.high = torch.full(shape, -torch.inf, dtype=torch.float64, device=device)

    def record(self, low: torch.Tensor, high: torch.Tensor, rows: slice | None) -> None:
        """A group's ranges: of the row-blocks ``rows`` per array, or of every slice pair
        (``rows=None``); column blocks the group did not read hold +-inf."""
        index = slice(None) if rows is None else rows
        self.low[index] = torch.minimum(self.low[index], low)
        self.high[index] = torch.maximum(self.high[index], high)

    def freeze(self, state: ProgrammedWeight) -> None:
        """Freeze the ranges found on ``state``, merged with those it holds (if any)."""
        found = AdcRanges(self.low, self.high, self.rule, self.vectors)
        state.adc_ranges = found if state.adc_ranges is None else state.adc_ranges.merged(found)


def calibration_batches(data, name: str = "data") -> list:
    """Calibration data as a list of batches: one tensor or array (one batch), or an iterable
    of them; refused when it holds no batch or a batch holds no vector."""
    batches = [data] if isinstance(data, torch.Tensor) or hasattr(data, "__array__") \
        else list(data)
    if not batches:
        raise ValueError(f"calibrate needs calibration data: {name} holds no batch")
    for batch in batches:
        if not isinstance(batch, torch.Tensor) and not hasattr(batch, "__array__"):
            raise TypeError(f"{name} must be a tensor, an array or an iterable of them, got a "
                            f"batch of type {type(batch).__name__}")
        if batch.ndim == 0 or batch.shape[0] == 0 or math.prod(batch.shape) == 0:
            raise ValueError(f"calibrate needs calibration data: {name} holds a batch of shape "
                             f"{tuple(batch.shape)}, with no vector")
    return batches


def input_range(batches, rule: CalibrationRule) -> float:
    """A static input range (the largest ``|value|`` the DAC's full scale is set for) from
    calibration batches of tensors: the rule's upper end of their ``|values|`` (for
    ``"percentile"``, per batch, averaged weighted by their elements)."""
    ends = [(float(rule.ends(b.detach().abs().flatten().double())[1]), b.numel())
            for b in batches]
    if rule.name == "minmax":
        peak = max(end for end, _ in ends)
    else:
        peak = sum(end * n for end, n in ends) / sum(n for _, n in ends)
    if not math.isfinite(peak) or peak <= 0:
        raise ValueError(f"the calibration data's input range is {peak!r}: it needs finite, "
                         f"nonzero values")
    return peak


def check_calibration(cfg: CrossbarConfig, batches: list) -> list:
    """The batches a calibration reads, checked: some, for an ADC with frozen ranges."""
    if cfg.radc is not None and cfg.adc_range not in FROZEN_ADC_RANGES:
        raise ValueError(f"calibrate sets the frozen ADC ranges of adc_range in "
                         f"{FROZEN_ADC_RANGES}; this engine's adc_range is {cfg.adc_range!r}, "
                         f"which calibration does not change")
    if not batches:
        raise ValueError("calibrate needs calibration data: x holds no batch")
    return batches


def product_ranges(cfg: CrossbarConfig, state: ProgrammedWeight, rule: CalibrationRule | None,
                   codes_shape: tuple[int, int, int, int], n_a: int, device: torch.device):
    """The frozen ADC ranges a product converts against (or ``None``: fixed ranges, or an
    oracle's found from its batch), and the :class:`RangeRecorder` of the ranges it finds (or
    ``None``): a calibration's, by ``rule``; or, on weights never calibrated, the first
    product's, which calibrates on its own inputs (minmax) and warns.

    Args:
        codes_shape: the product's DAC codes' shape ``(Tk, rows, M, n_x)``.
        n_a: arrays per row-block and column block.
    """
    if cfg.radc is None or cfg.adc_range not in FROZEN_ADC_RANGES:
        return None, None
    tk, _, m, n_x = codes_shape
    shape = (tk, n_x, n_a, state.arrays.positive.shape[2]) \
        if cfg.adc_range in PER_ARRAY_ADC_RANGES else (n_x, n_a)
    if rule is None and state.adc_ranges is not None:
        state.adc_ranges.check(shape, cfg.adc_range)
        return state.adc_ranges, None
    if rule is None:
        warnings.warn(
            f"adc_range={cfg.adc_range!r} on weights never calibrated: this product sets their "
            f"ADC ranges from its own inputs (minmax rule) and freezes them, so its answers "
            f"depend on its batch. Call calibrate on calibration data first (engine.calibrate, "
            f"CrossbarMatmul.calibrate, mpimpy.nn.calibrate)", UserWarning, stacklevel=4)
        rule = CalibrationRule()
    return None, RangeRecorder(shape, rule, m, device)


__all__ = ["CALIBRATION_RULES", "FROZEN_ADC_RANGES", "ORACLE_ADC_RANGES",
           "PER_ARRAY_ADC_RANGES", "AdcRanges", "CalibrationRule", "RangeRecorder",
           "calibration_batches", "check_calibration", "input_range", "product_ranges"]
