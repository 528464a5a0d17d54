"""Stages 4 and 6: the DAC that drives word lines and the ADC that reads bit lines.

Both work in *code units*: the DAC returns integer codes ``d`` in ``[0, dac_levels - 1]`` (the
word-line voltage is ``vread * d / (dac_levels - 1)``); the ADC turns a column current, expressed in
the same units as the currents it is given, into one of ``radc`` levels.
"""

from __future__ import annotations

import torch


def dac_full_scale(widths, rdac: int | None) -> list[int]:
    """Largest DAC code for each input slice: ``rdac - 1``, or ``2**w - 1`` for an ideal DAC."""
    return [(rdac - 1) if rdac is not None else 2**w - 1 for w in widths]


def drive(slices: torch.Tensor, widths, rdac: int | None, vnoise: float,
          generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Input slices -> DAC codes, with relative voltage noise.

    Args:
        slices: integer ``(n_slices, ...)`` two's complement input slices, slice i in
            ``[0, 2**widths[i] - 1]``.
        widths: the slice widths.
        rdac: DAC levels, or ``None`` for an ideal DAC (code = slice value).
        vnoise: relative standard deviation of each driven voltage, drawn on every call.
        generator: random source of the voltage noise.
        dtype: floating dtype of the result.

    Returns:
        ``(n_slices, ...)`` DAC codes ``round(u / (2**w - 1) * (rdac - 1))``, times
        ``1 + vnoise * N(0, 1)``; the voltage is ``vread * code / dac_full_scale``.
    """
    codes = slices.to(dtype)
    if rdac is not None:
        slice_max = torch.tensor([2**w - 1 for w in widths], dtype=dtype, device=slices.device)
        slice_max = slice_max.view((-1,) + (1,) * (slices.dim() - 1))
        codes = torch.round(codes * ((rdac - 1) / slice_max))
    if vnoise > 0:
        noise = torch.randn(codes.shape, generator=generator, device=codes.device, dtype=dtype)
        codes = codes * noise.mul_(vnoise).add_(1)
    return codes


def adc_step(full_scale: torch.Tensor, radc: int, bipolar: bool) -> torch.Tensor:
    """Current of one ADC level for a given full-scale current (same units, any shape).

    Unipolar (offset mapping): ``radc`` levels on ``[0, full_scale]``. Bipolar (differential
    pair): a symmetric ADC with ``(radc - 1) // 2`` levels on each side of 0. A zero full scale
    (a slice pair that carries no current) gets step 1 so it converts to 0, never NaN.
    """
    levels = (radc - 1) // 2 if bipolar else radc - 1
    step = full_scale / levels
    return torch.where(step > 0, step, torch.ones_like(step))


def convert(currents: torch.Tensor, radc: int, bipolar: bool) -> torch.Tensor:
    """Quantize currents, given in units of one ADC level, to ADC codes in place.

    Currents past the full scale saturate at the end codes, as in a real ADC. Returns
    ``currents`` holding integer codes.
    """
    top = (radc - 1) // 2 if bipolar else radc - 1
    bottom = -top if bipolar else 0
    return currents.round_().clamp_(bottom, top)
